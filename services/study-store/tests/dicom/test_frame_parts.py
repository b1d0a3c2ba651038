"""WADO-RS frames: every part says its media type and `transfer-syntax` (PS3.18 8.7.3), so a
viewer decodes it without guessing: uncompressed frames as Explicit VR Little Endian (big
endian pixels swapped), compressed ones as stored."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless

from .conftest import write_study
from .test_dicomweb import upload

pytestmark = pytest.mark.infra


def part_headers(response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    out = []
    for chunk in response.content.split(f"--{boundary}".encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, body = chunk.split(b"\r\n\r\n", 1)
        (content_type,) = [
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        ]
        out.append((content_type, body[:-2]))
    return out


def rewritten(path, transfer_syntax: str) -> None:
    """The file saved again in another transfer syntax (same pixels)."""
    ds = dcmread(path)
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless)
        ds.save_as(path, enforce_file_format=True)
        return
    pixels = ds.pixel_array
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PixelData = pixels.astype(">u2").tobytes()
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    assert np.array_equal(dcmread(path).pixel_array, pixels)


@pytest.mark.parametrize(
    ("stored", "media", "transfer_syntax"),
    [
        (ExplicitVRLittleEndian, "application/octet-stream", ExplicitVRLittleEndian),
        (ExplicitVRBigEndian, "application/octet-stream", ExplicitVRLittleEndian),
        (RLELossless, "image/x-dicom-rle", RLELossless),
    ],
)
async def test_each_frame_part_carries_its_transfer_syntax(
    dicom_app, tmp_path, stored, media, transfer_syntax
):
    study_uid, files = write_study(tmp_path / "s", series=1, per_series=1)
    expected = dcmread(files[0]).pixel_array
    if stored != ExplicitVRLittleEndian:
        rewritten(files[0], stored)
    assert (await upload(dicom_app, files)).status_code == 200
    ds = dcmread(files[0])
    dicom_app.access.allow("usr_viewer", study_uid)
    headers = dicom_app.tokens.user("usr_viewer", "physician")
    url = (
        f"/dicomweb/studies/{study_uid}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    response = await dicom_app.client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(f'multipart/related; type="{media}"')
    ((content_type, body),) = part_headers(response)
    assert content_type == f"{media}; transfer-syntax={transfer_syntax}"
    if media == "application/octet-stream":
        pixels = np.frombuffer(body, dtype="<u2").reshape(expected.shape)
        assert np.array_equal(pixels, expected), "little endian pixels, whatever was stored"
    else:
        assert body == next(iter(_frames(ds)))


def _frames(ds):
    from pydicom.encaps import generate_frames

    return generate_frames(ds.PixelData, number_of_frames=1)
