"""Reactions of the study store's worker: events that run commands of the service layer.

- `ShareReactions` (share.events): a `StudyShared` with a message stores the message series in
  every study of the bucket; a share with a department of kind pacs forwards the studies there
  (the report only when the share's access level includes it; the share service refused the
  share unless the sharer may download).
- `TransferReactions` (study.events): performs requested transfers (C-STORE with retries) and
  sends each newly received study to its department's RSW endpoint, when it has one; instances
  added later follow it there.
- `ArrivalReactions` (study.events): a reference number on arrival, where the department's
  policy says so.

The reactions talk to the network and the disk, so they are not transactional; each effect is
idempotent through its aggregate (deterministic ids, `StudyMessageStored` once per bucket).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from studyshare.contracts.envelope import Actor, EventEnvelope
from studyshare.contracts.events import payload_of
from studyshare.contracts.events.share import StudyShared
from studyshare.contracts.events.study import (
    StudyForwardRequested,
    StudyInstancesAdded,
    StudyReceived,
)
from studyshare.plumbing.eventstore import EventStore
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.projection import GenerationPointer, Projection, ProjectionContext
from studyshare.study_store.adapters.blobstore import blob_store
from studyshare.study_store.adapters.read_models import ACCESS_PROJECTION
from studyshare.study_store.domain.anonymize import anonymous_number_for
from studyshare.study_store.domain.study import Transfer
from studyshare.study_store.service_layer.forwarding import (
    Forwarding,
    rsw_transfer_id,
    transfer_id_for,
)
from studyshare.study_store.service_layer.ingest import Ingest
from studyshare.study_store.service_layer.messages import store_share_message
from studyshare.study_store.service_layer.reference_numbers import issue_on_arrival
from studyshare.study_store.settings import StudyStoreSettings

log = get_logger(__name__)

#: how late an arrival may still get its reference number (the worker was down, lagging)
ARRIVAL_HORIZON = timedelta(days=1)


class ShareReactions(Projection):
    name = "dicom_share_reactions"
    topics = ("share.events",)
    transactional = False

    def __init__(self, settings: StudyStoreSettings) -> None:
        self.settings = settings

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        blobs = blob_store(self.settings, ctx.db)
        ingest = Ingest(ctx.db, blobs)
        forwarding = Forwarding(ctx.db, blobs, self.settings)
        for envelope in events:
            if envelope.event_type != "StudyShared":
                continue
            shared = payload_of(envelope, StudyShared)
            causation = str(envelope.event_id)
            if shared.message and shared.message.strip():
                for study_uid in shared.study_uids:
                    await store_share_message(
                        ingest,
                        shared.bucket_id,
                        study_uid,
                        shared.message.strip(),
                        shared.sender_id,
                        envelope.occurred_at,
                        causation,
                    )
            for recipient in shared.recipients:
                if recipient.kind != "department":
                    continue
                department = await forwarding.directory.get(recipient.recipient_id)
                if department is None:
                    log.warning("share.department_unknown", department_id=recipient.recipient_id)
                    continue
                if department.get("kind") != "pacs" or not department.get("pacs"):
                    continue
                for study_uid in shared.study_uids:
                    await forwarding.request(
                        study_uid,
                        "pacs",
                        recipient.recipient_id,
                        Actor(kind="user", id=shared.sender_id),
                        trigger="share",
                        transfer_id=transfer_id_for(
                            shared.bucket_id, study_uid, recipient.recipient_id
                        ),
                        bucket_id=shared.bucket_id,
                        anonymous_number=anonymous_number_for(shared.bucket_id, study_uid)
                        if shared.anonymize
                        else None,
                        causation_id=causation,
                        include_report=shared.access_level != "images" and not shared.anonymize,
                    )


class ArrivalReactions(Projection):
    """A study of a department whose policy says `reference_numbers_on_arrival` gets a
    reference number as it arrives (issue 16, point 2); idempotent per study. Arrivals older
    than `ARRIVAL_HORIZON` are left alone, so a replay from offset 0 after a department turned
    the policy on issues nothing for its old studies."""

    name = "reference_numbers_on_arrival"
    topics = ("study.events",)
    transactional = False

    def __init__(self, settings: StudyStoreSettings) -> None:
        self.settings = settings

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        horizon = datetime.now(UTC) - ARRIVAL_HORIZON
        arrivals = [
            e for e in events if e.event_type == "StudyReceived" and e.occurred_at >= horizon
        ]
        if not arrivals:
            return
        store = EventStore(ctx.db)
        docs = await GenerationPointer(ctx.db, ACCESS_PROJECTION).collection("docs")
        for envelope in arrivals:
            received = payload_of(envelope, StudyReceived)
            if not received.department_id:
                continue
            department = await docs.find_one({"_id": f"department:{received.department_id}"})
            if department:
                await issue_on_arrival(
                    store,
                    department,
                    received,
                    envelope.occurred_at,
                    self.settings.reference_number_secret,
                )


class TransferReactions(Projection):
    name = "dicom_transfers"
    topics = ("study.events",)
    transactional = False

    def __init__(self, settings: StudyStoreSettings) -> None:
        self.settings = settings

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        forwarding = Forwarding(ctx.db, blob_store(self.settings, ctx.db), self.settings)
        for envelope in events:
            if envelope.event_type == "StudyForwardRequested":
                requested = payload_of(envelope, StudyForwardRequested)
                await forwarding.perform(requested.transfer_id, str(envelope.event_id))
            elif envelope.event_type == "StudyInstancesAdded":
                await self._rsw_follow_up(forwarding, envelope)
            elif envelope.event_type == "StudyReceived":
                received = payload_of(envelope, StudyReceived)
                if not received.department_id:
                    continue
                if await forwarding.directory.destination("rsw", received.department_id) is None:
                    continue
                await forwarding.request(
                    received.study_uid,
                    "rsw",
                    received.department_id,
                    Actor.system("study-store-rsw"),
                    trigger="arrival",
                    transfer_id=rsw_transfer_id(received.study_uid, received.department_id),
                    causation_id=str(envelope.event_id),
                )

    async def _rsw_follow_up(self, forwarding: Forwarding, envelope: EventEnvelope) -> None:
        """Instances that arrived after the study went to RSW follow it there: the finished
        RSW transfer is sent again (a pending one will send them anyway). A replay resends
        nothing: only a round older than these instances is followed up."""
        added = payload_of(envelope, StudyInstancesAdded)
        study = await forwarding.index.study(added.study_uid)
        department_id = (study or {}).get("department_id")
        if not department_id:
            return
        transfer_id = rsw_transfer_id(added.study_uid, department_id)
        envelopes = await forwarding.store.load(transfer_id)
        requests = [e for e in envelopes if e.event_type == "StudyForwardRequested"]
        if not requests or requests[-1].occurred_at >= envelope.occurred_at:
            return  # no RSW transfer, or its last round started after these instances came
        transfer = Transfer.rehydrate(transfer_id, envelopes)
        if transfer.finished:
            await forwarding.resend(
                transfer_id,
                added.study_uid,
                Actor.system("study-store-rsw"),
                causation_id=str(envelope.event_id),
            )


def reactions(settings: StudyStoreSettings) -> list[Projection]:
    return [ShareReactions(settings), TransferReactions(settings), ArrivalReactions(settings)]
