"""Requests by remapped UIDs: `/dicomweb/studies/{uid}[/series/{uid}[/instances/{uid}]]...`
and `/api/studies/{uid}/...` naming a study by the UID an anonymized share showed are answered
as if the real UIDs were asked for (the routes then decide access and anonymize as always), for
a caller that bucket can grant (`AccessModel.reaches`). For anyone else a remapped UID stays
what it is to them, an unknown study: otherwise a caller with clear access, or with another
anonymized share of the study, could turn one share's UIDs into the patient or link two shares.

A pure ASGI middleware: a path naming a study the store knows is passed on untouched after one
look-up in the access model's cache, and the hot WADO routes never come here (a remapped UID
is no study they know, so they hand the request to the full app).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from studyshare.contracts.tokens import AccessClaims
from studyshare.plumbing.errors import RuleViolation
from studyshare.study_store.entrypoints.dependencies import dicom_reader
from studyshare.study_store.service_layer.anonymized_uids import RemappedUids

DICOMWEB_STUDIES, API_STUDIES = "/dicomweb/studies/", "/api/studies/"
#: DICOMweb methods answered by remapped UIDs: reads only. A STOW-RS to a remapped study names
#: a study the store does not know (its answer would otherwise echo the real UID)
READS = frozenset({"GET", "HEAD"})


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


#: who asks, found only when a remapped UID needs it (most requests name a real study)
Caller = Callable[[], Awaitable[AccessClaims | None]]


def known(who: AccessClaims | None) -> Caller:
    """A caller the route knows already (its principal)."""

    async def caller() -> AccessClaims | None:
        return who

    return caller


async def shown_by_a_share(state: Any, uid: str) -> bool:
    """Whether `uid` is the UID an anonymized share shows a study under (no upload may take
    it: a study of that UID would stand in for the share's)."""
    if getattr(state, "access_model", None) is None:
        return False
    return await remapped_uids(state).study(uid) is not None


async def resolved(state: Any, caller: Caller, uid: str) -> tuple[str, str] | None:
    """(real study UID, bucket id) of a remapped study UID, for a caller that bucket reaches."""
    found = await remapped_uids(state).study(uid)
    if found is None or (who := await caller()) is None:
        return None
    return found if await state.access_model.reaches(who, *found) else None


async def real_study_uids(state: Any, caller: Caller, uids: list[str]) -> set[str]:
    """The real study UIDs of `uids` (a QIDO-RS StudyInstanceUID filter), remapped or not."""
    model = getattr(state, "access_model", None)
    wanted = {u.strip() for u in uids}
    if model is None:
        return wanted
    out = set()
    for uid in wanted:
        real = await model.study(uid) is not None
        found = None if real else await resolved(state, caller, uid)
        out.add(found[0] if found else uid)
    return out


async def real_path(state: Any, path: str, caller: Caller) -> str | None:
    """The path with the real UIDs of a remapped study, series and instance; None when the
    path names no remapped study the caller may name that way."""
    parts = path.split("/")
    model = getattr(state, "access_model", None)
    if len(parts) < 4 or model is None or await model.study(parts[3]) is not None:
        return None
    found = await resolved(state, caller, parts[3])
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
        if scope["type"] == "http" and translated(scope):
            state = scope["app"].state
            if getattr(state, "access_model", None) is not None:
                path = await real_path(state, scope["path"], partial(caller_of, scope))
                if path is not None:
                    scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def translated(scope: Scope) -> bool:
    """Whether the request may name a study by a remapped UID."""
    path: str = scope["path"]
    if path.startswith(DICOMWEB_STUDIES):
        return scope["method"] in READS
    return path.startswith(API_STUDIES)


async def caller_of(scope: Scope) -> AccessClaims | None:
    """Who asks (an access token, or a viewer token of this store); None when nobody valid
    (the route then refuses as always)."""
    try:
        return await dicom_reader(Request(scope))
    except RuleViolation:
        return None
