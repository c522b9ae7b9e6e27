"""The worker's pure batch step: valid records become rows, bad ones dead letters with position;
hostile records (absurd sizes, lines that fail unexpectedly, dead letters with any headers) cost
one dead letter each and never an exception. Column mapping is checked against clickhouse-connect's
real Native serializer with the types of the migrations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from schemas.dead_letter import MAX_RAW_BYTES, DeadLetter
from sinks.rows import EVENT_COLUMNS, SourcedEvent, dead_letter_columns, event_columns, event_values, sourced
from streams.batch import MAX_RECORD_BYTES, MAX_RECORD_LINES, RawRecord, record_groups, split_batch


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
    assert [(e.event_id, p, o, i) for e, p, o, i, _ in split.events] == [
        ("e1", 1, 42, 0), ("e2", 1, 42, 1), ("e3", 1, 42, 2), ("e4", 1, 42, 4), ("e5", 1, 42, 5)]
    assert [(d.source_offset, d.source_index, d.raw) for d in split.dead_letters] == [(42, 3, b"not json at all")]


def test_record_groups_bound_the_events_per_group_and_keep_the_order():
    records = [RawRecord(b"k", b"\n".join([b"{}"] * n), "t", 0, offset) for offset, n in enumerate([3, 4, 2, 9, 1])]
    groups = list(record_groups(records, max_events=6))
    assert [[r.offset for r in g] for g in groups] == [[0], [1, 2], [3], [4]]
    assert [r for g in groups for r in g] == records
    assert list(record_groups([], 6)) == []


# -- hostile input: bounds of a record, per-line failures, dead letters of any shape -------------

MIGRATIONS = Path(__file__).resolve().parents[3] / "sinks" / "migrations"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def table_types(table: str) -> dict[str, str]:
    """Column -> ClickHouse type of ``table``, read from the migration that creates it."""
    for path in sorted(MIGRATIONS.glob("*.sql")):
        sql = path.read_text()
        marker = f"CREATE TABLE IF NOT EXISTS {{db}}.{table}\n"
        if marker in sql:
            body = sql.split(marker, 1)[1].split("ENGINE", 1)[0]
            types = {}
            for line in body.splitlines():
                found = re.match(r"\s+(\w+)\s+(.+?)\s*,?\s*$", line)
                if found and found.group(1) not in ("(", ")"):
                    kind = re.split(r"\s+(?:DEFAULT|MATERIALIZED)\s", found.group(2))[0].rstrip(",")
                    if " MATERIALIZED " not in found.group(2) and " DEFAULT " not in found.group(2):
                        types[found.group(1)] = kind
            return types
    raise AssertionError(f"no migration creates {table}")


def native_insert(table: str, columns: dict[str, list]) -> bytes:
    """Serialize ``columns`` the way clickhouse-connect does for an insert into ``table`` (Native
    format, the real column types), raising whatever the serializer raises."""
    from clickhouse_connect.datatypes.registry import get_from_name
    from clickhouse_connect.driver.insert import InsertContext
    from clickhouse_connect.driver.transform import NativeTransform

    types = table_types(table)
    names = list(columns)
    context = InsertContext(table, names, [get_from_name(types[n]) for n in names], list(columns.values()),
                            column_oriented=True)

    def fail(exc: Exception) -> None:
        raise exc

    return b"".join(NativeTransform.build_insert(context, fail))


def _sample_lines(path) -> list[bytes]:
    return [ln for ln in path.read_bytes().splitlines() if ln.strip()]


def test_the_real_serializer_refuses_what_the_columns_cannot_hold():
    """The helper the tests below rely on fails where clickhouse-connect fails."""
    from clickhouse_connect.driver.exceptions import DataError

    with pytest.raises(DataError):
        native_insert("dead_letters", {"source_partition": [2**40]})
    with pytest.raises(UnicodeEncodeError):
        native_insert("dead_letters", {"reason": ["\ud800"]})
    assert native_insert("dead_letters", {"source_partition": [-1], "reason": ["ok"]})


def test_event_columns_of_every_valid_sample_serialize_for_insert(sample_events_path):
    split = split_batch(_records(sample_events_path), max_event_bytes=10_000, now=NOW)
    cols = event_columns(split.events)
    assert set(cols) <= set(table_types("events")) and len(cols["event_id"]) == 9
    assert native_insert("events", cols)


def test_a_record_of_500_events_is_split_and_one_of_501_is_dead_lettered_whole(sample_events_path):
    line = _sample_lines(sample_events_path)[0]
    full = RawRecord(b"r1", b"\n".join([line] * MAX_RECORD_LINES) + b"\n", "events", 0, 1)
    over = RawRecord(b"r1", b"\n".join([line] * (MAX_RECORD_LINES + 1)), "events", 0, 2)
    split = split_batch([full, over], max_event_bytes=10_000, now=NOW)
    assert len(split.events) == MAX_RECORD_LINES and {o for _, _, o, _, _ in split.events} == {1}
    assert [(d.source_offset, d.source_index) for d in split.dead_letters] == [(2, 0)]
    assert "501 lines, over the 500-line record limit" in split.dead_letters[0].reason


@pytest.mark.parametrize(("tail", "over"), [(b"", False), (b"\n", False), (b"\n\n", True), (b"\n ", True),
                                             (b"\n\n\n", True)])
def test_the_line_bound_counts_a_final_newline_out_and_anything_after_it_in(tail, over):
    """500 lines, then ``tail``: a final newline is no line; a blank one after it is the 501st."""
    value = b"\n".join([b"{}"] * MAX_RECORD_LINES) + tail
    split = split_batch([RawRecord(b"k", value, "events", 0, 0)], max_event_bytes=10_000, now=NOW)
    whole = [d for d in split.dead_letters if "line record limit" in d.reason]
    assert bool(whole) == over
    assert len(split.dead_letters) == (1 if over else MAX_RECORD_LINES)   # else: every "{}" is a bad event


def test_a_megabyte_of_empty_lines_is_one_dead_letter_not_a_million():
    split = split_batch([RawRecord(b"k", b"\n" * 1_000_000, "events", 3, 9)], max_event_bytes=10_000, now=NOW)
    assert split.events == [] and len(split.dead_letters) == 1
    letter = split.dead_letters[0]
    assert "over the 500-line record limit" in letter.reason and len(letter.raw) <= MAX_RAW_BYTES
    assert f"kept the first {MAX_RAW_BYTES} of 1000000 bytes" in letter.reason


def test_a_record_over_the_byte_bound_is_dead_lettered_whole(sample_events_path):
    limit = MAX_RECORD_BYTES + 10_000
    value = b"\n".join([b"x" * 5000] * (limit // 5000 + 1))
    assert value.count(b"\n") < MAX_RECORD_LINES and len(value) > limit
    split = split_batch([RawRecord(b"k", value, "events", 0, 0)], max_event_bytes=10_000, now=NOW)
    assert len(split.dead_letters) == 1 and f"over the {limit}-byte record limit" in split.dead_letters[0].reason


def test_blank_lines_within_the_bound_are_skipped_silently():
    split = split_batch([RawRecord(b"k", b"\n" * (MAX_RECORD_LINES - 1), "events", 0, 0)], max_event_bytes=10_000)
    assert split.events == [] and split.dead_letters == []


def test_record_groups_bound_the_bytes_per_group_too():
    records = [RawRecord(b"k", b"x" * size, "t", 0, offset) for offset, size in enumerate([40, 50, 10, 200, 5])]
    groups = list(record_groups(records, max_events=100, max_bytes=100))
    assert [[r.offset for r in g] for g in groups] == [[0, 1, 2], [3], [4]]
    assert [r for g in groups for r in g] == records


def test_an_absurd_record_counts_as_one_event_when_grouping():
    records = [RawRecord(b"k", b"\n" * 100_000, "t", 0, 0), RawRecord(b"k", b"{}", "t", 0, 1)]
    assert [[r.offset for r in g] for g in record_groups(records, max_events=10)] == [[0, 1]]


def test_grouping_counts_a_record_as_the_line_bound_does(sample_events_path):
    """A final newline is no line, and a record over the line bound is one dead letter: grouping
    counts both the way ``split_batch`` does."""
    line = _sample_lines(sample_events_path)[0]
    full = RawRecord(b"k", b"\n".join([line] * MAX_RECORD_LINES) + b"\n", "t", 0, 0)
    over = RawRecord(b"k", b"\n".join([line] * (MAX_RECORD_LINES + 1)), "t", 0, 1)
    small = RawRecord(b"k", line, "t", 0, 2)
    assert [[r.offset for r in g] for g in record_groups([full, small], max_events=MAX_RECORD_LINES + 1)] == [[0, 2]]
    assert [[r.offset for r in g] for g in record_groups([over, small], max_events=2)] == [[1, 2]]
    assert len(split_batch([over], max_event_bytes=10_000, now=NOW).dead_letters) == 1


def test_split_events_are_sourced_events_with_their_values(sample_events_path):
    split = split_batch(_records(sample_events_path), max_event_bytes=10_000)
    assert split.events and all(type(item) is SourcedEvent for item in split.events)
    for item in split.events:
        assert item.values == event_values(item.event)
        assert item == sourced(item.event, item.partition, item.offset, item.line)
    cols = event_columns(sourced(item.event, 7, 40 + n) for n, item in enumerate(split.events))
    assert cols["source_partition"] == [7] * len(split.events) and cols["source_index"] == [0] * len(split.events)
    assert cols["source_offset"] == [40 + n for n in range(len(split.events))]


def test_an_unexpected_error_on_one_line_dead_letters_that_line_only(sample_events_path, monkeypatch):
    import streams.batch as batch

    real = batch.decode_event

    def decode(line, **kwargs):
        if b'"e3"' in line:
            raise ZeroDivisionError("boom")
        return real(line, **kwargs)

    monkeypatch.setattr(batch, "decode_event", decode)
    split = split_batch(_records(sample_events_path), max_event_bytes=10_000, now=NOW)
    assert [e.event_id for e, *_ in split.events] == ["e1", "e2", "e4", "e5", "e6", "e7", "e7", "e8"]
    internal = [d for d in split.dead_letters if d.reason.startswith("internal")]
    assert [(d.reason, d.source_offset) for d in internal] == [
        ("internal error while validating: ZeroDivisionError", 102)]


def test_a_line_whose_columns_cannot_be_mapped_is_dead_lettered_before_the_ledger(sample_events_path, monkeypatch):
    import streams.batch as batch

    real = batch.event_values

    def values(event):
        if event.event_id == "e4":
            raise RecursionError("maximum recursion depth exceeded")
        return real(event)

    monkeypatch.setattr(batch, "event_values", values)
    split = split_batch(_records(sample_events_path), max_event_bytes=10_000, now=NOW)
    assert "e4" not in [e.event_id for e, *_ in split.events] and len(split.events) == 8
    assert "internal error while mapping columns: RecursionError" in [d.reason for d in split.dead_letters]


def test_event_times_are_judged_against_the_clock_passed_in(sample_events_path):
    doc = orjson.loads(_sample_lines(sample_events_path)[0])
    doc["ts"] = "2026-12-01T00:05:00.000Z"
    at_bound = RawRecord(b"r1", orjson.dumps(doc), "events", 0, 0)
    doc["ts"] = "2026-12-01T00:05:00.001Z"
    past_bound = RawRecord(b"r1", orjson.dumps(doc), "events", 0, 1)
    first = split_batch([at_bound, past_bound], max_event_bytes=10_000, now=NOW, max_clock_skew_seconds=300)
    again = split_batch([at_bound, past_bound], max_event_bytes=10_000, now=NOW, max_clock_skew_seconds=300)
    assert [o for _, _, o, _, _ in first.events] == [0] and first == again   # same clock, same verdict
    assert [(d.source_offset, d.field) for d in first.dead_letters] == [(1, "ts")]
    later = split_batch([past_bound], max_event_bytes=10_000, now=NOW + timedelta(seconds=1))
    assert len(later.events) == 1   # once time caught up, the same line is valid


def test_dead_letters_of_any_headers_are_stored_with_defaults_and_the_odd_text_kept():
    hostile = [
        [("runlens.source_partition", b"abc"), ("runlens.source_offset", b"99999999999999999999"),
         ("runlens.reason", b"bad \xff bytes")],
        [("runlens.source_partition", b"2147483648"), ("runlens.source_index", b"-1")],
        [("runlens.source_offset", None), ("other", b"x"), ("runlens.field", "\ud800")],
        None,
        [("runlens.source_partition", b"+7"), ("runlens.source_offset", b" 12 "), "junk",
         (b"runlens.source_index", b"3")],
        {"runlens.reason": b"from a dict"},
    ]
    letters = [DeadLetter.from_record(b"v", None, headers) for headers in hostile]
    assert [(d.source_partition, d.source_offset, d.source_index) for d in letters] == [
        (-1, -1, 0), (-1, -1, 0), (-1, -1, 0), (-1, -1, 0), (7, 12, 3), (-1, -1, 0)]
    assert "source_partition='abc'" in letters[0].reason and "99999999999999999999" in letters[0].reason
    assert letters[0].reason.startswith("bad \ufffd bytes")
    assert "source_partition='2147483648'" in letters[1].reason and "source_index='-1'" in letters[1].reason
    assert letters[3].reason == "unknown" and letters[3].source == "unknown"
    assert letters[5].reason == "from a dict"
    cols = dead_letter_columns([(d, 0, i) for i, d in enumerate(letters)], NOW)
    assert native_insert("dead_letters", cols)


def test_dead_letter_positions_outside_their_columns_are_clamped_not_fatal():
    letter = DeadLetter(raw=b"\xff", reason="r\ud800", source="s", source_partition=2**40, source_offset=2**70,
                        source_index=-5, key=b"\xfe")
    cols = dead_letter_columns([(letter, 2**33, -(2**64))], NOW)
    assert (cols["source_partition"], cols["source_offset"], cols["source_index"]) == ([-1], [-1], [0])
    assert native_insert("dead_letters", cols)


def test_bounded_dead_letters_fit_a_kafka_record():
    big = DeadLetter(raw=b"x" * (3 * MAX_RAW_BYTES), reason="r" * 10_000, source="s", source_partition=0,
                     source_offset=0, key=b"k" * 10_000, field="f" * 10_000).bounded()
    size = len(big.raw) + len(big.key) + sum(len(n) + len(v) for n, v in big.headers())
    assert size < 1_000_000 and big.raw == b"x" * MAX_RAW_BYTES
    small = DeadLetter(raw=b"{", reason="r", source="s", source_partition=0, source_offset=0)
    assert small.bounded() is small
