"""The share service's refusals: one class per rule, named after it (the `rule` of the
problem+json answer), of a kind from `studyshare.plumbing.errors` (its HTTP status is the
edge's: `entrypoints.errors`).
Defined once, here; raised by the domain (`rules`, `model`) and the service layer."""

from __future__ import annotations

from studyshare.plumbing.errors import (
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    RuleViolation,
    TooManyAttempts,
)


class ImagesOnlyNotAllowedForUser(RuleViolation):
    """'Images only' is not available when sharing with a user."""


class ReasonRequired(RuleViolation):
    """A reason for sharing is mandatory (stored, never shown to recipients)."""


class PatientConsentRequired(RuleViolation):
    """Without the patient's consent the study may not be shared."""


class HipaaConfirmationRequired(RuleViolation):
    """The sending department requires the HIPAA confirmation."""


class ValidityBeyondDepartmentMaximum(RuleViolation):
    """`valid_until` is later than the sending department allows."""


class UnlimitedAccessNotAllowed(RuleViolation):
    """The sending department has deactivated unlimited access."""


class ValidUntilInPast(RuleViolation):
    """`valid_until` must lie in the future."""


class ValidityChoiceAmbiguous(RuleViolation):
    """Either a `valid_until` date or `unlimited`, not both."""


class NoStudies(RuleViolation):
    """A share needs at least one study."""


class NoRecipients(RuleViolation):
    """A share needs at least one recipient."""


class RecipientNotKnown(RuleViolation):
    """A user, group or department recipient is not known (yet) to the share service."""


class StudyNotKnown(RuleViolation):
    """A study has not been received (yet): its department and owner are unknown. Also the
    answer to a study the sender has no way to share at all (existence is not revealed)."""


class NotAllowedToShareStudy(Forbidden):
    """Only the study's department, its owner, or a recipient allowed to share further may share."""


class LabelScopeNeedsGroupRecipient(RuleViolation):
    """A group label needs a group among the recipients."""


class LabelTextInvalid(RuleViolation):
    """A label is 1 to 40 characters of text, not only spaces."""


class LabelAlreadyExists(Conflict):
    """The list already holds a label with this text (case and spaces aside)."""


class TooManyLabels(RuleViolation):
    """A user or a group keeps at most `MAX_LABELS` labels to pick from."""


class LabelNotFound(NotFound):
    """No such label in your own list nor in your groups' lists."""


class NotAMemberOfGroup(Forbidden):
    """A group's labels are made and removed by its members only."""


class FavoriteNotARecipient(RuleViolation):
    """Favourites to add from a share must be among its recipients."""


class FurtherSharingNotAllowed(Forbidden):
    """The bucket you hold was shared without 'allow further sharing'."""


class NotARecipientOfBucket(Forbidden):
    """You are not (or no longer) a recipient of this bucket."""


class StudyNotInBucket(RuleViolation):
    """The study is not (or no longer) part of this bucket."""


class PacsShareNeedsDownload(Forbidden):
    """A share to a PACS department copies the studies out of StudyShare: the sharer must be
    allowed to download them."""


class AccessLevelExceedsHeld(RuleViolation):
    """You cannot grant more access to the report than you hold."""


class DownloadExceedsHeld(RuleViolation):
    """You cannot allow download when you may not download."""


class ValidityExceedsHeld(RuleViolation):
    """You cannot share for longer than your own access lasts."""


class AnonymizationMustStay(RuleViolation):
    """A study shared with you anonymized can only be shared further anonymized."""


class TwoFactorMustStay(RuleViolation):
    """A study shared with you under two-factor can only be shared further under two-factor."""


class BucketNotFound(NotFound):
    """No such bucket (or not visible to you)."""


class BucketAlreadyShared(Conflict):
    """A bucket is shared once; a new share makes a new bucket."""


class BucketNotActive(Conflict):
    """The bucket was revoked or has expired."""


class RecipientAlreadyRevoked(Conflict):
    """This recipient's access was already revoked."""


class InvitationNotForYou(Forbidden):
    """An invitation by e-mail is accepted only by the account registered with that address."""


class InvitationLinkRequired(Forbidden):
    """An invitation is accepted through the link of its mail (its token proves the mailbox)."""


class InvitationAlreadyAccepted(Conflict):
    """Another account already accepted this invitation."""


class StudyAlreadyRemoved(Conflict):
    """This study was already removed from the bucket."""


class RecipientNotInBucket(NotFound):
    """No such recipient in this bucket."""


class NotAllowedToRevoke(Forbidden):
    """Only the sender, the study owner or an admin of the sending department may revoke."""


class NotAllowedToView(Forbidden):
    """Only the sender, the study owner, admins of the sending department and the service desk
    see a study's buckets."""


class NotTheSender(Forbidden):
    """Only the sender can share the same bucket again."""


class BucketIsLocked(Locked):
    """Five wrong codes in a row locked the bucket; the service desk or an admin of the
    sending department must unlock it."""


class TwoFactorVerificationRequired(Forbidden):
    """On a two-factor bucket the recipient must enter the code (in this login session)
    before re-sharing from it."""


class OTPRequestedTooOften(TooManyAttempts):
    """Too many codes asked for on this bucket lately; wait before asking again."""


class TwoFactorNotRequired(RuleViolation):
    """This bucket was shared without two-factor authentication."""


class NoRegisteredMobile(RuleViolation):
    """The recipient has no registered mobile number to receive the code."""


class MobileRecentlyChanged(Forbidden):
    """The recipient's mobile number changed lately: codes go to a new number only after a
    hold (`otp_new_mobile_hold_s`), in which the previous number has been told of the change.
    A stolen password could otherwise move the second factor to a thief's phone."""


class WrongOTP(RuleViolation):
    """The code is wrong, expired or was already used (the failure is recorded)."""

    title = "Wrong one-time password"


class BucketNotLocked(Conflict):
    """The bucket is not locked."""


class NotAllowedToUnlock(Forbidden):
    """Only the service desk or an admin of the sending department may unlock a bucket."""


class FavoriteNotFound(NotFound):
    """No such favourite."""
