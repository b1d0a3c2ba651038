"""Use cases of the audit API: check the reader, record the read (110101), answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from studyshare.audit.adapters.store import AuditStore, LogFilter
from studyshare.audit.domain import rules
from studyshare.audit.domain.access import Directory, StudyAccessFold, access_at, shown_to
from studyshare.audit.domain.exports import dicom_export, fhir_bundle
from studyshare.audit.domain.patient import openings, people_of
from studyshare.audit.settings import AuditSettings
from studyshare.contracts.tokens import AccessClaims


class AuditQueries:
    def __init__(self, store: AuditStore, settings: AuditSettings) -> None:
        self.store = store
        self.settings = settings

    async def _record(
        self, claims: AccessClaims, route: str, study_uid: str | None, **query: Any
    ) -> None:
        await self.store.record_read(
            actor_id=claims.sub,
            roles=claims.roles,
            route=route,
            query={k: v if isinstance(v, str | int | None) else str(v) for k, v in query.items()},
            study_uid=study_uid,
        )

    async def _study_reader(self, claims: AccessClaims, uid: str) -> None:
        rules.check_reader(claims)
        study = await self.store.study(uid)
        if study is None:
            # Before its first event arrives the study has no department to check against;
            # "not (yet) in the log" says what is true, where a refusal would mislead its admin.
            raise rules.not_in_log(uid)
        rules.check_study_reader(claims, uid, study.get("department_id"))

    async def _known(self, uid: str) -> list[dict[str, Any]]:
        entries = await self.store.study_entries(uid)
        if not entries:
            raise rules.not_in_log(uid)
        return entries

    async def study_log(
        self, claims: AccessClaims, uid: str, f: LogFilter, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        await self._study_reader(claims, uid)
        await self._record(claims, f"/api/audit/studies/{uid}/log", uid, offset=offset)
        return await self.store.page(
            LogFilter(**{**f.__dict__, "study_uids": [uid]}), offset, limit
        )

    async def log(
        self, claims: AccessClaims, f: LogFilter, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        rules.check_reader(claims)
        if not rules.reads_everything(claims):
            mine = await self.store.studies_of_departments(rules.admin_departments(claims))
            allowed = [u for u in (f.study_uids or mine) if u in set(mine)]
            f = LogFilter(**{**f.__dict__, "study_uids": allowed})
        await self._record(
            claims,
            "/api/audit/log",
            None,
            actor=f.actor,
            patient_id=f.patient_id,
            since=f.since,
            until=f.until,
        )
        return await self.store.page(f, offset, limit)

    async def access(self, claims: AccessClaims, uid: str, now: datetime | None = None):
        """The Access tab, as the reader's view allows (`rules.access_view`): the exam owner,
        the sending department's staff and the study's senders read it too (issue 16, 3)."""
        study = await self.store.study(uid)
        if study is None:
            if rules.reads_everything(claims) or rules.admin_departments(claims):
                raise rules.not_in_log(uid)
            # anyone else is refused alike, known study or not: no oracle of which studies exist
            raise rules.NotAmongThoseWhoShare("the Access tab is for those who share the study")
        entries = await self._known(uid)
        fold = StudyAccessFold(uid)
        fold.fold(entries)
        view = rules.access_view(
            claims,
            uid,
            study.get("department_id"),
            study.get("owner_id"),
            (b["sender_id"] for b in fold.buckets.values()),
        )
        await self._record(claims, f"/api/audit/studies/{uid}/access", uid, view=view)
        now = now or datetime.now(UTC)
        tab = shown_to(fold.overview(now), view, claims.sub)
        owner = tab.get("owner_id")
        groups = {g["recipient_id"] for g in tab["groups"]}
        directory = Directory()
        if groups:
            directory.fold(await self.store.directory_entries(groups, ()), until=now)
            for grant in tab["groups"]:
                grant["name"] = directory.names.get(grant["recipient_id"])
                grant["members"] = directory.group_members(grant["recipient_id"])
        if owner:
            directory.fold(await self.store.naming_entries([owner], ()), until=now)
        tab["exam_owner"] = owner and {"user_id": owner, "name": directory.names.get(owner)}
        return {**tab, "as_of": now}

    async def openings(self, claims: AccessClaims, now: datetime | None = None):
        """Who opened the patient's study and when (the patient's token names the study; no
        other study can be asked for). The read is recorded like every read of the log."""
        uid = rules.check_patient(claims)
        await self._record(claims, "/api/audit/my-study/openings", uid)
        now = now or datetime.now(UTC)
        entries = await self.store.study_entries(uid)
        users, groups, departments = people_of(entries)
        directory = Directory()
        directory.fold(await self.store.naming_entries(users, groups), until=now)
        departments |= {d for u in users for d in directory.departments.get(u, ())}
        directory.fold(await self.store.department_entries(departments), until=now)
        return {"study_uid": uid, "as_of": now, "items": openings(entries, uid, directory)}

    async def access_at(self, claims: AccessClaims, uid: str, t: datetime) -> dict[str, Any]:
        await self._study_reader(claims, uid)
        entries = await self._known(uid)
        await self._record(claims, f"/api/audit/studies/{uid}/access-at", uid, t=t)
        fold = StudyAccessFold(uid)
        fold.fold(entries, until=t)
        directory = await self._directory_for(fold, t)
        return {
            "study_uid": uid,
            "at": t,
            "events_considered": fold.seen,
            "could_open": access_at(fold, directory, t),
        }

    async def _directory_for(self, fold: StudyAccessFold, t: datetime) -> Directory:
        """The identity facts the access policy needs of everyone a path could lead through:
        the groups and departments the buckets name, the study's department, and the groups
        of the owner, the recipients, the re-shares' senders and whoever broke the glass."""
        recipients = [r for b in fold.buckets.values() for r in b["recipients"].values()]
        groups = {r["recipient_id"] for r in recipients if r["kind"] == "group"}
        departments = {r["recipient_id"] for r in recipients if r["kind"] == "department"}
        if fold.study.get("department_id"):
            departments.add(fold.study["department_id"])
        people = {
            r.get("user_id") or r["recipient_id"]
            for r in recipients
            if r["kind"] in ("user", "email")
        }
        people |= {b["sender_id"] for b in fold.buckets.values() if b["sender_id"]}
        people |= {b["user_id"] for b in fold.break_the_glass if b["user_id"]}
        people |= {fold.study["owner_id"]} if fold.study.get("owner_id") else set()
        groups |= await self.store.groups_of_people(people)
        found = {e["_id"]: e for e in await self.store.directory_entries(groups, departments)}
        members = {
            e["payload"].get(key)
            for e in found.values()
            for key in ("user_id", "primary_contact_id")
        }
        members |= {m for e in found.values() for m in e["payload"].get("member_ids") or ()}
        members |= {m for e in found.values() for m in e["payload"].get("admin_ids") or ()}
        for e in await self.store.people_entries((people | members) - {None}):
            found[e["_id"]] = e
        glass_users = {b["user_id"] for b in fold.break_the_glass}
        departments |= {r["department_id"] for r in fold.references.values() if r["department_id"]}
        departments |= {
            d
            for e in found.values()
            if e["payload"].get("user_id") in glass_users
            for d in (*e["payload"].get("department_ids", ()), *e["payload"].get("admin_of", ()))
        }
        for e in await self.store.department_policies(departments):
            found[e["_id"]] = e
        directory = Directory()
        directory.fold(found.values(), until=t)
        return directory

    async def alerts(
        self, claims: AccessClaims, since: datetime | None, until: datetime | None
    ) -> dict[str, Any]:
        rules.check_reader(claims)
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=30)
        scope = None
        if not rules.reads_everything(claims):
            scope = await self.store.studies_of_departments(rules.admin_departments(claims))
        await self._record(claims, "/api/audit/alerts", None, since=since, until=until)
        items = await self.store.alerts(
            since,
            until,
            self.settings.burst_threshold,
            timedelta(seconds=self.settings.burst_window_s),
            scope,
        )
        return {"since": since, "until": until, "items": items}

    async def _export_entries(self, claims: AccessClaims, uid: str, route: str):
        await self._study_reader(claims, uid)
        entries = await self._known(uid)
        await self._record(claims, route, uid)
        reads, _ = await self.store.reads(uid, limit=10_000)
        ordered = sorted(entries, key=lambda e: (e["occurred_at"], e.get("seq", 0)))
        patients = await self.store.patients_of([uid])
        return [*ordered, *reads], patients

    async def export_fhir(self, claims: AccessClaims, uid: str) -> dict[str, Any]:
        entries, patients = await self._export_entries(claims, uid, "/api/audit/export/fhir")
        return fhir_bundle(entries, self.settings.audit_source_id, patients)

    async def export_dicom(self, claims: AccessClaims, uid: str) -> bytes:
        entries, patients = await self._export_entries(claims, uid, "/api/audit/export/dicom")
        return dicom_export(entries, self.settings.audit_source_id, patients)

    async def verify(self, claims: AccessClaims) -> dict[str, Any]:
        rules.check_operator(claims)
        await self._record(claims, "/api/audit/verify", None)
        return await verify_report(self.store)

    async def reads(self, claims: AccessClaims, study_uid: str | None, offset: int, limit: int):
        rules.check_operator(claims)
        await self._record(claims, "/api/audit/reads", study_uid)
        return await self.store.reads(study_uid, limit, offset)


async def verify_report(store: AuditStore) -> dict[str, Any]:
    chains = await store.verify()
    report: dict[str, Any] = {
        name: {
            "ok": v.ok,
            "checked": v.checked,
            "problems": [p.__dict__ for p in v.problems[:1000]],
            "head_seq": (v.head or {}).get("seq", 0),
            "head_chain_hash": (v.head or {}).get("chain_hash"),
        }
        for name, v in chains.items()
    }
    report["ok"] = all(v.ok for v in chains.values())
    return report
