from __future__ import annotations

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
def tally_process(service_processes):
    """Start `tally_service.py <command>` against the test infra and a given database."""

    def start(command: str, database: str, *extra: str) -> subprocess.Popen:
        overrides = {"relay_batch_size": "50"} if command == "relay" else {}
        env = service_processes.env(database, f"tally-{database}", **overrides)
        argv = [sys.executable, str(HERE / "tally_service.py"), command, *extra]
        return service_processes.start(argv, env, f"{command}-{len(service_processes.started)}")

    return start
