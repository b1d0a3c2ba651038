"""Issue 15, point 6: forwarding to a PACS sends only what the forwarder may read (no report
for images-only, nothing without download), and a share to a PACS department needs the
sharer's download permission. The PACS is a real dcmtk storescp."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, ok, problem, wait_for
from .dicomkit import (
    BASIC_TEXT_SR,
    SECONDARY_CAPTURE,
    Pacs,
    department_with_sender,
    upload_with_report,
)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    scp = Pacs(Path(tmp_path_factory.mktemp("pacs"))).start()
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform, pacs: Pacs) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    home = department_with_sender(api, desk)
    other_department = api.radiology_department(desk, "Radiology elsewhere")
    staff = api.register(
        desk, "Bart", roles=["department_staff"], department_ids=[other_department]
    )
    colleague = api.register(desk, "Claire", roles=["physician"])
    return SimpleNamespace(
        desk=desk,
        sender=home.sender,
        other_department=other_department,
        staff=staff,
        colleague=colleague,
        pacs_id=pacs.department(api, desk),
    )


def forwarded_to(api: Gateway, who, uid: str, pacs_id: str) -> dict:
    """The transfer of `uid` to `pacs_id` (as `who` sees them) once it has ended."""

    def done() -> dict | None:
        rows = ok(api.client.get(f"/api/studies/{uid}/transfers", headers=who.headers))
        row = next((r for r in rows if r["destination_id"] == pacs_id), None)
        return row if row and row["state"] in ("forwarded", "failed") else None

    return wait_for(done, f"the transfer of {uid} to {pacs_id}", timeout=60)


def sop_classes(pacs: Pacs, uid: str) -> list[str]:
    return sorted(str(ds.SOPClassUID) for ds in pacs.received(uid))


def test_a_share_to_a_pacs_images_only_sends_no_report(
    api: Gateway, cast: SimpleNamespace, pacs: Pacs
) -> None:
    study = upload_with_report(api, cast.sender)
    uid = study.study_uid
    api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[{"kind": "department", "id": cast.pacs_id}],
        access_level="images",
        allow_download=True,
    )
    assert forwarded_to(api, cast.sender, uid, cast.pacs_id)["state"] == "forwarded"
    assert sop_classes(pacs, uid) == [SECONDARY_CAPTURE, SECONDARY_CAPTURE], "no SR report"


def test_an_images_only_recipient_forwards_no_report(
    api: Gateway, cast: SimpleNamespace, pacs: Pacs
) -> None:
    study = upload_with_report(api, cast.sender)
    uid = study.study_uid
    api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[{"kind": "department", "id": cast.other_department}],
        access_level="images",
        allow_download=True,
    )
    wait_for(lambda: api.study(cast.staff, uid).status_code == 200, "the grant to the staff")
    ok(
        api.client.post(
            f"/api/studies/{uid}/forward",
            json={"pacs_id": cast.pacs_id},
            headers=cast.staff.headers,
        ),
        202,
    )
    assert forwarded_to(api, cast.staff, uid, cast.pacs_id)["state"] == "forwarded"
    assert sop_classes(pacs, uid) == [SECONDARY_CAPTURE, SECONDARY_CAPTURE], "no SR report"


def test_a_recipient_with_report_access_forwards_the_report(
    api: Gateway, cast: SimpleNamespace, pacs: Pacs
) -> None:
    study = upload_with_report(api, cast.sender)
    uid = study.study_uid
    api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[{"kind": "user", "id": cast.colleague.user_id}],
        access_level="images_report_read",
        allow_download=True,
    )
    wait_for(lambda: api.study(cast.colleague, uid).status_code == 200, "the colleague's grant")
    ok(
        api.client.post(
            f"/api/studies/{uid}/forward",
            json={"pacs_id": cast.pacs_id},
            headers=cast.colleague.headers,
        ),
        202,
    )
    assert forwarded_to(api, cast.colleague, uid, cast.pacs_id)["state"] == "forwarded"
    assert sop_classes(pacs, uid) == sorted([SECONDARY_CAPTURE, SECONDARY_CAPTURE, BASIC_TEXT_SR])


def test_without_download_nothing_reaches_a_pacs(
    api: Gateway, cast: SimpleNamespace, pacs: Pacs
) -> None:
    study = upload_with_report(api, cast.sender)
    uid = study.study_uid
    api.shared(
        cast.sender,
        study_uids=[uid],
        recipients=[{"kind": "user", "id": cast.colleague.user_id}],
        access_level="images_report_read",
        allow_download=False,
        allow_further_sharing=True,
    )
    wait_for(lambda: api.study(cast.colleague, uid).status_code == 200, "the colleague's grant")

    forward = api.client.post(
        f"/api/studies/{uid}/forward",
        json={"pacs_id": cast.pacs_id},
        headers=cast.colleague.headers,
    )
    problem(forward, 403, "ForwardNotAllowed")

    reshare = api.share(
        cast.colleague,
        study_uids=[uid],
        recipients=[{"kind": "department", "id": cast.pacs_id}],
        access_level="images",
        allow_download=False,
    )
    problem(reshare, 403, "PacsShareNeedsDownload")

    # A share to an ordinary department without download stays possible.
    api.shared(
        cast.colleague,
        study_uids=[uid],
        recipients=[{"kind": "department", "id": cast.other_department}],
        access_level="images",
    )
    time.sleep(3)  # what a forward would take; nothing may arrive
    assert pacs.received(uid) == []
    rows = ok(api.client.get(f"/api/studies/{uid}/transfers", headers=cast.sender.headers))
    assert rows == []
