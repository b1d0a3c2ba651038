"""The study store's refusals: one class per rule, named after it (the `rule` of the
problem+json answer), of a kind from `studyshare.plumbing.errors` (its HTTP status is the
edge's: `entrypoints.errors`).

Each is defined once, here, whoever raises it (the domain, the service layer or a route). The
access model's refusals are defined with its rules (`domain.access_rules`) and imported here,
so that `StudyNotFound` or `NoAccessToStudy` is the same class wherever it is raised.
"""

from __future__ import annotations

from studyshare.plumbing.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RuleViolation,
    TooLarge,
    UnsupportedMedia,
)
from studyshare.study_store.domain.access_rules import (
    AccessDecisionsUnavailable,
    AccountDeactivated,
    BucketIsLocked,
    GrantExpired,
    GrantRevoked,
    NoAccessToStudy,
    ReferenceNumberNotUsable,
    StudyNotFound,
    TwoFactorVerificationRequired,
)

__all__ = [
    "AccessChangedSinceTransfer",
    "AccessDecisionsUnavailable",
    "AccountDeactivated",
    "BarrierEventsRefused",
    "BreakTheGlassNotAllowed",
    "BreakTheGlassNotNeeded",
    "BreakTheGlassReasonRequired",
    "BucketIsLocked",
    "DepartmentNotYours",
    "DownloadNotAllowed",
    "ForwardNotAllowed",
    "FrameListTooLong",
    "GrantExpired",
    "GrantRevoked",
    "InstanceAlreadyStored",
    "InvalidReportBody",
    "NoAccessToStudy",
    "NoReportYet",
    "NoRswEndpoint",
    "NotRenderable",
    "ObjectNotFound",
    "ReferenceNumberAlreadyRevoked",
    "ReferenceNumberBreaksComplexityRule",
    "ReferenceNumberNotUsable",
    "ReferenceNumberTaken",
    "ReferenceNumberUnknown",
    "ReferenceNumberValidityBeyondPolicy",
    "ReferenceNumberValidityInverted",
    "ReferenceNumbersManagedByStudyDepartmentOnly",
    "ReportEmpty",
    "ReportNotAPdf",
    "ReportNotAvailableOnAnonymizedShare",
    "ReportReadNotAllowed",
    "ReportTooLarge",
    "ReportWriteNotAllowed",
    "RswOnlyForDepartment",
    "StudyNotFound",
    "StudyNotReceived",
    "TransferInProgress",
    "TransferNotFound",
    "TwoFactorVerificationRequired",
    "UnknownPacs",
    "UnsupportedMediaType",
    "UnsupportedReportType",
    "UploadTooLarge",
]


# --- Studies and their transfers (`domain.study`) -------------------------------------


class InstanceAlreadyStored(Conflict):
    """A stored instance is never replaced: its SOP Instance UID is already stored with other
    content (the same content again is accepted as already stored)."""


class TransferNotFound(NotFound):
    """No transfer with this id exists for this study."""


class TransferInProgress(Conflict):
    """A resend is only possible once the previous attempts have ended."""


class ForwardNotAllowed(Forbidden):
    """Forwarding copies the study out of StudyShare: it needs download permission."""


class AccessChangedSinceTransfer(Forbidden):
    """A resend sends the transfer as it was requested; the resender's access no longer allows
    that (in the clear, or with the report): a new transfer goes as their access is now."""


# --- Reports (`domain.report`) --------------------------------------------------------


class ReportNotAvailableOnAnonymizedShare(Forbidden):
    pass


class ReportReadNotAllowed(Forbidden):
    pass


class ReportWriteNotAllowed(Forbidden):
    pass


class NoReportYet(NotFound):
    pass


class StudyNotReceived(NotFound):
    pass


class ReportEmpty(RuleViolation):
    pass


class ReportTooLarge(TooLarge):
    pass


class ReportNotAPdf(UnsupportedMedia):
    pass


# --- Reference numbers (`domain.reference_numbers`) -----------------------------------


class ReferenceNumberTaken(Conflict):
    pass


class ReferenceNumberUnknown(NotFound):
    pass


class ReferenceNumberAlreadyRevoked(Conflict):
    pass


class ReferenceNumberBreaksComplexityRule(RuleViolation):
    """A flagged number cannot be used, so it gets no pincode either."""


class ReferenceNumberValidityInverted(RuleViolation):
    pass


class ReferenceNumbersManagedByStudyDepartmentOnly(Forbidden):
    pass


class ReferenceNumberValidityBeyondPolicy(RuleViolation):
    """A 'valid to' later than the sending department allows for its reference numbers."""


# --- Break the glass (`domain.break_glass`) -------------------------------------------


class BreakTheGlassReasonRequired(RuleViolation):
    pass


class BreakTheGlassNotAllowed(Forbidden):
    """The study department's policy does not let the caller break the glass (or there is no
    such study: the same answer)."""


class BreakTheGlassNotNeeded(Conflict):
    """The caller can already open the study; no alert is raised for nothing."""


# --- DICOMweb: what may be served, stored and rendered --------------------------------


class ObjectNotFound(NotFound):
    """No such study, series, instance or frame (or not one the caller may see)."""


class NotRenderable(RuleViolation):
    """The object has no pixel data the store can render."""

    title = "Not acceptable"


class UnsupportedMediaType(UnsupportedMedia):
    """STOW-RS takes multipart/related; type="application/dicom" only."""

    title = "Unsupported media type"


class UploadTooLarge(TooLarge):
    title = "Payload too large"


class DepartmentNotYours(Forbidden):
    """An upload can only be filed under one of the uploader's own departments."""


class FrameListTooLong(RuleViolation):
    """A frames request lists at most `MAX_FRAME_LIST` frame numbers."""

    title = "Bad request"


# --- Downloads ------------------------------------------------------------------------


class DownloadNotAllowed(Forbidden):
    """The share did not allow download (only the images may be viewed)."""


# --- Forwarding -----------------------------------------------------------------------


class UnknownPacs(NotFound):
    """The destination is not a department of kind pacs with a PACS endpoint."""


class NoRswEndpoint(NotFound):
    """The study's department has no regional health network (RSW) endpoint."""


class RswOnlyForDepartment(Forbidden):
    """Only the study's own department sends it to the regional health network."""


# --- Reports sent to the API ----------------------------------------------------------


class InvalidReportBody(RuleViolation):
    pass


class UnsupportedReportType(UnsupportedMedia):
    pass


# --- The access barrier (`service_layer.access_barrier`) ------------------------------


class BarrierEventsRefused(RuleViolation):
    """The events are not whole streams of aggregates the caller owns."""

    title = "Events refused"
