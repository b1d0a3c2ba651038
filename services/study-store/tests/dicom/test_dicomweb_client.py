"""A real DICOMweb client (dicomweb-client) stores a study and reads a shared one back."""

from __future__ import annotations

import asyncio

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from .conftest import write_study

pytestmark = pytest.mark.infra


def client_for(served, sub: str, *roles: str, **claims) -> DICOMwebClient:
    return DICOMwebClient(
        url=f"{served.url}/dicomweb", headers=served.tokens.user(sub, *roles, **claims)
    )


async def test_dicomweb_client_stores_a_study_and_a_recipient_reads_it_back(served_app, tmp_path):
    study_uid, files = write_study(tmp_path / "a", series=2, per_series=2)
    uploader = client_for(served_app, "usr_up", "department_staff", department_ids=["dep_1"])
    datasets = [dcmread(f) for f in files]
    result = await asyncio.to_thread(uploader.store_instances, datasets)
    assert len(result.ReferencedSOPSequence) == 4

    served_app.access.allow("usr_recipient", study_uid, via="grant", bucket_id="bkt_1")
    recipient = client_for(served_app, "usr_recipient", "physician")
    found = await asyncio.to_thread(recipient.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in found] == [study_uid]
    series = await asyncio.to_thread(recipient.search_for_series, study_uid)
    assert len(series) == 2
    metadata = await asyncio.to_thread(recipient.retrieve_study_metadata, study_uid)
    assert len(metadata) == 4
    instances = await asyncio.to_thread(recipient.retrieve_study, study_uid)
    assert sorted(str(ds.SOPInstanceUID) for ds in instances) == sorted(
        str(ds.SOPInstanceUID) for ds in datasets
    )
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    for ds in instances:
        assert ds.PixelData == by_uid[str(ds.SOPInstanceUID)].PixelData
        assert str(ds.PatientName) == "Doe^Jane"
    first = datasets[0]
    frames = await asyncio.to_thread(
        recipient.retrieve_instance_frames,
        study_uid,
        str(first.SeriesInstanceUID),
        str(first.SOPInstanceUID),
        [1],
    )
    assert frames[0] == first.PixelData
    rendered = await asyncio.to_thread(
        recipient.retrieve_instance_rendered,
        study_uid,
        str(first.SeriesInstanceUID),
        str(first.SOPInstanceUID),
        media_types=("image/png",),
    )
    assert rendered[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"view", "metadata", "instances", "rendered"} <= set(
        served_app.access_log.actions(study_uid)
    )

    outsider = client_for(served_app, "usr_outsider", "physician")
    assert await asyncio.to_thread(outsider.search_for_studies) == []
    with pytest.raises(Exception, match="404"):  # no way in: as if it did not exist
        await asyncio.to_thread(outsider.retrieve_study, study_uid)
