"""`make bench`: every figure measured in one run, printed side by side with its target."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bench import audit_replay, relay
from bench.harness import local_infra, machine, render

NOT_YET = (
    "access decision through the gateway vs a constant",
    "share -> visible to the recipient, p50/p99 with 20 senders",
    "WADO-RS instance retrieve vs a plain file response",
)


def main() -> None:
    figures = []
    with local_infra() as env:
        figures.append(asyncio.run(relay.measure(env)))
    figures.append(asyncio.run(audit_replay.measure()))
    print(f"StudyShare benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}\n")
    print(render(figures))
    print("\nnot measured yet: " + "; ".join(NOT_YET))


if __name__ == "__main__":
    main()
