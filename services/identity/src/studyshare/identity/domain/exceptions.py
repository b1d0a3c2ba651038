"""Identity's refusals, one class per rule; the class name is the `rule` clients see."""

from __future__ import annotations

from studyshare.plumbing.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RuleViolation,
    TooManyAttempts,
    Unauthorized,
)

GENERIC_LOGIN_REFUSAL = "The username, password or one-time code is not correct."
GENERIC_PATIENT_REFUSAL = "The reference number, date of birth or pincode is not correct."


class InvalidCredentials(Unauthorized):
    """Same answer whether or not the account exists."""

    def __init__(self, detail: str = GENERIC_LOGIN_REFUSAL) -> None:
        super().__init__(detail)


class TOTPRequired(Unauthorized):
    """The password was right; the account's second factor is needed too. After an external
    login, `login_ticket` names the login waiting for the code."""

    def __init__(self, detail: str, login_ticket: str | None = None) -> None:
        super().__init__(detail)
        self.login_ticket = login_ticket


class ExternalLoginStateInvalid(Unauthorized):
    """The callback's `state` was not handed out by this service for this provider (and, to
    link an identity, to this user), was used already, or expired: start again."""


class ExternalLoginTicketInvalid(Unauthorized):
    """The ticket of an external login waiting for its TOTP code is unknown, used or expired."""


class LoginTemporarilyLocked(TooManyAttempts):
    """Too many failures for this username or source: wait (delay grows with every lock)."""


class RegistrationsTooOften(TooManyAttempts):
    """Too many self-registrations from this source lately: wait."""


class AccountNotApproved(Forbidden):
    """A self-registered account logs in only after the service desk approved it."""


class AccountDeactivated(Forbidden):
    pass


class CannotDeactivateYourself(Forbidden):
    """The service desk cannot lock itself out; another desk account does it."""


class WrongEnvironment(RuleViolation):
    """The account lives in another country's environment; `portal_url` says where."""

    title = "Wrong environment"

    def __init__(self, detail: str, environment: str, portal_url: str | None) -> None:
        super().__init__(detail)
        self.environment = environment
        self.portal_url = portal_url


class InvalidRefreshToken(Unauthorized):
    pass


class RefreshTokenReused(Unauthorized):
    """A rotated refresh token came back: the session is revoked (token theft suspected)."""


class UnknownEnvironment(RuleViolation):
    """Accounts belong to one of the environments in the portal table."""


class UsernameTaken(Conflict):
    pass


class UserNotFound(NotFound):
    pass


class GroupNotFound(NotFound):
    pass


class DepartmentNotFound(NotFound):
    pass


class AlreadyApproved(Conflict):
    pass


class NotAllowed(Forbidden):
    """The caller's roles do not allow this command."""


class WeakPassword(RuleViolation):
    pass


class TOTPAlreadyEnabled(Conflict):
    pass


class TOTPNotEnabled(Conflict):
    pass


class TOTPEnrolmentMissing(Conflict):
    pass


class InvalidTOTPCode(Forbidden):
    """The code does not prove possession of the enrolled secret."""


# Changing who one is (profile)
class CurrentPasswordRequired(Forbidden):
    """Changing one's names, e-mail, physician numbers or mobile needs the current password."""


class MobileChangeNeedsCode(RuleViolation):
    """A new mobile number is registered only with the code sent to it
    (`POST /api/users/me/mobile`, then `POST /api/users/me/mobile/confirm`)."""


class WrongMobileChangeCode(Forbidden):
    """The code is wrong, expired, already used or voided by a newer one; five wrong codes
    void the pending change."""


class MobileChangeRequestedTooOften(TooManyAttempts):
    """A code for a new mobile number was sent moments ago; wait before asking again."""


class AlreadyMember(Conflict):
    pass


class NotAMember(NotFound):
    pass


class AlreadyInvited(Conflict):
    """The user has an open invitation to this group already."""


class NotInvited(NotFound):
    """There is no open invitation of this user to this group (never made, declined, withdrawn,
    or already accepted)."""


class MembershipNotAccepted(Conflict):
    """The user is invited but not yet a member: nothing a member may do or be (admin, primary
    contact) until they accept or the service desk approves."""


class PrimaryContactCannotLeave(Conflict):
    """Name another primary contact before removing this one."""


class PrimaryContactIsAdmin(Conflict):
    """The primary contact cannot stop being a group admin."""


class DefaultValidityExceedsMaximum(RuleViolation):
    pass


class InvalidPolicy(RuleViolation):
    pass


class PacsEndpointRequired(RuleViolation):
    """A PACS destination needs its DICOM endpoint (AE title, host, port)."""


class PatientLoginRefused(Unauthorized):
    def __init__(self, detail: str = GENERIC_PATIENT_REFUSAL) -> None:
        super().__init__(detail)


class PincodeRequired(Unauthorized):
    """The department requires payment: the pincode handed over after payment is needed."""


class PaymentPending(RuleViolation):
    """No pincode has been issued yet for this reference number (payment not registered)."""

    title = "Payment required"


class PatientOTPRequired(Unauthorized):
    """An SMS code was sent to the patient's mobile; log in again with it."""


class PatientOTPUnavailable(RuleViolation):
    """The department requires an SMS code but no mobile number is known for the patient."""


class ReferenceNumberWithdrawn(Forbidden):
    """The reference number was revoked."""


class ReferenceNumberOutsideValidity(Forbidden):
    pass


class ReferenceNumberBreaksComplexityRule(Forbidden):
    """Flagged in the Access tab: a number below the department's complexity cannot be used."""


class PatientLoginLocked(TooManyAttempts):
    """Too many failed attempts on this reference number."""


class UnknownIdentityProvider(NotFound):
    pass


class ExternalIdentityNotLinked(Unauthorized):
    """The external identity is valid but linked to no account."""


__all__ = ["Conflict", "Forbidden", "NotFound", "RuleViolation", "Unauthorized"]


class SearchCriteriaMissing(RuleViolation):
    """A recipient search needs a query, a field of the detailed search, or "select from list"."""


class CompositionReportEmpty(RuleViolation):
    """A report of a wrong group composition says what is wrong."""
