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


def test_a_test_only_package_is_extracted_outside_the_portal_package(
    tmp_path: Path, monkeypatch
) -> None:
    """axe-core is for the browser tests: never in the directory the portal serves."""
    manifest = json.loads((HERE / "assets.json").read_text())["packages"]
    (axe,) = [p for p in manifest if p["name"] == "axe-core"]
    assert axe["test_only"] is True
    assert install_assets.destination_of(axe) == install_assets.TEST_VENDOR
    assert not install_assets.TEST_VENDOR.is_relative_to(install_assets.PACKAGE)
    assert not (install_assets.VENDOR / "axe.min.js").exists()

    import io
    import tarfile

    tarball = tmp_path / "axe-core.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        data = b"/* axe */"
        info = tarfile.TarInfo("package/axe.min.js")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(install_assets, "pack", lambda name, version, scratch: tarball)
    monkeypatch.setattr(install_assets, "TEST_VENDOR", tmp_path / "tests-vendor")
    monkeypatch.setattr(install_assets, "VENDOR", tmp_path / "served")
    package = {**axe, "integrity": install_assets.integrity_of(tarball.read_bytes())}
    install_assets.install(package, tmp_path)
    assert (tmp_path / "tests-vendor" / "axe.min.js").read_bytes() == b"/* axe */"
    assert not (tmp_path / "served").exists()
