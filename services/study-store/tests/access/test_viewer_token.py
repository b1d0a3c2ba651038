"""The image viewer's token: one study, through one grant, DICOMweb reads only, decided by the
access model on every request (so a revocation, a lock or an expiry refuses its next one)."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from pathlib import Path

import jwt
import numpy as np
import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from studyshare.contracts.events.share import AccessRevoked, BucketLocked
from studyshare.plumbing.auth import JWKSVerifier
from studyshare.plumbing.errors import Unauthorized
from studyshare.plumbing.revocations import SessionRevocations
from studyshare.plumbing.testing import TestTokens
from studyshare.study_store.adapters.viewer_tokens import ViewerTokens

from .conftest import now, until

DOCTOR = "usr_doc"
STAFF = "usr_staff"


def ct_instance(study_uid: str, series_uid: str, number: int) -> bytes:
    """A 32x32 CT image (BurnedInAnnotation NO: served on anonymized shares too)."""
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PID-1", "19800214"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID, ds.SOPClassUID = generate_uid(), CTImageStorage
    ds.Modality, ds.BurnedInAnnotation = "CT", "NO"
    ds.StudyDate, ds.StudyDescription = "20260301", "CT thorax"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(32 * 32, dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def stored_study(h) -> tuple[str, str, str]:
    """A study of one image stored by STOW-RS and known to the access model:
    (study, series, instance UID)."""
    study_uid, series_uid = generate_uid(), generate_uid()
    data = ct_instance(study_uid, series_uid, 1)
    boundary = "viewer-test"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    staff = h.user(STAFF, "department_staff", department_ids=["dep_rad"])
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    response = await h.http.post(
        "/dicomweb/studies", content=body, headers={**staff, "Content-Type": content_type}
    )
    assert response.status_code == 200, response.text
    await h.project(*await h.store.load(study_uid))
    await h.sync()
    metadata = await h.http.get(f"/dicomweb/studies/{study_uid}/metadata", headers=staff)
    sop_uid = metadata.json()[0]["00080018"]["Value"][0]
    return study_uid, series_uid, sop_uid


async def viewer_token(h, uid: str, headers: dict[str, str]) -> dict:
    response = await h.http.post(f"/api/studies/{uid}/viewer-token", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def revoke(h, bucket_id: str, recipient_id: str = DOCTOR):
    return h.events(
        AccessRevoked(
            bucket_id=bucket_id, scope="recipient", recipient_id=recipient_id, revoked_by="usr_s"
        ),
        bucket_id,
    )


@pytest.fixture
async def shared(harness):
    """Two stored studies, both shared with the doctor in one bucket."""
    h = harness
    first, series, sop = await stored_study(h)
    second, _, _ = await stored_study(h)
    await h.share("bkt_v", [first, second], [(DOCTOR, "user")], access_level="images")
    return first, series, sop, second


async def test_the_viewer_reads_its_study_over_dicomweb(harness, shared):
    h = harness
    uid, series, sop = shared[:3]
    issued = await viewer_token(h, uid, h.user(DOCTOR, "physician"))
    assert issued["study_uid"] == uid and issued["dicomweb_root"] == "/dicomweb"
    assert 0 < issued["expires_in"] <= h.app.state.settings.viewer_token_ttl_s
    viewer = bearer(issued["token"])
    instance = f"/dicomweb/studies/{uid}/series/{series}/instances/{sop}"
    for path in (
        f"/dicomweb/studies?StudyInstanceUID={uid}",
        f"/dicomweb/studies/{uid}/series",
        f"/dicomweb/studies/{uid}/series/{series}/metadata",
        f"/dicomweb/studies/{uid}/metadata",
        instance,
        f"{instance}/frames/1",
        f"{instance}/rendered",
        f"/dicomweb/studies/{uid}/series/{series}/thumbnail",
    ):
        response = await h.http.get(path, headers=viewer)
        assert response.status_code == 200, (path, response.text)
    found = (await h.http.get("/dicomweb/studies", headers=viewer)).json()
    assert [s["0020000D"]["Value"][0] for s in found] == [uid], "its one study, no other"


async def test_another_study_and_every_other_route_are_refused(harness, shared):
    h = harness
    uid, _series, _sop, other = shared
    doctor = h.user(DOCTOR, "physician")
    own = await h.http.get(f"/dicomweb/studies/{other}/metadata", headers=doctor)
    assert own.status_code == 200, "the doctor's own token opens both"
    viewer = bearer((await viewer_token(h, uid, doctor))["token"])
    for path in (f"/dicomweb/studies/{other}/metadata", f"/dicomweb/studies/{other}/series"):
        response = await h.http.get(path, headers=viewer)
        assert response.status_code == 404, path
        assert response.json()["rule"] == "StudyNotFound"
    for method, path in (
        ("GET", f"/api/studies/{uid}"),
        ("GET", f"/api/studies/{uid}/report"),
        ("GET", f"/api/studies/{uid}/download"),
        ("GET", "/api/studies"),
        ("POST", f"/api/studies/{uid}/viewer-token"),  # no renewal by itself
        ("POST", f"/api/studies/{uid}/break-glass"),
        ("POST", "/dicomweb/studies"),
    ):
        response = await h.http.request(method, path, headers=viewer, json={"reason": "x"})
        assert response.status_code == 401, (method, path, response.status_code)


def test_no_other_service_accepts_a_viewer_token() -> None:
    """Every other service verifies bearer tokens against identity's key set, which never
    signed a viewer token."""
    import asyncio

    from studyshare.contracts.tokens import AccessClaims
    from studyshare.study_store.domain.viewer import ViewerScope

    holder = AccessClaims(sub=DOCTOR, roles=("physician",), iat=0, exp=int(time.time()) + 600)
    token, _ = ViewerTokens("secret-of-the-store", 300).issue(
        holder, ViewerScope(study_uid="1.2.3", via="grant", bucket_id="bkt_1")
    )
    identity_keys = JWKSVerifier.from_jwks(TestTokens().signer.jwks())
    with pytest.raises(Unauthorized):
        asyncio.run(identity_keys.verify(token))
    with pytest.raises(Unauthorized):
        ViewerTokens("another-secret", 300).verify(token)


async def test_an_expired_viewer_token_is_refused(harness, shared):
    h = harness
    uid = shared[0]
    issued_earlier = ViewerTokens(
        h.app.state.settings.viewer_token_secret, 300, clock=lambda: time.time() - 301
    )
    h.app.state.viewer_tokens, live = issued_earlier, h.app.state.viewer_tokens
    token = (await viewer_token(h, uid, h.user(DOCTOR, "physician")))["token"]
    h.app.state.viewer_tokens = live
    response = await h.http.get(f"/dicomweb/studies/{uid}/metadata", headers=bearer(token))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_revocation_and_lock_refuse_the_next_request(harness, shared):
    h = harness
    uid = shared[0]
    viewer = bearer((await viewer_token(h, uid, h.user(DOCTOR, "physician")))["token"])
    path = f"/dicomweb/studies/{uid}/metadata"
    assert (await h.http.get(path, headers=viewer)).status_code == 200

    await h.project(
        h.events(BucketLocked(bucket_id="bkt_v", recipient_id=DOCTOR, failed_attempts=5), "bkt_v")
    )

    async def locked():
        response = await h.http.get(path, headers=viewer)
        return response.status_code == 423 and response.json()["rule"] == "BucketIsLocked"

    assert (await until(locked, timeout=5))[0]

    await h.project(revoke(h, "bkt_v"))

    async def revoked():
        response = await h.http.get(path, headers=viewer)
        return response.status_code == 403 and response.json()["rule"] == "GrantRevoked"

    assert (await until(revoked, timeout=5))[0]


async def test_the_viewer_ends_with_its_grant_while_another_still_opens_the_study(harness, shared):
    h = harness
    uid = shared[0]
    doctor = h.user(DOCTOR, "physician")
    issued = await viewer_token(h, uid, doctor)
    await h.share("bkt_w", [uid], [(DOCTOR, "user")], access_level="images_report_read")
    await h.project(revoke(h, "bkt_v"))

    async def refused():
        response = await h.http.get(
            f"/dicomweb/studies/{uid}/metadata", headers=bearer(issued["token"])
        )
        return response.status_code == 403

    assert (await until(refused, timeout=5))[0]
    assert (
        await h.http.get(f"/dicomweb/studies/{uid}/metadata", headers=doctor)
    ).status_code == 200
    renewed = await viewer_token(h, uid, doctor)  # the study page opens a new viewer
    response = await h.http.get(
        f"/dicomweb/studies/{uid}/metadata", headers=bearer(renewed["token"])
    )
    assert response.status_code == 200


async def test_an_ended_session_ends_its_viewer_at_once(harness, shared):
    h = harness
    uid = shared[0]
    viewer = bearer((await viewer_token(h, uid, h.user(DOCTOR, "physician", sid="ses_1")))["token"])
    revocations = SessionRevocations(3600)
    h.app.state.verifier.revocations = revocations
    assert (
        await h.http.get(f"/dicomweb/studies/{uid}/metadata", headers=viewer)
    ).status_code == 200
    revocations.end_session("ses_1", time.time(), "logged out")
    response = await h.http.get(f"/dicomweb/studies/{uid}/metadata", headers=viewer)
    assert response.status_code == 401 and response.json()["rule"] == "SessionEnded"


async def test_an_anonymized_share_shows_the_viewer_its_pseudonym(harness):
    h = harness
    uid, _series, _sop = await stored_study(h)
    await h.share(
        "bkt_anon",
        [uid],
        [(DOCTOR, "user")],
        anonymize=True,
        valid_until=now() + timedelta(days=1),
    )
    issued = await viewer_token(h, uid, h.user(DOCTOR, "physician"))
    seen = issued["study_uid"]
    assert seen != uid, "the viewer opens the study by the UID the share shows"
    viewer = bearer(issued["token"])
    metadata = await h.http.get(f"/dicomweb/studies/{seen}/metadata", headers=viewer)
    assert metadata.status_code == 200, metadata.text
    (instance,) = metadata.json()
    assert instance["0020000D"]["Value"] == [seen]
    name = instance["00100010"]["Value"][0]["Alphabetic"]
    assert name.startswith("Anonymous^") and "Doe" not in metadata.text
    found = (await h.http.get(f"/dicomweb/studies?StudyInstanceUID={seen}", headers=viewer)).json()
    assert [s["0020000D"]["Value"][0] for s in found] == [seen]
    payload = jwt.decode(issued["token"], options={"verify_signature": False})
    assert uid not in json.dumps(payload), "its holder reads the token: no real UID in it"


def test_a_viewer_token_lives_no_longer_than_its_access_token(tmp_path: Path) -> None:
    from studyshare.contracts.tokens import AccessClaims
    from studyshare.study_store.domain.viewer import ViewerScope

    tokens = ViewerTokens("s", 300, clock=lambda: 1_000_000.0)
    holder = AccessClaims(sub=DOCTOR, iat=999_000, exp=1_000_060)
    token, expires_in = tokens.issue(holder, ViewerScope(study_uid="1.2", via="grant"))
    assert expires_in == 60
    assert tokens.verify(token).exp == 1_000_060


async def test_a_patient_opens_the_viewer_on_their_one_study(harness, shared):
    h = harness
    uid, _series, _sop, other = shared
    staff = h.user(STAFF, "department_staff", department_ids=["dep_rad"])
    issued = await h.http.post(f"/api/studies/{uid}/reference-numbers", json={}, headers=staff)
    assert issued.status_code == 201, issued.text
    ref_id = issued.json()["reference_id"]
    viewer = bearer((await viewer_token(h, uid, h.tokens.patient(ref_id, uid)))["token"])
    assert (
        await h.http.get(f"/dicomweb/studies/{uid}/metadata", headers=viewer)
    ).status_code == 200
    refused = await h.http.get(f"/dicomweb/studies/{other}/metadata", headers=viewer)
    assert refused.status_code == 404
