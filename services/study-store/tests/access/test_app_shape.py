"""The app factory, the worker's projections and the CLI of the study store."""

from __future__ import annotations

import subprocess
import sys

import pytest

from studyshare.plumbing.sealing import DEV_PINCODE_PUBLIC_KEY, generate_keypair
from studyshare.plumbing.testing import production_settings
from studyshare.study_store.adapters.projections import AccessDecisions
from studyshare.study_store.entrypoints.worker import projections
from studyshare.study_store.settings import StudyStoreSettings


def test_openapi_documents_every_refusal_of_the_access_routes():
    from studyshare.study_store.entrypoints.api import create_app

    spec = create_app().openapi()
    paths = spec["paths"]
    for path in (
        "/api/studies",
        "/api/studies/{study_uid}",
        "/api/studies/{study_uid}/report",
        "/api/studies/{study_uid}/reference-numbers",
        "/api/studies/{study_uid}/reference-numbers/regenerate",
        "/api/studies/{study_uid}/reference-numbers/{reference_id}",
        "/api/studies/{study_uid}/reference-numbers/{reference_id}/pincode",
        "/api/studies/{study_uid}/break-glass",
    ):
        assert path in paths, path
        for op in paths[path].values():
            assert "401" in op["responses"] and "422" in op["responses"], (path, op)
    put = paths["/api/studies/{study_uid}/report"]["put"]
    assert set(put["requestBody"]["content"]) == {
        "application/json",
        "text/plain",
        "application/pdf",
    }


def test_worker_runs_the_access_decisions_projection_on_all_three_topics():
    found = projections(StudyStoreSettings())
    access = [p for p in found if isinstance(p, AccessDecisions)]
    assert len(access) == 1
    assert set(access[0].topics) == {"share.events", "identity.events", "study.events"}


def test_cli_offers_api_relay_worker_replay_and_scp():
    out = subprocess.run(
        [sys.executable, "-m", "studyshare.study_store", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for command in ("api", "relay", "worker", "replay", "scp"):
        assert command in out


def test_production_seals_pincodes_only_with_a_real_identity_key():
    production = {
        **production_settings("study-store"),
        "otp_seal_public_key": generate_keypair()[1],
        "anonymization_secret": "a-real-anonymization-key",
        "viewer_token_secret": "a-real-viewer-token-key",
    }
    with pytest.raises(ValueError, match="reference_number_secret"):
        StudyStoreSettings(**production)
    production["reference_number_secret"] = "a-real-reference-number-key"
    with pytest.raises(ValueError, match="pincode sealing key"):
        StudyStoreSettings(**production)
    with pytest.raises(ValueError, match="32-byte"):
        StudyStoreSettings(**production, pincode_seal_public_key="not-a-key")
    public = generate_keypair()[1]
    assert StudyStoreSettings(**production, pincode_seal_public_key=public)
    assert StudyStoreSettings().pincode_seal_public_key == DEV_PINCODE_PUBLIC_KEY
