"""Every service's layers point one way (DEVELOPING.md, "Layout"; issue 18, point 4).

Read with `ast` (nothing is imported), for each module of `services/*/src/studyshare/<pkg>/`:

- `domain/` imports no other layer (`service_layer`, `adapters`, `entrypoints`) and no I/O
  framework (pymongo, fastapi, aiokafka, ...): it is pure;
- `service_layer/` imports no `entrypoints`;
- `adapters/` imports no `service_layer` and no `entrypoints`;
- no projection (a `Projection` subclass: it writes a read model or reacts to events) is
  defined in `entrypoints/`: read models are adapters (`adapters/projections.py`), reactions
  that run commands are the service layer's;
- a refusal (a `RuleViolation` subclass) is defined once in a service, so the rule a
  problem+json answer names is one class, and in its `domain/exceptions.py` (but for the
  access policy's refusals, `REFUSALS_ELSEWHERE`).
- no class of a domain (a service's `domain/`, the access policy, the plumbing a domain uses)
  carries an HTTP status: a refusal says what kind it is, the edge answers it
  (`studyshare.plumbing.http.status_of`).

Imports under `if TYPE_CHECKING:` and inside functions count too: they are dependencies all
the same.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = sorted(p.parent for p in ROOT.glob("services/*/src/studyshare/*/__init__.py"))
LAYERS = ("domain", "service_layer", "adapters", "entrypoints")
#: I/O frameworks the domain never imports
FRAMEWORKS = (
    "pymongo",
    "gridfs",
    "motor",
    "fastapi",
    "starlette",
    "aiokafka",
    "faust",
    "httpx",
    "uvicorn",
)
#: the only parts of the shared plumbing a domain uses: the aggregate base and the refusals
#: (pure modules; the event store, the repository, Kafka and HTTP are for the other layers)
PURE_PLUMBING = ("studyshare.plumbing.domain", "studyshare.plumbing.errors")
#: the layers each layer may not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "domain": ("service_layer", "adapters", "entrypoints"),
    "service_layer": ("entrypoints",),
    "adapters": ("service_layer", "entrypoints"),
    "entrypoints": (),
}
#: the refusals of `studyshare.plumbing.errors`, the roots of every service's own
REFUSAL_BASES = {
    "RuleViolation",
    "NotFound",
    "Forbidden",
    "Unauthorized",
    "Conflict",
    "Locked",
    "TooManyAttempts",
    "TooLarge",
    "UnsupportedMedia",
    "Unavailable",
}
#: modules that define refusals beside `domain/exceptions.py`: the access policy's (issue 18,
#: point 3, owned with `libs/access-policy`); a service's `domain/exceptions.py` imports them
REFUSALS_ELSEWHERE = {
    "services/study-store/src/studyshare/study_store/domain/access_rules.py",
    "services/audit/src/studyshare/audit/domain/rules.py",
}


def test_every_service_is_found() -> None:
    names = {p.name for p in PACKAGES}
    assert {"audit", "identity", "notify", "share", "study_store"} <= names


def modules(package: Path) -> list[tuple[str, Path]]:
    """(layer, path) of each module of a service in one of the four layers."""
    out = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if len(parts) > 1 and parts[0] in LAYERS:
            out.append((parts[0], path))
    return out


def module_name(package: Path, path: Path) -> str:
    parts = list(path.relative_to(package.parent.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(package: Path, path: Path, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of each import of a module, relative ones made absolute."""
    here = module_name(package, path).split(".")
    if path.name != "__init__.py":
        here.pop()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append((node.lineno, base))
            if layer_of(base) is None:  # `from studyshare.x import adapters` names a layer too
                out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def layer_of(module: str) -> str | None:
    """The layer a `studyshare.<service>.<layer>...` module belongs to."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[0] == "studyshare" and parts[2] in LAYERS:
        return parts[2]
    return None


def violations(package: Path) -> list[str]:
    found = []
    for layer, path in modules(package):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(ROOT)
        for line, module in imported(package, path, tree):
            target = layer_of(module)
            if target is not None and target in FORBIDDEN[layer]:
                found.append(f"{where}:{line}: {layer} imports {target} ({module})")
            if layer == "domain" and module.split(".")[0] in FRAMEWORKS:
                found.append(f"{where}:{line}: domain imports {module}")
            plumbing = module.startswith("studyshare.plumbing")
            if layer == "domain" and plumbing and not module.startswith(PURE_PLUMBING):
                found.append(f"{where}:{line}: domain imports {module} (not pure)")
    return sorted(set(found))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_import_points_up_a_layer(package: Path) -> None:
    found = violations(package)
    assert not found, "imports against the layering:\n" + "\n".join(found)


def class_defs(package: Path) -> list[tuple[Path, ast.ClassDef]]:
    out = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        out += [(path, node) for node in tree.body if isinstance(node, ast.ClassDef)]
    return out


def base_names(node: ast.ClassDef) -> set[str]:
    names = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_projection_is_defined_in_entrypoints(package: Path) -> None:
    found = [
        f"{path.relative_to(ROOT)}: {node.name}"
        for path, node in class_defs(package)
        if path.relative_to(package).parts[0] == "entrypoints" and "Projection" in base_names(node)
    ]
    assert not found, "projections belong in adapters/ or the service layer:\n" + "\n".join(found)


def refusal_defs(package: Path) -> dict[str, list[str]]:
    """Where each refusal class of a service is defined (paths from the repository root)."""
    defs = class_defs(package)
    refusals = set(REFUSAL_BASES)
    grew = True
    while grew:  # subclasses of a service's own refusals are refusals too
        before = len(refusals)
        refusals |= {node.name for _, node in defs if base_names(node) & refusals}
        grew = len(refusals) > before
    where: dict[str, list[str]] = defaultdict(list)
    for path, node in defs:
        if node.name not in REFUSAL_BASES and base_names(node) & refusals:
            where[node.name].append(str(path.relative_to(ROOT)))
    return where


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_refusal_is_defined_once(package: Path) -> None:
    twice = {name: paths for name, paths in refusal_defs(package).items() if len(paths) > 1}
    assert not twice, f"refusals defined more than once: {twice}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_refusals_are_in_domain_exceptions(package: Path) -> None:
    elsewhere = {
        name: path
        for name, paths in refusal_defs(package).items()
        for path in paths
        if not path.endswith("/domain/exceptions.py") and path not in REFUSALS_ELSEWHERE
    }
    assert not elsewhere, f"refusals outside domain/exceptions.py: {elsewhere}"


@pytest.mark.parametrize("name", ["domain.py", "errors.py"])
def test_the_plumbing_a_domain_uses_is_pure(name: str) -> None:
    path = ROOT / "libs/plumbing/src/studyshare/plumbing" / name
    tree = ast.parse(path.read_text(), str(path))
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    impure = [
        m for m in modules if m.split(".")[0] in FRAMEWORKS or m.startswith("studyshare.plumbing")
    ]
    assert not impure, f"{name} imports {impure}"


#: attribute names that would give a domain class an HTTP status
HTTP_STATUS_NAMES = {"status", "status_code", "http_status"}
#: every module of a domain: the services' `domain/`, the access policy, the pure plumbing
DOMAIN_MODULES = sorted(
    [
        *(p for package in PACKAGES for p in (package / "domain").rglob("*.py")),
        *ROOT.glob("libs/access-policy/src/studyshare/access_policy/*.py"),
        *(ROOT / "libs/plumbing/src/studyshare/plumbing" / n for n in ("domain.py", "errors.py")),
    ]
)


def class_attributes(node: ast.ClassDef) -> set[str]:
    """The names a class body assigns (`x = ...`, `x: int = ...`)."""
    names = set()
    for statement in node.body:
        if isinstance(statement, ast.Assign):
            names |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            names.add(statement.target.id)
    return names


def test_domain_classes_carry_no_http_status() -> None:
    assert len(DOMAIN_MODULES) > 20  # every service's domain was found
    found = [
        f"{path.relative_to(ROOT)}: {node.name}.{name}"
        for path in DOMAIN_MODULES
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ClassDef)
        for name in sorted(class_attributes(node) & HTTP_STATUS_NAMES)
    ]
    assert not found, "HTTP statuses in the domain (map them at the edge):\n" + "\n".join(found)
