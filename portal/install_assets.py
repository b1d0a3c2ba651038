"""Install the portal's pinned third-party assets (htmx, the OHIF viewer) from the npm registry.

    python3 portal/install_assets.py           # fetch what is missing or stale, check, extract
    python3 portal/install_assets.py --check   # exit 1 unless every file is installed

For each package of `portal/assets.json`: `npm pack name@version` into a scratch directory,
the tarball's SHA-512 compared with the pinned `integrity` (Subresource Integrity form, as
`npm view name@version dist.integrity` prints it), then only what the manifest names is
extracted: `files`, each to its flat name in `portal/src/studyshare/portal/static/vendor/`, or
a `tree` (a directory of the package, less `exclude`) into its own directory of the portal
package, with the manifest's `rewrite` of exact strings in files of the named suffixes (each
must be found, so a new version that no longer needs it fails loudly). A package only the
tests use (`"test_only": true`: axe-core) has its `files` put into `tests/portal/vendor/`,
outside the portal package, so the portal never serves it. All these places are git-ignored.
A stamp file records what is installed, so a second run does nothing. Standard
library only: it runs before `uv sync`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "assets.json"
PACKAGE = HERE / "src" / "studyshare" / "portal"
VENDOR = PACKAGE / "static" / "vendor"
STAMP = VENDOR / ".installed.json"
#: files only the browser tests use (axe-core): never inside the portal package, never served
TEST_VENDOR = HERE.parent / "tests" / "portal" / "vendor"
#: written last into an installed tree: what it holds (a tree without it is incomplete)
TREE_MARK = ".installed"


class IntegrityError(RuntimeError):
    """The tarball is not the one pinned."""


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def pack(name: str, version: str, scratch: Path) -> Path:
    """`npm pack name@version` (the registry's tarball, no install scripts run)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("install_assets: npm is missing (apt-get install npm)")
    out = subprocess.run(  # noqa: S603 - fixed argv, the package is pinned in the manifest
        [npm, "pack", f"{name}@{version}", "--json", "--pack-destination", str(scratch)],
        check=True,
        capture_output=True,
        text=True,
        cwd=scratch,
    )
    (entry,) = json.loads(out.stdout)
    return scratch / entry["filename"]


def destination_of(package: dict) -> Path:
    """Where a package's `files` go: the served vendor directory, or the tests' own."""
    return TEST_VENDOR if package.get("test_only") else VENDOR


def extract(tarball: Path, files: dict[str, str], into: Path = VENDOR) -> None:
    """Only the listed members, each to its flat name under `into`."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as archive:
        for member_name, target in files.items():
            member = archive.getmember(member_name)
            if not member.isfile():
                raise IntegrityError(f"{member_name} is not a regular file")
            source = archive.extractfile(member)
            assert source is not None
            (into / Path(target).name).write_bytes(source.read())


def extract_tree(tarball: Path, tree: dict, mark: str) -> None:
    """The regular files under `tree["from"]` (less `exclude`) into `tree["into"]` (relative to
    the portal package), rewritten per `tree["rewrite"]`; swapped in whole once complete."""
    target = PACKAGE / tree["into"]
    prefix = tree["from"]
    excluded = tuple(prefix + e for e in tree.get("exclude", ()))
    rewrites: dict[str, list[list[str]]] = tree.get("rewrite", {})
    found = {(suffix, old) for suffix, pairs in rewrites.items() for old, _ in pairs}
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = member.name
            if not name.startswith(prefix) or name.startswith(excluded) or not member.isfile():
                continue
            relative = Path(name[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise IntegrityError(f"{name} leaves its directory")
            source = archive.extractfile(member)
            assert source is not None
            data = source.read()
            for suffix, pairs in rewrites.items():
                if not name.endswith(suffix):
                    continue
                for old, new in pairs:
                    if old.encode() in data:
                        data = data.replace(old.encode(), new.encode())
                        found.discard((suffix, old))
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
    if found:
        shutil.rmtree(staging, ignore_errors=True)
        raise IntegrityError(f"rewrites that matched nothing: {sorted(found)}")
    (staging / TREE_MARK).write_text(mark + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def install(package: dict, scratch: Path) -> None:
    tarball = pack(package["name"], package["version"], scratch)
    found = integrity_of(tarball.read_bytes())
    if found != package["integrity"]:
        raise IntegrityError(
            f"{package['name']}@{package['version']}: integrity {found} is not the pinned "
            f"{package['integrity']}"
        )
    if "tree" in package:
        extract_tree(tarball, package["tree"], f"{key_of(package)} {package['integrity']}")
    else:
        extract(tarball, package["files"], destination_of(package))


def installed() -> dict:
    try:
        return json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}


def key_of(package: dict) -> str:
    return f"{package['name']}@{package['version']}"


def is_current(package: dict, stamp: dict) -> bool:
    if stamp.get(key_of(package)) != package["integrity"]:
        return False
    if "tree" in package:
        mark = PACKAGE / package["tree"]["into"] / TREE_MARK
        expected = f"{key_of(package)} {package['integrity']}"
        return mark.is_file() and mark.read_text().strip() == expected
    into = destination_of(package)
    return all((into / Path(target).name).is_file() for target in package["files"].values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail unless installed")
    args = parser.parse_args(argv)
    packages = json.loads(MANIFEST.read_text())["packages"]
    stamp = installed()
    stale = [p for p in packages if not is_current(p, stamp)]
    if args.check:
        for package in stale:
            print(f"missing: {key_of(package)} (run {Path(__file__).name})")
        return 1 if stale else 0
    for package in stale:
        with tempfile.TemporaryDirectory(prefix="portal-assets-") as scratch:
            install(package, Path(scratch))
        stamp[key_of(package)] = package["integrity"]
        VENDOR.mkdir(parents=True, exist_ok=True)
        STAMP.write_text(json.dumps(stamp, indent=2) + "\n")
        print(f"install_assets: {key_of(package)} checked and installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
