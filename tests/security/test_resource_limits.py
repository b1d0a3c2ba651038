"""Issue 15, point 8: resource limits. Frame lists are bounded and deduplicated; request
bodies are bounded per route, small for JSON routes and refused before they are read (413
`RequestBodyTooLarge`), large only where DICOM or a PDF report is uploaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from studyshare.devstack.dicomgen import instance, stable_uid
from studyshare.devstack.platform import LocalPlatform

from ..storykit import Gateway, ok, problem, wait_for
from .dicomkit import department_with_sender, new_study, stow

MIB = 1024 * 1024
DEFAULT_BODY_MAX_BYTES = 64 * 1024  # contracts.routes: JSON routes


@pytest.fixture(scope="module")
def cast(api: Gateway, platform: LocalPlatform) -> SimpleNamespace:
    desk = api.login(platform.bootstrap_user, platform.bootstrap_password)
    home = department_with_sender(api, desk)
    study = new_study()
    ok(stow(api, home.sender, [instance(study, 1, 1)]))
    wait_for(lambda: api.study(home.sender, study.study_uid).status_code == 200, "the study")
    home.study = study
    home.desk = desk
    return home


def frames_url(study) -> str:
    return (
        f"/dicomweb/studies/{study.study_uid}/series/{stable_uid(f'{study.key}/1')}"
        f"/instances/{stable_uid(f'{study.key}/1/1')}/frames/"
    )


def test_frame_lists_are_deduplicated(api: Gateway, cast: SimpleNamespace) -> None:
    r = api.client.get(frames_url(cast.study) + "1,1,1", headers=cast.sender.headers)
    assert r.status_code == 200, r.text
    boundary = r.headers["content-type"].split("boundary=")[1].strip('"')
    assert r.content.count(f"--{boundary}\r\n".encode()) == 1, "one part per distinct frame"


def test_frame_lists_are_bounded(api: Gateway, cast: SimpleNamespace) -> None:
    numbers = ",".join(["1"] * 1001)
    r = api.client.get(frames_url(cast.study) + numbers, headers=cast.sender.headers)
    problem(r, 400, "FrameListTooLong")


def big_json(size: int) -> bytes:
    return json.dumps({"reason": "x" * size}).encode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/auth/login"),
        ("POST", "/api/shares"),
        ("PUT", "/api/departments/dep_x/policy"),
        ("POST", "/api/studies/1.2.3/break-glass"),
        ("PUT", "/api/studies/1.2.3/report"),
        ("PATCH", "/api/users/me"),
    ],
)
def test_json_bodies_are_refused_before_they_are_read(
    api: Gateway, cast: SimpleNamespace, method: str, path: str
) -> None:
    size = 10 * MIB if path.endswith("/report") else MIB
    body = big_json(size)
    r = api.client.request(
        method,
        path,
        content=body,
        headers={**cast.sender.headers, "Content-Type": "application/json"},
    )
    problem(r, 413, "RequestBodyTooLarge")


def test_a_body_without_length_is_cut_at_the_limit(api: Gateway, cast: SimpleNamespace) -> None:
    body = big_json(MIB)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    r = api.client.post(
        "/api/shares",
        content=chunks(),
        headers={**cast.sender.headers, "Content-Type": "application/json"},
    )
    problem(r, 413, "RequestBodyTooLarge")


def test_uploads_keep_their_own_larger_limits(api: Gateway, cast: SimpleNamespace) -> None:
    study = new_study()
    big = instance(study, 1, 1, size=512)  # 256 KiB of pixels
    assert len(big) > 2 * DEFAULT_BODY_MAX_BYTES
    ok(stow(api, cast.sender, [big]))
    wait_for(lambda: api.study(cast.sender, study.study_uid).status_code == 200, "the study")
    text = "Findings. " * (DEFAULT_BODY_MAX_BYTES // 5)
    ok(
        api.client.put(
            f"/api/studies/{study.study_uid}/report",
            json={"text": text},
            headers=cast.sender.headers,
        )
    )
