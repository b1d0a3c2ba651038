"""The DICOM C-STORE receiver (`python -m studyshare.study_store scp`).

Modalities and PACS push studies to our AE title (`scp_ae_title`). The calling AE title says
which sending department the studies belong to (`scp_calling_ae_departments`); other AE titles,
and every one while that map is empty, are refused at association time, as is an association
called for another AE title. A known SOP Instance UID with other content is refused (status
0x0111, logged): a stored instance is never replaced; so is an instance in the series of another
study (0x0124, logged). pynetdicom writes each received data set to a temporary file as it
arrives (`STORE_RECV_CHUNKED_DATASET`), from which it streams into the blob store before the
success status is sent (the status means the object is safe); so an object is never held in
memory whole. The index and the study events are written in batches: every `scp_flush_instances`
objects and when the association ends, with one upload batch id per association ("uploaded
together"). Each object is noted in the received journal before its success is sent, so a
receiver killed before it indexed them loses nothing: a recovery pass of any receiver indexes
what stayed unindexed for `scp_recover_after_s` (`service_layer.received`).

TLS: `scp_tls_cert_file` + `scp_tls_key_file` make the receiver speak DICOM over TLS (PS3.15
B.1, the Basic TLS Secure Transport Connection Profile) on the same port; with
`scp_tls_ca_file` it also requires a client certificate signed by that CA.

No PDU longer than `MAX_PDU_BYTES` is read (the maximum we announce): pynetdicom reads a PDU
whole, whatever length its first six bytes claim, so a peer could have the receiver fill up to
4 GiB before its AE titles were even looked at (`BoundedRequestHandler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import ssl
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom import _config as netdicom_config
from pynetdicom.sop_class import Verification
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from studyshare.contracts.envelope import Actor
from studyshare.plumbing.logging import get_logger
from studyshare.plumbing.mongo import mongo_client
from studyshare.study_store.adapters.blobstore import blob_store
from studyshare.study_store.adapters.received import ReceivedJournal
from studyshare.study_store.domain.admission import STORABLE_TRANSFER_SYNTAXES
from studyshare.study_store.service_layer.ingest import Ingest, Parsed, Upload, parse_file
from studyshare.study_store.service_layer.received import index_received, keep_received, recover
from studyshare.study_store.settings import StudyStoreSettings

log = get_logger(__name__)

#: no Deflated Explicit VR Little Endian: inflated whole as it is read (`domain.admission`)
TRANSFER_SYNTAXES = list(STORABLE_TRANSFER_SYNTAXES)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
NOT_AUTHORIZED = 0x0124
#: the SOP Instance UID is stored with other content (PS3.7 C.4: "Duplicate SOP instance")
DUPLICATE_SOP_INSTANCE = 0x0111
#: A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected permanent, by the service user, calling AE title not
#: recognised
CALLING_AE_NOT_RECOGNISED = (0x01, 0x01, 0x03)
#: the longest PDU read, and the maximum length of the P-DATA we announce (an association
#: request, presentation contexts, user identity and all, takes a few KiB)
MAX_PDU_BYTES = 1 << 20


class BoundedRequestHandler(RequestHandler):
    """pynetdicom's connection handler, whose association reads no PDU longer than
    `MAX_PDU_BYTES`: a longer one ends the connection (as the peer closing it would)."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        read, peer = assoc.dul.socket.recv, self.client_address

        def recv(nr_bytes: int) -> bytearray:
            if nr_bytes > MAX_PDU_BYTES:
                log.warning("scp.pdu_too_long", bytes=nr_bytes, peer=peer[0])
                raise OSError(f"a PDU of {nr_bytes} bytes, longer than {MAX_PDU_BYTES}")
            return read(nr_bytes)

        assoc.dul.socket.recv = recv
        return assoc


class AssociationBatch:
    """The objects received on one association, not yet indexed."""

    def __init__(self, upload: Upload) -> None:
        self.upload = upload
        self.pending: list[Parsed] = []
        self.paths: dict[str, str] = {}
        self.foreign: dict[str, bool] = {}
        self.series: dict[str, str] = {}
        """The study of each series the association sent (or the index holds)."""
        self.digests: dict[str, str] = {}
        self.lock = threading.Lock()


class StoreSCP:
    """Bridges pynetdicom's handler threads to the asyncio ingest on `loop`."""

    def __init__(
        self,
        settings: StudyStoreSettings,
        ingest: Ingest,
        journal: ReceivedJournal,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.journal = journal
        self.loop = loop
        self.batches: dict[int, AssociationBatch] = {}
        self._lock = threading.Lock()

    def _run(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _batch(self, event: Any) -> AssociationBatch:
        key = id(event.assoc)
        with self._lock:
            batch = self.batches.get(key)
            if batch is None:
                calling = event.assoc.requestor.ae_title.strip()
                department = self.settings.scp_calling_ae_departments[calling]
                batch = AssociationBatch(
                    Upload(
                        via="c-store",
                        actor=Actor(kind="service", id=f"ae:{calling}"),
                        department_id=department,
                    )
                )
                self.batches[key] = batch
            return batch

    def handle_requested(self, event: Any) -> None:
        """Refuse a calling AE title the map does not name, before any negotiation: fail
        closed, for pynetdicom checks none while its list is empty."""
        calling = event.assoc.requestor.primitive.calling_ae_title.strip()
        if calling not in self.settings.scp_calling_ae_departments:
            log.warning("scp.calling_ae_refused", calling_ae=calling)
            event.assoc.acse.send_reject(*CALLING_AE_NOT_RECOGNISED)
            event.assoc.kill()  # as pynetdicom's own refusals: sends the refusal, then ends

    def handle_store(self, event: Any) -> int:
        batch = self._batch(event)
        try:
            received = event.dataset_path
            with received.open("rb") as source:
                sha256 = hashlib.file_digest(source, "sha256").hexdigest()
            parsed = parse_file(received, sha256, received.stat().st_size)
        except Exception as exc:
            log.warning("scp.unreadable", error=str(exc)[:200])
            return CANNOT_UNDERSTAND
        f = parsed.facts
        try:
            if f.study_uid not in batch.foreign:
                foreign = self._run(self.ingest.foreign_studies(batch.upload, [parsed]))
                batch.foreign[f.study_uid] = bool(foreign)
            if batch.foreign[f.study_uid]:
                return NOT_AUTHORIZED
            if self._study_of_series(batch, f.series_uid, f.study_uid) != f.study_uid:
                log.warning(
                    "scp.series_of_another_study",
                    sop_instance_uid=f.sop_instance_uid,
                    calling_ae=batch.upload.actor.id,
                )
                return NOT_AUTHORIZED
            with batch.lock:
                stored = batch.digests.get(f.sop_instance_uid)  # sent before on this association
            if stored is None:
                key, stored = self._run(
                    keep_received(self.ingest, self.journal, batch.upload, received, parsed)
                )
            if stored is not None:
                if stored == parsed.sha256:
                    return SUCCESS  # the same content again: nothing to store
                log.warning(
                    "scp.instance_already_stored",
                    sop_instance_uid=f.sop_instance_uid,
                    calling_ae=batch.upload.actor.id,
                )
                return DUPLICATE_SOP_INSTANCE  # a stored instance is never replaced
        except Exception:
            log.exception("scp.store_failed")
            return OUT_OF_RESOURCES
        with batch.lock:
            batch.digests[f.sop_instance_uid] = parsed.sha256
            batch.pending.append(parsed)
            batch.paths[f.sop_instance_uid] = key
            full = len(batch.pending) >= self.settings.scp_flush_instances
        if full:
            self.flush(batch)
        return SUCCESS

    def _study_of_series(self, batch: AssociationBatch, series_uid: str, study_uid: str) -> str:
        """The study the series belongs to: as indexed, else the first to send it here."""
        with batch.lock:
            owner = batch.series.get(series_uid)
        if owner is None:
            indexed = self._run(self.ingest.index.series_studies([series_uid]))
            with batch.lock:
                owner = batch.series.setdefault(series_uid, indexed.get(series_uid, study_uid))
        return owner

    def flush(self, batch: AssociationBatch) -> None:
        with batch.lock:
            pending, batch.pending = batch.pending, []
            paths, batch.paths = batch.paths, {}
        if not pending:
            return
        for attempt in range(5):
            try:
                self._run(index_received(self.ingest, self.journal, batch.upload, pending, paths))
                return
            except Exception:
                if attempt == 4:  # noted in the journal: the recovery pass indexes them
                    log.exception("scp.flush_failed", batch_id=batch.upload.batch_id)
                    return
                log.warning("scp.flush_retry", batch_id=batch.upload.batch_id, attempt=attempt)
                time.sleep(0.2 * 2**attempt)

    def handle_close(self, event: Any) -> None:
        with self._lock:
            batch = self.batches.pop(id(event.assoc), None)
        if batch is not None:
            self.flush(batch)

    async def recover_unindexed(self, stop: asyncio.Event) -> None:
        """Index what stayed unindexed for `scp_recover_after_s`, at start and then every
        half of that (at most every minute), until `stop`."""
        after = timedelta(seconds=self.settings.scp_recover_after_s)
        while not stop.is_set():
            try:
                await recover(self.ingest, self.journal, after)
            except Exception:
                log.exception("scp.recovery_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(60.0, after.total_seconds() / 2))

    def application_entity(self) -> AE:
        ae = AE(ae_title=self.settings.scp_ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_pdu_size = MAX_PDU_BYTES
        ae.require_called_aet = True  # called for another AE title: refused
        return ae

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            (evt.EVT_REQUESTED, self.handle_requested),
            (evt.EVT_C_STORE, self.handle_store),
            (evt.EVT_CONN_CLOSE, self.handle_close),
        ]


def tls_context(settings: StudyStoreSettings) -> ssl.SSLContext | None:
    """The server side of DICOM TLS when a certificate is configured (TLS 1.2 or newer)."""
    if settings.scp_tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.scp_tls_cert_file, settings.scp_tls_key_file)
    if settings.scp_tls_ca_file is not None:
        context.load_verify_locations(settings.scp_tls_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve(settings: StudyStoreSettings, stop: asyncio.Event) -> None:
    """Run the SCP until `stop` is set."""
    client = mongo_client(settings)
    db = client[settings.database_name]
    ingest = Ingest(db, blob_store(settings, db))
    journal = ReceivedJournal(db)
    await ingest.ensure_indexes()
    await journal.ensure_indexes()
    scp = StoreSCP(settings, ingest, journal, asyncio.get_running_loop())
    if not settings.scp_calling_ae_departments:
        log.warning(
            "scp.refusing_every_caller",
            detail="STUDYSHARE_SCP_CALLING_AE_DEPARTMENTS maps no calling AE title to a "
            "department: every association is refused until it does",
        )
    ae = scp.application_entity()
    netdicom_config.STORE_RECV_CHUNKED_DATASET = True  # data sets to a file, not to memory
    server = await asyncio.to_thread(
        ae.make_server,
        (settings.scp_host, settings.scp_port),
        evt_handlers=scp.handlers(),
        ssl_context=tls_context(settings),
        server_class=ThreadedAssociationServer,
        request_handler=BoundedRequestHandler,
    )
    threading.Thread(target=server.serve_forever, name="scp-acceptor", daemon=True).start()
    log.info(
        "scp.started",
        ae_title=settings.scp_ae_title,
        port=settings.scp_port,
        tls=settings.scp_tls_cert_file is not None,
        blob_backend=settings.blob_backend,
        known_callers=len(settings.scp_calling_ae_departments),
    )
    recovering = asyncio.create_task(scp.recover_unindexed(stop))
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(server.shutdown)
        await recovering
        await client.close()
        log.info("scp.stopped")


def run(settings: StudyStoreSettings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
