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
from typing import NamedTuple

from schemas.dead_letter import DeadLetter
from schemas.validation import MAX_CLOCK_SKEW_SECONDS, Rejection, decode_event
from sinks.rows import SourcedEvent, event_values

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


@dataclass
class SplitBatch:
    events: list[SourcedEvent] = field(default_factory=list)   # in (partition, offset, line) order
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _lines(value: bytes) -> int:
    """How many lines a record holds for the record bounds: blank ones count, a final newline
    does not."""
    return value.count(b"\n") + (0 if value.endswith(b"\n") else 1)


def _size(rec: RawRecord) -> tuple[int, int]:
    """(events, bytes) a record counts for in a group: its lines, or one event for a record over
    the line bound (dead-lettered whole) or without a value."""
    if rec.value is None:
        return 1, 0
    lines = _lines(rec.value)
    return (lines if lines <= MAX_RECORD_LINES else 1), len(rec.value)


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


def _record_lines(value: bytes, max_event_bytes: int) -> list[bytes] | str:
    """The record's lines, or why it is dead-lettered whole (over a record bound). One pass over
    the bytes for both: split into at most ``MAX_RECORD_LINES`` + 1 pieces (bounded memory
    whatever the record holds); a last piece that is not empty is a line past the bound."""
    limit = MAX_RECORD_BYTES + max_event_bytes
    if len(value) > limit:
        return f"record is {len(value)} bytes, over the {limit}-byte record limit (dead-lettered whole)"
    lines = value.split(b"\n", MAX_RECORD_LINES)
    if len(lines) > MAX_RECORD_LINES and lines[-1]:
        return (f"record has {_lines(value)} lines, over the {MAX_RECORD_LINES}-line record limit "
                "(dead-lettered whole)")
    return lines


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
    # a SourcedEvent built without its Python-level constructor (~2x cheaper, one per event)
    new, sourced_event = tuple.__new__, SourcedEvent
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        value, key, partition, offset = rec.value, rec.key, rec.partition, rec.offset
        lines: list[bytes] | list[None]
        if value is None:
            lines = [None]
        else:
            found = _record_lines(value, max_event_bytes)
            if isinstance(found, str):
                add_letter(_letter(rec, value, Rejection(found), 0))
                continue
            lines = found
        for index, line in enumerate(lines):
            stage = "validating"
            try:
                if line is None:
                    rejection = Rejection("record has no value")
                elif not line.strip() and len(lines) > 1:
                    continue
                else:
                    result = decode_event(line, max_bytes=max_event_bytes, not_after=not_after)
                    if type(result) is Rejection:
                        rejection = result
                    elif key is None:
                        rejection = Rejection("record has no key (the producer must key events by run_id)")
                    else:
                        stage = "mapping columns"
                        add_event(new(sourced_event, (result, partition, offset, index, event_values(result))))
                        continue
            except Exception as exc:   # noqa: BLE001 - one line's problem must not stop the batch
                rejection = Rejection(f"internal error while {stage}: {type(exc).__name__}")
            add_letter(_letter(rec, line, rejection, index))
    return out


def _letter(rec: RawRecord, raw: bytes | None, rejection: Rejection, index: int) -> DeadLetter:
    return DeadLetter(
        raw=raw or b"", reason=rejection.reason, field=rejection.field, source=rec.topic,
        source_partition=rec.partition, source_offset=rec.offset, key=rec.key, source_index=index,
    ).bounded()
