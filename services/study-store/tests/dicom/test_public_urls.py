"""URLs in DICOMweb answers (RetrieveURL, BulkDataURI) are where the caller reached the store:
behind the gateway or the Ingress, the forwarded origin, so a browser viewer can follow them."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from .conftest import write_study
from .test_dicomweb import upload

pytestmark = pytest.mark.infra


@pytest.mark.parametrize(
    ("forwarded", "origin"),
    [
        (
            {"X-Forwarded-Host": "studyshare.example.org", "X-Forwarded-Proto": "https"},
            "https://studyshare.example.org",
        ),
        (
            {"X-Forwarded-Host": "127.0.0.1:8080", "X-Forwarded-Proto": "http"},
            "http://127.0.0.1:8080",
        ),
        ({}, "http://study-store"),
        (
            {"X-Forwarded-Host": "evil.example/x?y", "X-Forwarded-Proto": "https"},
            "http://study-store",
        ),
        (
            {"X-Forwarded-Host": "h.example", "X-Forwarded-Proto": "javascript"},
            "http://study-store",
        ),
    ],
)
async def test_metadata_urls_name_the_origin_the_caller_used(
    dicom_app, tmp_path, forwarded, origin
):
    study_uid, files = write_study(tmp_path / "s", series=1, per_series=1)
    assert (await upload(dicom_app, files)).status_code == 200
    ds = dcmread(files[0])
    dicom_app.access.allow("usr_viewer", study_uid)
    headers = {**dicom_app.tokens.user("usr_viewer", "physician"), **forwarded}
    for path in (
        f"/dicomweb/studies/{study_uid}/metadata",
        f"/dicomweb/studies/{study_uid}/series/{ds.SeriesInstanceUID}/metadata",
    ):
        (instance,) = (await dicom_app.client.get(path, headers=headers)).json()
        instance_path = (
            f"/dicomweb/studies/{study_uid}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        assert instance["00081190"]["Value"] == [origin + instance_path]
        assert instance["7FE00010"]["BulkDataURI"] == f"{origin}{instance_path}/frames/1"
