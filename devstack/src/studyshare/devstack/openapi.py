"""One OpenAPI document for the whole platform, merged from every service's `/openapi.json`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx

from studyshare.plumbing.logging import get_logger

log = get_logger(__name__)

#: paths every service has; the gateway documents its own instead
OPERATIONAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
COMPONENT_REF = "#/components/{kind}/{name}"


async def fetch_documents(
    client: httpx.AsyncClient, upstreams: Mapping[str, str], wait_s: float = 3.0
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """`({service: document}, {service: why it is missing})`; a service that is down is skipped."""

    async def fetch(name: str, base: str) -> tuple[str, dict[str, Any] | None, str]:
        try:
            response = await client.get(f"{base}/openapi.json", timeout=wait_s)
            if response.status_code != 200:
                return name, None, f"HTTP {response.status_code}"
            return name, response.json(), ""
        except (httpx.HTTPError, ValueError) as exc:
            return name, None, type(exc).__name__

    results = await asyncio.gather(*(fetch(n, b) for n, b in upstreams.items()))
    docs = {name: doc for name, doc, _ in results if doc is not None}
    missing = {name: why for name, doc, why in results if doc is None}
    if missing:
        log.info("openapi.services_missing", services=missing)
    return docs, missing


def merge_documents(
    documents: Mapping[str, dict[str, Any]],
    *,
    title: str = "StudyShare",
    own_paths: Mapping[str, Any] | None = None,
    missing: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Paths and components of every document; a component name that two services define
    differently is prefixed with the service's name (and its `$ref`s rewritten)."""
    paths: dict[str, Any] = dict(own_paths or {})
    components: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, Any]] = {}
    for service, doc in documents.items():
        doc = _rename_conflicts(service, doc, components)
        for kind, entries in (doc.get("components") or {}).items():
            components.setdefault(kind, {}).update(entries)
        for path, item in (doc.get("paths") or {}).items():
            if path in OPERATIONAL_PATHS:
                continue
            if path in paths:
                log.warning("openapi.duplicate_path", path=path, service=service)
                continue
            paths[path] = {**item, "x-service": service}
        for tag in doc.get("tags") or []:
            tags.setdefault(tag["name"], tag)
    description = "Every public route of the platform, through the one gateway port."
    if missing:
        down = ", ".join(f"{name} ({why})" for name, why in sorted(missing.items()))
        description += f"\n\nNot included (service not answering): {down}."
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "paths": dict(sorted(paths.items())),
        "components": components,
    }
    if tags:
        merged["tags"] = list(tags.values())
    return merged


def _rename_conflicts(
    service: str, doc: dict[str, Any], merged: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    renames: dict[str, str] = {}
    for kind, entries in (doc.get("components") or {}).items():
        for name, value in entries.items():
            existing = merged.get(kind, {}).get(name)
            if existing is not None and existing != value:
                prefix = "".join(part.capitalize() for part in service.split("-"))
                renames[COMPONENT_REF.format(kind=kind, name=name)] = COMPONENT_REF.format(
                    kind=kind, name=f"{prefix}{name}"
                )
    if not renames:
        return doc
    text = json.dumps(doc)
    for old, new in renames.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    renamed = json.loads(text)
    for kind, entries in list((renamed.get("components") or {}).items()):
        renamed["components"][kind] = {
            renames.get(COMPONENT_REF.format(kind=kind, name=n), f"/{n}").rsplit("/", 1)[1]: v
            for n, v in entries.items()
        }
    return renamed
