"""Shared bench plumbing: local infrastructure and the result table."""

from __future__ import annotations

import contextlib
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from studyshare.plumbing import infra


@dataclass
class Figure:
    name: str
    ours: float
    baseline: float | None
    unit: str
    target: str
    ok: bool
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.ours / self.baseline


@dataclass
class LocalInfra:
    kafka_bootstrap: str
    mongo_url: str


@contextlib.contextmanager
def local_infra() -> Iterator[LocalInfra]:
    """A broker and a database of our own on free ports, stopped by PID."""
    workdir = Path(tempfile.mkdtemp(prefix="studyshare-bench-"))
    kafka_port, mongo_port = infra.free_port(), infra.free_port()
    broker = infra.broker(kafka_port, workdir / "tansu.log").start()
    database = infra.database(mongo_port, workdir / "db", workdir / "secantus.log").start()
    try:
        yield LocalInfra(f"127.0.0.1:{kafka_port}", infra.mongo_url(mongo_port))
    finally:
        broker.stop()
        database.stop()


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def render(figures: list[Figure]) -> str:
    rows = ["| figure | ours | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    for f in figures:
        base = f"{f.baseline:,.1f} {f.unit}" if f.baseline is not None else "—"
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
        rows.append(
            f"| {f.name} | {f.ours:,.1f} {f.unit} | {base} | {ratio} | {f.target} | "
            f"{'yes' if f.ok else 'NO'}{' — ' + f.note if f.note else ''} |"
        )
    return "\n".join(rows)
