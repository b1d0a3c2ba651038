"""C-STORE SCU: sending a study's instances to a PACS or to the regional network (RSW).

One association per attempt; the objects are sent one at a time from files on local disk, in
chunks of the peer's PDU size without being decoded (pynetdicom's `STORE_SEND_CHUNKED_DATASET`),
so no object is held in memory whole. Only when the peer accepted none of the object's own
transfer syntax is the object decoded and converted (uncompressed syntaxes only).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom import _config as netdicom_config

WARNING_STATUSES = {0xB000, 0xB006, 0xB007}
MAX_CONTEXTS = 128

# a file path given to send_c_store is sent as stored, in PDU-sized pieces (process-wide)
netdicom_config.STORE_SEND_CHUNKED_DATASET = True


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int


class StoreFailed(Exception):
    """The destination could not be reached or refused an object."""


class PacsAssociation:
    """An association with a destination, proposing each (SOP class, transfer syntax) of the
    objects to send plus the uncompressed syntaxes. Blocking: call from a worker thread."""

    def __init__(
        self,
        destination: Destination,
        calling_ae_title: str,
        objects: Iterable[tuple[str, str]],
        timeout_s: float = 30.0,
    ) -> None:
        contexts: dict[tuple[str, str], None] = {}
        for sop_class, transfer_syntax in objects:
            contexts[(sop_class, transfer_syntax)] = None
            contexts[(sop_class, str(ExplicitVRLittleEndian))] = None
            contexts[(sop_class, str(ImplicitVRLittleEndian))] = None
        if not contexts:
            raise StoreFailed("the study has no instance to send")
        ae = AE(ae_title=calling_ae_title)
        ae.acse_timeout = timeout_s
        ae.dimse_timeout = timeout_s
        ae.network_timeout = timeout_s
        ae.connection_timeout = min(timeout_s, 10.0)
        for sop_class, ts in list(contexts)[:MAX_CONTEXTS]:
            ae.add_requested_context(sop_class, ts)
        self.assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
        if not self.assoc.is_established:
            assoc = self.assoc
            reason = (
                "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
            )
            raise StoreFailed(
                f"association with {destination.ae_title}@{destination.host}:{destination.port} "
                f"failed ({reason})"
            )

    def send_file(self, path: Path) -> None:
        """Send one Part 10 file; StoreFailed when it is refused."""
        try:
            status = self.assoc.send_c_store(path)
        except ValueError:
            # no accepted context with the file's own transfer syntax: decode and convert
            status = self.assoc.send_c_store(dcmread(path))
        self._check(status)

    @staticmethod
    def _check(status: Any) -> None:
        code = getattr(status, "Status", None)
        if code is None:
            raise StoreFailed("the destination did not answer a C-STORE")
        if code != 0x0000 and code not in WARNING_STATUSES:
            raise StoreFailed(f"the destination refused an object (status 0x{code:04X})")

    def release(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()
