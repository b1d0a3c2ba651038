"""Issue 15, point 7: a stored instance is never silently replaced. A second STOW-RS of a
known SOP Instance UID with other content is refused (409 `InstanceAlreadyStored`), changing
nothing; the same content again is accepted as already stored."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from pydicom import dcmread

from studyshare.devstack.dicomgen import instance
from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, ok, problem, wait_for
from .dicomkit import department_with_sender, new_study, retrieve_instance, stow


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    return department_with_sender(api, desk)


def altered(original: bytes, **changes: str) -> bytes:
    """The same SOP Instance UID with other content."""
    ds = dcmread(io.BytesIO(original))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_second_stow_with_other_content_is_refused(api: Gateway, cast: SimpleNamespace) -> None:
    study = new_study()
    first, second = instance(study, 1, 1), instance(study, 1, 2)
    ok(stow(api, cast.sender, [first, second]))
    wait_for(lambda: api.study(cast.sender, study.study_uid).status_code == 200, "the study")
    metadata_before = ok(
        api.client.get(f"/dicomweb/studies/{study.study_uid}/metadata", headers=cast.sender.headers)
    )

    forged = altered(first, PatientName="Mallory^Eve", StudyDescription="forged")
    body = problem(stow(api, cast.sender, [forged]), 409, "InstanceAlreadyStored")
    assert "1 instance" in body["detail"] or "instance" in body["detail"]

    # With a new instance in the same request: the whole request is refused, nothing stored.
    third = instance(study, 1, 3)
    problem(stow(api, cast.sender, [third, forged]), 409, "InstanceAlreadyStored")
    # Into the study's own STOW route too.
    problem(
        stow(api, cast.sender, [forged], f"/dicomweb/studies/{study.study_uid}"),
        409,
        "InstanceAlreadyStored",
    )

    assert retrieve_instance(api.client, cast.sender, study, 1, 1) == first
    metadata_after = ok(
        api.client.get(f"/dicomweb/studies/{study.study_uid}/metadata", headers=cast.sender.headers)
    )
    assert len(metadata_after) == 2, "the new instance of the refused request was not stored"
    assert sorted(map(str, metadata_after)) == sorted(map(str, metadata_before))
    assert ok(api.study(cast.sender, study.study_uid))["instance_count"] == 2


def test_the_same_content_again_is_already_stored(api: Gateway, cast: SimpleNamespace) -> None:
    study = new_study()
    first = instance(study, 1, 1)
    ok(stow(api, cast.sender, [first]))
    wait_for(lambda: api.study(cast.sender, study.study_uid).status_code == 200, "the study")
    again = ok(stow(api, cast.sender, [first]))
    assert len(again["00081199"]["Value"]) == 1, again
    assert retrieve_instance(api.client, cast.sender, study, 1, 1) == first
