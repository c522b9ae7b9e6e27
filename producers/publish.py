"""Publish NDJSON events to the events topic; rejected lines go to the dead-letter topic.

Promises: every line is either published (keyed by run_id, so a run's events stay ordered
on one partition) or dead-lettered with its line number and reason; a bad line never stops
the valid lines around it. ``publish_lines`` returns only after the broker acknowledged all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from producers.kafka import CheckedProducer, EventBatcher
from schemas.dead_letter import DeadLetter
from schemas.validation import MAX_EVENT_BYTES, Rejection, decode_event


@dataclass(frozen=True)
class RejectedLine:
    line_number: int
    reason: str


@dataclass
class PublishReport:
    published: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    blank: int = 0


def publish_lines(
    lines: Iterable[bytes],
    producer: CheckedProducer,
    *,
    events_topic: str,
    dead_letter_topic: str,
    source: str,
    max_event_bytes: int = MAX_EVENT_BYTES,
    on_progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Validate and publish each line; blank lines are skipped, bad ones dead-lettered. Valid
    lines travel in multi-event records per partition (``EventBatcher``)."""
    report = PublishReport()
    batcher = EventBatcher(producer, events_topic)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            report.blank += 1
            continue
        result = decode_event(line, max_bytes=max_event_bytes)
        if isinstance(result, Rejection):
            report.rejected.append(RejectedLine(number, str(result)))
            letter = DeadLetter(raw=line, reason=result.reason, field=result.field, source=source,
                                source_partition=-1, source_offset=number)
            producer.send(dead_letter_topic, letter.raw, headers=letter.headers())
        else:
            batcher.send(result.run_id, line)
            report.published += 1
        if on_progress is not None and number % 10_000 == 0:
            producer.poll()
            on_progress(number)
    batcher.flush()
    return report
