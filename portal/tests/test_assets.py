"""The pinned third-party assets: the manifest, the integrity check and what is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_assets", HERE / "install_assets.py")
install_assets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_assets)


def test_every_asset_is_pinned_to_a_version_and_a_sha512() -> None:
    for package in json.loads((HERE / "assets.json").read_text())["packages"]:
        assert package["version"].count(".") == 2 and "^" not in package["version"]
        assert package["integrity"].startswith("sha512-")


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: Path, monkeypatch) -> None:
    tarball = tmp_path / "htmx.org-2.0.8.tgz"
    tarball.write_bytes(b"not the registry's tarball")
    monkeypatch.setattr(install_assets, "pack", lambda name, version, scratch: tarball)
    package = {
        "name": "htmx.org",
        "version": "2.0.8",
        "integrity": "sha512-AAAA",
        "files": {"package/dist/htmx.min.js": "htmx.min.js"},
    }
    with pytest.raises(install_assets.IntegrityError):
        install_assets.install(package, tmp_path)


def test_htmx_is_installed_where_the_portal_serves_it() -> None:
    assert install_assets.main(["--check"]) == 0, "run python3 portal/install_assets.py"
