"""DICOMweb under `/dicomweb`: STOW-RS (`entrypoints.stow`), QIDO-RS (`entrypoints.qido`),
WADO-RS (`entrypoints.wado`) and rendered resources (`entrypoints.rendered`), put together.

Every study route is guarded by the caller's `AccessDecision` (`ReaderStudyAccess`): no
images, no answer. What is served depends on it (`domain.serving`): report-bearing objects
only with report access and never on anonymized shares, a share message series only to its
bucket's recipients and the study's own department, anonymized shares rewritten on the way
out. The read routes also take the image viewer's viewer token (`domain.viewer`). Each
retrieval is registered with `app.state.access_log.record(decision, principal, action)`.

What these routes need from the rest of the study store (the access half):
- the app's lifespan calls `await install_dicom(app, db, settings)` once;
- `await app.state.access_model.decide(principal, study_uid) -> AccessDecision` (via
  `ReaderStudyAccess`), `.peek_study(study_uid)` (the study document it holds, if any);
- `await app.state.access_model.visible_studies(principal) -> VisibleStudies`: the studies the
  caller may open, in the clear or anonymized (QIDO-RS searches only those, then asks `decide`
  for each);
- `app.state.access_log.record(decision, principal, action)` (sync or async), action one of
  view | metadata | instances | rendered | download | forward.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from fastapi import APIRouter, FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.study_store.adapters.viewer_tokens import ViewerTokens
from studyshare.study_store.entrypoints import qido, rendered, stow, wado
from studyshare.study_store.service_layer.retrieval import DicomStores, open_stores
from studyshare.study_store.settings import StudyStoreSettings

router = APIRouter()
for part in (stow.router, qido.router, wado.router, rendered.router):
    router.include_router(part)

#: the STOW-RS routes: their request bodies are bounded by `settings.stow_max_bytes`
STOW = stow.STOW


async def install_dicom(
    app: FastAPI, db: AsyncDatabase, settings: StudyStoreSettings
) -> DicomStores:
    """Create the DICOM stores on `app.state.dicom` (call from the app's lifespan)."""
    stores = await open_stores(db, settings, study_version(app))
    app.state.dicom = stores
    app.state.viewer_tokens = ViewerTokens(
        settings.viewer_token_secret, settings.viewer_token_ttl_s
    )
    return stores


def study_version(app: FastAPI) -> Callable[[str], Hashable]:
    """The access model's copy of a study changes with every batch of instances stored."""

    def version(study_uid: str) -> Hashable:
        model = getattr(app.state, "access_model", None)
        study = model.peek_study(study_uid) if model is not None else None
        return None if study is None else (study.get("seq"), study.get("instance_count"))

    return version
