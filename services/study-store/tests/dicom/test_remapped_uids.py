"""Remapped UIDs of anonymized shares back to the real ones, for the callers the share
reaches only (no infra: the read model in memory, the remapped UIDs written as the projection
writes them)."""

from __future__ import annotations

from types import SimpleNamespace

from studyshare.contracts.anonymized import bucket_key, remap_uid
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.adapters.access_documents import InMemoryAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel
from studyshare.study_store.entrypoints.anonymized_uids import (
    known,
    real_path,
    real_study_uids,
    translated,
)

SECRET = "unit-test-secret"
STUDY, OTHER, SERIES, SOP = "1.2.3", "1.2.4", "1.2.3.1", "1.2.3.1.1"
RECIPIENT = known(AccessClaims(sub="usr_r", iat=0, exp=2**40))  # the anonymized share's
STRANGER = known(AccessClaims(sub="usr_x", iat=0, exp=2**40))  # holds no share of the study


def state() -> SimpleNamespace:
    async def instances_of(study_uid: str) -> list[dict]:
        return [{"_id": SOP, "series_uid": SERIES}] if study_uid == STUDY else []

    docs = InMemoryAccessDocuments(SECRET)
    for uid in (STUDY, OTHER):
        docs.put({"_id": f"study:{uid}", "kind": "study", "study_uid": uid})
    for bucket_id, uid, anonymize in (("bkt_anon", STUDY, True), ("bkt_clear", OTHER, False)):
        docs.put(
            {
                "_id": f"bucket:{bucket_id}",
                "kind": "bucket",
                "bucket_id": bucket_id,
                "study_uids": [uid],
                "anonymize": anonymize,
                "recipients": [{"recipient_id": "usr_r", "kind": "user"}],
            }
        )
    return SimpleNamespace(
        access_model=AccessModel(docs, anonymization_secret=SECRET),
        settings=SimpleNamespace(anonymization_secret=SECRET),
        dicom=SimpleNamespace(instances=SimpleNamespace(instances_of=instances_of)),
    )


def remapped(uid: str, bucket: str = "bkt_anon") -> str:
    return remap_uid(bucket_key(SECRET, bucket), uid)


async def test_a_remapped_path_names_the_real_study_series_and_instance():
    s = state()
    path = (
        f"/dicomweb/studies/{remapped(STUDY)}/series/{remapped(SERIES)}"
        f"/instances/{remapped(SOP)}/frames/1"
    )
    assert await real_path(s, path, RECIPIENT) == (
        f"/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/frames/1"
    )
    assert await real_path(s, f"/api/studies/{remapped(STUDY)}/download", RECIPIENT) == (
        f"/api/studies/{STUDY}/download"
    )


async def test_a_remapped_uid_names_nothing_to_a_caller_its_share_does_not_reach():
    s = state()
    for caller in (STRANGER, known(None)):
        assert await real_path(s, f"/api/studies/{remapped(STUDY)}", caller) is None
        assert await real_study_uids(s, caller, [remapped(STUDY)]) == {remapped(STUDY)}


async def test_real_uids_and_unknown_ones_pass_untouched():
    s = state()
    assert await real_path(s, f"/dicomweb/studies/{STUDY}/metadata", RECIPIENT) is None
    assert await real_path(s, "/dicomweb/studies/2.25.1/metadata", RECIPIENT) is None
    # a study of a bucket that does not anonymize has no remapped UID
    other = f"/dicomweb/studies/{remapped(OTHER, 'bkt_clear')}"
    assert await real_path(s, other, RECIPIENT) is None
    # another bucket's remapping is not this one's
    another = f"/dicomweb/studies/{remapped(STUDY, 'bkt_other')}"
    assert await real_path(s, another, RECIPIENT) is None


async def test_qido_study_filters_take_remapped_uids():
    found = await real_study_uids(state(), RECIPIENT, [f" {remapped(STUDY)}", OTHER])
    assert found == {STUDY, OTHER}


def test_dicomweb_takes_remapped_uids_for_reads_only():
    """A STOW-RS to a remapped UID names a study the store does not know: translated, its
    answer would echo the real UID."""
    for method, path, taken in (
        ("GET", f"/dicomweb/studies/{remapped(STUDY)}/metadata", True),
        ("HEAD", f"/dicomweb/studies/{remapped(STUDY)}", True),
        ("POST", f"/dicomweb/studies/{remapped(STUDY)}", False),
        ("POST", f"/api/studies/{remapped(STUDY)}/viewer-token", True),
        ("GET", "/dicomweb/series", False),
    ):
        assert translated({"path": path, "method": method}) is taken, (method, path)
