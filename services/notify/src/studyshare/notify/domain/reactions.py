"""Which messages an event asks for (the reactions of notify). Pure: no I/O.

Addresses are not looked up here: a message names its target and is resolved when it is sent,
so a reaction never depends on whether another topic's projection has caught up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.contracts.events.identity import (
    ExternalIdentityLinked,
    GroupCompositionReported,
    GroupMemberInvited,
    GroupMembershipConfirmationDue,
    MobileChangeRequested,
    MobileNumberChanged,
    PatientOTPIssued,
    UserRegistered,
)
from studyshare.contracts.events.share import (
    BucketLocked,
    OTPRequested,
    RecipientRef,
    StudyShared,
)
from studyshare.contracts.events.study import BreakTheGlassUsed
from studyshare.notify.domain.model import Channel, Intent, Target

SHARE = "share"
INVITATION = "invitation"
BUCKET_OTP = "bucket_otp"
PATIENT_OTP = "patient_otp"
BUCKET_LOCKED = "bucket_locked"
BREAK_THE_GLASS = "break_the_glass"
GROUP_CONFIRMATION_DUE = "group_confirmation_due"
GROUP_INVITATION = "group_invitation"
GROUP_COMPOSITION_REPORTED = "group_composition_reported"
REGISTRATION_PENDING = "registration_pending"
MOBILE_CHANGE_CODE = "mobile_change_code"
MOBILE_CHANGED = "mobile_changed"
IDENTITY_LINKED = "identity_linked"

MAIL_TEMPLATES = (
    SHARE,
    INVITATION,
    BUCKET_LOCKED,
    BREAK_THE_GLASS,
    GROUP_CONFIRMATION_DUE,
    GROUP_INVITATION,
    GROUP_COMPOSITION_REPORTED,
    REGISTRATION_PENDING,
    IDENTITY_LINKED,
)
SMS_TEMPLATES = (BUCKET_OTP, PATIENT_OTP, MOBILE_CHANGE_CODE, MOBILE_CHANGED)
# SMS that carry a one-time code (sealed in the event, opened only to send it)
CODE_SMS_TEMPLATES = (BUCKET_OTP, PATIENT_OTP, MOBILE_CHANGE_CODE)


@dataclass(frozen=True)
class ReactionOptions:
    notify_pending_registrations: bool = True


def reactions(envelope: EventEnvelope, options: ReactionOptions | None = None) -> list[Intent]:
    """The messages `envelope` asks for; none for events notify does not react to."""
    options = options or ReactionOptions()
    try:
        event = registry.payload(envelope)
    except ValueError:  # a payload that does not fit its schema asks for nothing
        return []
    cause = str(envelope.event_id)

    def intent(
        channel: Channel,
        target: Target,
        template: str,
        language: str | None,
        context: dict[str, Any],
        **secret: Any,
    ) -> Intent:
        return Intent(
            cause, envelope.event_type, channel, target, template, language, context, **secret
        )

    match event:
        case StudyShared() if event.send_mail:
            context = _share_context(event)
            intents = []
            for recipient in event.recipients:
                target, template = _share_target(recipient)
                intents.append(intent("mail", target, template, event.language, context))
            return intents
        case OTPRequested():
            return [
                intent(
                    "sms",
                    Target("user", id=event.recipient_id),
                    BUCKET_OTP,
                    event.language,
                    {"bucket_id": event.bucket_id},
                    sealed_code=event.sealed_code,
                    expires_at=event.expires_at,
                )
            ]
        case PatientOTPIssued():
            return [
                intent(
                    "sms",
                    Target("mobile", mobile=event.mobile),
                    PATIENT_OTP,
                    event.language,
                    {"reference_id": event.reference_id},  # never the number: a credential
                    sealed_code=event.sealed_code,
                    expires_at=event.expires_at,
                )
            ]
        case MobileChangeRequested():
            return [
                intent(
                    "sms",
                    Target("mobile", mobile=event.mobile),
                    MOBILE_CHANGE_CODE,
                    event.language,
                    {"user_id": event.user_id},
                    sealed_code=event.sealed_code,
                    expires_at=event.expires_at,
                )
            ]
        case MobileNumberChanged() if event.previous_mobile:
            return [
                intent(
                    "sms",
                    Target("mobile", mobile=event.previous_mobile),
                    MOBILE_CHANGED,
                    event.language,
                    {"user_id": event.user_id, "changed_at": envelope.occurred_at.isoformat()},
                )
            ]
        case ExternalIdentityLinked():  # a new way into the account: its holder is told
            context = {"provider": event.provider, "linked_at": envelope.occurred_at.isoformat()}
            target = Target("user", id=event.user_id)
            return [intent("mail", target, IDENTITY_LINKED, None, context)]
        case BucketLocked():
            context = {
                "bucket_id": event.bucket_id,
                "recipient_id": event.recipient_id,
                "failed_attempts": event.failed_attempts,
            }
            target = Target("alert", id=event.sending_department_id)
            return [intent("mail", target, BUCKET_LOCKED, None, context)]
        case BreakTheGlassUsed():
            context = {
                "study_uid": event.study_uid,
                "user_id": event.user_id,
                "reason": event.reason,
                "valid_until": event.valid_until.isoformat(),
            }
            target = Target("alert", id=event.department_id)
            return [intent("mail", target, BREAK_THE_GLASS, None, context)]
        case GroupMembershipConfirmationDue():
            context = {"group_id": event.group_id, "due_since": event.due_since.isoformat()}
            target = Target("user", id=event.user_id)
            return [intent("mail", target, GROUP_CONFIRMATION_DUE, None, context)]
        case GroupCompositionReported():
            # the group's admins (the reporter excepted); with none, the service desk
            context = {
                "group_id": event.group_id,
                "reported_by": event.reported_by,
                "remark": event.remark,
            }
            targets = [Target("user", id=a) for a in event.admin_ids] or [Target("service_desk")]
            return [intent("mail", t, GROUP_COMPOSITION_REPORTED, None, context) for t in targets]
        case GroupMemberInvited():
            context = {"group_id": event.group_id, "invited_by": event.invited_by}
            target = Target("user", id=event.user_id)
            return [intent("mail", target, GROUP_INVITATION, None, context)]
        case UserRegistered() if event.pending_approval and options.notify_pending_registrations:
            context = {
                "user_id": event.user_id,
                "username": event.username,
                "profession": event.profession,
            }
            return [intent("mail", Target("service_desk"), REGISTRATION_PENDING, None, context)]
    return []


def _share_target(recipient: RecipientRef) -> tuple[Target, str]:
    if recipient.kind == "email":
        return Target("email", email=recipient.email or recipient.recipient_id), INVITATION
    return Target(recipient.kind, id=recipient.recipient_id), SHARE


def _share_context(event: StudyShared) -> dict[str, Any]:
    """What the share mail needs from the event. The reason is never shown to a recipient."""
    return {
        "bucket_id": event.bucket_id,
        "study_uids": list(event.study_uids),
        "sender_id": event.sender_id,
        "sending_department_id": event.sending_department_id,
        "anonymize": event.anonymize,
        "urgent": event.urgent,
        "message": event.message or None,
        "valid_until": event.valid_until.isoformat() if event.valid_until else None,
        "unlimited": event.unlimited,
        "two_factor": event.two_factor,
        "access_level": event.access_level,
        "allow_download": event.allow_download,
    }
