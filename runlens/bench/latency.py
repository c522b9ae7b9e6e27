"""Event -> queryable latency at fixed rates, the soak, and the resources summary."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from embedded.processes import rss_mb
from runlens.bench.base import BenchBase, BenchSink
from runlens.bench.common import (
    cycled,
    delta_of,
    encoded,
    held_json,
    live_events,
    percentile,
    ratio_of,
    retagged,
    rounded,
    slope_of,
    stats_group,
)
from runlens.bench.probes import KafkaHop, Visibility

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from embedded.stack import EmbeddedStack


LATENCY_POOL = 200_000
"""Most distinct events a fixed-rate run generates and holds: a longer run sends them again under new
run ids (at 80 % of a full run's maximum, a minute is ~900k events)."""


class Latency(BenchBase):
    """Bench phase parts: latency at fixed shares of the maximum rate, soak, resources."""

    def probe_overhead(self, stack: EmbeddedStack, reader: Client, seconds: float = 3.0) -> dict[str, Any]:
        """Worker CPU while the visibility poller runs against an idle worker with a full set of
        pending (never visible) probes: the load the latency measurement itself adds."""
        watcher = Visibility(reader)
        bucket = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:00")
        for i in range(watcher.batch):
            group = (bucket, "acme", f"wf-bench-{i % 20}", 1, "card", "manual", "", "")
            watcher.add((f"run_bench_absent_{i:06d}", "acme", group, 1), time.monotonic())
        pids = self.worker_pids(stack)
        c0, t0 = self.cpu_of(pids), time.monotonic()
        watcher.start()
        time.sleep(seconds)
        watcher.stop()
        cpu = delta_of(self.cpu_of(pids), c0)
        elapsed = time.monotonic() - t0
        return {"what": f"worker CPU while the probe poller queried {watcher.batch} pending probes every "
                        f"{watcher.interval:g}s against an otherwise idle worker",
                "worker_cores": rounded(cpu / elapsed if cpu is not None else None, 3), "polls": watcher.polls,
                "runs_query_ms_p50": rounded(percentile(watcher.poll_ms["runs"], 50)),
                "run_stats_query_ms_p50": rounded(percentile(watcher.poll_ms["stats"], 50))}

    def latency(self, stack: EmbeddedStack, sink: BenchSink, reader: Client, share: float, rate: float,
                groups: Counter[tuple[Any, ...]]) -> dict[str, Any]:
        n = max(200, int(rate * self.plan.latency_s))
        pool = min(n, LATENCY_POOL)
        self.show(f"generating {pool:,} live events")
        keys: list[str] = []
        values: list[bytes] = []
        finishes: list[tuple[tuple[Any, ...], str, str] | None] = []   # (run_stats group, account, event id)
        for event in live_events(self.plan.seed + int(share * 10) + 1, datetime.now(UTC), max(1.0, rate / 10)):
            keys.append(event["run_id"])
            values.append(held_json(event))
            finishes.append((stats_group(event), event["account_id"], event["event_id"])
                            if event["type"] == "run.finished" else None)
            if len(keys) >= pool:
                break
        probe_every = max(1, round(rate * 0.1 / 100))  # ~100 probes/s (about 1 event in 10 finishes a run)
        finished = 0
        watcher = Visibility(reader)
        hop = KafkaHop(stack.brokers, self.settings_of(stack).events_topic)
        worker_pids = self.worker_pids(stack)
        w0 = self.cpu_of(worker_pids)
        watcher.start()
        hop.start()
        try:
            t0 = time.monotonic()
            i, last_show = 0, 0.0
            push = getattr(sink, "push", None)
            while i < n:
                now = time.monotonic()
                due = min(n, int((now - t0) * rate) + 1)
                while i < due:
                    j, tag = i % pool, (f"l{share:g}c{i // pool}_" if i >= pool else "")
                    key, value = keys[j], values[j]
                    if tag:   # the pool again, under new run ids (event ids begin with the run id)
                        key, value = retagged(key, value, tag)
                    sink.send(key, value)
                    if (finish := finishes[j]) is not None:
                        group, account, event_id = finish
                        groups[group] += 1
                        finished += 1
                        if finished % probe_every == 0:
                            stamp = time.monotonic()
                            watcher.add((key, account, group, groups[group], tag + event_id), stamp)
                            hop.expect(tag + event_id, stamp)
                    i += 1
                if push is not None:
                    push()
                if now - last_show > 0.5:
                    last_show = now
                    self._sample_rss(stack, f"latency-{share:g}")
                    self.show(f"latency {share:g}%: {i:,} sent", i, n)
                if i < n:
                    time.sleep(max(0.0, min(0.005, t0 + i / rate - time.monotonic())))
            t_sent = time.monotonic()
            sink.flush()
            hop.wait_empty(timeout=15)
            watcher.wait_empty(timeout=60)
        finally:
            watcher.stop()
            hop.stop()
        lag, t_done = self._wait_lag_zero(stack, 120 + n / 1000)
        worker_cpu = delta_of(self.cpu_of(worker_pids), w0)
        seconds = t_sent - t0
        busy = t_done - t0
        row: dict[str, Any] = {
            "target_pct_of_max": share, "target_events_per_s": round(rate),
            "achieved_events_per_s": round(n / seconds) if seconds > 0 else None,
            "events": n, "seconds": round(seconds, 2), "probes": watcher.added,
            "runs_view": watcher.summary("runs"), "run_stats": watcher.summary("stats"),
            "kafka_hop": hop.summary(),
            "runs_p50_ratio_to_kafka_hop": None,
            "poll_interval_ms": round(watcher.interval * 1000), "final_lag": lag,
            "worker_cpu_s_per_million": rounded(worker_cpu / n * 1e6 if worker_cpu is not None else None, 2),
            "worker_cores": rounded(worker_cpu / busy if worker_cpu is not None and busy > 0 else None, 2),
            "producer_push_every_ms": 5,
        }
        row["runs_p50_ratio_to_kafka_hop"] = ratio_of(row["runs_view"]["p50_ms"], row["kafka_hop"]["p50_ms"])
        return row

    def soak(self, stack: EmbeddedStack, sink: BenchSink, rate: float) -> dict[str, Any]:
        duration = self.plan.soak_s
        interval = 2.0 if duration <= 120 else 5.0
        source = cycled(encoded(live_events(self.plan.seed + 7, datetime.now(UTC), max(1.0, rate / 10)),
                                 min(200_000, max(1_000, int(rate * 20)))))
        worker_pids = self.worker_pids(stack)
        w0 = self.cpu_of(worker_pids)
        samples: list[tuple[float, float]] = []
        push = getattr(sink, "push", None)
        t0 = time.monotonic()
        next_sample = t0
        sent = 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                value = rss_mb(stack.worker.pid) if stack.worker is not None else None
                if value is not None:
                    samples.append((round(now - t0, 1), round(value, 1)))
                    self.rss_samples.append(("soak", now - self.t_start, value))
                next_sample += interval
                self.show(f"soak: {sent:,} sent, worker RSS {value or 0:,.0f} MiB", now - t0, duration)
                stack.supervise()
            if now - t0 >= duration:
                break
            due = int((now - t0) * rate) + 1
            while sent < due:
                key, payload = next(source)
                sink.send(key, payload)
                sent += 1
            if push is not None:
                push()
            time.sleep(max(0.0, min(0.005, t0 + sent / rate - time.monotonic())))
        seconds = time.monotonic() - t0
        sink.flush()
        lag, _ = self._wait_lag_zero(stack, 120 + sent / 1000)
        worker_cpu = delta_of(self.cpu_of(worker_pids), w0)
        values = [mb for _, mb in samples]
        half = samples[len(samples) // 2:] if len(samples) >= 4 else samples
        return {
            "what": "paced traffic at 50% of the maximum for the soak duration (a pool of 20 s of live events, "
                    "sent again under new ids each pass); worker RSS sampled every "
                    f"{interval:g}s from /proc/<pid>/status",
            "seconds": round(seconds, 1), "target_events_per_s": round(rate), "events": sent,
            "achieved_events_per_s": round(sent / seconds) if seconds else None,
            "rss_mb_start": values[0] if values else None, "rss_mb_end": values[-1] if values else None,
            "rss_mb_median": rounded(statistics.median(values)) if values else None,
            "rss_mb_max": max(values) if values else None,
            "growth_mb": rounded(values[-1] - values[0]) if values else None,
            "growth_mb_per_min_second_half": rounded(slope_of(half) * 60, 2) if len(half) >= 2 else None,
            "worker_cpu_s_per_million": rounded(worker_cpu / sent * 1e6 if worker_cpu is not None and sent else None,
                                                2),
            "final_lag": lag, "samples": samples,
        }

    def _resources_summary(self) -> None:
        resources = self.result["resources"]
        pipeline = self.result.get("pipeline", {})
        soak = resources.get("soak")
        if soak and soak.get("rss_mb_median") is not None:
            resources["worker_rss_mb_steady"] = soak["rss_mb_median"]
            resources["steady_state_from"] = "median of the soak's samples"
        else:
            latency_samples = [mb for phase, _, mb in self.rss_samples if phase.startswith("latency")]
            resources["worker_rss_mb_steady"] = rounded(statistics.median(latency_samples)) if latency_samples else None
            resources["steady_state_from"] = "median of the samples during the fixed-rate runs"
        throughput = pipeline.get("throughput", {})
        b2 = self.result.get("baselines", {}).get("B2", {})
        worker_cpu, warehouse_cpu = throughput.get("worker_cpu_s_per_million"), \
            throughput.get("warehouse_cpu_s_per_million")
        resources["worker_cpu_s_per_million_at_max"] = worker_cpu
        resources["cpu_per_million_ratio_to_B2"] = ratio_of(worker_cpu, b2.get("cpu_s_per_million"))
        # P1's consumer, timed as the pipeline when it was (as the peer comparison), else on its pre-filled topic
        p1 = self.result.get("baselines", {}).get("P1") or {}
        p1_cpu = (p1.get("as_pipeline") or {}).get("cpu_s_per_million") or p1.get("cpu_s_per_million")
        resources["cpu_per_million_ratio_to_P1"] = ratio_of(worker_cpu, p1_cpu)
        resources["warehouse_cpu_s_per_million_at_max"] = warehouse_cpu
        resources["warehouse_cpu_per_million_ratio_to_B2"] = ratio_of(warehouse_cpu,
                                                                    b2.get("warehouse_cpu_s_per_million"))
        total = worker_cpu + warehouse_cpu if worker_cpu is not None and warehouse_cpu is not None else None
        resources["pipeline_cpu_s_per_million_at_max"] = rounded(total, 2)
        resources["pipeline_cpu_per_million_ratio_to_B2"] = ratio_of(total, b2.get("total_cpu_s_per_million"))
        resources["warehouse_rss_mb_after_B2"] = b2.get("warehouse_rss_mb_after")
        resources["warehouse_rss_ratio_to_B2"] = {
            name: ratio_of(resources.get(f"warehouse_rss_mb_{name}"), b2.get("warehouse_rss_mb_after"))
            for name in ("idle", "after_throughput", "end", "peak")}
        resources["rss_timeline"] = [(phase, round(t, 1), round(mb, 1)) for phase, t, mb in self.rss_samples]
