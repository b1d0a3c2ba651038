"""Sharing: a new share (`share`), a re-share of a held bucket (`share_again`) and the
acceptance of an invitation, with the confirmation shown to the sender."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ConfigDict

from studyshare.access_policy.rules import STUDY_ROLES
from studyshare.contracts.events.share import RecipientRef, ShareParameters
from studyshare.contracts.invitations import is_invitation_token
from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.domain import new_id
from studyshare.plumbing.logging import get_logger
from studyshare.share.adapters.readmodel import policy_of, share_options
from studyshare.share.domain import exceptions
from studyshare.share.domain.model import (
    LEVELS,
    Bucket,
    ShareRequest,
    check_within_held,
    decide_share,
)
from studyshare.share.service_layer.base import (
    RecipientInput,
    ShareBase,
    actor_of,
    names_of,
    resolve_recipients,
    shown_study_lines,
    study_lines,
)

log = get_logger(__name__)


class ShareCommand(ShareParameters):
    """A share as the sender asked for it (the API's body, without HTTP)."""

    model_config = ConfigDict(frozen=True)

    study_uids: tuple[str, ...]
    recipients: tuple[RecipientInput, ...]
    include_uploaded_together: bool = False
    add_to_favorites: tuple[str, ...] = ()
    parent_bucket_id: str | None = None


@dataclass
class ShareResult:
    bucket: Bucket
    confirmation: dict[str, Any]
    confirmation_text: str
    favorites_added: list[str] = field(default_factory=list)


class Sharing(ShareBase):
    """Sharing studies."""

    async def share(self, principal: AccessClaims, cmd: ShareCommand) -> ShareResult:
        """Check everything first; a refusal stores nothing. Then one bucket, in one write
        together with its read model, then preferences and favourites."""
        now = self.clock()
        study_uids = list(dict.fromkeys(cmd.study_uids))
        parent: Bucket | None = None
        if cmd.parent_bucket_id:
            parent = await self._load(cmd.parent_bucket_id)
        studies, known, prefs = await asyncio.gather(  # independent reads
            self.directory.studies(study_uids),
            self._directory_facts(cmd.recipients, [principal.sub], principal.department_ids),
            self.preferences.get(f"pref_{principal.sub}"),
        )
        if parent is None and not self._may_share_directly(principal, study_uids, studies):
            parent = await self._held_parent(principal, study_uids, studies, now)
        if cmd.include_uploaded_together:
            study_uids, studies = await self._with_uploaded_together(
                principal, study_uids, studies, parent
            )
        if parent is not None:
            sending_department = parent.sending_department_id
        else:
            sending_department = studies[study_uids[0]].get("department_id") if study_uids else None
        recipients = resolve_recipients(cmd.recipients, known)
        favorites = [r for r in recipients if r.recipient_id in set(cmd.add_to_favorites)]
        missing = set(cmd.add_to_favorites) - {r.recipient_id for r in recipients}
        if missing:
            raise exceptions.FavoriteNotARecipient(f"not among the recipients: {sorted(missing)}")
        two_factor = prefs.two_factor if cmd.two_factor is None else cmd.two_factor
        send_mail = prefs.send_mail if cmd.send_mail is None else cmd.send_mail
        if sending_department in known["department"]:
            policy, _country = policy_of(known["department"][sending_department])
        else:
            policy, _country = await self.directory.policy(sending_department)
        request = ShareRequest(
            **(cmd.parameters() | {"two_factor": two_factor, "send_mail": send_mail}),
            bucket_id=new_id("bkt"),
            sender_id=principal.sub,
            study_uids=tuple(study_uids),
            recipients=recipients,
            sending_department_id=sending_department,
            policy=policy,
            pacs_recipient_ids=pacs_recipients(recipients, known),
        )
        if parent is not None:
            check_within_held(
                request,
                parent,
                set(await self._holder_keys(principal)),
                session_id=principal.sid,
                now=now,
            )
        shared = decide_share(request, now, parent)
        bucket, _ = await self.buckets.execute(
            shared.bucket_id,
            lambda b: b.share(shared),
            actor_of(principal),
            loaded=Bucket(shared.bucket_id),  # a new id: nothing to load (a retry loads)
        )
        if prefs.remember(principal.sub, two_factor, send_mail):
            await self.preferences.execute(
                f"pref_{principal.sub}",
                lambda p: p.remember(principal.sub, two_factor, send_mail),
                actor_of(principal),
                retries=50,
                loaded=prefs,
            )
        added: list[str] = []
        if favorites:
            _, envelopes = await self.favorites.execute(
                f"fav_{principal.sub}",
                lambda f: f.add(principal.sub, favorites),
                actor_of(principal),
                retries=50,
            )
            added = [e.payload["favorite_id"] for e in envelopes]
        confirmation = confirmation_of(bucket, studies, known)
        log.info(
            "bucket.shared",
            bucket_id=bucket.id,
            studies=len(shared.study_uids),
            recipients=len(shared.recipients),
            parent_bucket_id=shared.parent_bucket_id,
        )
        shown = (  # the text is copied into the sender's own mail to the recipients
            shown_study_lines(
                bucket.id, bucket.s.study_uids, studies, self.settings.anonymization_secret
            )
            if bucket.s.anonymize
            else confirmation["studies"]
        )
        text = confirmation_text(confirmation, policy.time_zone, shown)
        return ShareResult(bucket, confirmation, text, added)

    @staticmethod
    def _may_share_directly(
        principal: AccessClaims, study_uids: list[str], studies: dict[str, dict[str, Any]]
    ) -> bool:
        """Every study is known and opens to the sender by the access policy's own paths: the
        sender owns it, or works with studies (`STUDY_ROLES`) in its department; a member
        of the department in another role (an auditor) does not."""
        return all(
            uid in studies
            and (
                studies[uid].get("owner_id") == principal.sub
                or (
                    studies[uid].get("department_id") in principal.department_ids
                    and bool(STUDY_ROLES.intersection(principal.roles))
                )
            )
            for uid in study_uids
        )

    async def _with_uploaded_together(
        self,
        principal: AccessClaims,
        study_uids: list[str],
        studies: dict[str, dict[str, Any]],
        parent: Bucket | None,
    ) -> tuple[list[str], dict[str, dict[str, Any]]]:
        """The studies and those uploaded together with them that the sender may share the
        same way (held in `parent`, or shared directly); asked only once the sender may share
        the studies named, so that it tells no one else of a study or its neighbours."""
        batches = [studies[u].get("upload_batch_id") for u in study_uids if u in studies]
        together = await self.directory.uploaded_together([b for b in batches if b])
        found = await self.directory.studies([u for u in together if u not in study_uids])
        added = [
            uid
            for uid in together
            if uid in found
            and (
                uid in parent.active_study_uids
                if parent is not None
                else self._may_share_directly(principal, [uid], found)
            )
        ]
        return study_uids + added, studies | {uid: found[uid] for uid in added}

    async def _held_parent(
        self,
        principal: AccessClaims,
        study_uids: list[str],
        studies: dict[str, dict[str, Any]],
        now: datetime,
    ) -> Bucket:
        """A re-share without `parent_bucket_id`: the bucket held by the sender holding all
        the studies with the most rights. A study the sender neither may share directly nor
        holds in a bucket is refused as one not received: known or not, it is told alike (else
        anyone could test which studies exist)."""
        docs = await self.readmodel.held_by(await self._holder_keys(principal), now)
        holding = [d for d in docs if set(study_uids) <= set(d["active_study_uids"])]
        if not holding:
            held = {uid for d in docs for uid in d["active_study_uids"]}
            unseen = [
                uid
                for uid in study_uids
                if uid not in held and not self._may_share_directly(principal, [uid], studies)
            ]
            if unseen:
                raise exceptions.StudyNotKnown(
                    f"studies not received (yet), or not yours to share: {unseen}"
                )
            raise exceptions.NotAllowedToShareStudy(
                "you may share only your own or your department's studies, or studies "
                "shared with you with 'allow further sharing'"
            )
        further = [d for d in holding if d["allow_further_sharing"]]
        if not further:
            raise exceptions.FurtherSharingNotAllowed(
                "these studies were shared with you without 'allow further sharing'"
            )
        far = datetime.max.replace(tzinfo=now.tzinfo)
        best = max(
            further,
            key=lambda d: (
                LEVELS[d["access_level"]],
                d["allow_download"],
                not d["anonymize"],
                not d["two_factor"],
                far if d["unlimited"] else d["valid_until"],
            ),
        )
        return await self._load(best["_id"])

    async def share_again(
        self,
        principal: AccessClaims,
        bucket_id: str,
        recipients: Sequence[RecipientInput],
        overrides: dict[str, Any],
    ) -> ShareResult:
        """The same set of studies, with new recipients, under the same parameters."""
        original = await self._load(bucket_id)
        if original.sender_id != principal.sub:
            raise exceptions.NotTheSender("only the sender can share this bucket again")
        s = original.s
        now = self.clock()
        valid_until = s.valid_until if s.valid_until and s.valid_until > now else None
        base: dict[str, Any] = s.parameters() | dict(
            study_uids=tuple(original.active_study_uids),
            recipients=tuple(recipients),
            language=None,  # the new recipients' unless chosen
            valid_until=None if s.unlimited else valid_until,
            parent_bucket_id=s.parent_bucket_id,
        )
        if "valid_until" in overrides and overrides["valid_until"] is not None:
            base["unlimited"] = False
        if overrides.get("unlimited"):
            base["valid_until"] = None
        base.update({k: v for k, v in overrides.items() if v is not None})
        return await self.share(principal, ShareCommand(**base))

    async def accept_invitation(
        self, principal: AccessClaims, bucket_id: str, token: str | None
    ) -> Bucket:
        """The caller's account, registered with the invited e-mail address (as identity
        told the directory) and holding the token of the invitation mail's link, takes the
        place of the bucket's e-mail recipient."""
        user = await self.directory.user(principal.sub)
        email = (user or {}).get("email")
        held = email is not None and is_invitation_token(
            self.settings.invitation_secret, bucket_id, email, token
        )
        bucket, _ = await self.buckets.execute(
            bucket_id,
            lambda b: b.accept_invitation(principal.sub, email, self.clock(), held),
            actor_of(principal),
        )
        return bucket


def pacs_recipients(
    recipients: Sequence[RecipientRef], known: dict[str, dict[str, dict[str, Any]]]
) -> tuple[str, ...]:
    """The department recipients of kind pacs (a share forwards the studies to them)."""
    return tuple(
        r.recipient_id
        for r in recipients
        if r.kind == "department"
        and known["department"].get(r.recipient_id, {}).get("kind") == "pacs"
    )


def confirmation_of(
    bucket: Bucket,
    studies: dict[str, dict[str, Any]],
    known: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    """The confirmation from the directory entries already read (studies, and users, groups,
    departments by kind, including the sender)."""
    s = bucket.s
    names = names_of(known)
    notes = []
    if s.anonymize and s.access_level != "images":
        notes.append("Anonymized: the report is never accessible, whatever the access level.")
    if s.two_factor:
        notes.append("Two-factor: recipients must enter a code sent by SMS before access.")
    if not s.send_mail:
        notes.append("No e-mail is sent to the recipients.")
    return {
        "bucket_id": bucket.id,
        "parent_bucket_id": s.parent_bucket_id,
        "sender": {"id": s.sender_id, "name": names.get(s.sender_id)},
        "studies": study_lines(s.study_uids, studies, s.anonymize),
        "recipients": [
            {
                "id": r.recipient_id,
                "kind": r.kind,
                "name": names.get(r.recipient_id) or r.email,
                "language": r.language,
            }
            for r in s.recipients
        ],
        **share_options(bucket),
        "notes": notes,
    }


def confirmation_text(c: dict[str, Any], time_zone: str, studies: list[dict[str, Any]]) -> str:
    """The confirmation as ready-to-copy text, for the sender's own mail to the recipients:
    its `studies` as the recipients see them (an anonymized share's remapped, shifted, without
    description: it once named the real study); the end of the access in the sending
    department's time zone (the one its dates are days of), named."""
    local = None if c["unlimited"] else c["valid_until"].astimezone(ZoneInfo(time_zone))
    until = "unlimited" if local is None else f"{local:%d/%m/%Y %H:%M} ({time_zone})"
    lines = [
        f"Shared by {c['sender']['name'] or c['sender']['id']} (bucket {c['bucket_id']})",
        "",
        "Studies:",
    ]
    for s in studies:
        bits = [b for b in (s["patient_initials"], s["description"], s["study_date"]) if b]
        lines.append(f"  - {' | '.join(bits) or s['study_uid']} ({s['study_uid']})")
    lines.append("Recipients:")
    for r in c["recipients"]:
        lines.append(f"  - {r['name'] or r['id']} ({r['kind']})")
    level = {
        "images": "images only",
        "images_report_read": "images and read access to the report",
        "images_report_write": "images and write access to the report",
    }[c["access_level"]]
    lines += ["", f"Access: {level}", f"Valid until: {until}"]
    options = [
        name
        for name, on in (
            ("urgent", c["urgent"]),
            ("anonymized", c["anonymize"]),
            ("further sharing allowed", c["allow_further_sharing"]),
            ("download allowed", c["allow_download"]),
            ("two-factor", c["two_factor"]),
            ("e-mail sent", c["send_mail"]),
        )
        if on
    ]
    if options:
        lines.append(f"Options: {', '.join(options)}")
    if c["label"]:
        lines.append(f"Label: {c['label']['text']} ({c['label']['scope']})")
    if c["message"]:
        lines.append(f"Message: {c['message']}")
    lines += c["notes"]
    return "\n".join(lines)
