"""What a worker counts and measures: its counters since start and each batch's figures.

Pure bookkeeping, nothing written here: ``IngestWorker.record_metrics`` samples these into
``pipeline_metrics``. Not durable: a restarted worker counts from zero.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class WorkerStats:
    """Counters of one worker process since it started (not durable)."""

    events_in: int = 0
    events_written: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    skipped_redelivered: int = 0
    batches: int = 0
    warehouse_retries: int = 0
    alerts: int = 0
    warehouse_healthy: bool = True
    offsets_refetched: int = 0          # offsets the consumer skipped, read from the topic (streams.continuity)
    bad_packets: int = 0                # records of the detector topic that were not packets (skipped)
    offsets_unreadable: int = 0         # skipped offsets the log does not hold (streams.delivery.read_again)
    detector_snapshot_bytes: int = 0    # the last detector snapshot written (all chunks)
    detector_snapshot_ms: float = 0.0   # and how long taking it took
    last_batch_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "last_batch_at"}


LIVE_WINDOW_MS = 3_600_000.0
"""Only events at most this old when their insert was acknowledged count towards latency: a
backfill's or a replay's age is not the pipeline's latency."""

BATCH_METRICS = (
    "batch_records", "batch_events_stored", "batch_dead_letters", "batch_duplicates", "batch_redelivered",
    "batch_wall_ms", "batch_live_events", "batch_latency_p50_ms", "batch_latency_p95_ms", "batch_latency_max_ms",
)
"""The per-batch figures each worker writes to ``pipeline_metrics`` (partition -1, ``time`` = when
the batch was done: its inserts acknowledged), one row each per batch of the events topic:

- ``batch_records``: Kafka records consumed;
- ``batch_events_stored``: rows written to ``events`` (repeated event ids included: they are stored,
  marked ``is_new = 0``);
- ``batch_dead_letters``: lines sent to the dead-letter topic;
- ``batch_duplicates``: stored events whose id the partition had seen before (``is_new = 0``);
- ``batch_redelivered``: events skipped because already stored (a redelivered batch);
- ``batch_wall_ms``: the batch's wall time in the worker, from handing it over (``take_until_idle``) to
  its end (all inserts acknowledged, alerts delivered);
- ``batch_live_events``, ``batch_latency_p50_ms`` / ``_p95_ms`` / ``_max_ms``: event-to-queryable
  latency, *insert acknowledged - event ts* over the batch's stored events at most an hour old
  (``LIVE_WINDOW_MS``); the latency rows are left out when the batch has none.

Event time (not the Kafka record timestamp) is the start: it is what a user sees as "the run did
this at ...", and it includes the producer's own delay before publishing. The acknowledgement of
the insert is the end: from then on the row is visible to every query."""

DEAD_LETTER_BATCH_METRIC = "batch_dead_letters_stored"
"""One row per batch of the dead-letter topic: the dead letters it stored in ``dead_letters``
(those the worker sent and those a producer sent, e.g. lines ``runlens publish`` rejected)."""


@dataclass
class BatchTally:
    """What one batch of the events topic did, gathered group by group (``process_records``)."""

    records: int = 0
    stored: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    redelivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def live_latencies_ms(event_times: Sequence[datetime], acked_at: float) -> list[float]:
    """Milliseconds from each event time to ``acked_at`` (epoch seconds), for the events that were
    at most ``LIVE_WINDOW_MS`` old and not in the future then."""
    acked_ms = acked_at * 1000.0
    return [d for t in event_times if 0.0 <= (d := acked_ms - t.timestamp() * 1000.0) <= LIVE_WINDOW_MS]


def batch_figures(tally: BatchTally, wall_s: float) -> dict[str, float]:
    """The ``BATCH_METRICS`` values of one batch (the latency ones only when it had live events).
    Percentiles are nearest-rank: the smallest latency with at least that share at or below it."""
    figures = {"batch_records": float(tally.records), "batch_events_stored": float(tally.stored),
               "batch_dead_letters": float(tally.dead_letters), "batch_duplicates": float(tally.duplicates),
               "batch_redelivered": float(tally.redelivered), "batch_wall_ms": wall_s * 1000.0}
    latencies = sorted(tally.latencies_ms)
    if latencies:
        n = len(latencies)
        figures.update({"batch_live_events": float(n),
                        "batch_latency_p50_ms": latencies[max(0, -(-n * 50 // 100) - 1)],
                        "batch_latency_p95_ms": latencies[max(0, -(-n * 95 // 100) - 1)],
                        "batch_latency_max_ms": latencies[-1]})
    return figures


MAX_BUFFERED_FIGURES = 100_000
"""Batch figure rows kept for the next metrics sample at most (oldest dropped beyond): bounded
memory when samples cannot be written for a long time."""


def rss_bytes() -> int:
    """This process's resident memory in bytes (0 where /proc cannot tell)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0
