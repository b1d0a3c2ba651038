"""The image viewer's pages: OHIF's files under /viewer/ with their own CSP, the viewer token
for the session's user, and the weasis:// link (no platform: the API is a fake)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi.testclient import TestClient

from studyshare.portal.adapters.public_api import PublicAPI
from studyshare.portal.app import create_app
from studyshare.portal.pages import viewer
from studyshare.portal.security import CONTENT_SECURITY_POLICY
from studyshare.portal.settings import PortalSettings

from .test_assets import install_assets
from .test_web import FakeAPI, _problem, csrf_of, log_in

STUDY = "1.2.826.0.1.3680043.10.77"


class ViewerAPI(FakeAPI):
    """FakeAPI and the study store's viewer token route."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: tuple[int, str, str] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/viewer-token"):
            self.calls.append(
                (request.method, request.url.path, None, request.headers.get("authorization"))
            )
            if self.refuse:
                return _problem(*self.refuse)
            return httpx.Response(
                200,
                json={
                    "token": "viewer.jwt",
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "study_uid": STUDY,
                    "dicomweb_root": "/dicomweb",
                },
            )
        return super().__call__(request)


@pytest.fixture
def fake() -> ViewerAPI:
    return ViewerAPI()


@pytest.fixture
def ohif(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the installed OHIF dist."""
    root = tmp_path / "ohif"
    (root / "assets").mkdir(parents=True)
    (root / "app.bundle.0123abcd.js").write_text("window.started = true;")
    (root / "app.bundle.css").write_text("body{}")
    (root / "42.bundle.ffff.js").write_text("self.worker = 1;")
    (root / "codec.wasm").write_bytes(b"\0asm")
    (root / ".installed").write_text("@ohif/app@x sha512-y")
    monkeypatch.setattr(viewer, "OHIF", root)
    return root


@pytest.fixture
def client(fake: ViewerAPI, ohif: Path):
    api = PublicAPI("http://gateway.test", 5)
    api.client = httpx.AsyncClient(
        base_url="http://gateway.test", transport=httpx.MockTransport(fake)
    )
    app = create_app(PortalSettings(environment="test"), api=api)
    with TestClient(app, base_url="https://portal.test") as c:
        yield c


def ask_token(client: TestClient, study: str = STUDY, **headers: str) -> httpx.Response:
    return client.post(
        "/viewer/token",
        data={"study": study},
        headers={"X-CSRF-Token": csrf_of(client, "/studies"), **headers},
    )


def test_the_viewer_token_is_the_apis_for_the_sessions_user(
    client: TestClient, fake: ViewerAPI
) -> None:
    log_in(client)
    answer = ask_token(
        client, **{"X-Forwarded-Host": "studyshare.example.org", "X-Forwarded-Proto": "https"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token"] == "viewer.jwt" and body["expires_in"] == 300
    assert body["dicomweb"] == "https://studyshare.example.org/dicomweb"
    method, path, _, bearer = fake.calls[-1]
    assert (method, path, bearer) == ("POST", f"/api/studies/{STUDY}/viewer-token", "Bearer a1")
    command = unquote(body["weasis"].removeprefix("weasis://"))
    assert body["weasis"].startswith("weasis://%24dicom%3Ars%20")
    assert command == (
        '$dicom:rs --url "https://studyshare.example.org/dicomweb" '
        f'-r "studyUID={STUDY}" -H "Authorization: Bearer viewer.jwt"'
    )


def test_the_viewer_token_needs_the_csrf_token_a_login_and_a_study_uid(
    client: TestClient, fake: ViewerAPI
) -> None:
    assert client.post("/viewer/token", data={"study": STUDY}).status_code == 403
    assert ask_token(client).status_code == 401
    log_in(client)
    assert ask_token(client, study="../../api/users").status_code == 400
    assert not [c for c in fake.calls if c[1].endswith("/viewer-token")]


def test_a_refusal_is_the_apis_reason(client: TestClient, fake: ViewerAPI) -> None:
    log_in(client)
    fake.refuse = (403, "GrantRevoked", "your access was revoked (bucket bkt_1)")
    answer = ask_token(client)
    assert answer.status_code == 403
    assert answer.json() == {
        "status": 403,
        "rule": "GrantRevoked",
        "detail": "your access was revoked (bucket bkt_1)",
    }


def test_the_viewer_page_needs_a_login_and_loads_ohif_without_inline_script(
    client: TestClient,
) -> None:
    path = f"/viewer/viewer?StudyInstanceUIDs={STUDY}"
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=%2Fviewer%2Fviewer")
    log_in(client, path)
    page = client.get(path)
    assert page.status_code == 200
    assert '<script src="/viewer/app.bundle.0123abcd.js" defer></script>' in page.text
    assert '<script src="/static/viewer.js"></script>' in page.text
    assert "<script>" not in page.text and " style=" not in page.text
    assert f'content="/studies/{STUDY}"' in page.text
    assert page.headers["content-security-policy"] == viewer.VIEWER_CSP
    assert page.headers["cache-control"] == "no-store"


def test_only_the_viewer_has_the_viewers_csp(client: TestClient) -> None:
    script = client.get("/viewer/42.bundle.ffff.js")
    assert script.status_code == 200 and script.text == "self.worker = 1;"
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == viewer.VIEWER_CSP
    assert client.get("/viewer/codec.wasm").headers["content-type"] == "application/wasm"
    csp = dict(d.split(" ", 1) for d in viewer.VIEWER_CSP.split("; "))
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert "unsafe-inline" not in csp["script-src"] and "http" not in viewer.VIEWER_CSP
    for page in ("/login", "/static/portal.js"):
        assert client.get(page).headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_only_installed_files_are_served(client: TestClient, ohif: Path) -> None:
    assert client.get("/viewer/.installed").status_code == 404
    assert client.get("/viewer/missing.bundle.js").status_code == 404
    assert client.get("/viewer/..%2F..%2Fsettings.py").status_code == 404
    assert viewer.ohif_file("../ohif/app.bundle.css", ohif) is None
    assert viewer.ohif_file("assets/../app.bundle.css", ohif) is None
    assert viewer.ohif_file("app.bundle.css", ohif) == ohif / "app.bundle.css"
    assert viewer.ohif_file("assets", ohif) is None


def test_the_study_page_offers_the_viewer_and_weasis() -> None:
    template = (Path(viewer.__file__).parents[1] / "templates" / "study.html").read_text()
    assert 'id="open-viewer" href="/viewer/viewer?StudyInstanceUIDs=' in template
    assert 'data-weasis="{{ study.study_uid }}"' in template


# -- install_assets: a package installed as a tree --------------------------------------------


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def tree_package(tgz: Path, **tree: object) -> dict:
    return {
        "name": "@ohif/app",
        "version": "1.0.0",
        "integrity": install_assets.integrity_of(tgz.read_bytes()),
        "tree": {"from": "package/dist/", "into": "ohif-test", **tree},
    }


def test_a_tree_is_extracted_less_what_is_excluded_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(install_assets, "PACKAGE", tmp_path)
    tgz = tarball(
        tmp_path / "app.tgz",
        {
            "package/dist/app.bundle.1.js": b'__webpack_require__.p = "/";',
            "package/dist/app.bundle.css": b"a{src:url(/x.woff2)}",
            "package/dist/index.html": b"<script>inline</script>",
            "package/dist/ort/big.wasm": b"\0" * 10,
            "package/README.md": b"not dist",
        },
    )
    package = tree_package(
        tgz,
        exclude=["index.html", "ort/"],
        rewrite={
            ".js": [['__webpack_require__.p = "/";', '__webpack_require__.p = "/viewer/";']],
            ".css": [["url(/", "url(/viewer/"]],
        },
    )
    monkeypatch.setattr(install_assets, "pack", lambda name, version, scratch: tgz)
    install_assets.install(package, tmp_path)
    target = tmp_path / "ohif-test"
    assert sorted(p.name for p in target.iterdir()) == [
        ".installed",
        "app.bundle.1.js",
        "app.bundle.css",
    ]
    assert (target / "app.bundle.1.js").read_text() == '__webpack_require__.p = "/viewer/";'
    assert (target / "app.bundle.css").read_text() == "a{src:url(/viewer/x.woff2)}"
    stamp = {"@ohif/app@1.0.0": package["integrity"]}
    assert install_assets.is_current(package, stamp)


def test_a_rewrite_that_finds_nothing_or_a_path_outside_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(install_assets, "PACKAGE", tmp_path)
    tgz = tarball(tmp_path / "a.tgz", {"package/dist/app.js": b"nothing to rewrite"})
    package = tree_package(tgz, rewrite={".js": [["publicPath='/'", "publicPath='/viewer/'"]]})
    monkeypatch.setattr(install_assets, "pack", lambda name, version, scratch: tgz)
    with pytest.raises(install_assets.IntegrityError, match="matched nothing"):
        install_assets.install(package, tmp_path)
    assert not (tmp_path / "ohif-test").exists()
    evil = tarball(tmp_path / "b.tgz", {"package/dist/../../escape.js": b"x"})
    monkeypatch.setattr(install_assets, "pack", lambda name, version, scratch: evil)
    with pytest.raises(install_assets.IntegrityError, match="leaves"):
        install_assets.install(tree_package(evil), tmp_path)


def test_the_pinned_ohif_is_the_registrys_prebuilt_app() -> None:
    manifest = json.loads((Path(install_assets.__file__).parent / "assets.json").read_text())
    (ohif,) = [p for p in manifest["packages"] if p["name"] == "@ohif/app"]
    assert ohif["version"].startswith("3.")
    assert ohif["tree"]["from"] == "package/dist/" and ohif["tree"]["into"] == "ohif"
    assert {"index.html", "app-config.js", "sw.js"} <= set(ohif["tree"]["exclude"])
