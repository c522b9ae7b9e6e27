"""Pure batch logic of the worker: raw Kafka records in, rows and dead letters out.

No I/O. Given the same records it returns the same result, so a redelivered batch
produces the same rows (which the warehouse then deduplicates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from schemas.dead_letter import DeadLetter
from schemas.events import Event
from schemas.validation import Rejection, parse_event


class RawRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass
class SplitBatch:
    events: list[tuple[Event, int, int]] = field(default_factory=list)   # (event, partition, offset)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def split_batch(records: list[RawRecord], *, max_event_bytes: int) -> SplitBatch:
    """Validate each record; invalid ones become dead letters with their reason and position.
    Valid events come out in (partition, offset) order; duplicates are the ledger's business."""
    out = SplitBatch()
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        if rec.value is None:
            result: Event | Rejection = Rejection("record has no value")
        else:
            result = parse_event(rec.value, max_bytes=max_event_bytes)
            if rec.key is None and not isinstance(result, Rejection):
                result = Rejection("record has no key (the producer must key events by run_id)")
        if isinstance(result, Rejection):
            out.dead_letters.append(DeadLetter(
                raw=rec.value or b"", reason=result.reason, field=result.field, source=rec.topic,
                source_partition=rec.partition, source_offset=rec.offset, key=rec.key,
            ))
        else:
            out.events.append((result, rec.partition, rec.offset))
    return out

