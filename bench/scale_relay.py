"""Outbox relay throughput as its backlog grows: a fresh relay publishing `BENCH_SCALE_RELAY_EVENTS`
stored events (`bench/relay.py`'s events, 500 aggregates), events/s.

The rate should stay flat: the relay scans the outbox once, in insertion order, each batch one
acknowledged send, whatever lies behind it.
"""

from __future__ import annotations

import asyncio
import os
import sys

from bench.harness import LocalInfra
from bench.relay import drain_rate
from bench.scale import Curve, Series

EVENTS = tuple(
    int(s) for s in os.environ.get("BENCH_SCALE_RELAY_EVENTS", "10000,100000").split(",")
)


def measure(env: LocalInfra, sizes: tuple[int, ...] = EVENTS) -> Curve:
    curve = Curve(
        "outbox relay, a fresh relay publishing its backlog",
        "events",
        [Series("rate", "events/s", True)],
        linear=False,
        note="rate should stay flat in the backlog",
    )
    for n in sorted(sizes):
        rate = asyncio.run(drain_rate(env, n))
        curve.add(n, rate)
        print(f"  relay backlog {n:,}: {rate:,.0f} events/s", file=sys.stderr)
    return curve
