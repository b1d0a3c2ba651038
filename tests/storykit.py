"""What the end-to-end stories share: the gateway as its users see it, polling with a timeout,
problem+json checks, and the mail catcher's mail and SMS (read through the gateway's `/dev`).

Nothing here touches a service's internals, the database or the broker.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related

T = TypeVar("T")
PROBLEM = "application/problem+json"
RETRY_UNTIL_KNOWN = {"StudyNotKnown", "RecipientNotKnown"}
OTP_CODE = re.compile(r"\b(\d{6})\b")
SLOW_WAIT_S = 2.0


class NotYet(AssertionError):
    """A polled condition did not hold before its timeout."""


class StudyNotLoggedYet(AssertionError):
    """No event about the study has reached the audit log yet (404 StudyNotInAuditLog)."""


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """Poll `check` until it returns something truthy (asynchronous effects: projections,
    mail, SMS); fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        result = check()
        if result:
            waited = time.monotonic() - (deadline - timeout)
            if waited > SLOW_WAIT_S:
                print(f"waited {waited:.1f}s for {what}")  # shown with `pytest -s`
            return result
        if time.monotonic() > deadline:
            raise NotYet(f"timed out after {timeout:.0f}s waiting for {what}; last: {result!r}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def refused_after(
    request: Callable[[], httpx.Response], bound_s: float, what: str
) -> tuple[httpx.Response, float]:
    """Poll `request` tightly from now until it is refused (not 200); the refusal and how many
    seconds it took. Fails when access still holds after `bound_s`."""
    start = time.monotonic()
    while True:
        response = request()
        elapsed = time.monotonic() - start
        if response.status_code != 200:
            return response, elapsed
        if elapsed > bound_s:
            raise NotYet(f"{what}: access still granted {elapsed:.2f}s later")
        time.sleep(0.01)


def refused_now(request: Callable[[], httpx.Response], what: str) -> httpx.Response:
    """The request sent right after a revocation, lock or logout answered: already refused
    (the command answers once every process deciding on it has it; issue 15, point 13)."""
    response = request()
    if response.status_code == 200:
        raise AssertionError(f"{what}: still granted right after the answer")
    return response


def problem(response: httpx.Response, status: int, rule: str | None = None) -> dict[str, Any]:
    """Assert a refusal: the status, problem+json, a reason, and the rule's stable name."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body.get("detail"), body
    if rule is not None:
        assert body.get("rule") == rule, body
    return body


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Person:
    """An account and its bearer headers."""

    user_id: str
    username: str
    password: str
    email: str
    mobile: str
    language: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Gateway:
    """The public API of the platform, as the stories use it."""

    client: httpx.Client

    # -- accounts -------------------------------------------------------------------------

    def login(self, username: str, password: str) -> dict[str, str]:
        """Bearer headers; a new account may take a moment to reach identity's read side."""

        def attempt() -> dict[str, str] | None:
            r = self.client.post(
                "/api/auth/login", json={"username": username, "password": password}
            )
            if r.status_code == 200:
                return {"Authorization": f"Bearer {r.json()['access_token']}"}
            return None

        return wait_for(attempt, f"login of {username}")

    def radiology_department(self, by: dict[str, str], name: str) -> str:
        """Create a Belgian radiology department as `by` (the service desk); its id."""
        body = {"name": name, "country": "be", "kind": "radiology"}
        return ok(self.client.post("/api/departments", json=body, headers=by), 201)["department_id"]

    def register(self, by: dict[str, str], first_name: str, **fields: Any) -> Person:
        """Register an account as `by` (service desk or department admin) and log it in."""
        tag = unique("")
        username = f"{first_name.lower()}.{tag}"
        person = Person(
            user_id="",
            username=username,
            password=f"Story-{tag}-Pass!",
            email=f"{username}@stories.studyshare.test",
            mobile=f"+3247{int(tag, 16) % 10**7:07d}",
            language=fields.pop("language", "en"),
        )
        body = {
            "username": person.username,
            "password": person.password,
            "first_name": first_name,
            "last_name": "Story",
            "email": person.email,
            "mobile": person.mobile,
            "language": person.language,
            **fields,
        }
        person.user_id = ok(self.client.post("/api/users", json=body, headers=by), 201)["user_id"]
        person.headers = self.login(person.username, person.password)
        return person

    # -- studies --------------------------------------------------------------------------

    def upload(self, by: Person, description: str, patient: str, birth_date: str) -> DemoStudy:
        """A new two-image study (STOW-RS), visible to its uploader once stored: MR images
        when the description starts with "MR", else CT."""
        key = unique("story-")
        modality = "MR" if description.startswith("MR") else "CT"
        study = DemoStudy(
            key, key.upper(), patient, birth_date, "F", description, modality, "20260301", key[-8:]
        )
        body, content_type = multipart_related([instance(study, 1, 1), instance(study, 1, 2)])
        headers = {**by.headers, "Content-Type": content_type, "Accept": "application/dicom+json"}
        r = self.client.post("/dicomweb/studies", content=body, headers=headers)
        assert r.status_code == 200, (r.status_code, r.text)
        wait_for(
            lambda: (
                self.client.get(f"/api/studies/{study.study_uid}", headers=by.headers).status_code
                == 200
            ),
            f"study {study.study_uid} in the study store",
        )
        return study

    def study(self, who: Person | dict[str, str], uid: str) -> httpx.Response:
        return self.client.get(f"/api/studies/{uid}", headers=_headers(who))

    def report(self, who: Person | dict[str, str], uid: str) -> httpx.Response:
        return self.client.get(f"/api/studies/{uid}/report", headers=_headers(who))

    # -- sharing --------------------------------------------------------------------------

    def share(self, by: Person, **body: Any) -> httpx.Response:
        """POST /api/shares; retried while the share service has not yet heard of a just
        uploaded study or a just registered recipient (a refusal stores nothing)."""
        defaults = {"reason": "second opinion", "patient_agreed": True, "send_mail": True}
        payload = defaults | body
        last: list[httpx.Response] = []

        def attempt() -> httpx.Response | None:
            r = self.client.post("/api/shares", json=payload, headers=by.headers)
            last[:] = [r]
            if r.status_code == 422 and r.json().get("rule") in RETRY_UNTIL_KNOWN:
                return None
            return r

        try:
            return wait_for(attempt, "studies and recipients known to the share service")
        except NotYet:
            return last[0]

    def shared(self, by: Person, **body: Any) -> str:
        """Share, expecting it to be accepted; the new bucket's id."""
        return ok(self.share(by, **body), 201)["bucket_id"]

    def request_otp(self, who: Person, bucket_id: str) -> str:
        """Ask for a one-time code and read it from the SMS sent to the registered mobile."""
        before = {s["id"] for s in self.sms_to(who.mobile)}
        ok(self.client.post(f"/api/shares/{bucket_id}/otp", headers=who.headers), 202)
        sms = wait_for(
            lambda: [s for s in self.sms_to(who.mobile) if s["id"] not in before],
            f"the OTP SMS to {who.username}",
        )
        match = OTP_CODE.search(sms[0]["text"])
        assert match, sms[0]["text"]
        return match.group(1)

    def verify_otp(self, who: Person, bucket_id: str, code: str) -> httpx.Response:
        return self.client.post(
            f"/api/shares/{bucket_id}/otp/verify", json={"code": code}, headers=who.headers
        )

    # -- mail catcher ---------------------------------------------------------------------

    def mails_to(self, email: str) -> list[dict[str, Any]]:
        return ok(self.client.get("/dev/mail", params={"to": email}))

    def sms_to(self, mobile: str) -> list[dict[str, Any]]:
        return ok(self.client.get("/dev/sms", params={"to": mobile}))

    def mail_about(self, email: str, needle: str, timeout: float = 30.0) -> dict[str, Any]:
        """The mail to `email` whose text mentions `needle` (e.g. a bucket id)."""
        return wait_for(
            lambda: next((m for m in self.mails_to(email) if needle in (m["text"] or "")), None),
            f"a mail to {email} about {needle}",
            timeout,
        )

    # -- study logging --------------------------------------------------------------------

    def study_log(self, reader: Person | dict[str, str], uid: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = self.client.get(
                f"/api/audit/studies/{uid}/log",
                params={"offset": offset, "limit": 500},
                headers=_headers(reader),
            )
            if response.status_code == 404:
                raise StudyNotLoggedYet(problem(response, 404, "StudyNotInAuditLog")["detail"])
            page = ok(response)
            entries += page["items"]
            if page.get("next_offset") is None:
                return entries
            offset = page["next_offset"]

    def access_tab(
        self,
        reader: Person | dict[str, str],
        uid: str,
        holds: Callable[[dict[str, Any]], bool],
        what: str,
    ) -> dict[str, Any]:
        """The study's Access tab (audit) once `holds` is true of it."""

        def tab() -> dict[str, Any] | None:
            r = self.client.get(f"/api/audit/studies/{uid}/access", headers=_headers(reader))
            return r.json() if r.status_code == 200 and holds(r.json()) else None

        return wait_for(tab, f"the Access tab of {uid} showing {what}")

    def logged(
        self,
        reader: Person | dict[str, str],
        uid: str,
        expected: Iterable[tuple[str, Callable[[dict[str, Any]], bool]]],
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Wait until the study logging holds an entry for every `(event_type, matches)`."""
        wanted = list(expected)

        def missing_steps() -> list[str]:
            try:
                entries = self.study_log(reader, uid)
            except StudyNotLoggedYet:
                entries = []
            return [
                event_type
                for event_type, matches in wanted
                if not any(e["event_type"] == event_type and matches(e) for e in entries)
            ]

        missing: list[str] = []

        def complete() -> bool:
            missing[:] = missing_steps()
            return not missing

        try:
            wait_for(complete, f"study logging of {uid}", timeout)
        except NotYet as exc:
            raise AssertionError(f"not in the study logging of {uid}: {missing}") from exc
        return self.study_log(reader, uid)


def _headers(who: Person | dict[str, str]) -> dict[str, str]:
    return who.headers if isinstance(who, Person) else who


def about_bucket(bucket_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["payload"].get("bucket_id") == bucket_id


def by_actor(user_id: str, **payload: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        user_id in e["actors"] and all(e["payload"].get(k) == v for k, v in payload.items())
    )


def anything(_: dict[str, Any]) -> bool:
    return True


def bucket_steps(entries: list[dict[str, Any]], bucket_id: str) -> list[str]:
    """The event types of one bucket in the study logging, in the bucket's own order."""
    mine = [e for e in entries if e.get("aggregate_id") == bucket_id]
    return [e["event_type"] for e in sorted(mine, key=lambda e: e["aggregate_version"])]
