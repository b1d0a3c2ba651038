"""What the study store takes in: objects it can serve without being made to spend far more
than it was sent. A review measured each of these before they were refused:

- The transfer syntax is one of `STORABLE_TRANSFER_SYNTAXES`. Deflated Explicit VR Little
  Endian is not: pydicom inflates such an object whole as it reads it, before anything can be
  checked (510 KB cost 1.1 GB); and a value that is no transfer syntax went into the part
  headers of multipart answers.
- A frame has at most `MAX_FRAME_PIXELS` pixels (rows x columns x samples per pixel): a
  727-byte JPEG 2000 of 13,000 x 13,000 cost 2.9 GB to render a thumbnail.
- Native (not encapsulated) pixel data holds every frame its header declares: a 500-byte
  object declaring 1,000 frames of 2,048 x 2,048 had the frames route allocate 1.6 GB.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from studyshare.study_store.domain.dicom_meta import NotAnInstance

STORABLE_TRANSFER_SYNTAXES = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
#: 8,192 x 8,192: beyond the largest single-frame images (mammography, full-field X-ray);
#: whole-slide images come as tiles, each a frame of its own
MAX_FRAME_PIXELS = 8192 * 8192


def check_transfer_syntax(uid: str) -> None:
    if uid not in STORABLE_TRANSFER_SYNTAXES:
        raise NotAnInstance(
            f"transfer syntax {uid[:70]!r} is not one the store takes (deflated is not): "
            "send the object in another"
        )


def check_frames(ds: Dataset, transfer_syntax: str, pixel_data_length: int | None) -> None:
    """A frame within `MAX_FRAME_PIXELS`; native pixel data as long as its header says."""
    rows, columns = _count(ds, "Rows"), _count(ds, "Columns")
    samples = _count(ds, "SamplesPerPixel") or 1
    if rows * columns * samples > MAX_FRAME_PIXELS:
        raise NotAnInstance(
            f"a frame of {rows} x {columns} x {samples} samples is more than the "
            f"{MAX_FRAME_PIXELS:,} pixels the store takes"
        )
    if pixel_data_length is None or UID(transfer_syntax).is_encapsulated:
        return
    frames = _count(ds, "NumberOfFrames") or 1
    bits = _count(ds, "BitsAllocated")
    declared = (rows * columns * samples * frames * bits + 7) // 8
    if pixel_data_length < declared:
        raise NotAnInstance(
            f"the pixel data holds {pixel_data_length:,} bytes, less than the {declared:,} "
            f"its header declares ({frames} frame(s) of {rows} x {columns}, {bits} bits)"
        )


def _count(ds: Dataset, keyword: str) -> int:
    """A non-negative count of the header (0 when absent or unreadable)."""
    try:
        value = ds.get(keyword)
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0
