"""Views: a bucket as its holder sees it, the buckets of a study, and the lists (shared with
me, sent by me, locked)."""

from __future__ import annotations

import asyncio
from typing import Any

from studyshare.contracts.tokens import AccessClaims
from studyshare.share.adapters.readmodel import SHOWN_OPTIONS
from studyshare.share.domain import exceptions
from studyshare.share.domain.anonymized import anonymized_study
from studyshare.share.domain.model import Bucket
from studyshare.share.service_layer.base import RecipientInput, ShareBase, names_of, study_lines


class Views(ShareBase):
    """Reading buckets and lists."""

    async def view(self, principal: AccessClaims, bucket_id: str) -> tuple[Bucket, bool]:
        """The bucket and whether the caller sees it as its administrator (with the reason);
        a holder sees it while they hold it (a revoked recipient no longer does)."""
        bucket = await self._load(bucket_id)
        if await self.may_administer(principal, bucket) or principal.has_role(
            "service_desk", "auditor"
        ):
            return bucket, True
        keys = await self._holder_keys(principal)
        if any(key in bucket.holder_ids for key in keys):
            return bucket, False
        raise exceptions.BucketNotFound(f"no bucket {bucket_id}")

    async def buckets_of_study(self, principal: AccessClaims, study_uid: str) -> list[dict]:
        """The Access tab's buckets: all of them for the service desk, auditors and the staff
        of the study's department (issue 16, point 3); those one administers (sender, exam
        owner, sending department's admin) for anyone else. `may_revoke` says which ones the
        caller may withdraw (`_may_revoke`'s rule), so the tab offers only those crosses."""
        docs = await self.readmodel.of_study(study_uid)
        study = (await self.directory.studies([study_uid])).get(study_uid) or {}
        department = study.get("department_id")
        sees_all = principal.has_role("service_desk", "auditor") or (
            department is not None and department in principal.department_ids
        )
        administered = {d["_id"] for d in docs if await self.may_administer(principal, d)}
        if not sees_all:
            docs = [d for d in docs if d["_id"] in administered]

        def may_revoke(d: dict[str, Any]) -> bool:
            return (
                d["sender_id"] == principal.sub
                or (d.get("sending_department_id") or "") in principal.admin_of
                or study.get("owner_id") == principal.sub
            )

        children: dict[str, list[str]] = {}
        for d in docs:
            if d.get("parent_bucket_id"):
                children.setdefault(d["parent_bucket_id"], []).append(d["_id"])
        names = await self.names_in(docs)
        return [
            {
                **d,
                "children": children.get(d["_id"], []),
                "may_revoke": may_revoke(d),
                "sender_name": names.get(d["sender_id"]),
                "recipients": [
                    {**r, "name": names.get(r["recipient_id"])} for r in d["recipients"]
                ],
            }
            for d in docs
        ]

    async def names_in(self, docs: list[dict[str, Any]]) -> dict[str, str]:
        """The directory's names of the senders and of the user, group and department
        recipients of these bucket views (the Access tab shows names, not ids)."""
        wanted: dict[str, set[str]] = {"user": set(), "group": set(), "department": set()}
        for d in docs:
            wanted["user"].add(d["sender_id"])
            for r in d["recipients"]:
                if r["kind"] in wanted:
                    wanted[r["kind"]].add(r["recipient_id"])
        found = await asyncio.gather(
            self.directory.users(sorted(wanted["user"])),
            self.directory.groups(sorted(wanted["group"])),
            self.directory.departments(sorted(wanted["department"])),
        )
        return {k: v["name"] for kind in found for k, v in kind.items() if v.get("name")}

    async def shared_with_me(
        self,
        principal: AccessClaims,
        *,
        unread: bool | None = None,
        urgent: bool | None = None,
        study_uid: str | None = None,
        label: str | None = None,
        bucket_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """My list, the latest share first: each study of each bucket I hold (myself, my
        groups, my departments) that the filters keep, a page of them and how many there
        are. The filters read the bucket views (and the read marks, to filter on them); only
        the page's studies and senders are read."""
        now = self.clock()
        own = [principal.sub, *principal.department_ids]
        groups, docs = await asyncio.gather(  # the user's groups while their own buckets load
            self.directory.groups_of(principal.sub), self.readmodel.held_by(own, now)
        )
        keys = [principal.sub, *groups, *principal.department_ids]
        if groups:
            docs = newest_first(docs + await self.readmodel.held_by(groups, now))
        entries = [
            (d, uid)
            for d in docs
            if (bucket_id is None or d["_id"] == bucket_id)
            and (urgent is None or d["urgent"] == urgent)
            and (not label or (d["label"] or {}).get("text") == label)
            for uid in d["active_study_uids"]
            if not study_uid or self.shown_uid(d, uid) == study_uid
        ]
        read: set[str] | None = None  # the read marks of every entry, when the filter needs them
        if unread is not None:
            read = await self.directory.opened(principal.sub, sorted({u for _, u in entries}))
            entries = [(d, uid) for d, uid in entries if (uid in read) != unread]
        page = entries[offset : offset + limit]
        uids = sorted({uid for _, uid in page})
        studies, senders, *page_read = await asyncio.gather(  # independent reads
            self.directory.studies(uids),
            self.directory.users(sorted({d["sender_id"] for d, _ in page})),
            *([self.directory.opened(principal.sub, uids)] if read is None else []),
        )
        opened = read if read is not None else page_read[0]
        return [
            self._shared_item(d, uid, studies.get(uid, {}), uid in opened, keys, senders)
            for d, uid in page
        ], len(entries)

    def shown_uid(self, d: dict[str, Any], uid: str) -> str:
        """The study UID as the recipient sees it (remapped in an anonymized share)."""
        if not d["anonymize"]:
            return uid
        return anonymized_study(self.settings.anonymization_secret, d["_id"], uid, {})[1]

    def _shared_item(
        self,
        d: dict[str, Any],
        uid: str,
        study: dict[str, Any],
        is_read: bool,
        keys: list[str],
        senders: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """One entry of my list: a study of a bucket I hold (via which of my keys)."""
        if d["anonymize"]:  # as the study store shows it (PS3.15 Annex E)
            study, shown_uid = anonymized_study(
                self.settings.anonymization_secret, d["_id"], uid, study
            )
        else:
            shown_uid = uid
        via = [
            r
            for r in d["recipients"]
            if (r["recipient_id"] in keys or r.get("user_id") in keys) and not r["revoked"]
        ]
        return {
            "bucket_id": d["_id"],
            "study_uid": shown_uid,
            "position": d["study_uids"].index(uid) + 1 if uid in d["study_uids"] else 0,
            "description": study.get("description"),
            "study_date": study.get("study_date"),
            "patient_initials": "Anonymous" if d["anonymize"] else study.get("patient_initials"),
            "sender": {"id": d["sender_id"], "name": senders.get(d["sender_id"], {}).get("name")},
            "via": [{"id": r["recipient_id"], "kind": r["kind"]} for r in via],
            "read": is_read,
            "message_state": None if not d["message"] else ("read" if is_read else "unread"),
            **{name: d[name] for name in SHOWN_OPTIONS},
            "locked": d["locked"],
            "shared_at": d["shared_at"],
        }

    async def sent_by_me(
        self,
        principal: AccessClaims,
        limit: int,
        offset: int,
        *,
        status: str | None = None,
        locked: bool | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """ "My shares": the buckets the caller sent (in a state, locked or not), the latest
        first, each with its studies (as its confirmation lists them) and its recipients'
        names."""
        docs, total = await self.readmodel.sent_by(
            principal.sub, limit, offset, status=status, locked=locked
        )
        return await self._listed(docs), total

    async def locked_buckets(
        self, principal: AccessClaims, department_id: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """The locked buckets of a department, for its admins and the service desk (who may
        unlock them); the service desk may leave the department out (every locked bucket)."""
        desk = principal.has_role("service_desk")
        if department_id is None:
            if not desk:
                raise exceptions.NotAllowedToUnlock(
                    "name your department: only the service desk lists every locked bucket"
                )
            departments = None
        elif desk or department_id in principal.admin_of:
            departments = [department_id]
        else:
            raise exceptions.NotAllowedToUnlock(
                "only the service desk or an admin of the department lists its locked buckets"
            )
        docs, total = await self.readmodel.locked_of(departments, limit, offset)
        return await self._listed(docs), total

    async def _listed(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Buckets with their studies (as their confirmations list them) and recipients' names."""
        uids = sorted({u for d in docs for u in d["study_uids"]})
        inputs = [
            RecipientInput(r["kind"], r["recipient_id"])
            for d in docs
            for r in d["recipients"]
            if r["kind"] != "email"
        ]
        pairs = {
            (account, uid)
            for d in docs
            for r in d["recipients"]
            if (account := _account(r))
            for uid in d["study_uids"]
        }
        studies, known, opened = await asyncio.gather(
            self.directory.studies(uids),
            self._directory_facts(inputs),
            self.directory.opened_by(pairs),
        )
        names = names_of(known)
        listed = []
        for d in docs:
            recipients = [
                {
                    **r,
                    "name": names.get(r["recipient_id"]) or r.get("email"),
                    "opened": _opened(r, d["study_uids"], opened),
                }
                for r in d["recipients"]
            ]
            listed.append(
                {
                    **d,
                    "studies": study_lines(d["study_uids"], studies, d["anonymize"]),
                    "recipients": recipients,
                    "message_state": message_state(d, recipients),
                }
            )
        return listed


def _account(recipient: dict[str, Any]) -> str | None:
    """The account whose openings count for a recipient: a user's own, or the one that
    accepted an invitation by e-mail (a group's or department's members are many)."""
    return recipient["recipient_id"] if recipient["kind"] == "user" else recipient.get("user_id")


def _opened(
    recipient: dict[str, Any], study_uids: list[str], opened: set[tuple[str, str]]
) -> bool | None:
    """Whether the recipient's account opened one of the studies; None without one account."""
    account = _account(recipient)
    if account is None:
        return None
    return any((account, uid) in opened for uid in study_uids)


def message_state(bucket: dict[str, Any], recipients: list[dict[str, Any]]) -> str | None:
    """The sender's "Message" label: none without a message; read (green) once a recipient
    has opened the study, unread (red) before."""
    if not bucket.get("message"):
        return None
    return "read" if any(r["opened"] for r in recipients) else "unread"


def newest_first(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bucket views without duplicates, the latest shared first."""
    unique = {d["_id"]: d for d in docs}.values()
    return sorted(
        unique, key=lambda d: (d["shared_at"] is not None, d["shared_at"] or 0), reverse=True
    )
