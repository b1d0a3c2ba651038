"""How soon the sender's message turns read after the recipient first opens the study, on the
whole local platform with `make run`'s settings (accesses coalesced per 60 s window): issue 16,
point 12.

    PYTHONPATH=. uv run python bench/message_read.py [ROUNDS]

For each round: a new recipient gets a share with a message, opens the study in the viewer's
way (WADO-RS metadata, not the study page), then `GET /api/shared-with-me` and `GET
/api/studies` are polled every 20 ms until the message is read. Prints p50 / p95 / max of
each. Every process it starts is stopped by PID.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.revocation import register, sender_with_study, summary, until
from studyshare.devstack.dicomgen import DemoStudy
from studyshare.devstack.platform import LocalPlatform


def main(rounds: int) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="studyshare-bench-message-read-"))
    with (
        LocalPlatform(run_dir, ready_timeout=240) as platform,
        httpx.Client(base_url=platform.gateway_url, timeout=30, trust_env=False) as c,
    ):
        study = DemoStudy(
            "bench-read", "BM-1", "Bench^Read", "19700101", "F", "CT", "CT", "20260101", "ACC-M1"
        )
        desk, sender, uid = sender_with_study(c, platform, study)
        metadata = f"/dicomweb/studies/{uid}/metadata"

        inbox, overview = [], []
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
                "message": "please look",
            }
            bucket = until(
                lambda s=share: (
                    (r := c.post("/api/shares", json=s, headers=sender))
                    and r.status_code == 201
                    and r.json()["bucket_id"]
                ),
                "the share",
            )

            def in_inbox(h=recipient, b=bucket) -> str | None:
                items = c.get("/api/shared-with-me", headers=h).json()["items"]
                return next((i["message_state"] for i in items if i["bucket_id"] == b), None)

            def in_overview(h=recipient) -> str | None:
                items = c.get("/api/studies", headers=h).json()["items"]
                return next((i["message_state"] for i in items if i["study_uid"] == uid), None)

            assert until(in_inbox, "the share") == "unread"
            assert until(in_overview, "the grant") == "unread"
            until(lambda h=recipient: c.get(metadata, headers=h).status_code == 200, "open")
            opened = time.monotonic()
            seen: dict[str, float] = {}
            while len(seen) < 2 and time.monotonic() - opened < 120:
                if "inbox" not in seen and in_inbox() == "read":
                    seen["inbox"] = time.monotonic() - opened
                if "overview" not in seen and in_overview() == "read":
                    seen["overview"] = time.monotonic() - opened
                time.sleep(0.02)
            inbox.append(seen.get("inbox", float("inf")))
            overview.append(seen.get("overview", float("inf")))

    print(summary("read in GET /api/shared-with-me after", inbox))
    print(summary("read in GET /api/studies after", overview))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
