"""Hostile lines, generated: whatever the bytes, the decoders answer with an event or a reason and
never raise, the fast decoder never accepts what the contract rejects, every line of every record
ends up as exactly one event or one dead letter (or one dead letter for an absurd record), and
what was accepted serializes for the warehouse with clickhouse-connect's real Native encoder.

Inputs: arbitrary bytes; arbitrary JSON (huge integers, NaN/Infinity, lone surrogates escaped and
raw, any unicode, numbers as strings, nesting up to tens of thousands deep); valid events with
fields replaced by any of those; records with keys None/bytes and values None/bytes with
newlines; dead-letter records with any headers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.dead_letter import MAX_RAW_BYTES, DeadLetter
from schemas.fast import DecodeError, decode_fast
from schemas.validation import Rejection, decode_event, parse_event
from sinks.rows import dead_letter_columns, event_columns, event_values, sourced
from streams.batch import MAX_RECORD_BYTES, MAX_RECORD_LINES, RawRecord, split_batch
from tests.unit.schemas.test_fast_decoder import _values
from tests.unit.streams.test_batch import native_insert

pytestmark = pytest.mark.security

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SKEW = 300.0
NOT_AFTER = NOW + timedelta(seconds=SKEW)
MAX_EVENT_BYTES = 64 * 1024
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "sample-events.ndjson"
BASES = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines()[:9]]   # the 9 valid events

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


# -- strategies ----------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)   # surrogates too
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**40, -(10**40)]),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.integers().map(str), st.floats(allow_nan=False).map(repr),   # numbers as strings
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=12)


def encode(value, *, ascii_only: bool) -> bytes:
    """JSON text of ``value`` as a sloppy producer writes it: NaN/Infinity literals, big integers
    as digits, lone surrogates escaped (``ascii_only``) or raw (invalid UTF-8)."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def deep(draw) -> bytes:
    depth = draw(st.sampled_from([31, 32, 33, 100, 255, 256, 500, 990, 1000, 1024, 1025, 5000, 30_000]))
    opener, closer = draw(st.sampled_from([(b'{"a":', b"}"), (b"[", b"]"), (b'{"a":[', b"]}")]))
    return opener * depth + draw(st.sampled_from([b"1", b"{}", b"[]", b'"x"', b"18446744073709551616"])) \
        + closer * depth


times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)),
                                            timezone(timedelta(hours=-12))])).map(lambda t: t.isoformat()),
    st.datetimes(min_value=datetime(2026, 11, 30), max_value=datetime(2026, 12, 2),
                 timezones=st.just(UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.sampled_from(["2026-12-01T00:05:00Z", "2026-12-01T00:05:00.001Z", "1999-12-31T23:59:59Z",
                     "2299-12-31T23:59:59.999Z", "2300-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                     "9999-12-31T23:59:59-01:00", "2026-11-20T10:00:00.1234567Z"]),
)
FIELD_NAMES = ["ts", "started_at", "resumed_at", "scheduled_resume_at", "input", "output", "event_id",
               "schema_version", "workflow_version", "step_index", "attempt", "status", "type", "error",
               "tags", "workflow_name", "condition_result", "unknown_extra"]


@st.composite
def event_docs(draw) -> bytes:
    """A valid sample event with a few fields replaced by hostile values."""
    doc = dict(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(FIELD_NAMES))
        if name in ("ts", "started_at", "resumed_at", "scheduled_resume_at"):
            doc[name] = draw(st.one_of(times, json_values))
        elif name in ("input", "output"):
            doc[name] = draw(st.one_of(st.dictionaries(any_text, json_values, max_size=4), json_values))
        else:
            doc[name] = draw(json_values)
    if draw(st.integers(0, 3)) == 0:
        doc["type"], doc["status"] = "step.finished", "success"
        doc.update({k: v for k, v in BASES[3].items() if k not in doc}, started_at=doc["ts"])
        doc[draw(st.sampled_from(["input", "output"]))] = draw(st.sampled_from(HOSTILE_OBJECTS))
    line = encode(doc, ascii_only=draw(st.booleans()))
    if draw(st.integers(0, 4)) == 0:   # deep nesting as the last (so winning) input or output
        name = draw(st.sampled_from([b"input", b"output"]))
        line = line[:-1] + b',"' + name + b'":{"d":' + draw(deep()) + b"}}"
    return line


def _nest(depth: int, leaf) -> dict:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


HOSTILE_OBJECTS = [{"n": 2**64 - 1}, {"n": 2**64}, {"n": -(2**63)}, {"n": [1, -(2**63) - 1]}, {"n": 10**30},
                   _nest(31, 1), _nest(32, 1), _nest(31, [2**64]), _nest(40, 1), {"f": float("nan")},
                   {"f": float("inf")}, {"s": "\ud800"}, {"s": "18446744073709551616"}]


lines = st.one_of(
    event_docs(), event_docs(),
    st.binary(max_size=200),
    json_values.flatmap(lambda v: st.booleans().map(lambda a: encode(v, ascii_only=a))),
    deep(),
    st.sampled_from([b"", b" ", b"\r", b"null", b"{}", b"[]", b"1e400", b'{"type":"run.queued"}', b"\xef\xbb\xbf{}"]),
)


# -- properties ----------------------------------------------------------------------------------



def _same(a, b) -> bool:
    """Equal values, NaN-proof (no NaN may be accepted anyway)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@FAST
@given(lines)
def test_the_decoders_never_raise_and_the_fast_one_is_never_looser(line):
    strict = parse_event(line, max_bytes=MAX_EVENT_BYTES, not_after=NOT_AFTER)
    hot = decode_event(line, max_bytes=MAX_EVENT_BYTES, not_after=NOT_AFTER)
    assert isinstance(strict, Rejection) == isinstance(hot, Rejection), (strict, hot)
    if isinstance(strict, Rejection):
        assert strict.reason and hot.reason
    try:
        fast = decode_fast(line)
    except DecodeError:
        fast = None
    if fast is not None:
        contract = parse_event(line, max_bytes=2**30)
        assert not isinstance(contract, Rejection), f"fast decoder accepted what the contract rejects: {contract}"
        assert all(_same(x, y) for x, y in zip(_values(fast).values(), _values(contract).values(), strict=True))
    if not isinstance(hot, Rejection):
        for event in (hot, strict):
            event_values(event)
        assert native_insert("events", event_columns([sourced(hot, 0, 0), sourced(strict, 0, 1)]))


keys = st.one_of(st.none(), st.binary(max_size=16))
record_values = st.one_of(
    st.none(),
    st.lists(lines, min_size=1, max_size=6).map(b"\n".join),
    st.lists(st.one_of(lines, st.just(b""), st.just(b"  ")), min_size=1, max_size=6).map(
        lambda ls: b"\n".join(ls) + b"\n"),
    st.integers(MAX_RECORD_LINES - 2, MAX_RECORD_LINES + 2).map(lambda n: b"{}\n" * n),
    st.sampled_from([b"\n" * 1_000_000, b"x" * (MAX_RECORD_BYTES + MAX_EVENT_BYTES + 1)]),
)


def _expected_outputs(value: bytes | None) -> int:
    if value is None:
        return 1
    count = value.count(b"\n") + (0 if value.endswith(b"\n") else 1)
    if count > MAX_RECORD_LINES or len(value) > MAX_RECORD_BYTES + MAX_EVENT_BYTES:
        return 1
    parts = value.split(b"\n")
    return len(parts) if len(parts) == 1 else sum(1 for p in parts if p.strip())


@FAST
@given(st.lists(st.tuples(keys, record_values, st.integers(0, 3)), max_size=5))
def test_every_line_of_any_record_is_one_event_or_one_dead_letter(specs):
    records = [RawRecord(key, value, "events", partition, offset) for offset, (key, value, partition) in
               enumerate(specs)]
    split = split_batch(records, max_event_bytes=MAX_EVENT_BYTES, now=NOW, max_clock_skew_seconds=SKEW)
    for rec in records:
        events = [e for e in split.events if (e[1], e[2]) == (rec.partition, rec.offset)]
        letters = [d for d in split.dead_letters
                   if (d.source_partition, d.source_offset) == (rec.partition, rec.offset)]
        assert len(events) + len(letters) == _expected_outputs(rec.value)
        assert all(d.reason and len(d.raw) <= MAX_RAW_BYTES for d in letters)
        assert not (events and rec.key is None)
        indexes = [e[3] for e in events] + [d.source_index for d in letters]
        assert len(set(indexes)) == len(indexes)   # one outcome per line
    assert [(p, o, i) for _, p, o, i, _ in split.events] == sorted((p, o, i) for _, p, o, i, _ in split.events)
    if split.events:
        assert native_insert("events", event_columns(split.events))
    if split.dead_letters:
        positions = [(d, 0, n) for n, d in enumerate(split.dead_letters)]
        assert native_insert("dead_letters", dead_letter_columns(positions, NOW))
        for letter in split.dead_letters:   # what the worker produces to the dead-letter topic reads back the same
            again = DeadLetter.from_record(letter.raw, letter.key, letter.headers())
            assert (again.source_partition, again.source_offset, again.source_index) == (
                letter.source_partition, letter.source_offset, letter.source_index)


header_names = st.one_of(st.sampled_from(["runlens.reason", "runlens.source", "runlens.source_partition",
                                          "runlens.source_offset", "runlens.source_index", "runlens.field"]),
                         any_text, st.binary(max_size=8))
header_values = st.one_of(st.none(), st.binary(max_size=24), any_text,
                          st.integers(min_value=-(2**80), max_value=2**80).map(lambda n: str(n).encode()),
                          st.integers())
headers = st.one_of(st.none(), st.lists(st.one_of(st.tuples(header_names, header_values), any_text,
                                                  st.tuples(header_names)), max_size=8),
                    st.dictionaries(st.sampled_from(["runlens.source_partition", "runlens.reason"]), header_values))


@FAST
@given(st.one_of(st.none(), st.binary(max_size=64), any_text), keys, headers)
def test_a_dead_letter_record_with_any_headers_is_stored(value, key, record_headers):
    letter = DeadLetter.from_record(value, key, record_headers)
    assert letter.reason and letter.source
    assert -(2**31) <= letter.source_partition < 2**31 and -(2**63) <= letter.source_offset < 2**63
    assert 0 <= letter.source_index < 2**32
    assert native_insert("dead_letters", dead_letter_columns([(letter, 0, 0)], NOW))
