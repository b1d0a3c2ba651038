"""The share API's request and answer models (their names are the OpenAPI schemas' names)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from studyshare.contracts.events.share import (
    Language,
    ShareOptions,
    ShareParameters,
    StudyShared,
)
from studyshare.share.service_layer.base import RecipientInput
from studyshare.share.service_layer.sharing import ShareCommand


class RecipientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["user", "group", "department", "email"]
    id: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    language: Language | None = None

    @model_validator(mode="after")
    def _id_or_email(self) -> RecipientIn:
        if self.kind == "email" and not self.email:
            raise ValueError("an email recipient needs `email`")
        if self.kind != "email" and not self.id:
            raise ValueError(f"a {self.kind} recipient needs `id`")
        return self

    def to_input(self) -> RecipientInput:
        return RecipientInput(self.kind, self.id, self.email, self.language)


def _optional(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s fields with their checks, each optional (`None`: as before)."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind = info.annotation | None
        if info.metadata:
            kind = Annotated.__class_getitem__((kind, *info.metadata))
        fields[name] = (kind, Field(default=None, description=info.description))
    return fields


ShareAgainOptions = create_model(
    "ShareAgainOptions",
    __config__=ConfigDict(extra="forbid"),
    __doc__="The share parameters a share-again may override (each left out keeps the bucket's).",
    **_optional(ShareParameters),
    add_to_favorites=(list[str] | None, Field(default=None, max_length=100)),
)


class ShareIn(ShareParameters):
    """A share: studies, recipients and the parameters of the manuals (`ShareParameters`)."""

    model_config = ConfigDict(extra="forbid")

    study_uids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(max_length=500)
    recipients: list[RecipientIn] = Field(max_length=200)
    include_uploaded_together: bool = False
    add_to_favorites: list[str] = Field(default_factory=list, max_length=100)
    parent_bucket_id: str | None = Field(
        default=None, max_length=100, description="re-share: the bucket you received the studies in"
    )

    def to_command(self) -> ShareCommand:
        return ShareCommand(
            **self.parameters(),
            study_uids=tuple(self.study_uids),
            recipients=tuple(r.to_input() for r in self.recipients),
            include_uploaded_together=self.include_uploaded_together,
            add_to_favorites=tuple(self.add_to_favorites),
            parent_bucket_id=self.parent_bucket_id,
        )


class ShareAgainIn(ShareAgainOptions):  # type: ignore[misc,valid-type]
    recipients: list[RecipientIn] = Field(max_length=200)


class InvitationAcceptance(BaseModel):
    token: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the `token` of the invitation mail's link",
    )


class OTPVerifyIn(BaseModel):
    code: str = Field(min_length=1, max_length=20)


class PersonOut(BaseModel):
    id: str
    name: str | None = None


ShareOptionsOut = create_model(
    "ShareOptionsOut",
    __doc__="What the sender chose for a share (`ShareOptions`, as decided), and the report "
    "access it amounts to (an anonymized share never opens the report).",
    **{
        name: (StudyShared.model_fields[name].annotation, ...) for name in ShareOptions.model_fields
    },
    report_access=(Literal["none", "read", "write"], ...),
)


class ConfirmationStudy(BaseModel):
    study_uid: str
    description: str | None = None
    study_date: str | None = None
    patient_initials: str | None = None


class ConfirmationRecipient(BaseModel):
    id: str
    kind: Literal["user", "group", "department", "email"]
    name: str | None = None
    language: str | None = None


class Confirmation(ShareOptionsOut):  # type: ignore[misc,valid-type]
    bucket_id: str
    parent_bucket_id: str | None
    sender: PersonOut
    studies: list[ConfirmationStudy]
    recipients: list[ConfirmationRecipient]
    notes: list[str]


class ShareOut(BaseModel):
    bucket_id: str
    confirmation: Confirmation
    confirmation_text: str
    favorites_added: list[str]


class BucketRecipientOut(BaseModel):
    recipient_id: str
    kind: Literal["user", "group", "department", "email"]
    name: str | None = Field(
        default=None,
        description="the user's, group's or department's name (Access tab, my shares)",
    )
    email: str | None = None
    language: str | None = None
    revoked: bool
    user_id: str | None = Field(
        default=None, description="the account that accepted an invitation by e-mail"
    )
    opened: bool | None = Field(
        default=None,
        description="in my shares: whether this recipient has opened one of the bucket's "
        "studies (null for a group, a department or an invitation not yet accepted)",
    )


class BucketOut(ShareOptionsOut):  # type: ignore[misc,valid-type]
    """A bucket as its sender, the study owner or an admin sees it (`reason` is hidden from
    recipients)."""

    bucket_id: str
    status: Literal["active", "revoked", "expired"]
    sender_id: str
    sender_name: str | None = Field(default=None, description="the sender's name (Access tab)")
    may_revoke: bool = Field(
        default=False,
        description="whether the caller may withdraw its accesses (the sender, the exam owner, "
        "an admin of the sending department): the Access tab's crosses",
    )
    sending_department_id: str | None
    parent_bucket_id: str | None
    children: list[str] = []
    study_uids: list[str]
    active_study_uids: list[str]
    recipients: list[BucketRecipientOut]
    reason: str | None
    locked: bool
    expired: bool
    shared_at: datetime | None


class SentBucketOut(BucketOut):
    """A bucket in "my shares": its studies as its confirmation names them."""

    studies: list[ConfirmationStudy]
    message_state: Literal["unread", "read"] | None = Field(
        default=None,
        description="the sender's Message label: red (unread) until a recipient opens the "
        "study, then green (read); null without a message",
    )


class SentBucketsOut(BaseModel):
    items: list[SentBucketOut]
    total: int
    limit: int
    offset: int


class SharedItemOut(ShareOptionsOut):  # type: ignore[misc,valid-type]
    bucket_id: str
    study_uid: str
    position: int = Field(
        description="the study's place in the share (1-based), as the share mail numbers it: "
        "an anonymized share's mail links `/shared-with-me/{position}?bucket=`"
    )
    description: str | None
    study_date: str | None
    patient_initials: str | None
    sender: PersonOut
    via: list[PersonOut]
    read: bool
    message_state: Literal["unread", "read"] | None = Field(
        description="red (unread) until the study is opened, then green (read)"
    )
    locked: bool
    shared_at: datetime | None


class SharedWithMeOut(BaseModel):
    items: list[SharedItemOut]
    total: int
    limit: int
    offset: int


class OTPRequestedOut(BaseModel):
    expires_at: datetime
    sent_to: Literal["registered_mobile"] = "registered_mobile"


class OTPVerifiedOut(BaseModel):
    verified_until: datetime


class FavoriteOut(BaseModel):
    favorite_id: str
    recipient_id: str
    kind: Literal["user", "group", "department", "email"]
    email: str | None = None
    name: str | None = Field(default=None, description="display name of the recipient")


class PreferencesOut(BaseModel):
    two_factor: bool
    send_mail: bool


class LabelCreateIn(BaseModel):
    """A label to add to my list, or (with `group_id`) to a group's list I am a member of."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100)
    group_id: str | None = Field(default=None, min_length=1, max_length=100)


class LabelListed(BaseModel):
    label_id: str
    text: str
    scope: Literal["user", "group"]
    group_id: str | None = None
    group_name: str | None = None
