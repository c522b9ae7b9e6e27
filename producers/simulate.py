"""Drive the synthetic workload into Kafka (or a file): history as fast as possible, then live
traffic paced to the wall clock.

Promises: the same seed, window and options produce the same events; the function returns
only after the broker acknowledged everything sent; ``stop`` ends it early and cleanly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import orjson

from producers.engine import RunBook
from producers.kafka import CheckedProducer, EventBatcher
from producers.workload import WorkloadConfig, corrupt, generate
from schemas.times import parse_instant


@dataclass
class SimulationReport:
    backfill_events: int = 0
    live_events: int = 0
    bad_lines: int = 0
    runs: int = 0
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return self.backfill_events + self.live_events


class EventSink:
    """Where simulated events go: the events topic, or an NDJSON file."""

    def __init__(self, producer: CheckedProducer | None = None, topic: str | None = None,
                 file: BinaryIO | None = None) -> None:
        assert (producer is None) != (file is None), "exactly one of producer and file"
        self.producer, self.topic, self.file = producer, topic, file
        self.batcher: EventBatcher | None = None
        if producer is not None:
            assert topic is not None, "a producer needs a topic"
            self.batcher = EventBatcher(producer, topic)

    def send(self, run_id: str, payload: bytes) -> None:
        if self.batcher is not None:
            self.batcher.send(run_id, payload)
        elif self.file is not None:
            self.file.write(payload + b"\n")

    def push(self) -> None:
        """Send what is buffered without waiting: live traffic is never held back for a batch."""
        if self.batcher is not None:
            self.batcher.push()

    def flush(self) -> None:
        if self.batcher is not None:
            self.batcher.flush()
        elif self.file is not None:
            self.file.flush()


def run_simulation(
    config: WorkloadConfig,
    sink: EventSink,
    *,
    backfill: timedelta,
    duration: timedelta,
    now: datetime | None = None,
    pace: bool = True,
    bad_line_rate: float = 0.0,
    stop: threading.Event | None = None,
    on_progress: Callable[[SimulationReport, datetime], None] | None = None,
    book: RunBook | None = None,
) -> SimulationReport:
    """Send runs queued in [now - backfill, now + duration). Events before ``now`` go out at
    once; later ones when the wall clock reaches their time (unless ``pace`` is False).
    ``bad_line_rate`` adds that share of invalid lines (a misbehaving engine) after events.
    ``book``: record every run sent, for a command engine (``producers.engine``); the later
    events of a run it stopped are not sent."""
    now = now or datetime.now(UTC)
    start, end = now - backfill, now + duration
    wall_start, report = time.monotonic(), SimulationReport()
    corrupter = random.Random(config.seed ^ 0xBAD)
    last_progress = 0.0
    for count, event in enumerate(generate(config, start, end, live_from=now), start=1):
        ts = parse_instant(event["ts"])
        live = ts >= now
        if live and pace:
            wait = (ts - now).total_seconds() - (time.monotonic() - wall_start)
            if wait > 0:
                sink.push()
                if stop is not None and stop.wait(wait):
                    break
                elif stop is None:
                    time.sleep(wait)
        if stop is not None and stop.is_set():
            break
        if book is not None and not book.admit(event):
            continue
        sink.send(event["run_id"], orjson.dumps(event))
        if bad_line_rate and corrupter.random() < bad_line_rate:
            sink.send(event["run_id"], corrupt(event, report.bad_lines, corrupter))
            report.bad_lines += 1
        if event["type"] == "run.queued":
            report.runs += 1
        if live:
            report.live_events += 1
        else:
            report.backfill_events += 1
        if on_progress is not None and (count % 5000 == 0 or live):
            moment = time.monotonic()
            if moment - last_progress > 0.2:
                last_progress = moment
                on_progress(report, ts)
    sink.flush()
    report.seconds = time.monotonic() - wall_start
    return report

