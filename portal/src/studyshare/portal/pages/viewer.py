"""The image viewer: OHIF's prebuilt app under `/viewer/`, reading `/dicomweb` with a viewer
token of the study store, and the "open in Weasis" link for desktop users.

- `GET /viewer/<file>`: OHIF's files as `install_assets.py` installed them (`ohif/`).
- `GET /viewer/<route>` (any other path, e.g. `/viewer/viewer?StudyInstanceUIDs=`): the
  viewer's page (login needed). Its script (`static/viewer.js`) gives OHIF its configuration
  and the study's viewer token, and asks for a new one before it ends while the page is open.
- `POST /viewer/token` (CSRF token in `X-CSRF-Token`, form field `study`): the API's
  `POST /api/studies/{uid}/viewer-token` for the session's user, as JSON, with the DICOMweb
  root and the `weasis://` link of the study.

The portal decides nothing: the study store decides each DICOMweb request of the viewer (a
revocation, lock or expiry refuses the next one). Everything under `/viewer/` has its own
Content-Security-Policy (`VIEWER_CSP`): OHIF's codecs compile WebAssembly and build functions at
run time, its decoders run in workers, and its components set inline styles. Still no inline
script, same-origin only, and `frame-ancestors 'none'`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from studyshare.portal.adapters.public_api import ApiProblem, SessionEnded
from studyshare.portal.security import NO_STORE, read_form
from studyshare.portal.web import api_of, checked, render, require_login

router = APIRouter(include_in_schema=False)

#: where install_assets.py puts OHIF's dist/ (git-ignored)
OHIF = Path(__file__).resolve().parents[1] / "ohif"
VIEWER_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self' data: blob:",
        "media-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
VIEWER_HEADERS = {
    "Content-Security-Policy": VIEWER_CSP,
    # every file of the viewer is same-origin: isolation gives OHIF SharedArrayBuffer
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
    ".html": "text/html",
}
#: OHIF's files keep their names within one pinned version
STATIC_CACHE = "public, max-age=86400"
STUDY_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
FORWARDED_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def ohif_bundle(root: Path | None = None) -> tuple[str, str] | None:
    """(entry script, stylesheet) of the installed OHIF, None when it is not installed."""
    root = root or OHIF
    scripts = sorted(p.name for p in root.glob("app.bundle.*.js"))
    if len(scripts) != 1 or not (root / "app.bundle.css").is_file():
        return None
    return scripts[0], "app.bundle.css"


def ohif_file(path: str, root: Path | None = None) -> Path | None:
    """The installed file `path` names, if any (never outside `root`, never a dot file)."""
    root = root or OHIF
    if not path or any(part.startswith(".") for part in path.split("/")):
        return None
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def public_origin(request: Request) -> str:
    """Where the browser reached the portal: the gateway's (or Ingress's) forwarded host and
    scheme, else this request's own."""
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip()
    proto = request.headers.get("x-forwarded-proto", request.url.scheme).split(",")[0].strip()
    if host and FORWARDED_HOST.fullmatch(host) and proto in ("http", "https"):
        return f"{proto}://{host}"
    return str(request.base_url).rstrip("/")


def weasis_url(dicomweb: str, study_uid: str, token: str) -> str:
    """Weasis's URI scheme: `$dicom:rs` loads the study from our DICOMweb with the token."""
    command = (
        f'$dicom:rs --url "{dicomweb}" -r "studyUID={study_uid}" -H "Authorization: Bearer {token}"'
    )
    return "weasis://" + quote(command, safe="")


@router.get("/viewer")
async def viewer_root() -> Response:
    return RedirectResponse("/viewer/", status_code=307)


@router.post("/viewer/token")
async def viewer_token(request: Request) -> Response:
    """The study's viewer token for the session's user (JSON), or the API's refusal."""
    session = await checked(request)
    if not session.logged_in:
        return _json({"status": 401, "detail": "Log in again."}, 401)
    study = (await read_form(request)).get("study", "")
    if not STUDY_UID.fullmatch(study) or len(study) > 64:
        return _json({"status": 400, "detail": "No such study."}, 400)
    try:
        issued = await api_of(request).call(
            session, "POST", f"/api/studies/{quote(study)}/viewer-token"
        )
    except SessionEnded as ended:
        session.sign_out()
        return _json({"status": 401, "detail": ended.detail}, 401)
    except ApiProblem as problem:
        return _json(
            {"status": problem.status, "rule": problem.rule, "detail": problem.detail},
            problem.status,
        )
    dicomweb = public_origin(request) + issued.get("dicomweb_root", "/dicomweb")
    return _json(
        {
            "token": issued["token"],
            "expires_in": issued["expires_in"],
            "study_uid": issued["study_uid"],
            "dicomweb": dicomweb,
            "weasis": weasis_url(dicomweb, issued["study_uid"], issued["token"]),
        }
    )


@router.get("/viewer/{path:path}")
async def viewer(request: Request, path: str) -> Response:
    """An OHIF file, or the viewer's page for any route of OHIF's."""
    found = ohif_file(path)
    if found is not None:
        media = MEDIA_TYPES.get(found.suffix, "application/octet-stream")
        headers = {**VIEWER_HEADERS, "Cache-Control": STATIC_CACHE}
        return FileResponse(found, media_type=media, headers=headers)
    if Path(path).suffix or "/." in f"/{path}":
        return Response(status_code=404, headers=VIEWER_HEADERS)
    require_login(request)
    bundle = ohif_bundle()
    if bundle is None:
        return render(request, "error.html", 503, message_key="viewer.not_installed")
    study = request.query_params.get("StudyInstanceUIDs", "")
    response = render(
        request,
        "viewer.html",
        bundle_js=bundle[0],
        bundle_css=bundle[1],
        study_page=f"/studies/{quote(study)}" if STUDY_UID.fullmatch(study) else "/studies",
    )
    response.headers.update(VIEWER_HEADERS)
    return response


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": NO_STORE})
