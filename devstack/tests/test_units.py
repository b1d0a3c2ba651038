"""Pure parts: OpenAPI merge, mail parsing, DICOM generation, routing, nginx configuration."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from studyshare.contracts.routes import PORTAL, SERVICES, STOW_MAX_BYTES
from studyshare.devstack import nginx
from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related
from studyshare.devstack.inbox import Inbox, parse_mail
from studyshare.devstack.nginxconf import NginxOptions, render
from studyshare.devstack.openapi import merge_documents
from studyshare.devstack.routing import origin, route, route_table
from studyshare.devstack.settings import GatewaySettings


def _doc(path: str, schema: dict) -> dict:
    ref = {"$ref": "#/components/schemas/Thing"}
    return {
        "paths": {
            path: {
                "get": {"responses": {"200": {"content": {"application/json": {"schema": ref}}}}}
            },
            "/healthz": {"get": {}},
        },
        "components": {"schemas": {"Thing": schema, "Problem": {"type": "object"}}},
    }


def test_merge_renames_conflicting_components_only() -> None:
    merged = merge_documents(
        {
            "identity": _doc("/api/users", {"type": "string"}),
            "study-store": _doc("/api/studies", {"type": "integer"}),
        },
        missing={"audit": "ConnectError"},
    )
    assert set(merged["paths"]) == {"/api/users", "/api/studies"}
    assert set(merged["components"]["schemas"]) == {"Thing", "StudyStoreThing", "Problem"}
    get = merged["paths"]["/api/studies"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/StudyStoreThing"}
    assert "audit (ConnectError)" in merged["info"]["description"]


def test_parse_plain_mail() -> None:
    raw = (
        b"From: a@x.org\r\nTo: b@y.org, C <c@y.org>\r\nSubject: hi\r\n\r\nbody http://l.test/1\r\n"
    )
    mail = parse_mail(raw, "a@x.org", ["b@y.org", "c@y.org"])
    assert mail.to == ["b@y.org", "c@y.org"]
    assert mail.text.strip() == "body http://l.test/1"
    assert mail.html is None
    assert mail.links == ["http://l.test/1"]
    inbox = Inbox(keep=2)
    for _ in range(3):
        inbox.add_mail(mail)
    assert len(inbox.find_mails("C@Y.ORG")) == 2


def test_links_of_an_html_part_are_read_unescaped() -> None:
    raw = (
        b"From: a@x.org\r\nTo: b@y.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p><a href="http://l.test/r?email=b%40y.org&amp;bucket=bkt_1">'
        b"http://l.test/r?email=b%40y.org&amp;bucket=bkt_1</a></p>\r\n"
    )
    mail = parse_mail(raw, "a@x.org", ["b@y.org"])
    assert mail.links == ["http://l.test/r?email=b%40y.org&bucket=bkt_1"]


def test_demo_dicom_is_valid_and_stable() -> None:
    study = DemoStudy("k", "P1", "Demo^A", "19800101", "F", "CT", "OT", "20260101", "ACC1")
    data = instance(study, 1, 1)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.StudyInstanceUID == study.study_uid
    assert ds.pixel_array.shape == (16, 16)
    assert instance(study, 1, 1) == data
    body, content_type = multipart_related([data], boundary="b0")
    assert content_type == 'multipart/related; type="application/dicom"; boundary=b0'
    assert body.startswith(b"--b0\r\nContent-Type: application/dicom\r\n\r\n")
    assert body.endswith(b"\r\n--b0--\r\n")


def test_routing() -> None:
    table = route_table(GatewaySettings(upstreams={"identity": "http://i"}, mail_url="http://m"))
    assert route(table, "/api/users/me") == ("identity", "http://i")
    assert route(table, "/api/shares/x") == ("share", None)
    assert route(table, "/dev/sms") == ("mailcatcher", "http://m")
    assert route(table, "/elsewhere") is None


def test_nginx_configuration_has_a_location_for_every_prefix(tmp_path: Path) -> None:
    upstreams = {s.name: f"http://127.0.0.1:{s.port}" for s in SERVICES if s.name != "audit"}
    settings = GatewaySettings(upstreams=upstreams | {PORTAL.name: "http://127.0.0.1:8106"})
    options = NginxOptions("127.0.0.1:18080", "127.0.0.1:18081", 18082, tmp_path)
    conf = render(route_table(settings), options)
    for service in SERVICES:
        for prefix in service.prefixes:
            assert f"location = {prefix} {{" in conf
            assert f"location {prefix}/ {{" in conf
    assert "location / {\n            set $gw_upstream 'portal';" in conf
    assert '"service":"audit"' in conf  # not in this stack: 503
    assert "server 127.0.0.1:8101 max_fails=0;" in conf
    assert f"client_max_body_size {STOW_MAX_BYTES};" in conf
    assert str(tmp_path) in conf and "/var/" not in conf
    (tmp_path / "nginx.conf").write_text(conf)
    nginx.check(nginx.binary(), tmp_path / "nginx.conf", tmp_path)  # nginx -t accepts it


def test_an_upstream_is_an_origin_only() -> None:
    assert origin("http://127.0.0.1:8101/") == "127.0.0.1:8101"
    with pytest.raises(ValueError, match="http://host:port"):
        origin("http://127.0.0.1:8101/prefix")
