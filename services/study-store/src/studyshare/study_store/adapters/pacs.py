"""C-STORE SCU: sending a study's instances to a PACS or to the regional network (RSW)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

WARNING_STATUSES = {0xB000, 0xB006, 0xB007}
MAX_CONTEXTS = 128


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int


class StoreFailed(Exception):
    """The destination could not be reached or refused an object."""


def send_instances(
    destination: Destination,
    paths: Sequence[Path],
    calling_ae_title: str,
    timeout_s: float = 30.0,
    transform: Callable[[Dataset], Dataset] | None = None,
) -> int:
    """Send every file in one association; return how many were stored. Blocking."""
    if not paths:
        raise StoreFailed("the study has no instance to send")
    datasets = [dcmread(p) for p in paths]
    if transform is not None:
        datasets = [transform(ds) for ds in datasets]
    contexts: dict[tuple[str, str], None] = {}
    for ds in datasets:
        sop_class = str(ds.SOPClassUID)
        contexts[(sop_class, str(ds.file_meta.TransferSyntaxUID))] = None
        contexts[(sop_class, str(ExplicitVRLittleEndian))] = None
        contexts[(sop_class, str(ImplicitVRLittleEndian))] = None
    if len(contexts) > MAX_CONTEXTS:
        contexts = dict.fromkeys(list(contexts)[:MAX_CONTEXTS])
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    ae.connection_timeout = min(timeout_s, 10.0)
    for sop_class, ts in contexts:
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
        raise StoreFailed(
            f"association with {destination.ae_title}@{destination.host}:{destination.port} "
            f"failed ({reason})"
        )
    stored = 0
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise StoreFailed("the destination did not answer a C-STORE")
            if code != 0x0000 and code not in WARNING_STATUSES:
                raise StoreFailed(f"the destination refused an object (status 0x{code:04X})")
            stored += 1
    finally:
        if assoc.is_established:
            assoc.release()
    return stored
