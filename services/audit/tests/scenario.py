"""A study's life as envelopes, the way the other services' relays would publish it."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import identity, share, study
from studyshare.contracts.events.base import DomainEvent
from studyshare.plumbing.reference_ids import reference_id, seal_number

T0 = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
#: the secret study store and identity name reference numbers under (audit never has it)
REFERENCE_SECRET = "test-reference-number-secret"


class Story:
    """Appends events with per-aggregate versions and a clock that ticks one minute each."""

    def __init__(self, start: datetime = T0, tag: str | None = None) -> None:
        self.now = start
        self.tag = tag or uuid.uuid4().hex[:8]
        self.versions: dict[str, int] = defaultdict(int)
        self.events: list[EventEnvelope] = []

    def id(self, prefix: str) -> str:
        return f"{prefix}_{self.tag}"

    def at(self, minutes: float) -> datetime:
        return self.now + timedelta(minutes=minutes)

    def add(
        self,
        event: DomainEvent,
        aggregate_id: str,
        actor: str | None = None,
        *,
        step: float = 1,
        kind: str = "user",
        ip: str | None = None,
    ) -> EventEnvelope:
        self.now += timedelta(minutes=step)
        self.versions[aggregate_id] += 1
        envelope = EventEnvelope(
            event_type=event.event_type,
            schema_version=event.schema_version,
            aggregate_type=event.aggregate_type,
            aggregate_id=aggregate_id,
            aggregate_version=self.versions[aggregate_id],
            occurred_at=self.now,
            actor=Actor(kind=kind, id=actor, ip=ip) if actor else Actor(kind="system"),
            correlation_id=str(uuid.uuid4()),
            payload=event.model_dump(mode="json"),
        )
        self.events.append(envelope)
        return envelope

    def raw(self, event_type: str, aggregate_type: str, aggregate_id: str, **payload: Any):
        """An event type this code base does not know (yet)."""
        self.now += timedelta(minutes=1)
        self.versions[aggregate_id] += 1
        envelope = EventEnvelope(
            event_type=event_type,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            aggregate_version=self.versions[aggregate_id],
            occurred_at=self.now,
            correlation_id=str(uuid.uuid4()),
            payload=payload,
        )
        self.events.append(envelope)
        return envelope


def full_story(tag: str | None = None) -> tuple[Story, dict[str, Any]]:
    """A study received, shared, viewed, locked, unlocked, revoked, broken into, forwarded..."""
    s = Story(tag=tag)
    uid = f"1.2.826.0.1.{int(s.tag, 16)}"
    ids = {
        "uid": uid,
        "dep": s.id("dep"),
        "other_dep": s.id("dep_other"),
        "owner": s.id("usr_owner"),
        "sender": s.id("usr_sender"),
        "alice": s.id("usr_alice"),
        "bob": s.id("usr_bob"),
        "carol": s.id("usr_carol"),
        "dave": s.id("usr_dave"),
        "glass": s.id("usr_glass"),
        "group": s.id("grp"),
        "bucket": s.id("bkt"),
        "bucket2": s.id("bkt2"),
        "ref": f"R{s.tag}7",  # ten letters and digits: the default complexity rule
        "patient": f"PAT-{s.tag}",
        "transfer": s.id("trf"),
        "mallory_ip": "203.0.113.9",
    }
    # the number travels only as its reference id (and sealed for the study store)
    ids["ref_id"] = reference_id(ids["ref"], REFERENCE_SECRET)
    i = ids
    s.add(
        identity.UserRegistered(
            user_id=i["carol"],
            username=f"carol{s.tag}",
            first_name="C",
            last_name="D",
            roles=("physician",),
            department_ids=(i["dep"],),
            mobile="+32470000000",
        ),
        i["carol"],
        "usr_admin",
    )
    for department in (i["dep"], i["other_dep"]):  # two departments of one hospital
        s.add(
            identity.DepartmentCreated(
                department_id=department,
                name=f"Radiology {department}",
                institution_id=s.id("ins_hospital"),
                created_by="usr_root",
            ),
            department,
            "usr_root",
            step=0,
        )
    s.add(
        identity.UserRegistered(
            user_id=i["glass"],
            username=f"glass{s.tag}",
            first_name="G",
            last_name="L",
            roles=("physician",),
            department_ids=(i["other_dep"],),
        ),
        i["glass"],
        "usr_admin",
        step=0,
    )  # the emergency physician of the hospital's other department (breaks the glass at 20)
    s.add(
        identity.GroupCreated(
            group_id=i["group"],
            name="Practice",
            primary_contact_id=i["bob"],
            member_ids=(i["bob"],),
            created_by=i["sender"],
        ),
        i["group"],
        i["sender"],
    )
    s.add(
        study.StudyReceived(
            study_uid=uid,
            department_id=i["dep"],
            owner_id=i["owner"],
            patient_id=i["patient"],
            patient_initials="J.D.",
            modalities=("CT",),
            series_count=2,
            instance_count=40,
        ),
        uid,
        "system-dicom",
        kind="system",
    )
    s.add(
        study.ReferenceNumberIssued(
            reference_id=i["ref_id"],
            number_shape=study.ReferenceNumberShape.of(i["ref"]),
            sealed_number=seal_number(i["ref"], i["ref_id"], REFERENCE_SECRET),
            study_uid=uid,
            department_id=i["dep"],
            valid_from=s.at(0),
            valid_to=s.at(60 * 24 * 90),
            pincode_required=True,
            patient_mobile="+32471111111",
            issued_by=i["owner"],
        ),
        f"ref_{i['ref_id']}",
        i["owner"],
    )  # 4
    s.add(
        share.StudyShared(
            bucket_id=i["bucket"],
            study_uids=(uid,),
            sender_id=i["sender"],
            sending_department_id=i["dep"],
            access_level="images_report_read",
            reason="second opinion",
            language="en",
            valid_until=s.at(60 * 24 * 30),
            two_factor=True,
            recipients=(
                share.RecipientRef(recipient_id=i["alice"], kind="user"),
                share.RecipientRef(recipient_id=i["group"], kind="group"),
            ),
        ),
        i["bucket"],
        i["sender"],
    )  # 5 -> share at T0+5
    s.add(
        identity.GroupMemberAdded(group_id=i["group"], user_id=i["dave"], added_by=i["bob"]),
        i["group"],
        i["bob"],
    )  # 6
    s.add(
        study.StudyAccessed(
            study_uid=uid,
            action="view",
            via="grant",
            user_id=i["alice"],
            bucket_id=i["bucket"],
            count=3,
        ),
        s.id("acc1"),
        i["alice"],
    )  # 7
    s.add(
        study.StudyAccessed(
            study_uid=uid,
            action="report_read",
            via="grant",
            user_id=i["alice"],
            bucket_id=i["bucket"],
        ),
        s.id("acc2"),
        i["alice"],
    )  # 8
    s.add(
        study.ReportUpdated(study_uid=uid, report_version=2, format="text", author_id=i["owner"]),
        uid,
        i["owner"],
    )  # 9
    dl = s.add(
        study.StudyDownloaded(study_uid=uid, via="owner", user_id=i["owner"]),
        s.id("acc3"),
        i["owner"],
    )  # 10
    s.add(
        study.StudyForwarded(
            transfer_id=i["transfer"],
            study_uid=uid,
            destination_kind="pacs",
            destination_id="PACS_A",
            attempts=1,
            requested_by=i["owner"],
            instance_count=40,
        ),
        i["transfer"],
        "system-forwarder",
        kind="system",
    )  # 11
    for n in range(1, 6):  # 12..16: five wrong OTPs within five minutes
        s.add(
            share.OTPFailed(bucket_id=i["bucket"], recipient_id=i["alice"], consecutive_failures=n),
            i["bucket"],
            i["alice"],
        )
    s.add(
        share.BucketLocked(
            bucket_id=i["bucket"],
            recipient_id=i["alice"],
            failed_attempts=5,
            sending_department_id=i["dep"],
        ),
        i["bucket"],
        "system-share",
        kind="system",
    )  # 17: locked
    s.add(
        share.BucketUnlocked(
            bucket_id=i["bucket"], unlocked_by="usr_desk", unlocked_as="service_desk"
        ),
        i["bucket"],
        "usr_desk",
    )  # 18: unlocked
    s.add(
        share.AccessRevoked(
            bucket_id=i["bucket"],
            scope="recipient",
            recipient_id=i["alice"],
            revoked_by=i["sender"],
        ),
        i["bucket"],
        i["sender"],
    )  # 19: alice revoked
    s.add(
        study.BreakTheGlassUsed(
            study_uid=uid,
            user_id=i["glass"],
            reason="emergency: patient unconscious",
            department_id=i["other_dep"],
            valid_until=s.at(60 + 1),
        ),
        uid,
        i["glass"],
    )  # 20: break the glass, valid one hour
    s.add(
        study.PincodeSet(
            reference_id=i["ref_id"],
            study_uid=uid,
            sealed_pincode="SEALED-PINCODE",
            set_by=i["owner"],
        ),
        f"ref_{i['ref_id']}",
        i["owner"],
    )  # 21
    for n in range(1, 3):  # 22, 23
        s.add(
            identity.PincodeFailed(reference_id=i["ref_id"], study_uid=uid, failed_attempts=n),
            f"pat_{i['ref_id']}",
            f"pat_{i['ref_id']}",
            kind="patient",
        )
    s.add(
        identity.PatientLoginSucceeded(
            reference_id=i["ref_id"], study_uid=uid, session_id="ses_1", source_ip="198.51.100.7"
        ),
        f"pat_{i['ref_id']}",
        f"pat_{i['ref_id']}",
        kind="patient",
    )  # 24
    s.add(
        share.StudyShared(
            bucket_id=i["bucket2"],
            study_uids=(uid,),
            sender_id=i["owner"],
            access_level="images_report_write",
            reason="colleague",
            language="nl",
            unlimited=True,
            recipients=(share.RecipientRef(recipient_id=i["carol"], kind="user"),),
        ),
        i["bucket2"],
        i["owner"],
    )  # 25
    s.add(
        share.AccessRevoked(bucket_id=i["bucket2"], scope="bucket", revoked_by=i["owner"]),
        i["bucket2"],
        i["owner"],
    )  # 26
    for n in range(5):  # 27..31 five failed logins of alice's account in 5 minutes
        s.add(
            identity.LoginFailed(
                attempt_id=s.id(f"att{n}"),
                user_id=i["alice"],
                reason="bad_credentials",
                consecutive_failures=n + 1,
                source_ip=i["mallory_ip"],
            ),
            s.id(f"att{n}"),
            None,
            ip=i["mallory_ip"],
        )
    s.raw(
        "BucketLabelChanged",
        "Bucket",
        i["bucket"],
        bucket_id=i["bucket"],
        note="not yet in the catalogue",
    )  # 32: unknown to this code base, stored generically (no study uid: bucket's studies)
    ids["admin"] = s.id("usr_depadmin")
    s.add(
        identity.DepartmentAdminAssigned(
            department_id=i["dep"], user_id=ids["admin"], assigned_by="usr_root"
        ),
        i["dep"],
        "usr_root",
    )  # 33: a department admin, member of the sending department from now on
    s.add(
        identity.UserRolesChanged(
            user_id=ids["admin"],
            roles=("department_admin",),
            department_ids=(i["dep"],),
            admin_of=(i["dep"],),
            changed_by="usr_root",
        ),
        ids["admin"],
        "usr_root",
        step=0,
    )  # 33b: as identity assigns an admin: the user's roles follow the department's event
    s.add(
        share.OTPRequested(
            bucket_id=i["bucket"],
            recipient_id=i["alice"],
            otp_id="otp_1",
            sealed_code="SEALED-SECRET-CODE",
            expires_at=s.at(10),
        ),
        i["bucket"],
        i["alice"],
    )  # 34
    s.add(
        study.StudyForwardFailed(
            transfer_id=s.id("trf_rsw"),
            study_uid=uid,
            destination_kind="rsw",
            destination_id="RSW",
            attempts=2,
            reason="timeout",
            requested_by=i["owner"],
        ),
        s.id("trf_rsw"),
        "system-forwarder",
        kind="system",
    )  # 35: the regional network did not answer yet
    s.add(
        identity.PatientLoginFailed(
            reference_id=i["ref_id"],
            reason="birth_date",
            failed_attempts=1,
            source_ip="198.51.100.7",
        ),
        f"pat_{i['ref_id']}",
        f"pat_{i['ref_id']}",
        kind="patient",
    )  # 36: no study uid in the event: found through its reference id
    s.add(
        study.StudyAccessed(
            study_uid=uid, action="view", via="reference_number", reference_id=i["ref_id"]
        ),
        s.id("acc4"),
        f"pat_{i['ref_id']}",
        kind="patient",
    )  # 37: the patient opens their study (the token names the reference by its id)
    ids["download_correlation"] = dl.correlation_id
    return s, ids
