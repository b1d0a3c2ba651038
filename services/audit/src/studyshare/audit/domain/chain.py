"""Tamper evidence: two hash chains over the log entries (pure, no I/O).

1. The *stream chain* links each entry to the previous entry of the same stream (the event's
   aggregate; "audit_log_used" for the audit's own read records): `hash = sha256(canonical
   JSON of the entry's content, prev_hash included)`. Kafka keeps the order of an aggregate's
   events, so this chain is identical in a live projection and in a replay, whatever the
   interleaving of partitions and topics: the rebuilt log has the very same hashes.
2. The *ledger chain* orders everything recorded in one generation: each entry gets a global
   `seq` (assigned by the single chain writer in the batch's transaction) and
   `chain_hash = sha256(seq | hash | previous chain_hash)`. It is how the log was recorded,
   so it differs between generations and is left out when a replay is compared.

A verifier walks the entries by `seq` and names the sequence number of every entry that was
changed (content no longer matches its hash, or its successor's link), removed (a gap in `seq`,
a broken stream link, or a head pointing past the end) or reordered (`seq` no longer matches the
ledger chain, or a stream's versions go backwards).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from studyshare.audit.domain.entries import utc

GENESIS = "0" * 64
# Fields that are not part of an entry's content: its hash, and the ledger (generation) fields.
VOLATILE = frozenset({"hash", "seq", "chain_hash", "prev_chain_hash", "recorded_at"})
LEDGER_HEAD = "__ledger__"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def canonical(entry: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTC millisecond timestamps: the same bytes after a DB round trip."""
    content = {k: v for k, v in entry.items() if k not in VOLATILE}
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    ).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """sha256 of the entry's canonical content followed by its `prev_hash`."""
    return hashlib.sha256(canonical(entry) + str(entry.get("prev_hash")).encode()).hexdigest()


def ledger_hash(seq: int, hash_: str, prev_chain_hash: str) -> str:
    return hashlib.sha256(f"{seq}|{hash_}|{prev_chain_hash}".encode()).hexdigest()


def seal(entry: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """Link the entry into its stream chain (sets `prev_hash` and `hash`)."""
    entry["prev_hash"] = prev_hash
    entry["hash"] = entry_hash(entry)
    return entry


@dataclass
class Ledger:
    """The head of a generation's ledger chain: last `seq` and its `chain_hash`."""

    seq: int = 0
    chain_hash: str = GENESIS

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        entry["seq"] = self.seq
        entry["prev_chain_hash"] = self.chain_hash
        entry["chain_hash"] = self.chain_hash = ledger_hash(
            self.seq, entry["hash"], self.chain_hash
        )
        return entry


ProblemKind = Literal["changed", "removed", "reordered"]


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    kind: ProblemKind
    detail: str
    entry_id: str | None = None


@dataclass
class ChainVerifier:
    """Feed entries in ascending `seq` order, then `finish(head)`."""

    checked: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    head: Mapping[str, Any] | None = None
    _expected_seq: int = 1
    _chain: str = GENESIS
    _misplaced_before: bool = False
    _streams: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # hash, version, seq

    def _problem(self, seq: int, kind: ProblemKind, detail: str, entry_id: Any = None) -> None:
        self.problems.append(ChainProblem(seq, kind, detail, str(entry_id) if entry_id else None))

    def check(self, entry: Mapping[str, Any]) -> None:
        self.checked += 1
        seq = int(entry.get("seq") or 0)
        entry_id = entry.get("_id")
        gap = seq != self._expected_seq
        if seq > self._expected_seq:
            missing = (
                f"{self._expected_seq}"
                if seq == self._expected_seq + 1
                else f"{self._expected_seq}..{seq - 1}"
            )
            self._problem(self._expected_seq, "removed", f"entries with seq {missing} are missing")
        elif seq < self._expected_seq:
            self._problem(seq, "reordered", f"seq {seq} appears after seq {self._expected_seq - 1}")
        intact = entry_hash(entry) == entry.get("hash")
        prev_chain = str(entry.get("prev_chain_hash"))
        in_place = ledger_hash(seq, str(entry.get("hash")), prev_chain) == entry.get("chain_hash")
        if not intact:
            self._problem(seq, "changed", "the entry no longer matches its hash", entry_id)
        elif not in_place:
            origin = self._recorded_seq(entry, seq)
            if origin is None:
                self._problem(seq, "changed", "the entry's ledger fields were rewritten", entry_id)
            else:
                self._problem(seq, "reordered", f"the entry was recorded at seq {origin}", entry_id)
        elif not gap and not self._misplaced_before and prev_chain != self._chain:
            self._problem(seq - 1, "changed", "the ledger link to the previous entry breaks")
        if in_place:
            self._check_stream(entry, seq, entry_id, after_gap=gap)
        else:
            self._remember(entry, seq)
        self._misplaced_before = not in_place
        self._chain = str(entry.get("chain_hash"))
        self._expected_seq = max(self._expected_seq, seq + 1)

    @staticmethod
    def _recorded_seq(entry: Mapping[str, Any], seq: int, reach: int = 1000) -> int | None:
        """Where a moved (but intact) entry was recorded: the seq its ledger hash fits."""
        hash_, prev = str(entry.get("hash")), str(entry.get("prev_chain_hash"))
        for candidate in range(max(1, seq - reach), seq + reach + 1):
            if ledger_hash(candidate, hash_, prev) == entry.get("chain_hash"):
                return candidate
        return None

    def _check_stream(
        self, entry: Mapping[str, Any], seq: int, entry_id: Any, after_gap: bool = False
    ) -> None:
        stream = str(entry.get("stream"))
        version = int(entry.get("aggregate_version") or 0)
        last_hash, last_version, last_seq = self._streams.get(stream, (GENESIS, 0, 0))
        if entry.get("prev_hash") != last_hash:
            if version and version < last_version:
                self._problem(
                    seq,
                    "reordered",
                    f"{stream} v{version} recorded after v{last_version} (seq {last_seq})",
                    entry_id,
                )
            elif (version and version > last_version + 1) or last_seq == 0:
                if not after_gap:  # else the missing seq just reported explains it
                    self._problem(
                        seq,
                        "removed",
                        f"the entry before {stream} v{version} in its stream is missing",
                        entry_id,
                    )
            else:
                self._problem(
                    last_seq,
                    "changed",
                    f"{stream} v{last_version} was rewritten (its successor's link breaks)",
                )
        self._remember(entry, seq)

    def _remember(self, entry: Mapping[str, Any], seq: int) -> None:
        stream = str(entry.get("stream"))
        version = int(entry.get("aggregate_version") or 0)
        if version >= self._streams.get(stream, (GENESIS, 0, 0))[1]:
            self._streams[stream] = (str(entry.get("hash")), version, seq)

    def finish(self, head: Mapping[str, Any] | None) -> None:
        """Compare the end of the walk with the recorded head (catches a removed tail)."""
        last = self._expected_seq - 1
        if head is None:
            pass
        elif int(head.get("seq", 0)) > last:
            self._problem(
                last + 1, "removed", f"the ledger ends at seq {last}, head says {head['seq']}"
            )
        elif int(head.get("seq", 0)) == last and last and head.get("chain_hash") != self._chain:
            self._problem(last, "changed", "the last entry does not match the ledger head")
        self._tidy()

    def _tidy(self) -> None:
        """One explanation per place: a rewritten entry (whose hash was recomputed) also breaks
        the ledger, which alone would read as a reordering."""
        changed = {p.seq for p in self.problems if p.kind == "changed"}
        unique: dict[tuple[int, str], ChainProblem] = {}
        for p in self.problems:
            if p.kind == "reordered" and p.seq in changed:
                continue
            unique.setdefault((p.seq, p.kind), p)
        self.problems = sorted(unique.values(), key=lambda p: (p.seq, p.kind))

    @property
    def ok(self) -> bool:
        return not self.problems
