"""The worker's pure batch step: valid records become rows, bad ones dead letters with position."""

from __future__ import annotations

from schemas.dead_letter import DeadLetter
from sinks.rows import EVENT_COLUMNS, event_columns
from streams.batch import RawRecord, split_batch


def _records(path):
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    return [RawRecord(b"r1", ln, "events", 2, 100 + i) for i, ln in enumerate(lines)]


def test_split_batch_separates_valid_and_bad(sample_events_path):
    split = split_batch(_records(sample_events_path), max_event_bytes=10_000)
    assert [e.event_id for e, *_ in split.events] == ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e7", "e8"]
    assert [(d.source, d.source_partition, d.source_offset) for d in split.dead_letters] == [
        ("events", 2, 109), ("events", 2, 110)]
    assert split.dead_letters[1].field == "type"


def test_records_without_key_or_value_are_dead_lettered(sample_events_path):
    good = _records(sample_events_path)[0]
    split = split_batch([good._replace(key=None), good._replace(value=None, offset=7)], max_event_bytes=10_000)
    assert split.events == []
    assert [d.reason for d in split.dead_letters] == [
        "record has no value", "record has no key (the producer must key events by run_id)"]


def test_dead_letter_headers_round_trip():
    letter = DeadLetter(raw=b"{bad", reason="not valid JSON", field=None, source="file:x.ndjson",
                        source_partition=-1, source_offset=12, key=b"k")
    again = DeadLetter.from_record(letter.raw, letter.key, letter.headers())
    assert again == letter


def test_event_columns_are_aligned_and_typed(sample_events_path):
    split = split_batch(_records(sample_events_path), max_event_bytes=10_000)
    cols = event_columns(split.events)
    assert list(cols) == list(EVENT_COLUMNS)
    assert {len(v) for v in cols.values()} == {9}
    finished = cols["type"].index("run.finished")
    assert cols["error_code"][finished] == "CRM_TIMEOUT"
    assert cols["error_class"][finished] == "external_service"
    assert cols["status"][finished] == "failed"
    step = cols["event_id"].index("e4")
    assert cols["input"][step] == '{"form":"signup"}' and cols["step_type"][step] == "trigger"


def test_a_multi_event_record_is_split_into_positions(sample_events_path):
    lines = [ln for ln in sample_events_path.read_bytes().splitlines() if ln.strip()]
    record = RawRecord(b"r1", b"\n".join(lines[:3] + [lines[9]] + lines[3:5]) + b"\n", "events", 1, 42)
    split = split_batch([record], max_event_bytes=10_000)
    assert [(e.event_id, p, o, i) for e, p, o, i in split.events] == [
        ("e1", 1, 42, 0), ("e2", 1, 42, 1), ("e3", 1, 42, 2), ("e4", 1, 42, 4), ("e5", 1, 42, 5)]
    assert [(d.source_offset, d.source_index, d.raw) for d in split.dead_letters] == [(42, 3, b"not json at all")]


def test_record_groups_bound_the_events_per_group_and_keep_the_order():
    from streams.batch import record_groups

    records = [RawRecord(b"k", b"\n".join([b"{}"] * n), "t", 0, offset) for offset, n in enumerate([3, 4, 2, 9, 1])]
    groups = list(record_groups(records, max_events=6))
    assert [[r.offset for r in g] for g in groups] == [[0], [1, 2], [3], [4]]
    assert [r for g in groups for r in g] == records
    assert list(record_groups([], 6)) == []
