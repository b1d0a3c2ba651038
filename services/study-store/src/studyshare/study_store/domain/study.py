"""The Study aggregate (id = Study Instance UID) and the Transfer aggregate (`trf_...`).

A study is received once (`StudyReceived`, on its first instances), grows by batches
(`StudyInstancesAdded`), and stores each share message once (`StudyMessageStored`).
A transfer is one destination for one study: requested, attempted (failures with backoff),
forwarded; a resend starts a new round of attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from studyshare.contracts.events.study import (
    StudyForwarded,
    StudyForwardFailed,
    StudyForwardRequested,
    StudyInstancesAdded,
    StudyMessageStored,
    StudyReceived,
)
from studyshare.plumbing.domain import Aggregate, applies
from studyshare.study_store.domain.exceptions import (
    StudyNotFound,
    TransferInProgress,
    TransferNotFound,
)


@dataclass(frozen=True)
class ReceivedBatch:
    """New instances of one study from one upload (STOW request or C-STORE association)."""

    study_uid: str
    series_uids: tuple[str, ...]
    instance_count: int
    department_id: str | None
    owner_id: str | None
    upload_batch_id: str
    received_via: Literal["stow-rs", "c-store", "message"]
    patient_id: str | None = None
    patient_initials: str = ""
    patient_birth_date: date | None = None
    description: str = ""
    study_date: date | None = None
    accession_number: str | None = None
    modalities: tuple[str, ...] = ()


class Study(Aggregate):
    aggregate_type = "Study"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.department_id: str | None = None
        self.owner_id: str | None = None
        self.series_uids: set[str] = set()
        self.instance_count = 0
        self.message_buckets: dict[str, str] = {}

    # folds
    @applies
    def when_study_received(self, event: StudyReceived) -> None:
        self.department_id = event.department_id
        self.owner_id = event.owner_id
        self.instance_count = event.instance_count

    @applies
    def when_study_instances_added(self, event: StudyInstancesAdded) -> None:
        self.series_uids.update(event.series_uids)
        self.instance_count += event.instance_count

    @applies
    def when_study_message_stored(self, event: StudyMessageStored) -> None:
        self.message_buckets[event.bucket_id] = event.series_uid

    # commands
    def receive(self, batch: ReceivedBatch) -> Sequence[StudyReceived | StudyInstancesAdded]:
        """The first batch of a study is its arrival; later ones add instances."""
        if batch.instance_count <= 0:
            return []
        if not self.exists:
            return [
                StudyReceived(
                    study_uid=self.id,
                    department_id=batch.department_id,
                    owner_id=batch.owner_id,
                    upload_batch_id=batch.upload_batch_id,
                    patient_id=batch.patient_id,
                    patient_initials=batch.patient_initials,
                    patient_birth_date=batch.patient_birth_date,
                    description=batch.description,
                    study_date=batch.study_date,
                    accession_number=batch.accession_number,
                    modalities=batch.modalities,
                    series_count=len(batch.series_uids),
                    instance_count=batch.instance_count,
                    received_via=batch.received_via,
                )
            ]
        return [
            StudyInstancesAdded(
                study_uid=self.id,
                series_uids=batch.series_uids,
                instance_count=batch.instance_count,
            )
        ]

    def store_message(self, bucket_id: str, series_uid: str) -> Sequence[StudyMessageStored]:
        """Once per bucket: a redelivered share stores nothing new."""
        if not self.exists:
            raise StudyNotFound(f"study {self.id} is not in the store")
        if bucket_id in self.message_buckets:
            return []
        return [StudyMessageStored(study_uid=self.id, bucket_id=bucket_id, series_uid=series_uid)]


TransferState = Literal["pending", "retrying", "forwarded", "failed"]


class Transfer(Aggregate):
    """One destination (PACS or RSW) for one study, across attempts and resends."""

    aggregate_type = "Transfer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.study_uid = ""
        self.destination_kind: Literal["pacs", "rsw"] = "pacs"
        self.destination_id = ""
        self.state: TransferState = "pending"
        self.round = 0
        self.attempts = 0
        self.last_error: str | None = None
        self.anonymous_number: str | None = None
        self.bucket_id: str | None = None
        self.requested_by: str | None = None
        self.include_report = True

    @applies
    def when_study_forward_requested(self, event: StudyForwardRequested) -> None:
        self.study_uid = event.study_uid
        self.destination_kind = event.destination_kind
        self.destination_id = event.destination_id
        if event.trigger != "resend":
            self.anonymous_number = event.anonymous_number
            self.bucket_id = event.bucket_id
            self.requested_by = event.requested_by
            self.include_report = event.include_report
        self.state = "pending"
        self.round += 1
        self.attempts = 0

    @applies
    def when_study_forward_failed(self, event: StudyForwardFailed) -> None:
        self.attempts = event.attempts
        self.last_error = event.reason
        self.state = "failed" if event.final else "retrying"

    @applies
    def when_study_forwarded(self, event: StudyForwarded) -> None:
        self.attempts = event.attempts
        self.last_error = None
        self.state = "forwarded"

    @property
    def finished(self) -> bool:
        return self.state in ("forwarded", "failed")

    def request(
        self,
        *,
        study_uid: str,
        destination_kind: Literal["pacs", "rsw"],
        destination_id: str,
        trigger: Literal["manual", "share", "arrival"],
        requested_by: str | None,
        bucket_id: str | None = None,
        anonymous_number: str | None = None,
        include_report: bool = True,
    ) -> Sequence[StudyForwardRequested]:
        """A new transfer; asking again for an existing one (a redelivery) adds nothing.
        `include_report`: whether the forwarder may read the report (else only images go)."""
        if self.exists:
            return []
        return [
            StudyForwardRequested(
                transfer_id=self.id,
                study_uid=study_uid,
                destination_kind=destination_kind,
                destination_id=destination_id,
                trigger=trigger,
                requested_by=requested_by,
                bucket_id=bucket_id,
                anonymous_number=anonymous_number,
                include_report=include_report and anonymous_number is None,
            )
        ]

    def resend(self, requested_by: str | None) -> Sequence[StudyForwardRequested]:
        if not self.exists:
            raise TransferNotFound(f"transfer {self.id} does not exist")
        if not self.finished:
            raise TransferInProgress(f"transfer {self.id} is still {self.state}")
        return [
            StudyForwardRequested(
                transfer_id=self.id,
                study_uid=self.study_uid,
                destination_kind=self.destination_kind,
                destination_id=self.destination_id,
                trigger="resend",
                requested_by=requested_by,
                bucket_id=self.bucket_id,
                anonymous_number=self.anonymous_number,
                include_report=self.include_report,
            )
        ]

    def attempt_failed(self, reason: str, max_attempts: int) -> Sequence[StudyForwardFailed]:
        attempts = self.attempts + 1
        return [
            StudyForwardFailed(
                transfer_id=self.id,
                study_uid=self.study_uid,
                destination_kind=self.destination_kind,
                destination_id=self.destination_id,
                attempts=attempts,
                reason=reason[:500],
                final=attempts >= max_attempts,
                requested_by=self.requested_by,
            )
        ]

    def forwarded(self, instance_count: int) -> Sequence[StudyForwarded]:
        return [
            StudyForwarded(
                transfer_id=self.id,
                study_uid=self.study_uid,
                destination_kind=self.destination_kind,
                destination_id=self.destination_id,
                attempts=self.attempts + 1,
                requested_by=self.requested_by,
                instance_count=instance_count,
            )
        ]
