"""Buckets: a share action and its rules. Pure: no I/O, the clock is passed in."""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field

from studyshare.contracts.events.share import (
    AccessRevoked,
    BucketExpired,
    BucketLocked,
    BucketUnlocked,
    FavoriteAdded,
    FavoriteRemoved,
    InvitationAccepted,
    LabelAdded,
    LabelRemoved,
    OTPFailed,
    OTPRequested,
    OTPVerified,
    RecipientRef,
    ShareParameters,
    SharePreferencesRemembered,
    StudyShared,
)
from studyshare.plumbing.domain import Aggregate, applies
from studyshare.share.domain import exceptions, rules

LEVELS: dict[str, int] = {"images": 0, "images_report_read": 1, "images_report_write": 2}
MAX_WRONG_OTPS = 5
DEFAULT_VALIDITY_MONTHS = 1
#: a department's time zone when its policy names none: its country's (UTC when unknown)
COUNTRY_TIME_ZONES = {
    "be": "Europe/Brussels",
    "nl": "Europe/Amsterdam",
    "lu": "Europe/Luxembourg",
    "fr": "Europe/Paris",
    "de": "Europe/Berlin",
    "gb": "Europe/London",
    "uk": "Europe/London",
}


@dataclass(frozen=True)
class OTPRequestLimit:
    """At most `max_requests` codes per recipient and bucket within `window`: each one is an
    SMS, and every new code voids the previous one."""

    max_requests: int = 3
    window: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class DepartmentPolicy:
    """The sending department's sharing policy (defaults when it set none)."""

    default_validity_days: int | None = None
    """When set, the default validity in days; otherwise `default_validity_months`."""
    default_validity_months: int | None = None
    """The default validity in calendar months (one, the manuals' default, when neither is
    set)."""
    max_validity_days: int | None = None
    unlimited_allowed: bool = True
    hipaa_confirmation_required: bool = False
    time_zone: str = "UTC"
    """Where a validity date chosen without a time ends (at the end of that day)."""


def department_time_zone(time_zone: str | None, country: str | None) -> str:
    """The department's own zone, else its country's, else UTC."""
    return time_zone or COUNTRY_TIME_ZONES.get((country or "").casefold(), "UTC")


def add_calendar_months(moment: datetime, months: int, zone: str) -> datetime:
    """The same wall-clock time `months` calendar months later in `zone` (31 January plus one
    month is the last day of February), in UTC."""
    local = moment.astimezone(ZoneInfo(zone))
    index = local.month - 1 + months
    year, month = local.year + index // 12, index % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(UTC)


def end_of_day(day: date, zone: str) -> datetime:
    """The last second of `day` in `zone`, in UTC."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo(zone)).astimezone(UTC)


class ShareRequest(ShareParameters):
    """What the sender asked for (`ShareParameters`), recipients already resolved (with their
    language), and the sending department's policy; `None` for two-factor or sending the mail
    means the default (off, on)."""

    model_config = ConfigDict(frozen=True)

    bucket_id: str
    sender_id: str
    study_uids: tuple[str, ...]
    recipients: tuple[RecipientRef, ...]
    sending_department_id: str | None = None
    policy: DepartmentPolicy = Field(default_factory=DepartmentPolicy)
    pacs_recipient_ids: tuple[str, ...] = ()
    """The department recipients that are a PACS (the share forwards the studies there)."""


def mail_language(recipients: tuple[RecipientRef, ...], fallback: str = "en") -> str:
    """The language of the majority of recipients, else the first recipient's."""
    known = [r.language for r in recipients if r.language]
    if not known:
        return fallback
    language, count = Counter(known).most_common(1)[0]
    if count * 2 > len(recipients):
        return language
    return known[0] if recipients[0].language is None else recipients[0].language


def decide_validity(
    request: ShareRequest, now: datetime, parent: Bucket | None
) -> tuple[datetime | None, bool]:
    """Default one calendar month (or the department's default); department maximum and the
    parent's validity are ceilings; unlimited only where allowed. A date without a time ends
    at the end of that day in the department's time zone, and may be the last day the
    maximum reaches."""
    policy = request.policy
    if request.unlimited and request.valid_until is not None:
        raise exceptions.ValidityChoiceAmbiguous("give either valid_until or unlimited, not both")
    if request.unlimited:
        if not policy.unlimited_allowed:
            raise exceptions.UnlimitedAccessNotAllowed(
                "the sending department does not allow unlimited access"
            )
        if parent is not None and not parent.unlimited:
            raise exceptions.ValidityExceedsHeld(
                f"your access ends {parent.valid_until:%Y-%m-%d}; you cannot share it unlimited"
            )
        return None, True
    ceiling = now + timedelta(days=policy.max_validity_days) if policy.max_validity_days else None
    if request.valid_until is None:
        if policy.default_validity_days is not None:
            valid_until = now + timedelta(days=policy.default_validity_days)
        else:
            months = policy.default_validity_months or DEFAULT_VALIDITY_MONTHS
            valid_until = add_calendar_months(now, months, policy.time_zone)
        if ceiling is not None:
            valid_until = min(valid_until, ceiling)
        if parent is not None and parent.valid_until is not None:
            valid_until = min(valid_until, parent.valid_until)
        return valid_until, False
    if isinstance(request.valid_until, datetime):
        valid_until = request.valid_until
        beyond = ceiling is not None and valid_until > ceiling + timedelta(seconds=60)
    else:
        valid_until = end_of_day(request.valid_until, policy.time_zone)
        zone = ZoneInfo(policy.time_zone)
        beyond = ceiling is not None and request.valid_until > ceiling.astimezone(zone).date()
    if valid_until <= now:
        raise exceptions.ValidUntilInPast("valid_until must lie in the future")
    if beyond:
        raise exceptions.ValidityBeyondDepartmentMaximum(
            f"the sending department allows at most {policy.max_validity_days} days"
            f" (until {ceiling:%Y-%m-%d})"
        )
    if parent is not None and parent.valid_until is not None and valid_until > parent.valid_until:
        raise exceptions.ValidityExceedsHeld(
            f"your access ends {parent.valid_until:%Y-%m-%d}; share at most until then"
        )
    return valid_until, False


def holds_bucket(active_recipient_ids: Iterable[str], holder_keys: Iterable[str]) -> bool:
    """A user holds a bucket while one of their keys (themselves, a group or a department they
    are in now) is one of its recipients not revoked. A re-share is valid only while its sender
    holds the parent bucket."""
    return not set(active_recipient_ids).isdisjoint(holder_keys)


def check_within_held(
    request: ShareRequest,
    parent: Bucket,
    sharer_id_keys: set[str],
    *,
    session_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Re-sharing: only with allow_further_sharing, never more than the sharer holds; from a
    two-factor bucket only while it is not locked and once the sharer entered the code in
    this login session (`session_id`), as for opening it."""
    if not parent.active:
        raise exceptions.BucketNotActive(f"bucket {parent.id} is {parent.status}")
    if not holds_bucket(parent.holder_ids, sharer_id_keys):
        raise exceptions.NotARecipientOfBucket(f"you are not a recipient of bucket {parent.id}")
    if not parent.allow_further_sharing:
        raise exceptions.FurtherSharingNotAllowed(
            f"bucket {parent.id} was shared without 'allow further sharing'"
        )
    missing = [uid for uid in request.study_uids if uid not in parent.active_study_uids]
    if missing:
        raise exceptions.StudyNotInBucket(f"not shared with you in bucket {parent.id}: {missing}")
    if LEVELS[request.access_level] > LEVELS[parent.access_level]:
        raise exceptions.AccessLevelExceedsHeld(
            f"you hold {parent.access_level}; you cannot grant {request.access_level}"
        )
    if request.allow_download and not parent.allow_download:
        raise exceptions.DownloadExceedsHeld("you may not download, so you cannot allow download")
    if request.pacs_recipient_ids and not parent.allow_download:
        raise exceptions.PacsShareNeedsDownload(
            f"you may not download, so you cannot share with a PACS: {request.pacs_recipient_ids}"
        )
    if parent.anonymize and not request.anonymize:
        raise exceptions.AnonymizationMustStay("the studies were shared with you anonymized")
    if parent.two_factor and not request.two_factor:
        raise exceptions.TwoFactorMustStay("the studies were shared with you under two-factor")
    if parent.two_factor:
        if parent.locked:
            raise exceptions.BucketIsLocked(
                f"bucket {parent.id} is locked after {MAX_WRONG_OTPS} wrong codes; "
                "nothing can be shared from it until it is unlocked"
            )
        if now is None or not parent.verified_for(request.sender_id, session_id, now):
            raise exceptions.TwoFactorVerificationRequired(
                f"enter the one-time password of bucket {parent.id} before sharing from it"
            )


def decide_share(request: ShareRequest, now: datetime, parent: Bucket | None = None) -> StudyShared:
    """Check every rule of a share; the event, or a refusal (nothing stored)."""
    if not request.study_uids:
        raise exceptions.NoStudies("select at least one study")
    if not request.recipients:
        raise exceptions.NoRecipients("add at least one recipient")
    if not request.reason.strip():
        raise exceptions.ReasonRequired("a reason for sharing is mandatory")
    if not request.patient_agreed:
        raise exceptions.PatientConsentRequired(
            "without the patient's consent the study may not be shared"
        )
    if request.access_level == "images":
        users = [r.recipient_id for r in request.recipients if r.kind in ("user", "email")]
        if users:
            raise exceptions.ImagesOnlyNotAllowedForUser(
                f"'images only' is not available when sharing with a user: {users}"
            )
    if request.policy.hipaa_confirmation_required and not request.hipaa_confirmed:
        raise exceptions.HipaaConfirmationRequired(
            "the sending department requires you to confirm you abide by HIPAA"
        )
    if request.label is not None and request.label.scope == "group":
        if not any(r.kind == "group" for r in request.recipients):
            raise exceptions.LabelScopeNeedsGroupRecipient("a group label needs a group recipient")
    valid_until, unlimited = decide_validity(request, now, parent)
    if valid_until is not None:  # whole seconds: the same instant in events and read models
        valid_until = valid_until.replace(microsecond=0)
    decided = {
        "reason": request.reason.strip(),
        "language": request.language or mail_language(request.recipients),
        "valid_until": valid_until,
        "unlimited": unlimited,
        "two_factor": bool(request.two_factor),
        "send_mail": request.send_mail is not False,
        "message": request.message or None,
    }
    return StudyShared(
        **(request.parameters() | decided),
        bucket_id=request.bucket_id,
        study_uids=tuple(dict.fromkeys(request.study_uids)),
        recipients=request.recipients,
        sender_id=request.sender_id,
        sending_department_id=request.sending_department_id,
        parent_bucket_id=parent.id if parent is not None else None,
    )


class Bucket(Aggregate):
    """One share action: studies, recipients, parameters, and the two-factor lock."""

    aggregate_type = "Bucket"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.shared: StudyShared | None = None
        self.revoked_recipients: set[str] = set()
        self.removed_studies: set[str] = set()
        self.revoked = False
        self.expired = False
        self.locked = False
        self.consecutive_failures = 0
        self.used_otps: set[str] = set()
        self.requested_otps: dict[str, datetime] = {}
        self.latest_otp: dict[str, str] = {}
        """Per recipient, the only code still usable: a new code voids the previous one."""
        self.otp_requests: dict[str, list[datetime]] = {}
        self.verified_until: dict[tuple[str, str | None], datetime] = {}
        """Per (recipient, login session that entered the code)."""
        self.accepted: dict[str, str] = {}
        """E-mail recipients whose invitation an account accepted: recipient id -> user id."""
        self.shared_at: datetime | None = None

    @classmethod
    def rehydrate(cls, aggregate_id, envelopes):  # type: ignore[override]
        bucket = super().rehydrate(aggregate_id, envelopes)
        if envelopes:
            bucket.shared_at = envelopes[0].occurred_at
        return bucket

    # -- folds
    @applies
    def when_study_shared(self, e: StudyShared) -> None:
        self.shared = e

    @applies
    def when_access_revoked(self, e: AccessRevoked) -> None:
        if e.scope == "bucket":
            self.revoked = True
        elif e.scope == "recipient" and e.recipient_id:
            self.revoked_recipients.add(e.recipient_id)
        elif e.scope == "study" and e.study_uid:
            self.removed_studies.add(e.study_uid)

    @applies
    def when_bucket_expired(self, e: BucketExpired) -> None:
        self.expired = True

    @applies
    def when_invitation_accepted(self, e: InvitationAccepted) -> None:
        self.accepted[e.recipient_id] = e.user_id

    @applies
    def when_otp_requested(self, e: OTPRequested) -> None:
        self.requested_otps[e.otp_id] = e.expires_at
        self.latest_otp[e.recipient_id] = e.otp_id
        if e.requested_at is not None:
            self.otp_requests.setdefault(e.recipient_id, []).append(e.requested_at)

    @applies
    def when_otp_failed(self, e: OTPFailed) -> None:
        self.consecutive_failures = e.consecutive_failures

    @applies
    def when_otp_verified(self, e: OTPVerified) -> None:
        self.used_otps.add(e.otp_id)
        self.consecutive_failures = 0
        self.verified_until[(e.recipient_id, e.session_id)] = e.verified_until

    @applies
    def when_bucket_locked(self, e: BucketLocked) -> None:
        self.locked = True

    @applies
    def when_bucket_unlocked(self, e: BucketUnlocked) -> None:
        self.locked = False
        self.consecutive_failures = 0

    # -- views
    @property
    def s(self) -> StudyShared:
        if self.shared is None:
            raise exceptions.BucketNotFound(f"bucket {self.id} does not exist")
        return self.shared

    @property
    def status(self) -> str:
        if self.revoked:
            return "revoked"
        if self.expired:
            return "expired"
        if not self.active_study_uids or not self.active_recipient_ids:
            return "revoked"
        return "active"

    @property
    def active(self) -> bool:
        return self.status == "active"

    def verified_for(self, user_id: str, session_id: str | None, now: datetime) -> bool:
        """Did this user enter a code of this bucket in this login session, still valid?"""
        until = self.verified_until.get((user_id, session_id))
        return until is not None and until > now

    def expired_at(self, now: datetime) -> bool:
        return self.expired or (self.s.valid_until is not None and self.s.valid_until <= now)

    @property
    def active_recipient_ids(self) -> set[str]:
        return {r.recipient_id for r in self.s.recipients} - self.revoked_recipients

    @property
    def holder_ids(self) -> set[str]:
        """Who holds the bucket now: its active recipients, and for an e-mail recipient the
        account that accepted the invitation."""
        active = self.active_recipient_ids
        return active | {user for rid, user in self.accepted.items() if rid in active}

    def recipient_of(self, key: str) -> str | None:
        """The recipient a holder key (a user, group or department id) stands for."""
        if key in {r.recipient_id for r in self.s.recipients}:
            return key
        return next((rid for rid, user in self.accepted.items() if user == key), None)

    @property
    def active_study_uids(self) -> list[str]:
        return [uid for uid in self.s.study_uids if uid not in self.removed_studies]

    def __getattr__(self, name: str):  # parameters of the share: bucket.access_level, ...
        if name not in StudyShared.model_fields:
            raise AttributeError(name)
        return getattr(self.s, name)

    # -- commands
    def share(self, shared: StudyShared) -> list[StudyShared]:
        """Open the bucket with the share the rules decided (`decide_share`); once."""
        if self.exists:
            raise exceptions.BucketAlreadyShared(f"bucket {self.id} exists already")
        return [shared]

    def revoke(
        self,
        scope: str,
        by: str,
        *,
        recipient_id: str | None = None,
        study_uid: str | None = None,
        cascade_from: str | None = None,
    ) -> list[AccessRevoked]:
        """Revoke a recipient, a study or the whole bucket; effective immediately."""
        if self.revoked:
            raise exceptions.BucketNotActive(f"bucket {self.id} was already revoked")
        if scope == "recipient":
            if recipient_id not in {r.recipient_id for r in self.s.recipients}:
                raise exceptions.RecipientNotInBucket(
                    f"{recipient_id} is not a recipient of {self.id}"
                )
            if recipient_id in self.revoked_recipients:
                raise exceptions.RecipientAlreadyRevoked(f"{recipient_id} was already revoked")
        if scope == "study":
            if study_uid not in self.s.study_uids:
                raise exceptions.StudyNotInBucket(f"{study_uid} is not in bucket {self.id}")
            if study_uid in self.removed_studies:
                raise exceptions.StudyAlreadyRemoved(f"{study_uid} was already removed")
        return [
            AccessRevoked(
                bucket_id=self.id,
                scope=scope,  # type: ignore[arg-type]
                recipient_id=recipient_id,
                study_uid=study_uid,
                revoked_by=by,
                cascade_from=cascade_from,
            )
        ]

    def accept_invitation(
        self, user_id: str, email: str | None, now: datetime, mail_held: bool
    ) -> list[InvitationAccepted]:
        """The account registered with the invited e-mail address, whose holder opened the
        invitation mail's link (`mail_held`: its token matched), takes the place of the e-mail
        recipient (once; accepting again changes nothing)."""
        if not self.active or self.expired_at(now):
            raise exceptions.BucketNotActive(f"bucket {self.id} is {self.status}")
        recipient_id = f"email:{(email or '').strip().lower()}"
        invited = {r.recipient_id for r in self.s.recipients if r.kind == "email"}
        if not email or recipient_id not in invited:
            raise exceptions.InvitationNotForYou(
                "this invitation was sent to another e-mail address than your account's"
            )
        if recipient_id in self.revoked_recipients:
            raise exceptions.RecipientAlreadyRevoked(f"the invitation of {self.id} was withdrawn")
        if not mail_held:
            raise exceptions.InvitationLinkRequired(
                "open the link of the invitation mail to accept it (the address on an account "
                "alone does not prove the mailbox)"
            )
        holder = self.accepted.get(recipient_id)
        if holder == user_id:
            return []
        if holder is not None:
            raise exceptions.InvitationAlreadyAccepted("another account already accepted it")
        return [InvitationAccepted(bucket_id=self.id, recipient_id=recipient_id, user_id=user_id)]

    def expire(self, now: datetime) -> list[BucketExpired]:
        """Once per bucket past `valid_until` (nothing when revoked or not yet due)."""
        if self.shared is None or self.expired or self.revoked or self.s.valid_until is None:
            return []
        if self.s.valid_until > now:
            return []
        return [BucketExpired(bucket_id=self.id, valid_until=self.s.valid_until)]

    def _check_otp_allowed(self, recipient_id: str, now: datetime) -> None:
        if not self.s.two_factor:
            raise exceptions.TwoFactorNotRequired(f"bucket {self.id} has no two-factor")
        if self.locked:
            raise exceptions.BucketIsLocked(
                f"bucket {self.id} is locked after {MAX_WRONG_OTPS} wrong codes; "
                "ask the service desk or an admin of the sending department to unlock it"
            )
        if not self.active or self.expired_at(now):
            raise exceptions.BucketNotActive(f"bucket {self.id} is {self.status}")
        if recipient_id not in self.active_recipient_ids:
            raise exceptions.NotARecipientOfBucket(f"you are not a recipient of bucket {self.id}")

    def request_otp(
        self,
        holder: str,
        user_id: str,
        otp_id: str,
        sealed_code: str,
        expires_at: datetime,
        language: str,
        now: datetime,
        limit: OTPRequestLimit | None = None,
    ) -> list[OTPRequested]:
        """`holder` is how the user holds the bucket (themselves or one of their groups).
        At most `limit.max_requests` codes per `limit.window`; the new code voids the
        previous ones."""
        self._check_otp_allowed(holder, now)
        limit = limit or OTPRequestLimit()
        recent = sorted(t for t in self.otp_requests.get(user_id, ()) if t > now - limit.window)
        if len(recent) >= limit.max_requests:
            wait = recent[-limit.max_requests] + limit.window - now
            raise exceptions.OTPRequestedTooOften(
                f"{limit.max_requests} codes were sent for bucket {self.id} in the last "
                f"{int(limit.window.total_seconds() // 60)} minutes; use the last one or wait",
                retry_after_s=max(1, int(wait.total_seconds()) + 1),
            )
        return [
            OTPRequested(
                bucket_id=self.id,
                recipient_id=user_id,
                otp_id=otp_id,
                sealed_code=sealed_code,
                expires_at=expires_at,
                language=language,
                requested_at=now,
            )
        ]

    def verify_otp(
        self,
        holder: str,
        user_id: str,
        matched_otp_id: str | None,
        now: datetime,
        verified_for: timedelta,
        session_id: str | None = None,
    ) -> list[OTPVerified | OTPFailed | BucketLocked]:
        """The user's latest code, unexpired and unused, opens the bucket for the login
        session that entered it; anything else (an earlier, voided code too) is a failure,
        and the fifth failure in a row locks the bucket."""
        self._check_otp_allowed(holder, now)
        expires = self.requested_otps.get(matched_otp_id or "")
        if (
            matched_otp_id
            and matched_otp_id == self.latest_otp.get(user_id)
            and expires
            and expires > now
            and matched_otp_id not in self.used_otps
        ):
            return [
                OTPVerified(
                    bucket_id=self.id,
                    recipient_id=user_id,
                    otp_id=matched_otp_id,
                    verified_until=now + verified_for,
                    session_id=session_id,
                )
            ]
        failures = self.consecutive_failures + 1
        events: list[OTPVerified | OTPFailed | BucketLocked] = [
            OTPFailed(bucket_id=self.id, recipient_id=user_id, consecutive_failures=failures)
        ]
        if failures >= MAX_WRONG_OTPS:
            events.append(
                BucketLocked(
                    bucket_id=self.id,
                    recipient_id=user_id,
                    failed_attempts=failures,
                    sending_department_id=self.s.sending_department_id,
                )
            )
        return events

    def unlock(self, by: str, roles: tuple[str, ...], admin_of: tuple[str, ...]) -> list:
        if "service_desk" in roles:
            unlocked_as = "service_desk"
        elif self.s.sending_department_id and self.s.sending_department_id in admin_of:
            unlocked_as = "department_admin"
        else:
            raise exceptions.NotAllowedToUnlock(
                "only the service desk or an admin of the sending department may unlock"
            )
        if not self.locked:
            raise exceptions.BucketNotLocked(f"bucket {self.id} is not locked")
        return [BucketUnlocked(bucket_id=self.id, unlocked_by=by, unlocked_as=unlocked_as)]


class Favorites(Aggregate):
    """A sender's favourite recipients (aggregate `fav_<owner>`)."""

    aggregate_type = "Favorites"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.items: dict[str, RecipientRef] = {}

    @applies
    def when_favorite_added(self, e: FavoriteAdded) -> None:
        self.items[e.favorite_id] = e.recipient

    @applies
    def when_favorite_removed(self, e: FavoriteRemoved) -> None:
        self.items.pop(e.favorite_id, None)

    def find(self, recipient: RecipientRef) -> str | None:
        for favorite_id, known in self.items.items():
            if (known.kind, known.recipient_id) == (recipient.kind, recipient.recipient_id):
                return favorite_id
        return None

    def add(self, owner_id: str, recipients: list[RecipientRef]) -> list[FavoriteAdded]:
        """Once per recipient; already known favourites add nothing."""
        events, seen = [], set()
        for recipient in recipients:
            key = (recipient.kind, recipient.recipient_id)
            if self.find(recipient) is None and key not in seen:
                seen.add(key)
                events.append(
                    FavoriteAdded(
                        owner_id=owner_id,
                        favorite_id=favorite_id_for(recipient),
                        recipient=recipient,
                    )
                )
        return events

    def remove(self, owner_id: str, favorite_id: str) -> list[FavoriteRemoved]:
        if favorite_id not in self.items:
            raise exceptions.FavoriteNotFound(f"no favourite {favorite_id}")
        return [FavoriteRemoved(owner_id=owner_id, favorite_id=favorite_id)]


def favorite_id_for(recipient: RecipientRef) -> str:
    """Stable per recipient, so adding twice is recognisable."""
    return f"fav_{recipient.kind}_{recipient.recipient_id}"


@dataclass(frozen=True)
class LabelItem:
    label_id: str
    text: str


class Labels(Aggregate):
    """The labels to pick from in the share dialog, of one user or one group (aggregate
    `labels_<owner_id>`): "You can add the label for the user or on group level"."""

    aggregate_type = "Labels"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.items: dict[str, LabelItem] = {}

    @applies
    def when_label_added(self, e: LabelAdded) -> None:
        self.items[e.label_id] = LabelItem(e.label_id, e.text)

    @applies
    def when_label_removed(self, e: LabelRemoved) -> None:
        self.items.pop(e.label_id, None)

    def add(
        self, owner_kind: str, owner_id: str, label_id: str, text: str, by: str
    ) -> list[LabelAdded]:
        """A new label; its text unique in the list (case and spaces aside)."""
        clean = rules.label_text(text)
        if any(i.text.casefold() == clean.casefold() for i in self.items.values()):
            raise exceptions.LabelAlreadyExists(f"the list already has the label '{clean}'")
        if len(self.items) >= rules.MAX_LABELS:
            raise exceptions.TooManyLabels(f"at most {rules.MAX_LABELS} labels per list")
        return [
            LabelAdded(
                owner_kind=owner_kind,  # type: ignore[arg-type]
                owner_id=owner_id,
                label_id=label_id,
                text=clean,
                added_by=by,
            )
        ]

    def remove(self, owner_kind: str, owner_id: str, label_id: str, by: str) -> list[LabelRemoved]:
        if label_id not in self.items:
            raise exceptions.LabelNotFound(f"no label {label_id}")
        return [
            LabelRemoved(
                owner_kind=owner_kind,  # type: ignore[arg-type]
                owner_id=owner_id,
                label_id=label_id,
                removed_by=by,
            )
        ]


class SharePreferences(Aggregate):
    """The sender's last two-factor and send-mail choices (aggregate `pref_<owner>`)."""

    aggregate_type = "SharePreferences"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.two_factor = False
        self.send_mail = True

    @applies
    def when_share_preferences_remembered(self, e: SharePreferencesRemembered) -> None:
        self.two_factor, self.send_mail = e.two_factor, e.send_mail

    def remember(
        self, owner_id: str, two_factor: bool, send_mail: bool
    ) -> list[SharePreferencesRemembered]:
        if self.exists and (self.two_factor, self.send_mail) == (two_factor, send_mail):
            return []
        return [
            SharePreferencesRemembered(
                owner_id=owner_id, two_factor=two_factor, send_mail=send_mail
            )
        ]
