"""``streams.figures.batch_figures`` and ``live_latencies_ms``: the per-batch figures each worker
writes to ``pipeline_metrics`` (the Pipeline health panels read them instead of scanning ``events``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.figures import BATCH_METRICS, LIVE_WINDOW_MS, BatchTally, batch_figures, live_latencies_ms

ACKED = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)


def test_latency_is_from_event_time_to_the_acknowledged_insert_for_live_events_only():
    times = [ACKED - timedelta(milliseconds=250), ACKED - timedelta(seconds=3),
             ACKED - timedelta(hours=2),            # a backfill: its age is not latency
             ACKED + timedelta(seconds=1),          # ahead of the clock: no latency
             ACKED - timedelta(milliseconds=LIVE_WINDOW_MS)]   # exactly an hour: still live
    assert live_latencies_ms(times, ACKED.timestamp()) == pytest.approx([250.0, 3000.0, LIVE_WINDOW_MS])


def test_figures_of_a_batch():
    tally = BatchTally(records=12, stored=9, dead_letters=2, duplicates=1, redelivered=1,
                       latencies_ms=[float(ms) for ms in range(100, 0, -1)])   # 100 .. 1, unsorted
    figures = batch_figures(tally, 0.125)
    assert set(figures) == set(BATCH_METRICS)
    assert figures == {
        "batch_records": 12.0, "batch_events_stored": 9.0, "batch_dead_letters": 2.0, "batch_duplicates": 1.0,
        "batch_redelivered": 1.0, "batch_wall_ms": 125.0, "batch_live_events": 100.0,
        "batch_latency_p50_ms": 50.0, "batch_latency_p95_ms": 95.0, "batch_latency_max_ms": 100.0}


@pytest.mark.parametrize("latencies, p50, p95", [([7.0], 7.0, 7.0), ([1.0, 9.0], 1.0, 9.0),
                                                 ([3.0, 1.0, 2.0], 2.0, 3.0)])
def test_nearest_rank_percentiles_of_small_batches(latencies, p50, p95):
    figures = batch_figures(BatchTally(stored=len(latencies), latencies_ms=latencies), 0.0)
    assert (figures["batch_latency_p50_ms"], figures["batch_latency_p95_ms"]) == (p50, p95)
    assert figures["batch_latency_max_ms"] == max(latencies)


def test_a_batch_without_live_events_has_no_latency_rows():
    figures = batch_figures(BatchTally(records=3, stored=2, dead_letters=1), 0.01)
    assert figures["batch_events_stored"] == 2.0 and figures["batch_dead_letters"] == 1.0
    assert not {k for k in figures if "latency" in k or k == "batch_live_events"}
