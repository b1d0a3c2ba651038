"""How long a revocation and a logout take to answer, and how long after the answer the
revoked recipient (the ended token) is still served: the cost and the effect of issue 15,
point 13 on the whole local platform.

    PYTHONPATH=. uv run python bench/revocation.py [ROUNDS]

For each round: a recipient opens a shared study, the sender revokes them (timed), then the
recipient's WADO-RS metadata request (a hot route) is repeated until refused; a user reads a
study, logs out (timed), and the same token is tried at the study store until refused. Prints
p50 / p95 / max of each, and how many requests after the answers were still granted. Every
process it starts is stopped by PID.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from studyshare.devstack.dicomgen import DemoStudy, instance, multipart_related
from studyshare.devstack.platform import LocalPlatform

PASSWORD = "Bench-Revoke-2026!"


def until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError(what)


def refused_after(request) -> tuple[int, float]:
    """How many `request()`s from now were still granted (200), and for how many seconds."""
    started, granted = time.monotonic(), 0
    while request().status_code == 200:
        granted += 1
        time.sleep(0.005)
    return granted, (time.monotonic() - started) if granted else 0.0


def login(c: httpx.Client, username: str, password: str) -> dict[str, str]:
    def attempt():
        r = c.post("/api/auth/login", json={"username": username, "password": password})
        return r.status_code == 200 and {"Authorization": f"Bearer {r.json()['access_token']}"}

    return until(attempt, f"login {username}")


def register(c: httpx.Client, desk, name: str, **fields) -> tuple[str, dict[str, str]]:
    username = f"{name}.{uuid.uuid4().hex[:6]}"
    body = {
        "username": username,
        "password": PASSWORD,
        "first_name": name,
        "last_name": "Bench",
        "email": f"{username}@bench.studyshare.test",
        "language": "en",
        **fields,
    }
    r = c.post("/api/users", json=body, headers=desk)
    assert r.status_code == 201, r.text
    return r.json()["user_id"], login(c, username, PASSWORD)


def summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{name:<42} p50 {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  "
        f"max {ms[-1]:7.1f} ms  (n={len(ms)})"
    )


def sender_with_study(
    c: httpx.Client, platform: LocalPlatform, study: DemoStudy
) -> tuple[dict[str, str], dict[str, str], str]:
    """The service desk's headers, a physician of a new radiology department, and `study`
    (one image) uploaded by them and stored: (desk, sender, study UID)."""
    desk = login(c, platform.bootstrap_user, platform.bootstrap_password)
    body = {"name": f"Bench {uuid.uuid4().hex[:6]}", "country": "be", "kind": "radiology"}
    department = c.post("/api/departments", json=body, headers=desk).json()["department_id"]
    _, sender = register(c, desk, "sender", roles=["physician"], department_ids=[department])
    payload, content_type = multipart_related([instance(study, 1, 1)])
    r = c.post(
        "/dicomweb/studies", content=payload, headers={**sender, "Content-Type": content_type}
    )
    assert r.status_code == 200, r.text
    metadata = f"/dicomweb/studies/{study.study_uid}/metadata"
    until(lambda: c.get(metadata, headers=sender).status_code == 200, "the study")
    return desk, sender, study.study_uid


def main(rounds: int) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="studyshare-bench-revocation-"))
    with (
        LocalPlatform(run_dir, ready_timeout=240) as platform,
        httpx.Client(base_url=platform.gateway_url, timeout=30, trust_env=False) as c,
    ):
        study = DemoStudy(
            "bench-revoke", "BR-1", "Bench^Rev", "19700101", "F", "CT", "CT", "20260101", "ACC-R1"
        )
        desk, sender, uid = sender_with_study(c, platform, study)
        metadata = f"/dicomweb/studies/{uid}/metadata"

        answers, lags, served = [], [], []
        for n in range(rounds):
            user_id, recipient = register(c, desk, f"r{n}", roles=["physician"])
            share = {
                "study_uids": [uid],
                "recipients": [{"kind": "user", "id": user_id}],
                "access_level": "images_report_read",
                "reason": "bench",
                "patient_agreed": True,
                "two_factor": False,
                "send_mail": False,
            }
            bucket = until(
                lambda s=share: (
                    (r := c.post("/api/shares", json=s, headers=sender))
                    and r.status_code == 201
                    and r.json()["bucket_id"]
                ),
                "the share",
            )
            until(lambda h=recipient: c.get(metadata, headers=h).status_code == 200, "grant")
            started = time.monotonic()
            r = c.delete(f"/api/shares/{bucket}/recipients/{user_id}", headers=sender)
            answers.append(time.monotonic() - started)
            assert r.status_code == 200, r.text
            granted, lag = refused_after(lambda h=recipient: c.get(metadata, headers=h))
            served.append(granted)
            lags.append(lag)

        logouts, session_lags, session_served = [], [], []
        for _ in range(rounds):
            token = login(c, platform.bootstrap_user, platform.bootstrap_password)
            assert c.get(metadata, headers=token).status_code == 200
            started = time.monotonic()
            r = c.post("/api/auth/logout", headers=token)
            logouts.append(time.monotonic() - started)
            assert r.status_code == 204, r.text
            granted, lag = refused_after(lambda t=token: c.get(metadata, headers=t))
            session_served.append(granted)
            session_lags.append(lag)

    print(summary("revoke a recipient: answer", answers))
    print(summary("  then still served for", lags), f"({sum(served)} requests granted)")
    print(summary("logout: answer", logouts))
    print(summary("  then the token still served for", session_lags), end=" ")
    print(f"({sum(session_served)} requests granted)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
