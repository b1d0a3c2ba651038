"""Requests by remapped UIDs: `/dicomweb/studies/{uid}[/series/{uid}[/instances/{uid}]]...`
and `/api/studies/{uid}/...` naming a study by the UID an anonymized share showed are answered
as if the real UIDs were asked for (the routes then decide access and anonymize as always).

A pure ASGI middleware: a path naming a study the store knows is passed on untouched after one
look-up in the access model's cache, and the hot WADO routes never come here (a remapped UID
is no study they know, so they hand the request to the full app).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from studyshare.study_store.service_layer.anonymized_uids import RemappedUids

PREFIXES = ("/dicomweb/studies/", "/api/studies/")


def remapped_uids(state: Any) -> RemappedUids:
    """The app's index of remapped UIDs (made on first use)."""
    index = getattr(state, "remapped_uids", None)
    if index is None:
        index = RemappedUids(
            state.settings.anonymization_secret,
            state.access_model.remapped_study,
            state.dicom.instances.instances_of,
        )
        state.remapped_uids = index
    return index


async def real_study_uids(state: Any, uids: list[str]) -> set[str]:
    """The real study UIDs of `uids` (a QIDO-RS StudyInstanceUID filter), remapped or not."""
    model = getattr(state, "access_model", None)
    wanted = {u.strip() for u in uids}
    if model is None:
        return wanted
    out = set()
    for uid in wanted:
        known = await model.study(uid) is not None
        found = None if known else await remapped_uids(state).study(uid)
        out.add(found[0] if found else uid)
    return out


async def real_path(state: Any, path: str) -> str | None:
    """The path with the real UIDs of a remapped study, series and instance; None when the
    path names no remapped study."""
    parts = path.split("/")
    model = getattr(state, "access_model", None)
    if len(parts) < 4 or model is None or await model.study(parts[3]) is not None:
        return None
    found = await remapped_uids(state).study(parts[3])
    if found is None:
        return None
    study_uid, bucket_id = found
    parts[3] = study_uid
    at = [i for i in (5, 7) if len(parts) > i and parts[i - 1] in ("series", "instances")]
    if at and parts[1] == "dicomweb":
        real = await remapped_uids(state).within(study_uid, bucket_id, [parts[i] for i in at])
        for i, uid in zip(at, real, strict=True):
            parts[i] = uid
    return "/".join(parts)


class RemappedUidPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            state = scope["app"].state
            if getattr(state, "access_model", None) is not None:
                path = await real_path(state, scope["path"])
                if path is not None:
                    scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
