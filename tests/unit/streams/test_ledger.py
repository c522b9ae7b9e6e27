"""The worker's per-partition ledger: redeliveries skipped, duplicates marked, queue waits paired,
a re-created topic's reused offsets stored rather than skipped, and ids keyed by account (two
tenants may reuse an event_id or run_id; neither loses events or pairs with the other)."""

from __future__ import annotations

import orjson

from schemas.validation import decode_event
from sinks.rows import sourced
from streams.ledger import PartitionLedger, RecentKeys, annotate_group


def _event(event_id: str, run_id: str = "r1", type_: str = "run.queued", ts: str = "2026-11-16T10:00:00Z",
           account: str = "a", **fields):
    doc = {"event_id": event_id, "schema_version": 2, "type": type_, "ts": ts, "account_id": account,
           "run_id": run_id, "workflow_id": "w", "workflow_name": "W", "workflow_version": 1,
           "workflow_type": "card", "trigger": "manual", **fields}
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


def test_the_same_event_id_in_two_accounts_is_two_new_events():
    """Account b reusing account a's event id is not a duplicate: both count."""
    ledger = PartitionLedger(0)
    assert ledger.annotate(_event("e1", account="a"), 1).is_new
    assert ledger.annotate(_event("e1", account="b"), 2).is_new
    assert ledger.duplicates == 0
    # a real duplicate is still one, per account
    again = ledger.annotate(_event("e1", account="b"), 3)
    assert again is not None and not again.is_new and ledger.duplicates == 1
    # and redeliveries of both positions are recognised as such
    assert ledger.annotate(_event("e1", account="a"), 1) is None
    assert ledger.annotate(_event("e1", account="b"), 2) is None
    assert ledger.topic_resets == 0


def test_a_redelivered_position_holding_another_accounts_event_is_not_taken_for_a_redelivery():
    """The position was stored with account a's event; account b's event with the same id at it
    means the topic was re-created: stored, not skipped."""
    ledger = PartitionLedger(0)
    ledger.annotate(_event("e1", account="a"), 5)
    note = ledger.annotate(_event("e1", account="b"), 5)
    assert note is not None and note.is_new and ledger.topic_resets == 1


def test_queue_waits_pair_only_within_one_account():
    """a's run.queued and b's run.started of the same run_id are two half-seen runs, not a sample."""
    ledger = PartitionLedger(0)
    queued_a = _event("qa", "r1", "run.queued", "2026-11-16T10:00:00Z", account="a")
    assert ledger.annotate(queued_a, 1).queue_wait_ms is None
    started_b = _event("sb", "r1", "run.started", "2026-11-16T10:00:09Z", account="b")
    assert ledger.annotate(started_b, 2).queue_wait_ms is None
    assert set(ledger.open_runs) == {("a", "r1"), ("b", "r1")}
    sa = ledger.annotate(_event("sa", "r1", "run.started", "2026-11-16T10:00:01Z", account="a"), 3)
    qb = ledger.annotate(_event("qb", "r1", "run.queued", "2026-11-16T10:00:07Z", account="b"), 4)
    assert (sa.queue_wait_ms, qb.queue_wait_ms) == (1000, 2000)
    assert not ledger.open_runs


def test_a_ledger_seeded_from_storage_keys_by_account():
    """What ``Warehouse.load_ledger`` seeds: stored (account, event id) pairs and half-seen runs."""
    ledger = PartitionLedger(0, high_water=(9, 0))
    ledger.remember_event("a", "e1")
    ledger.remember_open_run("a", "r1", queued_at=_event("x").ts, started_at=None)
    assert ledger.annotate(_event("e1", "r9", account="a"), 9) is None      # a's e1 was stored there
    assert ledger.annotate(_event("e1", "r9", account="b"), 10).is_new    # b's e1 is another event
    late = ledger.annotate(_event("s", "r1", "run.started", "2026-11-16T10:00:03Z", account="b"), 11)
    assert late.queue_wait_ms is None                                      # not a's queued run
    own = ledger.annotate(_event("s", "r1", "run.started", "2026-11-16T10:00:03Z", account="a"), 12)
    assert own.queue_wait_ms == 3000


def test_a_ledger_from_stored_state_is_the_one_seeded_by_hand():
    """``PartitionLedger.from_state`` (what ``Warehouse.load_ledger`` reads) seeds the high-water
    position, the horizon oldest first and the half-seen runs, with the capacity it was read with."""
    from sinks.ledger_state import LedgerState, StoredOpenRun

    queued = _event("x").ts
    state = LedgerState(3, recent_capacity=2, high_water=(9, 1),
                        recent=(("a", "old"), ("a", "e1"), ("b", "e2")),
                        open_runs=(StoredOpenRun("a", "r1", queued, None),))
    ledger = PartitionLedger.from_state(state)
    assert (ledger.partition, ledger.high_water, ledger.recent_capacity) == (3, (9, 1), 2)
    assert ("a", "old") not in ledger.recent and len(ledger.recent) == 2   # the oldest left the horizon
    assert ledger.annotate(_event("e1", "r9", account="a"), 9, 0) is None  # stored there before
    assert set(ledger.open_runs) == {("a", "r1")}
    own = ledger.annotate(_event("s", "r1", "run.started", "2026-11-16T10:00:03Z", account="a"), 12)
    assert own.queue_wait_ms == 3000


def test_the_state_of_an_empty_partition_is_a_fresh_ledger():
    from sinks.ledger_state import LedgerState

    ledger = PartitionLedger.from_state(LedgerState(5))
    fresh = PartitionLedger(5)
    assert (ledger.high_water, ledger.recent_capacity, len(ledger.recent), dict(ledger.open_runs)) == \
        (fresh.high_water, fresh.recent_capacity, 0, {})


def test_a_group_is_annotated_by_its_partitions_ledgers_with_signals_of_new_run_events_only():
    ledgers = {0: PartitionLedger(0), 1: PartitionLedger(1)}
    queued = _event("e1")
    step = _event("e2", type_="step.started", step_id="s1", step_index=0, step_name="S", step_type="action", attempt=1)
    group = [sourced(queued, 0, 5), sourced(step, 0, 6), sourced(_event("e1"), 0, 7),   # e1 again: duplicate
             sourced(_event("e3", "r3"), 1, 2)]
    first = annotate_group(group, ledgers)
    assert first.kept == group
    assert [note.is_new for note in first.notes] == [True, True, False, True]
    assert first.duplicates == 1
    # signals: the run events that are new (e1 at 5, e3 on partition 1), not the step, not the duplicate
    assert [(s.partition, s.offset) for s in first.signals] == [(0, 5), (1, 2)]
    assert ledgers[0].high_water == (7, 0) and ledgers[1].high_water == (2, 0)
    again = annotate_group(group, ledgers)   # the same group redelivered: every event already stored
    assert again.kept == [] and again.signals == [] and again.duplicates == 0
