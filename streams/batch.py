"""Pure batch logic of the worker: raw Kafka records in, rows and dead letters out.

No I/O, no clock: the worker passes the time the batch arrived (``now``). Given the same
records and the same ``now`` it returns the same result, so a redelivered batch produces the
same rows (which the warehouse then deduplicates); for what a later ``now`` changes on
redelivery, see ``schemas.validation``.

Whatever the bytes, every line of every record ends up as exactly one event or one dead
letter with a non-empty reason, except blank lines inside a multi-line record (skipped) and
records over the record bounds (one dead letter for the whole record). No exception from
decoding, validation or column mapping escapes ``split_batch``: anything unexpected becomes
the line's dead letter, naming the exception class.

Record bounds (runlens' producers pack at most 500 events, and stop adding lines once a
record reaches 256 KiB, so what they send always fits):

- ``MAX_RECORD_LINES`` (500) lines, blank ones included (a final newline does not count);
- ``MAX_RECORD_BYTES`` (1 MiB) plus ``max_event_bytes`` (the last line may be a maximal event).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from schemas.dead_letter import DeadLetter
from schemas.events import Event
from schemas.fast import FastEvent
from schemas.validation import MAX_CLOCK_SKEW_SECONDS, Rejection, decode_event
from sinks.rows import event_values

MAX_RECORD_LINES = 500
"""Most lines one Kafka record may hold (the producers' ``EventBatcher`` packs up to 500; the
ledger's horizon assumes a batch of 400 records holds at most 200,000 events)."""
MAX_RECORD_BYTES = 1024 * 1024
"""A record may be this many bytes plus one maximal event (``max_event_bytes``)."""
GROUP_MAX_BYTES = 32 * 1024 * 1024
"""Most record bytes the worker handles as one group (one insert), besides its event bound."""


class RawRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


class Position(NamedTuple):
    """Where an event sits: a Kafka record, and its line inside a multi-event record."""

    partition: int
    offset: int
    index: int


SplitEvent = tuple[Event | FastEvent, int, int, int, tuple[Any, ...]]
"""A valid event, where it sits (partition, offset, index in the record), and its ``events``
column values (``sinks.rows.event_values``). A plain tuple: one per event on the hot path."""


@dataclass
class SplitBatch:
    events: list[SplitEvent] = field(default_factory=list)   # in (partition, offset, index) order
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _size(rec: RawRecord) -> tuple[int, int]:
    """(events, bytes) a record counts for in a group; an over-long record counts as one event."""
    if rec.value is None:
        return 1, 0
    lines = rec.value.count(b"\n") + 1
    return (lines if lines <= MAX_RECORD_LINES + 1 else 1), len(rec.value)


def record_groups(records: list[RawRecord], max_events: int,
                  max_bytes: int = GROUP_MAX_BYTES) -> Iterator[list[RawRecord]]:
    """Consecutive groups of ``records`` holding at most ``max_events`` events and at most
    ``max_bytes`` bytes of values each (a record over either bound forms a group of its own)."""
    group: list[RawRecord] = []
    events = size = 0
    for rec in records:
        lines, length = _size(rec)
        if group and (events + lines > max_events or size + length > max_bytes):
            yield group
            group, events, size = [], 0, 0
        group.append(rec)
        events += lines
        size += length
    if group:
        yield group


def _record_problem(value: bytes, max_event_bytes: int) -> str | None:
    limit = MAX_RECORD_BYTES + max_event_bytes
    if len(value) > limit:
        return f"record is {len(value)} bytes, over the {limit}-byte record limit (dead-lettered whole)"
    lines = value.count(b"\n") + (0 if value.endswith(b"\n") else 1)
    if lines > MAX_RECORD_LINES:
        return f"record has {lines} lines, over the {MAX_RECORD_LINES}-line record limit (dead-lettered whole)"
    return None


def split_batch(records: list[RawRecord], *, max_event_bytes: int, now: datetime | None = None,
                max_clock_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS) -> SplitBatch:
    """Validate every event of every record; invalid ones become dead letters with their reason
    and position. A record holds one event, or several as NDJSON lines (producers batch events
    of one partition into one record to save per-record cost). ``now``: when the batch arrived
    (event times more than ``max_clock_skew_seconds`` later are rejected); ``None`` sets no
    future bound. Valid events come out in (partition, offset, index) order, with their column
    values already mapped; duplicates are the ledger's business. Never raises on content."""
    not_after = None if now is None else now + timedelta(seconds=max_clock_skew_seconds)
    out = SplitBatch()
    add_event, add_letter = out.events.append, out.dead_letters.append
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = rec.value
        if value is not None:
            problem = _record_problem(value, max_event_bytes)
            if problem is not None:
                add_letter(_letter(rec, value, Rejection(problem), 0))
                continue
        lines = [value] if value is None or b"\n" not in value else value.split(b"\n")
        for index, line in enumerate(lines):
            stage = "validating"
            try:
                if line is None:
                    result: Any = Rejection("record has no value")
                elif not line.strip() and len(lines) > 1:
                    continue
                else:
                    result = decode_event(line, max_bytes=max_event_bytes, not_after=not_after)
                    if type(result) is not Rejection:
                        if rec.key is None:
                            result = Rejection("record has no key (the producer must key events by run_id)")
                        else:
                            stage = "mapping columns"
                            add_event((result, rec.partition, rec.offset, index, event_values(result)))
                            continue
            except Exception as exc:   # noqa: BLE001 - one line's problem must not stop the batch
                result = Rejection(f"internal error while {stage}: {type(exc).__name__}")
            add_letter(_letter(rec, line, result, index))
    return out


def _letter(rec: RawRecord, raw: bytes | None, rejection: Rejection, index: int) -> DeadLetter:
    return DeadLetter(
        raw=raw or b"", reason=rejection.reason, field=rejection.field, source=rec.topic,
        source_partition=rec.partition, source_offset=rec.offset, key=rec.key, source_index=index,
    ).bounded()
