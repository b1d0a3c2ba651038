"""Unit tests of the hash chains: a changed, removed or reordered entry is found and placed
(issue 7, point 5). The integration test `test_tamper.py` does the same on the database."""

from __future__ import annotations

import copy

from studyshare.audit.domain.chain import GENESIS, ChainVerifier, Ledger, entry_hash, seal
from studyshare.audit.domain.entries import build_entry

from .scenario import full_story


def chained():
    story, _ = full_story()
    ledger, last = Ledger(), {}
    docs = []
    for e in story.events:
        entry = build_entry(e)
        seal(entry, last.get(entry["stream"], GENESIS))
        last[entry["stream"]] = entry["hash"]
        docs.append(ledger.record(entry))
    return docs, {"seq": ledger.seq, "chain_hash": ledger.chain_hash}


def verify(docs, head):
    v = ChainVerifier()
    for d in sorted(docs, key=lambda d: d["seq"]):
        v.check(d)
    v.finish(head)
    return v


def test_an_untouched_chain_verifies():
    docs, head = chained()
    v = verify(docs, head)
    assert v.ok and v.checked == len(docs)


def test_hash_covers_content_and_link_but_not_the_ledger_position():
    docs, _ = chained()
    doc = copy.deepcopy(docs[3])
    doc["seq"], doc["chain_hash"] = 999, "x"
    assert entry_hash(doc) == docs[3]["hash"]
    doc["payload"]["reason"] = "edited"
    assert entry_hash(doc) != docs[3]["hash"]


def test_changed_entry_is_reported_at_its_seq():
    docs, head = chained()
    docs[9]["payload"]["user_id"] = "usr_someone_else"
    v = verify(docs, head)
    assert [(p.seq, p.kind) for p in v.problems] == [(10, "changed")]


def test_changed_entry_with_recomputed_hash_is_caught_by_its_successor_link():
    docs, head = chained()
    bucket_entries = [d for d in docs if d["event_type"] == "OTPFailed"]
    forged = bucket_entries[1]
    forged["payload"]["consecutive_failures"] = 0
    forged["hash"] = entry_hash(forged)
    v = verify(docs, head)
    assert (forged["seq"], "changed") in [(p.seq, p.kind) for p in v.problems]
    assert all(p.kind == "changed" for p in v.problems)


def test_removed_entry_is_reported_at_the_missing_seq():
    docs, head = chained()
    del docs[14]  # seq 15
    v = verify(docs, head)
    assert v.problems[0].seq == 15 and v.problems[0].kind == "removed"


def test_removed_last_entry_is_caught_by_the_head():
    docs, head = chained()
    docs.pop()
    v = verify(docs, head)
    assert [(p.seq, p.kind) for p in v.problems] == [(len(docs) + 1, "removed")]


def test_reordered_entries_are_reported_at_their_seqs():
    docs, head = chained()
    docs[4]["seq"], docs[5]["seq"] = docs[5]["seq"], docs[4]["seq"]
    v = verify(docs, head)
    assert {(p.seq, p.kind) for p in v.problems} == {(5, "reordered"), (6, "reordered")}


def test_reordering_within_one_stream_is_reported_as_reordered():
    docs, head = chained()
    otp = [d for d in docs if d["event_type"] == "OTPFailed"]
    a, b = otp[0], otp[1]
    a["seq"], b["seq"] = b["seq"], a["seq"]
    v = verify(docs, head)
    assert {p.kind for p in v.problems} == {"reordered"}
    assert {p.seq for p in v.problems} == {a["seq"], b["seq"]}
