"""One access policy, two readers: the study store's decision at T and audit's answer to "who
could open this study at T" agree, for generated histories of shares, re-shares, revocations,
locks, expiries, invitations, group and department changes, break-the-glass and reference
numbers (issue 18, point 3).

Each side is fed the same envelopes the way it is in production: the study store's access
model folds them into its read model documents (`read_models.fold`, as `apply_local` does) and
decides a token of each user; audit turns them into log entries (`build_entry`) and folds the
study's entries and the identity entries up to T. A user "could open" the study when the study
store lets them in, or would once they enter the code of a two-factor bucket.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from studyshare.audit.domain.access import Directory, StudyAccessFold, access_at
from studyshare.audit.domain.entries import build_entry
from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import identity, share, study
from studyshare.contracts.events.base import DomainEvent
from studyshare.contracts.tokens import AccessClaims
from studyshare.study_store.adapters.access_documents import InMemoryAccessDocuments
from studyshare.study_store.adapters.access_model import AccessModel

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
UID = "1.2.826.0.1.3680043.9.18.3"
USERS = ("usr_1", "usr_2", "usr_3", "usr_4", "usr_5")
GROUPS = ("grp_1", "grp_2")
DEPARTMENTS = ("dep_a", "dep_b", "dep_c")  # dep_a sends the study; dep_a, dep_b: one hospital
ROLES = ((), ("physician",), ("department_staff",), ("department_admin",), ("service_desk",))
ROLES += (("auditor",),)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@dataclass
class History:
    """Envelopes with per-aggregate versions, one minute apart, and what they created."""

    envelopes: list[EventEnvelope] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    buckets: list[share.StudyShared] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    boundaries: set[datetime] = field(default_factory=set)
    environments: dict[str, str] = field(default_factory=dict)
    """user -> the environment their tokens name (identity's, as at registration)"""

    def __repr__(self) -> str:
        lines = (
            f"  {e.occurred_at - T0} {e.event_type} {e.aggregate_id} "
            + ", ".join(f"{k}={v}" for k, v in e.payload.items() if v not in (None, [], (), ""))
            for e in self.envelopes
        )
        return "History(\n" + "\n".join(lines) + "\n)"

    def add(self, event: DomainEvent, aggregate_id: str, minute: float) -> None:
        self.versions[aggregate_id] += 1
        self.envelopes.append(
            EventEnvelope(
                event_type=event.event_type,
                schema_version=event.schema_version,
                aggregate_type=event.aggregate_type,
                aggregate_id=aggregate_id,
                aggregate_version=self.versions[aggregate_id],
                occurred_at=at(minute),
                actor=Actor(kind="user", id="usr_root"),
                correlation_id=str(uuid.uuid4()),
                payload=event.model_dump(mode="json"),
            )
        )


# -- generating histories ---------------------------------------------------------------------

users = st.sampled_from(USERS)
roles = st.sampled_from(ROLES)
departments = st.lists(st.sampled_from(DEPARTMENTS), max_size=2, unique=True).map(tuple)
recipient = st.one_of(
    st.tuples(st.just("user"), users),
    st.tuples(st.just("group"), st.sampled_from(GROUPS)),
    st.tuples(st.just("department"), st.sampled_from(DEPARTMENTS)),
    st.tuples(st.just("email"), st.sampled_from(("eml_1", "eml_2"))),
)
index = st.integers(min_value=0, max_value=2)
share_step = st.tuples(
    st.just("share"),
    users,
    st.lists(recipient, min_size=1, max_size=3, unique=True),
    st.booleans(),  # two-factor
    st.one_of(st.none(), st.integers(min_value=1, max_value=12)),  # minutes; None: unlimited
    st.one_of(st.none(), index, index),  # the parent of a re-share
)
bucket_step = st.one_of(
    st.tuples(
        st.sampled_from(("revoke_bucket", "remove_study", "lock", "unlock", "expire")), index
    ),
    st.tuples(st.just("revoke_recipient"), index, st.integers(min_value=0, max_value=2)),
    st.tuples(st.just("accept"), index, users),
)
identity_step = st.one_of(
    st.tuples(
        st.sampled_from(("join", "leave", "lapse", "confirm")), st.sampled_from(GROUPS), users
    ),
    st.tuples(st.just("roles"), users, roles, departments),
    st.tuples(st.just("deactivate"), users),
    st.tuples(st.just("policy"), st.sampled_from(("institution", "environment", "nobody"))),
)
study_step = st.one_of(
    st.tuples(st.just("glass"), users, st.integers(min_value=1, max_value=6)),
    st.tuples(st.just("reference"), st.integers(0, 3), st.integers(1, 8)),
    st.tuples(st.just("revoke_reference"), index),
)
# shares and what happens to buckets twice as often as the rest
action = st.one_of(share_step, bucket_step, share_step, bucket_step, identity_step, study_step)


@st.composite
def histories(draw: st.DrawFn) -> History:
    h = History()
    for department in DEPARTMENTS:
        institution = "ins_2" if department == "dep_c" else "ins_1"
        h.add(
            identity.DepartmentCreated(
                department_id=department,
                name=department,
                institution_id=institution,
                country="nl" if department == "dep_c" else "be",
                created_by="usr_root",
            ),
            department,
            0,
        )
    for user in USERS:
        h.environments[user] = draw(st.sampled_from(("be", "nl")))
        h.add(
            identity.UserRegistered(
                user_id=user,
                username=user,
                first_name="F",
                last_name=user,
                roles=draw(roles),
                department_ids=draw(departments),
                environment=h.environments[user],
            ),
            user,
            0,
        )
    for group in GROUPS:
        members = draw(st.lists(users, min_size=1, max_size=3, unique=True))
        h.add(
            identity.GroupCreated(
                group_id=group,
                name=group,
                primary_contact_id=members[0],
                member_ids=tuple(members),
                created_by="usr_root",
            ),
            group,
            0,
        )
    owner = draw(st.one_of(st.none(), users))
    h.add(study.StudyReceived(study_uid=UID, department_id="dep_a", owner_id=owner), UID, 0)
    first = draw(st.lists(share_step, min_size=1, max_size=3))  # something to act on
    steps = draw(st.lists(action, min_size=3, max_size=16))
    for minute, step in enumerate([*first, *steps], start=1):
        apply(h, step, minute)
    return h


def apply(h: History, step: tuple[Any, ...], minute: int) -> None:
    """One generated step as the event the owning service would emit (a step that names a
    bucket or reference number that does not exist is skipped)."""
    kind = step[0]
    if kind == "share":
        _, sender, recipients, two_factor, minutes, parent = step
        parent_id = (
            h.buckets[parent].bucket_id if parent is not None and parent < len(h.buckets) else None
        )
        bucket_id = f"bkt_{len(h.buckets)}"
        until = at(minute + minutes) if minutes else None
        event = share.StudyShared(
            bucket_id=bucket_id,
            study_uids=(UID,),
            recipients=tuple(share.RecipientRef(recipient_id=r, kind=k) for k, r in recipients),
            sender_id=sender,
            access_level="images_report_read",
            reason="second opinion",
            language="en",
            two_factor=two_factor,
            valid_until=until,
            unlimited=until is None,
            parent_bucket_id=parent_id,
        )
        if until is not None:
            h.boundaries.add(until)
        h.buckets.append(event)
        h.add(event, bucket_id, minute)
        return
    if kind in ("join", "leave", "lapse", "confirm"):
        _, group, user = step
        event = {
            "join": identity.GroupMemberAdded(group_id=group, user_id=user, added_by="usr_root"),
            "leave": identity.GroupMemberRemoved(
                group_id=group, user_id=user, removed_by="usr_root"
            ),
            "lapse": identity.GroupMembershipLapsed(group_id=group, user_id=user, due_since=at(0)),
            "confirm": identity.GroupMembershipConfirmed(
                group_id=group, user_id=user, confirmed_until=at(60 * 24 * 90)
            ),
        }[kind]
        h.add(event, group, minute)
        return
    if kind == "roles":
        _, user, new_roles, new_departments = step
        admin_of = new_departments if "department_admin" in new_roles else ()
        h.add(
            identity.UserRolesChanged(
                user_id=user,
                roles=new_roles,
                department_ids=new_departments,
                admin_of=admin_of,
                changed_by="usr_root",
            ),
            user,
            minute,
        )
        return
    if kind == "deactivate":
        h.add(identity.UserDeactivated(user_id=step[1], deactivated_by="usr_root"), step[1], minute)
        return
    if kind == "glass":
        _, user, minutes = step
        until = at(minute + minutes)
        h.boundaries.add(until)
        event = study.BreakTheGlassUsed(study_uid=UID, user_id=user, reason="er", valid_until=until)
        h.add(event, f"btg_{minute}", minute)
        return
    if kind == "policy":
        h.add(
            identity.DepartmentPolicySet(
                department_id="dep_a", set_by="usr_root", break_the_glass=step[1]
            ),
            "dep_a",
            minute,
        )
        return
    if kind == "reference":
        _, starts, lasts = step
        number = f"REF{minute:04d}X7" if starts % 2 else f"R{minute}"  # complies, or too short
        valid_from, valid_to = at(minute + starts), at(minute + starts + lasts)
        h.boundaries |= {valid_from, valid_to}
        h.references.append(number)
        h.add(
            study.ReferenceNumberIssued(
                reference_id=number,
                number_shape=study.ReferenceNumberShape.of(number),
                study_uid=UID,
                department_id="dep_a",
                valid_from=valid_from,
                valid_to=valid_to,
            ),
            f"ref_{number}",
            minute,
        )
        return
    if kind == "revoke_reference":
        if step[1] < len(h.references):
            number = h.references[step[1]]
            h.add(
                study.ReferenceNumberRevoked(
                    reference_id=number, study_uid=UID, revoked_by="usr_root"
                ),
                f"ref_{number}",
                minute,
            )
        return
    if step[1] >= len(h.buckets):
        return
    bucket = h.buckets[step[1]]
    b = bucket.bucket_id
    events: dict[str, Any] = {
        "revoke_bucket": lambda: share.AccessRevoked(
            bucket_id=b, scope="bucket", revoked_by="usr_root"
        ),
        "remove_study": lambda: share.AccessRevoked(
            bucket_id=b, scope="study", study_uid=UID, revoked_by="usr_root"
        ),
        "lock": lambda: share.BucketLocked(bucket_id=b, recipient_id="x", failed_attempts=5),
        "unlock": lambda: share.BucketUnlocked(
            bucket_id=b, unlocked_by="usr_root", unlocked_as="service_desk"
        ),
        "expire": lambda: share.BucketExpired(bucket_id=b, valid_until=at(minute)),
        "revoke_recipient": lambda: share.AccessRevoked(
            bucket_id=b,
            scope="recipient",
            recipient_id=bucket.recipients[step[2] % len(bucket.recipients)].recipient_id,
            revoked_by="usr_root",
        ),
        "accept": lambda: share.InvitationAccepted(
            bucket_id=b,
            recipient_id=next((r.recipient_id for r in bucket.recipients if r.kind == "email"), ""),
            user_id=step[2],
        ),
    }
    if kind == "accept" and not any(r.kind == "email" for r in bucket.recipients):
        return
    h.add(events[kind](), b, minute)


# -- the two readers --------------------------------------------------------------------------


def study_store_could_open(h: History, t: datetime) -> set[str]:
    """Users and reference numbers the study store's access model lets in at `t` (a pending
    two-factor code counts as entered), over the read model the worker's fold writes."""
    return asyncio.run(_study_store_could_open(h, t))


async def _study_store_could_open(h: History, t: datetime) -> set[str]:
    documents = InMemoryAccessDocuments()
    documents.apply(e for e in h.envelopes if e.occurred_at <= t)
    model = AccessModel(documents, clock=lambda: t)
    model.lease.renew(time.monotonic())
    found = set()
    for user in USERS:
        known = documents.docs[f"user:{user}"]
        claims = AccessClaims(
            sub=user,
            roles=tuple(known.get("roles", ())),
            department_ids=tuple(known.get("department_ids", ())),
            admin_of=tuple(known.get("admin_of", ())),
            environment=h.environments[user],
            sid="sid_1",
            iat=0,
            exp=2**40,
        )
        decision = await model.decide(claims, UID)
        if decision.images or decision.refusal == "two_factor_required":
            found.add(user)
    for number in h.references:
        patient = AccessClaims(
            sub=f"pat_{number}",
            kind="patient",
            study_uid=UID,
            reference_id=number,
            iat=0,
            exp=2**40,
        )
        if (await model.decide(patient, UID)).images:
            found.add(f"ref:{number}")
    return found


def audit_could_open(h: History, t: datetime) -> set[str]:
    """Users and reference numbers audit says could open the study at `t`."""
    entries = [build_entry(e, [UID] if e.aggregate_type == "Bucket" else []) for e in h.envelopes]
    fold = StudyAccessFold(UID)
    fold.fold([e for e in entries if UID in e["study_uids"]], until=t)
    directory = Directory()
    kinds = ("User", "Group", "Department")
    directory.fold([e for e in entries if e["aggregate_type"] in kinds], until=t)
    rows = access_at(fold, directory, t)
    found = {r["principal_id"] for r in rows if r["principal_kind"] in ("user", "patient")}
    if any(r["principal_kind"] == "role" and r["principal_id"] == "service_desk" for r in rows):
        found |= {
            u
            for u in USERS
            if "service_desk" in directory.roles.get(u, ()) and u not in directory.deactivated
        }
    return found & ({*USERS} | {f"ref:{n}" for n in h.references})


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(histories())
def test_audit_answers_what_the_study_store_decides_at_every_moment(h: History) -> None:
    last = max(e.occurred_at for e in h.envelopes)
    moments = {
        T0 + timedelta(seconds=30 * k) for k in range(int((last - T0).total_seconds() // 30) + 4)
    }
    moments |= h.boundaries | {b - timedelta(microseconds=1) for b in h.boundaries}
    opened: set[str] = set()
    for t in sorted(moments):
        store, audit = study_store_could_open(h, t), audit_could_open(h, t)
        opened |= store
        assert audit == store, (
            f"at {t - T0}: audit alone {sorted(audit - store)}, "
            f"study store alone {sorted(store - audit)}\n{h!r}"
        )
    event(f"{len(opened)} of the users and numbers opened the study at some moment")
    for kind in (
        "BreakTheGlassUsed",
        "InvitationAccepted",
        "BucketLocked",
        "GroupMembershipLapsed",
    ):
        event(f"{kind}: {any(e.event_type == kind for e in h.envelopes)}")
    event(f"re-share: {any(b.parent_bucket_id for b in h.buckets)}")
