"""What each message says: the template context built from the cause and what notify knows.

Pure: the sender looks the views up and passes them in. An anonymized share never shows the
patient's initials (nor name): only "Anonymous", in the mail's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from studyshare.notify.domain.model import format_date, language_or_default
from studyshare.notify.domain.views import DepartmentView, GroupView, StudyView, UserView

ANONYMOUS = {"en": "Anonymous", "nl": "Anoniem", "fr": "Anonyme", "de": "Anonym"}
SOMEONE = {
    "en": "A StudyShare user",
    "nl": "Een StudyShare-gebruiker",
    "fr": "Un utilisateur de StudyShare",
    "de": "Ein StudyShare-Benutzer",
}


def study_link(base_url: str, study_uid: str, bucket_id: str) -> str:
    """`{public_base_url}/studies/{study_uid}?bucket={bucket_id}`: where the recipient opens it."""
    return f"{base_url.rstrip('/')}/studies/{quote(study_uid)}?{urlencode({'bucket': bucket_id})}"


def anonymized_study_link(base_url: str, bucket_id: str, position: int) -> str:
    """`{public_base_url}/shared-with-me/{position}?bucket={bucket_id}`: an anonymized share's
    study by its place in the bucket, for its UID is only ever shown remapped."""
    query = urlencode({"bucket": bucket_id})
    return f"{base_url.rstrip('/')}/shared-with-me/{position}?{query}"


def _date(iso: str | None, language: str) -> str | None:
    return format_date(datetime.fromisoformat(iso), language) if iso else None


def _name(user: UserView | None, language: str) -> str:
    return (user.name if user else "") or SOMEONE[language]


def share_context(
    context: Mapping[str, Any],
    language: str | None,
    *,
    base_url: str,
    recipient: UserView | None,
    sender: UserView | None,
    department: DepartmentView | None,
    studies: Mapping[str, StudyView | None],
    email: str | None = None,
    invitation_token: str | None = None,
) -> dict[str, Any]:
    """The share mail (and the invitation of a new recipient, which also gets `email` and the
    token its link carries: `contracts.invitations`)."""
    lang = language_or_default(language)
    anonymize = bool(context.get("anonymize"))
    items = []
    for position, uid in enumerate(context["study_uids"], start=1):
        study = studies.get(uid)
        if anonymize:
            # PS3.15 Annex E: no UID, description or date of the exam on an anonymized share
            items.append(
                {
                    "uid": None,
                    "patient": ANONYMOUS[lang],
                    "description": None,
                    "date": None,
                    "link": anonymized_study_link(base_url, context["bucket_id"], position),
                }
            )
            continue
        patient = study.patient_initials if study and study.patient_initials else None
        items.append(
            {
                "uid": uid,
                "patient": patient,
                "description": study.description if study else None,
                "date": format_date(study.study_date, lang) if study else None,
                "link": study_link(base_url, uid, context["bucket_id"]),
            }
        )
    result = {
        "recipient_name": recipient.name if recipient else None,
        "sender_name": _name(sender, lang),
        "department_name": department.name if department else None,
        "studies": items,
        "message": context.get("message"),
        "urgent": bool(context.get("urgent")),
        "two_factor": bool(context.get("two_factor")),
        "unlimited": bool(context.get("unlimited")),
        "valid_until": _date(context.get("valid_until"), lang),
        "email": email,
        "invitation_link": None,
    }
    if email is not None:
        query = urlencode(
            {"email": email, "bucket": context["bucket_id"], "token": invitation_token or ""}
        )
        result["invitation_link"] = f"{base_url.rstrip('/')}/register?{query}"
    return result


def bucket_locked_context(
    context: Mapping[str, Any],
    language: str | None,
    *,
    base_url: str,
    recipient: UserView | None,
    locked_recipient: UserView | None,
    department: DepartmentView | None,
) -> dict[str, Any]:
    lang = language_or_default(language)
    return {
        "recipient_name": recipient.name if recipient else None,
        "bucket_id": context["bucket_id"],
        "failed_attempts": context["failed_attempts"],
        "locked_recipient_name": locked_recipient.name
        if locked_recipient and locked_recipient.name
        else context["recipient_id"],
        "department_name": department.name if department else None,
        "link": f"{base_url.rstrip('/')}/shares/{quote(context['bucket_id'])}",
        "language": lang,
    }


def break_the_glass_context(
    context: Mapping[str, Any],
    language: str | None,
    *,
    base_url: str,
    recipient: UserView | None,
    user: UserView | None,
    study: StudyView | None,
    department: DepartmentView | None,
) -> dict[str, Any]:
    """An alert to the department's admins and the service desk; no patient name or initials."""
    lang = language_or_default(language)
    return {
        "recipient_name": recipient.name if recipient else None,
        "user_name": (user.name if user else "") or context["user_id"],
        "study_uid": context["study_uid"],
        "description": study.description if study else None,
        "study_date": format_date(study.study_date, lang) if study else None,
        "reason": context["reason"],
        "valid_until": _date(context.get("valid_until"), lang),
        "department_name": department.name if department else None,
        "link": f"{base_url.rstrip('/')}/studies/{quote(context['study_uid'])}/logging",
    }


def group_confirmation_context(
    context: Mapping[str, Any],
    *,
    base_url: str,
    recipient: UserView | None,
    group: GroupView | None,
) -> dict[str, Any]:
    return {
        "recipient_name": recipient.name if recipient else None,
        "group_name": (group.name if group else "") or context["group_id"],
        "link": f"{base_url.rstrip('/')}/group-confirmations",
    }


def identity_linked_context(
    context: Mapping[str, Any], language: str, *, base_url: str, recipient: UserView | None
) -> dict[str, Any]:
    """The account holder learns that an external identity may now log in as them, and where
    to look (their profile) and whom to tell if it was not them."""
    return {
        "recipient_name": recipient.name if recipient else None,
        "provider": context["provider"],
        "linked_at": _date(context.get("linked_at"), language),
        "link": f"{base_url.rstrip('/')}/profile",
    }


def group_invitation_context(
    context: Mapping[str, Any],
    *,
    base_url: str,
    recipient: UserView | None,
    group: GroupView | None,
    inviter: UserView | None,
) -> dict[str, Any]:
    """The invitee learns which group and who asked; not its members (that is for members)."""
    return {
        "recipient_name": recipient.name if recipient else None,
        "group_name": (group.name if group else "") or context["group_id"],
        "inviter_name": (inviter.name if inviter else "") or context["invited_by"],
        "link": f"{base_url.rstrip('/')}/group-invitations",
    }


def group_composition_reported_context(
    context: Mapping[str, Any],
    *,
    base_url: str,
    recipient: UserView | None,
    group: GroupView | None,
    reporter: UserView | None,
) -> dict[str, Any]:
    return {
        "recipient_name": recipient.name if recipient else None,
        "group_name": (group.name if group else "") or context["group_id"],
        "reporter_name": (reporter.name if reporter else "") or context["reported_by"],
        "remark": context["remark"],
        "link": f"{base_url.rstrip('/')}/groups/{quote(context['group_id'])}",
    }


def registration_pending_context(
    context: Mapping[str, Any],
    *,
    base_url: str,
    recipient: UserView | None,
    registrant: UserView | None,
) -> dict[str, Any]:
    return {
        "recipient_name": recipient.name if recipient else None,
        "registrant_name": (registrant.name if registrant else "") or context["username"],
        "username": context["username"],
        "profession": context.get("profession") or "-",
        "link": f"{base_url.rstrip('/')}/users/{quote(context['user_id'])}",
    }


def notice_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """An SMS without a code (e.g. the previous number told of a change): when it happened."""
    changed_at = context.get("changed_at")
    when = datetime.fromisoformat(changed_at) if changed_at else None
    return {"changed_at": when.strftime("%d/%m/%Y %H:%M UTC") if when else "-"}


def otp_context(code: str, expires_at: datetime | None) -> dict[str, Any]:
    return {"code": code, "expires_at": expires_at.strftime("%H:%M UTC") if expires_at else "-"}
