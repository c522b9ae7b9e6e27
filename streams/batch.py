"""Pure batch logic of the worker: raw Kafka records in, rows and dead letters out.

No I/O. Given the same records it returns the same result, so a redelivered batch
produces the same rows (which the warehouse then deduplicates).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from schemas.dead_letter import DeadLetter
from schemas.events import Event
from schemas.validation import Rejection, decode_event


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


@dataclass
class SplitBatch:
    events: list[tuple[Event, int, int, int]] = field(default_factory=list)   # (event, partition, offset, index)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def record_groups(records: list[RawRecord], max_events: int) -> Iterator[list[RawRecord]]:
    """Consecutive groups of ``records`` holding at most ``max_events`` events each (a record
    with more events than that forms a group of its own)."""
    group: list[RawRecord] = []
    size = 0
    for rec in records:
        lines = 1 if rec.value is None else rec.value.count(b"\n") + 1
        if group and size + lines > max_events:
            yield group
            group, size = [], 0
        group.append(rec)
        size += lines
    if group:
        yield group


def split_batch(records: list[RawRecord], *, max_event_bytes: int) -> SplitBatch:
    """Validate every event of every record; invalid ones become dead letters with their reason
    and position. A record holds one event, or several as NDJSON lines (producers batch events
    of one partition into one record to save per-record cost). Valid events come out in
    (partition, offset, index) order; duplicates are the ledger's business."""
    out = SplitBatch()
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        lines = [rec.value] if rec.value is None or b"\n" not in rec.value else rec.value.split(b"\n")
        for index, line in enumerate(lines):
            if line is None:
                result: Event | Rejection = Rejection("record has no value")
            elif not line.strip() and len(lines) > 1:
                continue
            else:
                result = decode_event(line, max_bytes=max_event_bytes)
                if rec.key is None and not isinstance(result, Rejection):
                    result = Rejection("record has no key (the producer must key events by run_id)")
            if isinstance(result, Rejection):
                out.dead_letters.append(DeadLetter(
                    raw=line or b"", reason=result.reason, field=result.field, source=rec.topic,
                    source_partition=rec.partition, source_offset=rec.offset, key=rec.key,
                    source_index=index,
                ))
            else:
                out.events.append((result, rec.partition, rec.offset, index))
    return out

