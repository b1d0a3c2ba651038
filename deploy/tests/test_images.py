"""The container images: one Dockerfile, built once per service with its build arguments
(checked without Docker)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from studyshare.contracts.routes import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PINNED_PYTHON = re.compile(r"^python:\d+\.\d+\.\d+-slim-(bookworm|trixie)$")


def instructions(path: Path, build_args: dict[str, str]) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) as built with `build_args`: continuation lines joined, comments
    dropped, `${ARG}` replaced by its build argument or default."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    values = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a) | build_args
    return [
        (k, re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), a))
        for k, a in steps
    ]


def build_args(svc) -> dict[str, str]:
    """The build arguments `make images` passes for one service (checked below)."""
    return {
        "SERVICE": svc.name,
        "MODULE": f"studyshare.{svc.package}",
        "PORT": str(svc.port),
        "WORKER_PORT": str(svc.port + 100),
    }


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_dockerfile(svc) -> None:
    steps = instructions(DOCKERFILE, build_args(svc))
    froms = [a for k, a in steps if k == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in froms:
        image = image.split(" AS ")[0].strip()
        assert PINNED_PYTHON.match(image), f"base image not pinned to an exact tag: {image}"
    runs = " ".join(a for k, a in steps if k == "RUN")
    assert re.search(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", runs), "uv pinned"
    assert f"uv sync --frozen --no-dev --no-editable --package studyshare-{svc.name}" in runs
    assert "COPY pyproject.toml uv.lock ./" in [f"{k} {a}" for k, a in steps]
    assert ("COPY", f"services/{svc.name}/ services/{svc.name}/") in steps
    # The runtime stage takes only the virtualenv from the build stage.
    runtime = steps[[i for i, (k, _) in enumerate(steps) if k == "FROM"][-1] :]
    copies = [a for k, a in runtime if k == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"]
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(k == "HEALTHCHECK" and "/healthz" in a for k, a in runtime)
    entrypoint = json.loads(next(a for k, a in runtime if k == "ENTRYPOINT"))
    assert entrypoint[:2] == ["/bin/sh", "-c"]
    assert entrypoint[2].startswith('exec python -m "$STUDYSHARE_SERVICE_MODULE" "$@"')
    exposed = [a for k, a in runtime if k == "EXPOSE"]
    assert exposed == [f"{svc.port} {svc.port + 100}"]
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert f"STUDYSHARE_SERVICE_MODULE=studyshare.{svc.package}" in env
    assert f"STUDYSHARE_HTTP_PORT={svc.port}" in env and "STUDYSHARE_HTTP_HOST=0.0.0.0" in env


def test_the_entrypoint_runs_the_module_with_the_kubernetes_args(tmp_path: Path) -> None:
    """The shell form expands the module and passes `args:` through unchanged."""
    runtime = instructions(DOCKERFILE, build_args(SERVICES[0]))
    entrypoint = json.loads(next(a for k, a in runtime if k == "ENTRYPOINT"))
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\nprintf "%s|" "$@"\n')
    fake_python.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "STUDYSHARE_SERVICE_MODULE": "studyshare.x"}
    out = subprocess.run(
        [*entrypoint, "worker", "--port", "8201"], env=env, capture_output=True, text=True
    )
    assert out.stdout == "-m|studyshare.x|worker|--port|8201|", out.stderr


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    for needed in ("**/.venv", ".git", "**/tests", "deploy", "**/secrets"):
        assert needed in patterns


def test_every_workspace_member_is_copied_before_uv_sync() -> None:
    """uv reads the whole workspace from uv.lock: each member's pyproject must be there."""
    members = sorted(
        str(p.parent.relative_to(ROOT))
        for p in ROOT.glob("*/pyproject.toml")
        if p.parent.name not in ("deploy",)
    ) + sorted(str(p.parent.relative_to(ROOT)) for p in ROOT.glob("*/*/pyproject.toml"))
    dockerfile = DOCKERFILE.read_text()
    for member in members:
        assert f"COPY {member}/pyproject.toml {member}/" in dockerfile, member


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_images_fails_clearly_without_docker() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "images", "DOCKER=/nonexistent/docker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "make images: '/nonexistent/docker' not found" in out.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_images_builds_every_service_with_its_arguments(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake_docker = tmp_path / "docker"
    fake_docker.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_docker.chmod(0o755)
    subprocess.run(
        ["make", "--no-print-directory", "images", f"DOCKER={fake_docker}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    builds = [line.split() for line in calls.read_text().splitlines() if line.startswith("build")]
    assert len(builds) == len(SERVICES)
    for svc, argv in zip(SERVICES, builds, strict=True):
        given = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--build-arg")
        assert given == build_args(svc)
        assert argv[-3:] == ["-t", f"studyshare-{svc.name}:0.1.0", "."]
