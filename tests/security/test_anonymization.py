"""Issue 15, point 5: anonymized shares follow the DICOM PS3.15 Annex E Basic Application
Level Confidentiality Profile, on every path a recipient reads.

A study whose instances fill every Annex E attribute (identifying text holds `LEAK`, dates
`LEAK_DATE`, a private block too) is shared anonymized with two physicians in two buckets.
Through the gateway, QIDO-RS, WADO-RS metadata, instances, frames, rendered images, thumbnails,
the download, the share mail, `/api/studies` and `/api/shared-with-me` must show no identifying
value, no real UID and no real date; the two shares must not be linkable (their pseudonym, UIDs
and dates differ);
objects that may carry burned-in text (US, BurnedInAnnotation missing or YES) are not served.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from types import SimpleNamespace
from typing import Any

import jwt
import pydicom
import pytest
from pydicom.uid import UID

from studyshare.devstack.dicomgen import (
    LEAK,
    LEAK_DATE,
    DemoStudy,
    annex_e_instance,
    multipart_related,
    stable_uid,
)
from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, Person, ok, unique, wait_for

REAL_STUDY_DATE = "20250917"
REAL_BIRTH_DATE = "19600101"


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department_id = api.radiology_department(desk, f"Radiology {unique('')}")
    admin = api.register(
        desk,
        "Rita",
        roles=["department_admin", "department_staff"],
        department_ids=[department_id],
        admin_of=[department_id],
    )
    sender = api.register(
        admin.headers, "Pieter", roles=["physician"], department_ids=[department_id]
    )
    first = api.register(desk, "Claire", roles=["physician"])
    second = api.register(desk, "Marc", roles=["physician"])
    return SimpleNamespace(sender=sender, first=first, second=second)


def upload_annex_e_study(api: Gateway, sender: Person) -> tuple[DemoStudy, list[bytes]]:
    key = unique("anon-")
    study = DemoStudy(
        key,
        f"{LEAK}PID{key[-8:]}",
        f"{LEAK}^Patient",
        REAL_BIRTH_DATE,
        "F",
        f"{LEAK} description",
        "CT",
        REAL_STUDY_DATE,
        f"{LEAK}ACC{key[-6:]}",
    )
    parts = [
        annex_e_instance(study, 1, 1),  # served: CT, BurnedInAnnotation NO
        annex_e_instance(study, 1, 2),  # served
        annex_e_instance(study, 2, 1, modality="US"),  # ultrasound: text in the pixels
        annex_e_instance(study, 3, 1, burned_in=None),  # nobody said there is no text
        annex_e_instance(study, 4, 1, burned_in="YES"),
    ]
    body, content_type = multipart_related(parts)
    headers = {**sender.headers, "Content-Type": content_type, "Accept": "application/dicom+json"}
    r = api.client.post("/dicomweb/studies", content=body, headers=headers)
    assert r.status_code == 200, (r.status_code, r.text)
    wait_for(
        lambda: api.study(sender, study.study_uid).status_code == 200,
        "the study in the study store",
    )
    return study, parts


def real_uids(parts: list[bytes]) -> set[str]:
    """Every instance UID the uploaded objects hold (registered class UIDs aside)."""
    found: set[str] = set()

    def visit(_ds: pydicom.Dataset, element: pydicom.DataElement) -> None:
        if element.VR == "UI" and element.value:
            values = element.value if element.VM > 1 else [element.value]
            found.update(str(v) for v in values if UID(str(v)).name == str(v))

    for data in parts:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.walk(visit)
        found.add(str(ds.file_meta.MediaStorageSOPInstanceUID))
    found.discard(stable_uid("studyshare-devstack"))  # the implementation class, no identity
    return found


class Leaks:
    """What must not appear in anything a recipient of an anonymized share reads."""

    def __init__(self, study: DemoStudy, parts: list[bytes]) -> None:
        self.secrets = {LEAK, LEAK_DATE, REAL_STUDY_DATE, REAL_BIRTH_DATE, study.patient_id}
        self.secrets |= real_uids(parts)

    def check(self, what: str, data: str | bytes) -> None:
        text = data.decode("latin-1") if isinstance(data, bytes) else data
        found = sorted(s for s in self.secrets if s in text)
        assert not found, f"{what} reveals {found[:5]}"


def first_value(data: dict[str, Any], tag: str) -> Any:
    values = (data.get(tag) or {}).get("Value") or [None]
    return values[0]


def claiming(data: bytes, study_uid: str) -> bytes:
    """The object, said to belong to the study `study_uid`."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyInstanceUID = study_uid
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def shared_study(api: Gateway, recipient: Person) -> dict[str, Any]:
    """The one study in the recipient's `/api/studies` (each recipient is new)."""
    page = wait_for(
        lambda: (p := ok(api.client.get("/api/studies", headers=recipient.headers)))["items"] and p,
        "the anonymized share in the recipient's study list",
    )
    assert len(page["items"]) == 1, page
    return page["items"][0]


def test_anonymized_shares_serve_nothing_identifying_on_any_path(
    api: Gateway, cast: SimpleNamespace
):
    study, parts = upload_annex_e_study(api, cast.sender)
    leaks = Leaks(study, parts)
    uid = study.study_uid

    # the sender, in the clear, sees what was stored (so the checks below check something)
    clear = ok(api.client.get(f"/dicomweb/studies/{uid}/metadata", headers=cast.sender.headers))
    assert len(clear) == 5 and LEAK in json.dumps(clear)

    buckets = {}
    for recipient in (cast.first, cast.second):
        buckets[recipient.user_id] = api.shared(
            cast.sender,
            study_uids=[uid],
            recipients=[{"kind": "user", "id": recipient.user_id}],
            access_level="images_report_read",
            anonymize=True,
            allow_download=True,
        )

    seen: dict[str, dict[str, Any]] = {}
    for recipient in (cast.first, cast.second):
        h = recipient.headers
        get = api.client.get

        # /api/studies: list and details; /api/shared-with-me
        item = shared_study(api, recipient)
        leaks.check("/api/studies", json.dumps(item))
        anon_uid = item["study_uid"]
        assert anon_uid != uid and anon_uid.startswith("2.25.")
        assert item["access"]["anonymized"] and item["accession_number"] in (None, "")
        detail = ok(api.study(recipient, anon_uid))
        leaks.check("/api/studies/{uid}", json.dumps(detail))
        shown = (detail["series_count"], detail["instance_count"])
        assert shown == (1, 2), "what the share serves: hidden objects do not show through"
        mine = ok(get("/api/shared-with-me", headers=h))
        leaks.check("/api/shared-with-me", json.dumps(mine))
        assert [i["study_uid"] for i in mine["items"]] == [anon_uid]
        assert mine["items"][0]["study_date"] == item["study_date"], "the same shifted date"

        # QIDO-RS
        found = ok(get("/dicomweb/studies", headers=h))
        leaks.check("QIDO studies", json.dumps(found))
        assert [first_value(s, "0020000D") for s in found] == [anon_uid]
        counts = [first_value(found[0], t) for t in ("00201206", "00201208")]
        assert counts == [1, 2], "the series and images served: hidden ones do not show through"
        series = ok(get(f"/dicomweb/studies/{anon_uid}/series", headers=h))
        leaks.check("QIDO series", json.dumps(series))
        assert [first_value(s, "00201209") for s in series] == [2], "no series of hidden images"
        instances = ok(get(f"/dicomweb/studies/{anon_uid}/instances", headers=h))
        leaks.check("QIDO instances", json.dumps(instances))
        assert len(instances) == 2, "only the CT images that say they carry no burned-in text"

        # WADO-RS metadata
        metadata = ok(get(f"/dicomweb/studies/{anon_uid}/metadata", headers=h))
        leaks.check("WADO metadata", json.dumps(metadata))
        assert len(metadata) == 2
        one = metadata[0]
        assert first_value(one, "0020000D") == anon_uid
        assert first_value(one, "00100010")["Alphabetic"].startswith("Anonymous^")
        assert first_value(one, "00080020") not in (None, REAL_STUDY_DATE), "shifted"
        assert first_value(one, "00120062") == "YES"  # Patient Identity Removed
        series_uid, sop_uid = first_value(one, "0020000E"), first_value(one, "00080018")
        instance = f"/dicomweb/studies/{anon_uid}/series/{series_uid}/instances/{sop_uid}"
        meta_one = ok(get(f"{instance}/metadata", headers=h))
        leaks.check("WADO instance metadata", json.dumps(meta_one))

        # WADO-RS instances (study, series, instance), frames, rendered, thumbnails
        for path in (
            f"/dicomweb/studies/{anon_uid}",
            f"/dicomweb/studies/{anon_uid}/series/{series_uid}",
            instance,
        ):
            r = get(path, headers=h)
            assert r.status_code == 200, (path, r.status_code, r.text)
            leaks.check(f"WADO {path}", r.content)
            assert anon_uid.encode() in r.content
        for path in (
            f"{instance}/frames/1",
            f"{instance}/rendered",
            f"{instance}/frames/1/rendered",
            f"{instance}/thumbnail",
            f"/dicomweb/studies/{anon_uid}/thumbnail",
            f"/dicomweb/studies/{anon_uid}/series/{series_uid}/thumbnail",
        ):
            r = get(path, headers=h)
            assert r.status_code == 200, (path, r.status_code, r.text)

        # objects that may carry burned-in text are not served, even by their real UIDs
        for number in (2, 3, 4):
            hidden = stable_uid(f"{study.key}/{number}")
            sop = stable_uid(f"{study.key}/{number}/1")
            for study_part in (anon_uid, uid):
                r = get(
                    f"/dicomweb/studies/{study_part}/series/{hidden}/instances/{sop}/metadata",
                    headers=h,
                )
                assert r.status_code == 404, (number, r.status_code, r.text)

        # the download, as a DICOM File-set and as plain files
        for params in ({}, {"dicomdir": "false"}):
            r = get(f"/api/studies/{anon_uid}/download", params=params, headers=h)
            assert r.status_code == 200, (r.status_code, r.text)
            leaks.check("download headers", json.dumps(dict(r.headers)))
            with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
                leaks.check("download names", "\n".join(archive.namelist()))
                dicoms = [n for n in archive.namelist() if not n.endswith("/")]
                for name in dicoms:
                    leaks.check(f"download {name}", archive.read(name))
            assert len([n for n in dicoms if "DICOMDIR" not in n]) == 2
            assert ("DICOMDIR" in dicoms) == (not params), "a DICOM File-set by default"

        # the share mail
        mail = api.mail_about(recipient.email, buckets[recipient.user_id])
        leaks.check("the share mail", json.dumps(mail))

        seen[recipient.user_id] = one

    # two anonymized shares of the same patient cannot be linked
    a, b = (seen[p.user_id] for p in (cast.first, cast.second))
    for tag in ("00100010", "00100020", "0020000D", "0020000E", "00080018", "00080020"):
        assert first_value(a, tag) != first_value(b, tag), tag
    assert re.fullmatch(r"2\.25\.\d+", first_value(a, "0020000E"))


def test_a_remapped_uid_names_the_study_only_to_those_its_share_reaches(
    api: Gateway, cast: SimpleNamespace
):
    """The UIDs one anonymized share shows are unknown to anyone that share does not reach:
    asked by the sender (clear access) they would give the patient away, asked by the recipient
    of another anonymized share of the study they would link the two shares."""
    study, _ = upload_annex_e_study(api, cast.sender)
    buckets = {
        p.user_id: api.shared(
            cast.sender,
            study_uids=[study.study_uid],
            recipients=[{"kind": "user", "id": p.user_id}],
            access_level="images_report_read",
            anonymize=True,
        )
        for p in (cast.first, cast.second)
    }

    def remapped(recipient: Person) -> str:
        def listed() -> str | None:
            mine = ok(api.client.get("/api/shared-with-me", headers=recipient.headers))
            bucket = buckets[recipient.user_id]
            return next((i["study_uid"] for i in mine["items"] if i["bucket_id"] == bucket), None)

        return wait_for(listed, "the anonymized share in the recipient's list")

    shown = remapped(cast.first)
    assert shown != remapped(cast.second)
    metadata = f"/dicomweb/studies/{shown}/metadata"
    one = wait_for(
        lambda: (
            (r := api.client.get(metadata, headers=cast.first.headers)).status_code == 200
            and r.json()[0]
        ),
        "the share in the study store",
    )
    series, sop = first_value(one, "0020000E"), first_value(one, "00080018")
    paths = [
        f"/api/studies/{shown}",
        metadata,
        f"/dicomweb/studies/{shown}/series",
        f"/dicomweb/studies/{shown}/series/{series}/instances/{sop}/metadata",
        f"/dicomweb/studies/{shown}/thumbnail",
    ]
    for path in paths:
        r = api.client.get(path, headers=cast.first.headers)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
    detail = ok(api.study(cast.first, shown))
    assert detail["received_at"] is None, "the day it was received is a real date"

    for who in (cast.sender, cast.second):
        for path in paths:
            r = api.client.get(path, headers=who.headers)
            assert r.status_code == 404, (who.username, path, r.status_code, r.text[:300])
        search = api.client.get(
            "/dicomweb/studies", params={"StudyInstanceUID": shown}, headers=who.headers
        )
        assert search.status_code == 204 or search.json() == [], (who.username, search.text)


@pytest.fixture(scope="module")
def one_share(api: Gateway, cast: SimpleNamespace) -> SimpleNamespace:
    """A study shared anonymized with `cast.first`, and the UID the share shows it under."""
    study, parts = upload_annex_e_study(api, cast.sender)
    bucket = api.shared(
        cast.sender,
        study_uids=[study.study_uid],
        recipients=[{"kind": "user", "id": cast.first.user_id}],
        access_level="images_report_read",
        anonymize=True,
    )

    def listed() -> str | None:
        mine = ok(api.client.get("/api/shared-with-me", headers=cast.first.headers))
        return next((i["study_uid"] for i in mine["items"] if i["bucket_id"] == bucket), None)

    shown = wait_for(listed, "the anonymized share in the recipient's list")
    wait_for(lambda: api.study(cast.first, shown).status_code == 200, "the share's study")
    return SimpleNamespace(study=study, leaks=Leaks(study, parts), bucket=bucket, shown=shown)


def test_storing_by_a_remapped_uid_is_refused_in_the_recipient_s_own_terms(
    api: Gateway, cast: SimpleNamespace, one_share: SimpleNamespace
):
    """A STOW-RS by the share's UID neither adds to the study nor names the real one, nor
    makes a new study under a UID the share shows."""
    shown = one_share.shown
    before = ok(api.study(cast.first, shown))["instance_count"]
    own = DemoStudy(
        unique("own-"), "P-own", "Own^Name", "19700101", "M", "own", "CT", "20250101", "A1"
    )
    for target, objects in (
        (shown, [annex_e_instance(own, 1, 1)]),  # another study's object into the share's
        (shown, [claiming(annex_e_instance(own, 1, 2), shown)]),  # one naming the share's
        ("", [claiming(annex_e_instance(own, 1, 3), shown)]),
    ):
        body, content_type = multipart_related(objects)
        r = api.client.post(
            f"/dicomweb/studies/{target}".rstrip("/"),
            content=body,
            headers={
                **cast.first.headers,
                "Content-Type": content_type,
                "Accept": "application/dicom+json",
            },
        )
        assert r.status_code == 409, (target, r.status_code, r.text[:300])
        one_share.leaks.check(f"the STOW-RS answer ({target or 'no study'})", r.text)
    after = ok(api.study(cast.first, shown))["instance_count"]
    assert after == before, "nothing was added to the share's study"


def test_the_viewer_token_of_an_anonymized_share_names_no_real_uid(
    api: Gateway, cast: SimpleNamespace, one_share: SimpleNamespace
):
    shown = one_share.shown
    issued = ok(api.client.post(f"/api/studies/{shown}/viewer-token", headers=cast.first.headers))
    assert issued["study_uid"] == shown
    payload = jwt.decode(issued["token"], options={"verify_signature": False})  # readable
    one_share.leaks.check("the viewer token's payload", json.dumps(payload))
    metadata = api.client.get(
        f"/dicomweb/studies/{shown}/metadata",
        headers={"Authorization": f"Bearer {issued['token']}"},
    )
    assert metadata.status_code == 200, "the viewer opens the share with it"
    one_share.leaks.check("the metadata the viewer reads", metadata.text)


def test_an_anonymized_share_shows_its_recipient_the_remapped_uids(
    api: Gateway, cast: SimpleNamespace, one_share: SimpleNamespace
):
    seen = ok(api.client.get(f"/api/shares/{one_share.bucket}", headers=cast.first.headers))
    one_share.leaks.check("the share as its recipient sees it", json.dumps(seen))
    assert seen["study_uids"] == seen["active_study_uids"] == [one_share.shown]
    sent = ok(api.client.get(f"/api/shares/{one_share.bucket}", headers=cast.sender.headers))
    assert sent["study_uids"] == [one_share.study.study_uid], "the sender sees the real study"
