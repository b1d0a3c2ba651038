"""A modality pushes a study to the platform's C-STORE receiver with dcmtk's storescu: it is
filed under the department its calling AE title names, and that department's staff open it;
another AE title is refused at association time and files nothing. (The receiver's own tests,
crash and race included, are in services/study-store/tests/dicom/test_cstore_scp.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from studyshare.devstack.dicomgen import DemoStudy, write_images
from studyshare.devstack.platform import LocalPlatform
from studyshare.plumbing.infra import dcmtk

from .storykit import Gateway, ok, problem, unique, wait_for


def _study(directory: Path, images: int) -> tuple[str, list[Path]]:
    key = unique("cstore-")
    study = DemoStudy(key, key, "Modality^Mia", "19810904", "F", "CT chest", "CT", "20261201", key)
    return study.study_uid, write_images(study, directory, images, size=64)


def _storescu(port: int, calling: str, files: list[Path]) -> subprocess.CompletedProcess:
    argv = [dcmtk("storescu"), "-aet", calling, "-aec", "STUDYSHARE", "127.0.0.1", str(port)]
    return subprocess.run([*argv, *map(str, files)], capture_output=True, timeout=60)


def test_a_modality_sends_a_study_and_its_department_opens_it(
    api: Gateway, platform: LocalPlatform, tmp_path: Path
):
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    department = api.radiology_department(desk, unique("Radiology C-STORE "))
    staff = api.register(desk, "Mona", roles=["department_staff"], department_ids=[department])
    platform.start_receiver({"CT_ROOM_1": department})
    port = platform.ports.dicom

    uid, files = _study(tmp_path / "sent", 3)
    sent = _storescu(port, "CT_ROOM_1", files)
    assert sent.returncode == 0, sent.stderr.decode()[-500:]
    detail = ok(
        wait_for(lambda: (r := api.study(staff, uid)).status_code == 200 and r, "the study")
    )
    assert detail["department_id"] == department
    assert detail["access"]["via"] == "department"
    assert (detail["series_count"], detail["instance_count"]) == (1, 3)

    stranger_uid, stranger_files = _study(tmp_path / "stranger", 1)
    refused = _storescu(port, "UNKNOWN_AE", stranger_files)
    assert b"Calling AE Title Not Recognized" in refused.stderr, refused.stderr
    problem(api.study(staff, stranger_uid), 404, "StudyNotFound")
