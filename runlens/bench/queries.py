"""Phase 3, query speed: history backfilled to each size, the suite timed through the read endpoint."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from embedded.processes import proc_memory_mb
from runlens.bench.base import BenchBase
from runlens.bench.common import count_label, growth_of, percentile, rounded, workload_config
from runlens.bench.suite import query_suite

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from embedded.stack import EmbeddedStack


class Queries(BenchBase):
    """Bench phase: query speed over growing history."""

    def queries(self) -> None:
        from embedded.stack import EmbeddedStack
        from sinks.clickhouse import connect

        settings = self.settings_for("queries")
        out: dict[str, Any] = {"sizes": [], "repeat": self.plan.repeat}
        self.result["queries"] = out
        window_end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        window_start = window_end - timedelta(days=7) + timedelta(hours=1)
        out["history_window"] = [window_start.isoformat(), window_end.isoformat()]
        out["what"] = ("history backfilled through the pipeline (producer -> broker -> worker), then each query "
                       "run once untimed and REPEAT times timed through the worker's read endpoint with "
                       "clickhouse-connect (as `runlens stats` does): wall time of client.query() including "
                       "transfer and parsing; p50/p95 of the timed runs")
        with EmbeddedStack(settings) as stack:
            reader = connect(stack.reader_dsn, database=settings.database)
            try:
                sent = 0
                for stage, size in enumerate(self.plan.history):
                    label = count_label(size)
                    self.step(f"queries: backfilling {label} events of history")
                    backfill = self.backfill(stack, size - sent, stage, window_start, window_end, label)
                    sent += backfill["events"]
                    self.advance()
                    self.step(f"queries: running the queries at {label}")
                    stored = reader.query("SELECT count() FROM events").result_rows[0][0]
                    runs = reader.query("SELECT count() FROM runs").result_rows[0][0]
                    memory = proc_memory_mb(stack.worker.pid) if stack.worker is not None else {}
                    backfill["worker_rss_mb_after"] = rounded(memory.get("VmRSS"))
                    backfill["worker_rss_mb_peak"] = rounded(memory.get("VmHWM"))
                    shown = shown_run(reader)
                    results = self.run_queries(reader, label, shown)
                    out["sizes"].append({"label": label, "events_sent": sent, "events_stored": stored, "runs": runs,
                                         "backfill": backfill, "shown_run": shown, "queries": results})
                    self.advance()
            finally:
                reader.close()
        out["growth"] = growth_of(out["sizes"])

    def backfill(self, stack: EmbeddedStack, n: int, stage: int, start: datetime, end: datetime,
                 label: str) -> dict[str, Any]:
        from producers.workload import generate

        hours = (end - start).total_seconds() / 3600
        probe_config = workload_config(self.plan.seed + 50 + stage, backfill_runs_per_hour=1000)
        sample_start = start + timedelta(days=1)
        sample = list(generate(probe_config, sample_start, sample_start + timedelta(hours=6)))
        runs = sum(1 for e in sample if e["type"] == "run.queued") or 1
        per_run = len(sample) / runs
        runs_per_hour = n / per_run / hours * 1.03
        config = workload_config(self.plan.seed + 50 + stage, backfill_runs_per_hour=runs_per_hour)
        source = generate(config, start, end)
        sink = self._sink(stack, "sink")
        dumps = orjson.dumps
        t0 = time.monotonic()
        sent = 0
        for event in source:
            sink.send(event["run_id"], dumps(event))
            sent += 1
            if sent % 20_000 == 0:
                self.show(f"backfill {label}: {sent:,} sent", sent, n)
            if sent >= n:
                break
        sink.flush()
        t_sent = time.monotonic()
        lag, t_done = self._wait_lag_zero(stack, 600 + n / 500, total=sent, label=f"backfill {label}")
        if lag != 0:
            raise RuntimeError(f"backfill {label}: the worker did not catch up (lag {lag:,})")
        quiet = self._wait_merges(stack)
        return {"events": sent, "produce_seconds": round(t_sent - t0, 1),
                "seconds_until_lag_0": round(t_done - t0, 1),
                "events_per_s": round(sent / (t_done - t0)) if t_done > t0 else None,
                "merges_settled": quiet}

    def _wait_merges(self, stack: EmbeddedStack, timeout: float = 120) -> bool:
        """Let background merges after the backfill finish so they don't skew the query timings."""
        from sinks.clickhouse import connect

        client = connect(stack.reader_dsn)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.show("waiting for background merges")
                if client.query("SELECT count() FROM system.merges").result_rows[0][0] == 0:
                    return True
                time.sleep(1)
            return False
        except Exception:  # noqa: BLE001 - only a courtesy wait
            return False
        finally:
            client.close()

    def run_queries(self, reader: Client, label: str, shown: dict[str, str]) -> list[dict[str, Any]]:
        suite = query_suite(datetime.now(UTC), shown)
        results = []
        for index, query in enumerate(suite):
            self.show(f"{label}: {query.kind} {query.name}", index, len(suite))
            entry: dict[str, Any] = {"kind": query.kind, "name": query.name}
            if query.skip:
                entry["error"] = query.skip
                results.append(entry)
                continue
            try:
                t = time.perf_counter()
                result = reader.query(query.sql, parameters=query.params or None)
                entry["first_ms"] = round((time.perf_counter() - t) * 1000, 2)
                entry["rows"] = len(result.result_rows)
                times = []
                for _ in range(self.plan.repeat):
                    t = time.perf_counter()
                    reader.query(query.sql, parameters=query.params or None).result_rows  # noqa: B018
                    times.append((time.perf_counter() - t) * 1000)
                entry["p50_ms"] = round(statistics.median(times), 2)
                entry["p95_ms"] = rounded(percentile(times, 95), 2)
            except Exception as exc:  # noqa: BLE001 - one broken query does not end the benchmark
                entry["error"] = str(exc).splitlines()[0][:300]
            results.append(entry)
        return results


def shown_run(reader: Client) -> dict[str, str]:
    """The run the Run details panels are timed on, as a user opens it from the run list: the
    original run with the most replays (its Replays panel has rows), and its account."""
    rows = reader.query("SELECT account_id, replay_of FROM events WHERE replay_of IS NOT NULL "
                        "GROUP BY account_id, replay_of ORDER BY uniqExact(run_id) DESC, replay_of LIMIT 1").result_rows
    if not rows:
        rows = reader.query("SELECT account_id, run_id FROM events ORDER BY ts DESC LIMIT 1").result_rows
    return {"account": rows[0][0], "run": rows[0][1]} if rows else {}
