"""The worker's batch path records its figures: ``IngestWorker.process_batch`` buffers one set
of ``BATCH_METRICS`` rows per batch and ``record_metrics`` writes them with its sample, in one
insert. The warehouse and the broker are fakes; no network is used."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

import streams.app as app_module
from sinks.ledger_state import LedgerState
from streams.app import IngestWorker
from streams.config import WorkerConfig
from streams.figures import BATCH_METRICS, DEAD_LETTER_BATCH_METRIC

FIXTURE = Path(__file__).parents[2] / "fixtures" / "sample-events.ndjson"


class FakeWarehouse:
    def __init__(self, fail_metrics: bool = False) -> None:
        self.inserts: list[tuple[str, dict[str, list[Any]]]] = []
        self.fail_metrics = fail_metrics

    def load_ledger(self, partition: int) -> LedgerState:
        return LedgerState(partition)

    def insert_columns(self, table: str, columns: dict[str, list[Any]], token: str, *,
                       proceed: Any = None) -> None:
        assert proceed is None or proceed()   # the batch is still the worker's: no rebalance here
        if table == "pipeline_metrics" and self.fail_metrics:
            raise RuntimeError("metrics insert failed")
        self.inserts.append((table, columns))


def _config(tmp_path: Path) -> WorkerConfig:
    return WorkerConfig(
        consumer_group="g", events_topic="events", dead_letter_topic="dlq", alerts_topic="alerts",
        detector_topic="signals", commands_topic="commands", command_outcomes_topic="command-outcomes",
        data_dir=tmp_path, partitions=1, replication_factor=1, batch_max_records=1000, batch_max_seconds=0.1,
        batch_idle_seconds=0.02,
        insert_max_rows=3, max_event_bytes=1_000_000, max_clock_skew_seconds=300.0,
        alert_lateness_seconds=120.0, alert_idle_seconds=30.0, alert_webhook_url=None, metrics_interval_seconds=5.0)


def _events(lines: list[bytes], first_offset: int = 0) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(key=b"k", value=line, topic="events", partition=0, offset=i,
                                                    generation_id=1))
            for i, line in enumerate(lines, first_offset)]


def _lines(age: timedelta, n: int, first: int = 0) -> list[bytes]:
    """``n`` run.queued events of distinct runs, ``age`` old."""
    template = orjson.loads(FIXTURE.read_bytes().splitlines()[0])
    ts = (datetime.now(UTC) - age).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [orjson.dumps({**template, "event_id": f"e{i}", "run_id": f"r{i}", "ts": ts})
            for i in range(first, first + n)]


def _worker(tmp_path: Path, warehouse: FakeWarehouse, monkeypatch) -> IngestWorker:
    worker = IngestWorker(_config(tmp_path), "localhost:1", warehouse)  # type: ignore[arg-type]
    async def earliest_offsets(*partitions: Any) -> dict[Any, int]:   # the log start: unknown here
        return {}

    worker.app = SimpleNamespace(consumer=SimpleNamespace(  # type: ignore[assignment]
        assignment=lambda: set(), _committed_offset={}, earliest_offsets=earliest_offsets),
        rebalancing_count=1, should_stop=False, consumer_generation_id=1)
    monkeypatch.setattr(app_module, "partition_lags", lambda *a, **k: {("events", 0): 0})

    async def packets_sent(topic: Any, routed: list[tuple[int, bytes]]) -> None:   # the detector topic: no broker here
        pass

    monkeypatch.setattr(app_module, "send_packets", packets_sent)

    async def sent(topic: Any, letters: list[Any]) -> None:   # the dead-letter topic: no broker here
        pass

    monkeypatch.setattr(app_module, "send_dead_letters", sent)
    return worker


def _figures(warehouse: FakeWarehouse) -> list[dict[str, float]]:
    """The batch figures written, one dict per batch in batch order (each starts with ``batch_records``;
    all rows of a batch share its time)."""
    (table, columns), = [(t, c) for t, c in warehouse.inserts if t == "pipeline_metrics"]
    batches: list[dict[str, float]] = []
    times: list[set[Any]] = []
    for when, metric, partition, value in zip(columns["time"], columns["metric"], columns["partition"],
                                              columns["value"], strict=True):
        if metric in BATCH_METRICS:
            assert partition == -1
            if metric == "batch_records":
                batches.append({})
                times.append(set())
            batches[-1][metric] = value
            times[-1].add(when)
    assert all(len(t) == 1 for t in times)
    return batches


def test_each_batch_leaves_its_figures_for_the_next_sample(tmp_path, monkeypatch):
    warehouse = FakeWarehouse()
    worker = _worker(tmp_path, warehouse, monkeypatch)
    live = _lines(timedelta(seconds=2), 5)
    asyncio.run(worker.process_batch(_events(live + [b"not json"])))
    asyncio.run(worker.process_batch(_events(_lines(timedelta(days=3), 2, 10), 6)))   # a backfill: no latency
    assert [t for t, _ in warehouse.inserts] == ["events", "events", "events"]   # groups of 3: no extra insert
    assert worker.batch_rows
    asyncio.run(worker.record_metrics())
    assert worker.batch_rows == []
    first, second = _figures(warehouse)
    assert {k: v for k, v in first.items() if "latency" not in k and k != "batch_wall_ms"} == {
        "batch_records": 6.0, "batch_events_stored": 5.0, "batch_dead_letters": 1.0, "batch_duplicates": 0.0,
        "batch_redelivered": 0.0, "batch_live_events": 5.0}
    assert 2000 <= first["batch_latency_p50_ms"] <= first["batch_latency_max_ms"] < 60_000
    assert first["batch_latency_p95_ms"] <= first["batch_latency_max_ms"] and first["batch_wall_ms"] > 0
    assert second["batch_events_stored"] == 2.0 and "batch_latency_p50_ms" not in second


def test_redelivered_records_and_repeated_ids_are_counted(tmp_path, monkeypatch):
    warehouse = FakeWarehouse()
    worker = _worker(tmp_path, warehouse, monkeypatch)
    lines = _lines(timedelta(seconds=1), 2)
    asyncio.run(worker.process_batch(_events(lines)))
    asyncio.run(worker.process_batch(_events(lines)))      # the same records again: skipped
    asyncio.run(worker.process_batch(_events(lines, 2)))   # the same ids at new offsets: stored, marked
    asyncio.run(worker.record_metrics())
    figures = _figures(warehouse)
    assert [(f["batch_events_stored"], f["batch_redelivered"], f["batch_duplicates"]) for f in figures] == [
        (2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (2.0, 0.0, 2.0)]


def test_figures_survive_a_failed_sample(tmp_path, monkeypatch):
    warehouse = FakeWarehouse(fail_metrics=True)
    worker = _worker(tmp_path, warehouse, monkeypatch)
    asyncio.run(worker.process_batch(_events(_lines(timedelta(seconds=1), 1))))
    kept = list(worker.batch_rows)
    asyncio.run(worker.record_metrics())
    assert worker.batch_rows == kept
    warehouse.fail_metrics = False
    asyncio.run(worker.record_metrics())
    assert worker.batch_rows == [] and _figures(warehouse)[0]["batch_events_stored"] == 1.0


def test_each_dead_letter_batch_leaves_its_count(tmp_path, monkeypatch):
    warehouse = FakeWarehouse()
    worker = _worker(tmp_path, warehouse, monkeypatch)
    letters = [SimpleNamespace(message=SimpleNamespace(key=b"k", value=b"not json", headers=[], topic="dlq",
                                                       partition=0, offset=i)) for i in range(3)]
    asyncio.run(worker.store_dead_letters(letters))   # e.g. lines a producer rejected
    asyncio.run(worker.record_metrics())
    (table, columns), = [(t, c) for t, c in warehouse.inserts if t == "pipeline_metrics"]
    rows = [(m, p, v) for m, p, v in zip(columns["metric"], columns["partition"], columns["value"], strict=True)
            if m == DEAD_LETTER_BATCH_METRIC]
    assert rows == [(DEAD_LETTER_BATCH_METRIC, -1, 3.0)]
