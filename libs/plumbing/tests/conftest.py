from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import OTPFailed
from studyshare.plumbing.eventstore import envelope_for

HERE = Path(__file__).parent


def otp_failures(bucket_id: str, count: int, start: int = 1, correlation_id: str = "c"):
    """`count` consecutive OTPFailed events of one bucket, versions start..start+count-1."""
    return [
        envelope_for(
            OTPFailed(bucket_id=bucket_id, recipient_id="usr_r", consecutive_failures=v),
            aggregate_id=bucket_id,
            aggregate_version=v,
            actor=Actor(id="usr_r"),
            correlation_id=correlation_id,
        )
        for v in range(start, start + count)
    ]


@pytest.fixture
def tally_process(real_infra, tmp_path):
    """Start `tally_service.py <command>` against the test infra and a given database."""
    started: list[subprocess.Popen] = []

    def start(command: str, database: str, *extra: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "STUDYSHARE_SERVICE_NAME": f"tally-{database}",
            "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
            "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
            "STUDYSHARE_DATABASE": database,
            "STUDYSHARE_ENVIRONMENT": "test",
            "STUDYSHARE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "STUDYSHARE_KAFKA_REBALANCE_TIMEOUT_MS": "6000",
        }
        if command == "relay":
            env["STUDYSHARE_RELAY_BATCH_SIZE"] = "50"
        log = open(tmp_path / f"{command}-{len(started)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "tally_service.py"), command, *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
