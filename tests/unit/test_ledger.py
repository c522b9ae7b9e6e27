"""The worker's per-partition ledger: redeliveries skipped, duplicates marked, queue waits paired,
and a re-created topic's reused offsets stored rather than skipped."""

from __future__ import annotations

import orjson

from schemas.validation import decode_event
from streams.ledger import PartitionLedger, RecentKeys


def _event(event_id: str, run_id: str = "r1", type_: str = "run.queued", ts: str = "2026-11-16T10:00:00Z"):
    doc = {"event_id": event_id, "schema_version": 2, "type": type_, "ts": ts, "account_id": "a",
           "run_id": run_id, "workflow_id": "w", "workflow_name": "W", "workflow_version": 1,
           "workflow_type": "card", "trigger": "manual"}
    return decode_event(orjson.dumps(doc))


def test_positions_at_or_below_the_high_water_are_skipped_as_redelivered():
    ledger = PartitionLedger(0)
    assert ledger.annotate(_event("e1"), 10, 0).is_new
    assert ledger.annotate(_event("e2", "r2"), 10, 1).is_new
    assert ledger.annotate(_event("e1"), 10, 0) is None          # the same record again
    assert ledger.annotate(_event("e2", "r2"), 10, 1) is None
    assert ledger.skipped_redelivered == 2 and ledger.topic_resets == 0
    assert ledger.high_water == (10, 1)


def test_a_repeated_event_id_at_a_new_position_is_stored_but_not_counted():
    ledger = PartitionLedger(0)
    assert ledger.annotate(_event("e1"), 1).is_new
    note = ledger.annotate(_event("e1"), 2)
    assert note is not None and not note.is_new
    assert ledger.duplicates == 1


def test_queue_wait_is_carried_by_whichever_half_arrives_second():
    ledger = PartitionLedger(0)
    started = ledger.annotate(_event("s", type_="run.started", ts="2026-11-16T10:00:02.500Z"), 1)
    assert started.queue_wait_ms is None
    queued = ledger.annotate(_event("q", type_="run.queued", ts="2026-11-16T10:00:00Z"), 2)
    assert queued.queue_wait_ms == 2500 and queued.queue_wait_at.isoformat().startswith("2026-11-16T10:00:02.5")


def test_a_recreated_topic_reusing_offsets_is_stored_not_skipped():
    ledger = PartitionLedger(0)
    for offset in range(100, 110):
        ledger.annotate(_event(f"old-{offset}", f"r{offset}"), offset)
    # the broker lost its topic: offsets start again at 0, with other events
    notes = [ledger.annotate(_event(f"new-{offset}", f"n{offset}"), offset) for offset in range(5)]
    assert all(note is not None and note.is_new for note in notes)
    assert ledger.topic_resets == 1 and ledger.high_water == (4, 0)
    # and a redelivery of the new topic's records is still recognised
    assert ledger.annotate(_event("new-3", "n3"), 3) is None


def test_recent_keys_forget_the_oldest_first():
    keys = RecentKeys(3)
    for key in "abcd":
        keys.add(key)
    keys.add("c")            # already there: does not move or grow
    assert "a" not in keys and all(k in keys for k in "bcd") and len(keys) == 3
