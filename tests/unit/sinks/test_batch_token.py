"""``sinks.clickhouse.batch_token``: the insert deduplication token of a batch. A retry of the
same rows must repeat it (ClickHouse then drops the retry), in any order; other rows, or the
same positions of another table, must not."""

from __future__ import annotations

import re

from sinks.clickhouse import batch_token

ROWS = [(0, 10, 0, "e1"), (0, 10, 1, "e2"), (1, 3, 0, "e3")]


def test_the_same_rows_give_the_same_token_in_any_order():
    assert batch_token("events", ROWS) == batch_token("events", list(reversed(ROWS)))
    assert batch_token("events", iter(ROWS)) == batch_token("events", ROWS)   # any iterable, read once


def test_the_token_names_its_kind_and_is_a_fixed_size_digest():
    token = batch_token("dead_letters", [(0, 1)])
    assert re.fullmatch(r"dead_letters-[0-9a-f]{32}", token)


def test_the_token_is_stable_across_processes_and_releases():
    """A batch retried by a restarted (or upgraded) worker must send the token it sent before."""
    assert batch_token("events", [(0, 10, 0, "e1"), (1, 3, 2, "e2")]) == "events-9b5278f4c2e744df544bb324cd057cc0"
    assert batch_token("events", []) == "events-0fd76a0be450e548924f6822b984dc18"


def test_other_rows_or_another_kind_give_another_token():
    base = batch_token("events", ROWS)
    assert batch_token("events", ROWS[:2]) != base                          # a row fewer
    assert batch_token("events", ROWS + [ROWS[0]]) != base                  # a row twice is not once
    assert batch_token("events", [(0, 10, 0, "other"), *ROWS[1:]]) != base   # a re-created topic's position
    assert batch_token("alerts", ROWS) != base                              # same keys, another table


def test_keys_are_told_apart_by_type_and_boundary():
    """Keys are hashed by ``repr`` with a separator: neither a number and its text nor two
    keys that concatenate alike collide."""
    assert batch_token("events", [(1, 2)]) != batch_token("events", [("1", "2")])
    assert batch_token("events", ["ab", "c"]) != batch_token("events", ["a", "bc"])


def test_the_worker_s_text_keys_give_the_token_of_the_tuples():
    """The worker writes each event's key as text (``event_keys``); the token must be the one
    ``batch_token`` gives for the (partition, offset, line, event id) tuples, whatever the ids hold."""
    from datetime import UTC, datetime

    from schemas.fast import FastRunQueued
    from sinks.clickhouse import batch_token_of_texts
    from sinks.rows import event_keys, sourced

    ids = ["e1", "it's", 'say "hi"', "back\\slash", "tab\there", "nul\x00", "ünïcode", "emoji \U0001f600", "\ud800"]
    items = [sourced(FastRunQueued(event_id=event_id, schema_version=2, ts=datetime(2026, 1, 1, tzinfo=UTC),
                                   account_id="a", run_id="r", workflow_id="w", workflow_name="W",
                                   workflow_version=1, workflow_type="card", trigger="manual"),
                     partition, offset, line)
             for partition, offset, line, event_id in [(p, 10 ** p + k, k % 3, ids[k % len(ids)])
                                                       for p in range(3) for k in range(20)]]
    tuples = [(item.partition, item.offset, item.line, item.event.event_id) for item in items]
    assert batch_token_of_texts("events", event_keys(items)) == batch_token("events", tuples)
    assert batch_token_of_texts("events", event_keys(reversed(items))) == batch_token("events", tuples)
    assert batch_token_of_texts("events", []) == batch_token("events", [])
