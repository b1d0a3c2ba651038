"""Pure parts: OpenAPI merge, mail parsing, DICOM generation, routing."""

from __future__ import annotations

import io

import pydicom

from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related
from studyshare.devstack.gateway import Gateway
from studyshare.devstack.inbox import Inbox, parse_mail
from studyshare.devstack.openapi import merge_documents
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
    gateway = Gateway(GatewaySettings(upstreams={"identity": "http://i"}, mail_url="http://m"))
    assert gateway.route("/api/users/me") == ("identity", "http://i")
    assert gateway.route("/api/shares/x") == ("share", None)
    assert gateway.route("/dev/sms") == ("mailcatcher", "http://m")
    assert gateway.route("/elsewhere") is None
