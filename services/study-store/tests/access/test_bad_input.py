"""Bad input is a 4xx with a reason (problem+json), never a 5xx."""

from __future__ import annotations

UID = "1.2.826.0.1.3680043.10.99"


async def test_malformed_requests_are_refused_with_problem_json(harness):
    h = harness
    await h.study(UID)
    staff = h.user("usr_s", "department_staff", department_ids=["dep_rad"])
    base = f"/api/studies/{UID}"
    cases = [
        ("GET", "/api/studies", {"params": {"date_from": "yesterday"}}),
        ("GET", "/api/studies", {"params": {"offset": -1}}),
        ("GET", "/api/studies", {"params": {"limit": 10_000}}),
        ("GET", f"{base}/report", {"params": {"version": 0}}),
        ("GET", f"{base}/report", {"params": {"version": 99}}),
        (
            "PUT",
            f"{base}/report",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("PUT", f"{base}/report", {"json": {"text": "x", "extra": 1}}),
        ("PUT", f"{base}/report", {"json": {"text": ""}}),
        (
            "PUT",
            f"{base}/report",
            {"content": b"\xff\xfe", "headers": {"content-type": "text/plain"}},
        ),
        (
            "PUT",
            f"{base}/report",
            {"content": b"<x/>", "headers": {"content-type": "application/xml"}},
        ),
        ("PUT", f"{base}/report", {"content": b"", "headers": {"content-type": "application/pdf"}}),
        ("POST", f"{base}/reference-numbers", {"json": {"valid_from": "soon"}}),
        ("POST", f"{base}/reference-numbers", {"json": {"reference_number": "ab-12"}}),
        ("POST", f"{base}/reference-numbers", {"json": {"patient_mobile": "call me"}}),
        (
            "POST",
            f"{base}/reference-numbers",
            {"content": b"[]", "headers": {"content-type": "application/json"}},
        ),
        ("PUT", f"{base}/reference-numbers/NOPE/pincode", {"json": {"pincode": "1234"}}),
        ("PUT", f"{base}/reference-numbers/NOPE/pincode", {"json": {"pincode": "12"}}),
        ("DELETE", f"{base}/reference-numbers/%20", {}),
        ("POST", f"{base}/break-glass", {"json": {}}),
        ("POST", f"{base}/break-glass", {"json": {"reason": "x" * 5000}}),
        ("POST", "/api/studies/9.9/break-glass", {"json": {"reason": "why"}}),
        ("GET", "/api/studies/9.9/reference-numbers", {}),
    ]
    for method, url, kw in cases:
        headers = {**staff, **kw.pop("headers", {})}
        r = await h.http.request(method, url, headers=headers, **kw)
        assert 400 <= r.status_code < 500, (method, url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), (url, r.text)
        assert r.json()["detail"], (url, r.text)
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert (await h.http.get("/api/studies", headers=bad_token)).status_code == 401


async def test_a_report_version_beyond_64_bits_is_refused_not_a_crash(harness):
    """Regression (found by fuzzing the gateway): the database cannot compare such a number,
    and reading that report version answered 500."""
    await harness.study(UID)
    staff = harness.user("usr_s", "department_staff", department_ids=["dep_rad"])
    for path in ("report", "report/content"):
        r = await harness.http.get(
            f"/api/studies/{UID}/{path}", params={"version": 2**63}, headers=staff
        )
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "version" in r.json()["detail"]
