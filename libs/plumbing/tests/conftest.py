from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from studyshare.contracts.envelope import Actor
from studyshare.contracts.events.share import OTPFailed
from studyshare.plumbing.eventstore import envelope_for
from studyshare.plumbing.infra import free_port
from studyshare.plumbing.tokens import TokenSigner

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


@pytest.fixture
def jwks_server():
    """A real HTTP server publishing a JWKS, like identity's /.well-known/jwks.json."""
    signer = TokenSigner()
    body = json.dumps(signer.jwks()).encode()
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield signer, f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", hits
    server.shutdown()
