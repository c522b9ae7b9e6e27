"""Publish NDJSON events to the events topic; rejected lines go to the dead-letter topic.

Promises: every line is either published (keyed by run_id, so a run's events stay ordered
on one partition) or dead-lettered with its line number and reason; a bad line never stops
the valid lines around it, whatever its bytes (an unexpected error validating one line
dead-letters that line, naming the exception class). ``publish_lines`` returns only after the
broker acknowledged all. Event times are judged against this machine's clock when publishing
starts (``schemas.validation``); dead letters are cut to ``DeadLetter.bounded()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from producers.kafka import CheckedProducer, EventBatcher
from schemas.dead_letter import DeadLetter
from schemas.validation import MAX_CLOCK_SKEW_SECONDS, MAX_EVENT_BYTES, Rejection, decode_event


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
    now: datetime | None = None,
    max_clock_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS,
) -> PublishReport:
    """Validate and publish each line; blank lines are skipped, bad ones dead-lettered. Valid
    lines travel in multi-event records per partition (``EventBatcher``). ``now`` (default: the
    clock when called) plus ``max_clock_skew_seconds`` is the latest event time accepted."""
    report = PublishReport()
    batcher = EventBatcher(producer, events_topic)
    not_after = (now or datetime.now(UTC)) + timedelta(seconds=max_clock_skew_seconds)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            report.blank += 1
            continue
        try:
            result = decode_event(line, max_bytes=max_event_bytes, not_after=not_after)
        except Exception as exc:   # noqa: BLE001 - one line's problem must not stop the others
            result = Rejection(f"internal error while validating: {type(exc).__name__}")
        if isinstance(result, Rejection):
            report.rejected.append(RejectedLine(number, str(result)))
            letter = DeadLetter(raw=line, reason=result.reason, field=result.field, source=source,
                                source_partition=-1, source_offset=number).bounded()
            producer.send(dead_letter_topic, letter.raw, headers=letter.headers())
        else:
            # a newline can only be whitespace between JSON tokens (strings escape it); the
            # worker splits records on newlines, so a line replayed from the store must have none
            batcher.send(result.run_id, line.replace(b"\n", b" ") if b"\n" in line else line)
            report.published += 1
        if on_progress is not None and number % 10_000 == 0:
            producer.poll()
            on_progress(number)
    batcher.flush()
    return report
