"""The container images: one Dockerfile per service, built the same way (no Docker needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from studyshare.contracts.routes import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PINNED_PYTHON = re.compile(r"^python:\d+\.\d+\.\d+-slim-(bookworm|trixie)$")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_dockerfile(svc) -> None:
    path = ROOT / "services" / svc.name / "Dockerfile"
    assert path.is_file(), f"{path} missing"
    steps = instructions(path)
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    froms = [a for k, a in steps if k == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in froms:
        image = image.split(" AS ")[0].strip()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert PINNED_PYTHON.match(image), f"base image not pinned to an exact tag: {image}"
    runs = " ".join(a for k, a in steps if k == "RUN")
    assert re.search(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", runs), "uv pinned"
    assert f"uv sync --frozen --no-dev --no-editable --package studyshare-{svc.name}" in runs
    assert "COPY pyproject.toml uv.lock ./" in [f"{k} {a}" for k, a in steps]
    # The runtime stage takes only the virtualenv from the build stage.
    runtime = steps[[i for i, (k, _) in enumerate(steps) if k == "FROM"][-1] :]
    copies = [a for k, a in runtime if k == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"]
    users = [a for k, a in runtime if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(k == "HEALTHCHECK" and "/healthz" in a for k, a in runtime)
    assert ("ENTRYPOINT", f'["python", "-m", "studyshare.{svc.package}"]') in runtime
    exposed = [a for k, a in runtime if k == "EXPOSE"]
    assert exposed == [f"{svc.port} {svc.port + 100}"]
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert f"STUDYSHARE_HTTP_PORT={svc.port}" in env and "STUDYSHARE_HTTP_HOST=0.0.0.0" in env


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
    dockerfile = (ROOT / "services" / "share" / "Dockerfile").read_text()
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
