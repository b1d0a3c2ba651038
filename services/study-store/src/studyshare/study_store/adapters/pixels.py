"""Pixel data of stored objects: WADO-RS frames read piecewise (`read_frames`) and one frame
rendered as an 8-bit PNG or JPEG (`render`). Both block: call them from a worker thread.

Decoding trouble is answered as the domain's refusals (`NotRenderable` 406, `ObjectNotFound`
404 for a frame the object does not have), never a 500.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread

from studyshare.plumbing.errors import RuleViolation
from studyshare.study_store.adapters.blobstore import BlobStore, opened
from studyshare.study_store.adapters.dicom_files import (
    Frame,
    NoPixelData,
    NoSuchFrame,
    frame_count,
    locate_pixel_data,
)
from studyshare.study_store.adapters.dicom_files import read_frames as read_stored_frames
from studyshare.study_store.adapters.multipart import INLINE_BYTES
from studyshare.study_store.domain.admission import check_frames
from studyshare.study_store.domain.dicom_meta import NotAnInstance
from studyshare.study_store.domain.exceptions import NotRenderable, ObjectNotFound
from studyshare.study_store.domain.serving import RenderedMedia


def read_frames(
    blobs: BlobStore, key: str, numbers: list[int]
) -> tuple[str, list[Frame], Iterator[Frame] | None]:
    """Frames of a stored instance, read piecewise (`adapters.dicom_files`): their media type,
    the frames read up to `INLINE_BYTES` (all of them, for most requests), and an iterator
    reading the others one at a time (it closes the object when done). Blocking."""
    source = blobs.open(key)
    try:
        media, frames = read_stored_frames(source, numbers)
        first: list[Frame] = []
        size = 0
        for data in frames:
            first.append(data)
            size += len(data)
            if size > INLINE_BYTES:
                return media, first, _closing(frames, source)
    except NoPixelData as exc:
        source.close()
        raise NotRenderable(str(exc)) from None
    except NoSuchFrame as exc:
        source.close()
        raise ObjectNotFound(str(exc)) from None
    except BaseException:
        source.close()
        raise
    source.close()
    return media, first, None


def _closing(frames: Iterator[Frame], source: Any) -> Iterator[Frame]:
    try:
        yield from frames
    finally:
        source.close()


#: renders decoding at once: a frame of `MAX_FRAME_PIXELS` costs some 500 MB while rendered
RENDERING = threading.BoundedSemaphore(2)


def render(
    blobs: BlobStore,
    key: str,
    frame: int,
    media: RenderedMedia,
    window: tuple[float, float] | None,
    quality: int,
    viewport: tuple[int, int] | None = None,
) -> bytes:
    """`_render`, with any decoding trouble answered as NotRenderable (never a 500); at most
    `RENDERING` at once (the others wait)."""
    try:
        with RENDERING:
            return _render(blobs, key, frame, media, window, quality, viewport)
    except RuleViolation:
        raise
    except Exception as exc:
        raise NotRenderable(f"the object cannot be rendered: {type(exc).__name__}") from exc


def _render(
    blobs: BlobStore,
    key: str,
    frame: int,
    media: RenderedMedia,
    window: tuple[float, float] | None,
    quality: int,
    viewport: tuple[int, int] | None = None,
) -> bytes:
    """One frame as an 8-bit PNG/JPEG: modality LUT, then VOI (window) LUT, then scaling.
    Only that frame's pixel data is read and decoded."""
    from PIL import Image
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    with opened(blobs, key) as source:
        arr, ds = _frame_array(source, frame)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if photometric.startswith("YBR") and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            arr = convert_color_space(arr, photometric, "RGB")
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    else:
        values = apply_modality_lut(arr, ds).astype(np.float32)
        if window is not None:
            center, width = window
            low, high = center - width / 2, center + width / 2
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            values = apply_voi_lut(values, ds).astype(np.float32)
            low, high = float(values.min()), float(values.max())
        else:
            low, high = float(values.min()), float(values.max())
        scaled = (np.clip(values, low, high) - low) / max(high - low, 1e-9) * 255.0
        if photometric == "MONOCHROME1":
            scaled = 255.0 - scaled
        image = Image.fromarray(scaled.astype(np.uint8), "L")
    if viewport is not None:
        image.thumbnail(viewport)
    out = io.BytesIO()
    if media == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _frame_array(source: Any, frame: int) -> tuple[np.ndarray, Dataset]:
    """One frame (1-based) decoded, and the data set before the pixel data; a frame larger
    than the store takes (one stored before it refused such) is not decoded."""
    from pydicom.pixels import pixel_array

    pixels = locate_pixel_data(source)
    if pixels is None:  # no pixel data, or not readable piecewise: the object whole
        source.seek(0)
        _check_size(dcmread(source, stop_before_pixels=True))
        source.seek(0)
        ds = dcmread(source)
        if "PixelData" not in ds:
            raise NotRenderable("the object has no pixel data")
        count = frame_count(ds)
        if frame > count or frame < 1:
            raise ObjectNotFound(f"the instance has {count} frame(s)")
        whole = _decoded(lambda: ds.pixel_array)
        return (whole[frame - 1] if count > 1 else whole), ds
    ds = pixels.header
    _check_size(ds)
    count = frame_count(ds)
    if frame > count or frame < 1:
        raise ObjectNotFound(f"the instance has {count} frame(s)")
    source.seek(0)
    return _decoded(lambda: pixel_array(source, index=frame - 1)), ds


def _check_size(ds: Dataset) -> None:
    try:
        check_frames(ds, str(ds.file_meta.get("TransferSyntaxUID", "")), None)
    except NotAnInstance as exc:
        raise NotRenderable(str(exc)) from None


def _decoded(decode: Callable[[], np.ndarray]) -> np.ndarray:
    try:
        return decode()
    except Exception as exc:
        raise NotRenderable(f"the pixel data cannot be decoded here: {exc}") from exc
