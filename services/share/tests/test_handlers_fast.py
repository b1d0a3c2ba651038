"""The share service's use cases over the in-memory event store (`plumbing.fakes`) and
in-memory adapters (`fakes`): no database, no broker (issue 18, point 2). The API tests drive
the same handlers over MongoDB."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from studyshare.contracts.anonymized import bucket_key, remap_uid
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.fakes import InMemoryEventStore
from studyshare.share.domain import exceptions
from studyshare.share.entrypoints.api import holder_bucket_out
from studyshare.share.service_layer.base import RecipientInput
from studyshare.share.service_layer.handlers import ShareService
from studyshare.share.service_layer.sharing import ShareCommand
from studyshare.share.settings import ShareSettings

from .fakes import InMemoryBucketReadModel, InMemoryDirectory, InMemoryOtpCodes

STUDY = "1.2.826.0.1.1"
OTHER_STUDY = "1.2.826.0.1.2"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Share:
    """A share service on in-memory adapters, with a small directory."""

    def __init__(self) -> None:
        self.store = InMemoryEventStore()
        self.directory = InMemoryDirectory()
        self.views = InMemoryBucketReadModel()
        self.codes = InMemoryOtpCodes()
        self.clock = Clock()
        self.service = ShareService(
            None,
            ShareSettings(),
            self.clock,
            store=self.store,
            readmodel=self.views,  # type: ignore[arg-type]
            directory=self.directory,  # type: ignore[arg-type]
            otp_codes=self.codes,  # type: ignore[arg-type]
        )
        d = self.directory
        d.put("users", "usr_sender", department_ids=["dep_1"], mobile="+3247", language="en")
        d.put("users", "usr_admin", admin_of=["dep_1"], language="en")
        for user in ("usr_r1", "usr_r2", "usr_outsider"):
            d.put("users", user, mobile="+32470000000", language="nl")
        d.put("departments", "dep_1", name="Radiology")
        d.put("studies", STUDY, department_id="dep_1", owner_id=None, description="CT thorax")
        d.put("studies", OTHER_STUDY, department_id="dep_2", owner_id=None)

    def who(self, sub: str, *roles: str, **claims) -> AccessClaims:
        """`sub`'s claims, a physician unless other roles are named (as the API tests')."""
        now = int(time.time())
        user = self.directory.entries["users"].get(sub, {})
        claims.setdefault("department_ids", tuple(user.get("department_ids", ())))
        claims.setdefault("admin_of", tuple(user.get("admin_of", ())))
        roles = roles or ("physician",)
        return AccessClaims(sub=sub, roles=roles, sid="ses_1", iat=now, exp=now + 600, **claims)

    async def share(self, sender: str = "usr_sender", *recipients: str, **options) -> str:
        cmd = ShareCommand(
            study_uids=options.pop("study_uids", (STUDY,)),
            recipients=tuple(RecipientInput("user", r) for r in recipients or ("usr_r1",)),
            access_level=options.pop("access_level", "images_report_read"),
            reason="second opinion",
            patient_agreed=True,
            **options,
        )
        return (await self.service.share(self.who(sender), cmd)).bucket.id

    def events(self, event_type: str) -> list[dict]:
        return [e.payload for e in self.store.events_of(event_type)]


@pytest.fixture
def share() -> Share:
    return Share()


async def test_a_share_opens_a_bucket_and_its_view(share: Share) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1", "usr_r2")
    [shared] = share.events("StudyShared")
    assert shared["bucket_id"] == bucket_id and shared["study_uids"] == [STUDY]
    assert [r["recipient_id"] for r in shared["recipients"]] == ["usr_r1", "usr_r2"]
    assert share.views.docs[bucket_id]["active_recipient_ids"] == ["usr_r1", "usr_r2"]


async def test_a_refused_share_stores_nothing(share: Share) -> None:
    with pytest.raises(exceptions.StudyNotKnown):  # another's study: told as if not received
        await share.share("usr_sender", study_uids=(OTHER_STUDY,))
    with pytest.raises(exceptions.RecipientNotKnown):
        await share.share("usr_sender", "usr_nobody")
    with pytest.raises(exceptions.ImagesOnlyNotAllowedForUser):
        await share.share("usr_sender", access_level="images")
    assert share.store.committed == []
    assert share.views.docs == {}


async def test_revoking_a_recipient_leaves_the_others(share: Share) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1", "usr_r2")
    with pytest.raises(exceptions.NotAllowedToRevoke):
        await share.service.revoke(
            share.who("usr_outsider"), bucket_id, "recipient", recipient_id="usr_r1"
        )
    await share.service.revoke(
        share.who("usr_sender"), bucket_id, "recipient", recipient_id="usr_r1"
    )
    [revoked] = share.events("AccessRevoked")
    assert (revoked["scope"], revoked["recipient_id"]) == ("recipient", "usr_r1")
    assert share.views.docs[bucket_id]["active_recipient_ids"] == ["usr_r2"]
    with pytest.raises(exceptions.RecipientAlreadyRevoked):
        await share.service.revoke(
            share.who("usr_sender"), bucket_id, "recipient", recipient_id="usr_r1"
        )


async def test_a_revoked_recipient_no_longer_sees_the_bucket(share: Share) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1", "usr_r2", message="for r1 and r2")
    bucket, admin = await share.service.view(share.who("usr_r1"), bucket_id)
    assert bucket.id == bucket_id and not admin
    await share.service.revoke(
        share.who("usr_sender"), bucket_id, "recipient", recipient_id="usr_r1"
    )
    with pytest.raises(exceptions.BucketNotFound):  # its recipients, studies and message
        await share.service.view(share.who("usr_r1"), bucket_id)
    bucket, admin = await share.service.view(share.who("usr_r2"), bucket_id)
    assert bucket.id == bucket_id and not admin
    assert (await share.service.view(share.who("usr_sender"), bucket_id))[1]


async def test_an_anonymized_share_shows_its_recipient_only_the_uids_it_remaps(
    share: Share,
) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1", anonymize=True)
    bucket, admin = await share.service.view(share.who("usr_r1"), bucket_id)
    seen = holder_bucket_out(bucket, share.service)
    remapped = remap_uid(bucket_key(share.service.settings.anonymization_secret, bucket_id), STUDY)
    assert seen.study_uids == seen.active_study_uids == [remapped]
    assert STUDY not in seen.model_dump_json() and seen.reason is None and not admin
    in_clear, _ = await share.service.view(share.who("usr_r1"), await share.share())
    clear = holder_bucket_out(in_clear, share.service)
    assert clear.study_uids == [STUDY], "a share in the clear shows the real study"


async def test_revoking_a_bucket_ends_what_was_reshared_from_it(share: Share) -> None:
    parent = await share.share("usr_sender", "usr_r1", allow_further_sharing=True)
    child = await share.share("usr_r1", "usr_r2")
    assert share.views.docs[child]["parent_bucket_id"] == parent
    await share.service.revoke(share.who("usr_sender"), parent, "bucket")
    revoked = {e["bucket_id"]: e for e in share.events("AccessRevoked")}
    assert revoked[parent]["cascade_from"] is None
    assert revoked[child]["cascade_from"] == parent
    assert share.views.docs[child]["revoked"] is True


async def test_a_reshare_needs_further_sharing_allowed(share: Share) -> None:
    await share.share("usr_sender", "usr_r1")
    with pytest.raises(exceptions.FurtherSharingNotAllowed):
        await share.share("usr_r1", "usr_r2")
    assert len(share.events("StudyShared")) == 1


async def test_only_the_sender_shares_a_bucket_again(share: Share) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1")
    with pytest.raises(exceptions.NotTheSender):
        await share.service.share_again(
            share.who("usr_r1"), bucket_id, [RecipientInput("user", "usr_r2")], {}
        )
    again = await share.service.share_again(
        share.who("usr_sender"), bucket_id, [RecipientInput("user", "usr_r2")], {}
    )
    assert again.bucket.id != bucket_id
    assert [r.recipient_id for r in again.bucket.s.recipients] == ["usr_r2"]


async def test_five_wrong_codes_lock_the_bucket_until_an_admin_unlocks_it(
    share: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("studyshare.share.service_layer.two_factor.secrets.randbelow", lambda _: 42)
    bucket_id = await share.share("usr_sender", "usr_r1", two_factor=True)
    recipient = share.who("usr_r1")
    await share.service.request_otp(recipient, bucket_id)
    [requested] = share.events("OTPRequested")
    assert "000042" not in str(requested)  # the code travels sealed only
    assert len(share.codes.codes) == 1
    for failures in range(1, 5):
        with pytest.raises(exceptions.WrongOTP, match=f"{failures} of 5"):
            await share.service.verify_otp(recipient, bucket_id, "999999")
    with pytest.raises(exceptions.BucketIsLocked):
        await share.service.verify_otp(recipient, bucket_id, "999999")
    assert len(share.events("OTPFailed")) == 5
    assert len(share.events("BucketLocked")) == 1
    with pytest.raises(exceptions.BucketIsLocked):
        await share.service.verify_otp(recipient, bucket_id, "000042")  # even the right code
    with pytest.raises(exceptions.NotAllowedToUnlock):
        await share.service.unlock(share.who("usr_r1"), bucket_id)
    await share.service.unlock(share.who("usr_admin"), bucket_id)
    assert share.events("BucketUnlocked")[0]["unlocked_as"] == "department_admin"
    await share.service.request_otp(recipient, bucket_id)
    until = await share.service.verify_otp(recipient, bucket_id, "000042")
    assert until > share.clock.now
    assert len(share.events("OTPVerified")) == 1
    assert share.codes.codes == {}, "a used code is forgotten"


async def test_codes_are_asked_for_a_few_times_per_window(share: Share) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1", two_factor=True)
    for _ in range(3):
        await share.service.request_otp(share.who("usr_r1"), bucket_id)
    with pytest.raises(exceptions.OTPRequestedTooOften):
        await share.service.request_otp(share.who("usr_r1"), bucket_id)
    assert len(share.codes.codes) == 1, "a new code voids the earlier ones"
    share.clock.now += timedelta(minutes=11)
    await share.service.request_otp(share.who("usr_r1"), bucket_id)
    assert len(share.events("OTPRequested")) == 4


async def test_a_bucket_past_its_validity_expires_once(share: Share) -> None:
    bucket_id = await share.share("usr_sender", "usr_r1")
    assert await share.service.expire_due() == []
    share.clock.now += timedelta(days=400)
    assert await share.service.expire_due() == [bucket_id]
    assert await share.service.expire_due() == []
    assert [e["bucket_id"] for e in share.events("BucketExpired")] == [bucket_id]
