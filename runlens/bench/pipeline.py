"""Phase 2, the pipeline: sustained throughput per producer path and the poison run."""

from __future__ import annotations

import gc
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from runlens.bench.base import BenchSink
from runlens.bench.common import (
    PRODUCERS,
    delta_of,
    encoded,
    live_events,
    proc_cpu_seconds,
    proc_memory_mb,
    ratio_of,
    rounded,
    rss_mb,
)
from runlens.bench.latency import Latency

if TYPE_CHECKING:
    from embedded.stack import EmbeddedStack


class Pipeline(Latency):
    """Bench phase: the runlens pipeline on one embedded stack."""

    def pipeline(self, data: dict[str, list[Any]]) -> None:
        from embedded.stack import EmbeddedStack
        from sinks.clickhouse import connect

        settings = self.settings_for("pipeline")
        self.step("pipeline: starting the stack")
        pipeline: dict[str, Any] = {}
        resources: dict[str, Any] = {}
        self.result["pipeline"] = pipeline
        self.result["resources"] = resources
        with EmbeddedStack(settings) as stack:
            # warm-up: the group joins, the worker loads its state and writes a first batch
            self.step("pipeline: warming up the worker")
            warm_keys, warm_values = encoded(live_events(self.plan.seed + 100, datetime.now(UTC) - timedelta(days=2)),
                                             2000)
            sink = self._sink(stack, self.plan.producer)
            for key, value in zip(warm_keys, warm_values, strict=True):
                sink.send(key, value)
            sink.flush()
            lag, _ = self._wait_lag_zero(stack, 180, label="warm-up")
            if lag != 0:
                raise RuntimeError(f"the worker did not consume the warm-up events (lag {lag})")
            worker_pid = self.worker_pid(stack)
            resources["worker_rss_mb_idle"] = rounded(rss_mb(worker_pid))
            self.advance()

            keys, values = data.pop("keys"), data.pop("values")
            pipeline["throughput_by_producer"] = {}

            def max_rate_run(mode: str, number: int) -> dict:
                self.step(f"pipeline: {len(values):,} events at maximum rate ({mode} producer)")
                run_keys, run_values = keys, values
                if number:  # the same events under other ids: no duplicates for the worker to skip
                    tag = f"x{number}_".encode()
                    run_keys = [k.replace("run_", tag.decode() + "run_") for k in keys]
                    run_values = [v.replace(b':"run_', b':"' + tag + b"run_") for v in values]
                before = self._stored(stack)
                run = self.throughput(stack, self._sink(stack, mode), run_keys, run_values, mode)
                run["producer"] = mode
                # a repeated event would be stored, then merged away: the count catches repeats too
                self._check_stored(stack, run, expected=before + len(run_values))
                pipeline["throughput_by_producer"][mode] = run
                self.advance()
                return run

            # the chosen producer first: the fixed-rate runs and the soak follow it on a worker that has
            # seen only that producer's batches; the other producer's max-rate run comes last
            pipeline["throughput"] = max_rate_run(self.plan.producer, 0)
            resources["worker_rss_mb_after_throughput"] = rounded(rss_mb(self.worker_pid(stack)))
            max_rate = pipeline["throughput"]["events_per_s"]

            reader = connect(stack.reader_dsn, database=settings.database)
            try:
                self.show("measuring what the latency probes cost the worker")
                pipeline["probe_overhead"] = self.probe_overhead(stack, reader)
                groups: Counter = Counter()
                pipeline["latency"] = []
                for share in self.plan.rates:
                    rate = max_rate * share / 100
                    self.step(f"pipeline: latency at {share:g}% of max ({rate:,.0f} events/s)")
                    pipeline["latency"].append(self.latency(stack, sink, reader, share, rate, groups))
                    self.advance()
            finally:
                reader.close()

            if self.plan.soak_s:
                self.step(f"pipeline: soak at 50% of max for {self.plan.soak_s:g}s")
                resources["soak"] = self.soak(stack, sink, max_rate * 0.5)
                self.advance()
            del sink  # librdkafka clients must go before the broker does, or they log reconnects
            memory = proc_memory_mb(stack.worker.pid) if stack.worker is not None else {}
            resources["worker_rss_mb_peak"] = rounded(memory.get("VmHWM"))
            for number, mode in enumerate((m for m in PRODUCERS if m != self.plan.producer), start=1):
                max_rate_run(mode, number)
                memory = proc_memory_mb(stack.worker.pid) if stack.worker is not None else {}
                resources[f"worker_rss_mb_after_{mode}_max_rate_run"] = rounded(memory.get("VmRSS"))
                resources[f"worker_rss_mb_peak_after_{mode}_max_rate_run"] = rounded(memory.get("VmHWM"))
            self.step("pipeline: the same events with 1 % poison lines (EventSink)")
            pipeline["poison"] = self.poison_run(stack, keys, values, len(PRODUCERS) + 1,
                                                 pipeline["throughput_by_producer"].get("sink", {}))
            self.advance()
            keys.clear()
            values.clear()
            gc.collect()
            resources["worker_restarts"] = stack.worker_restarts
        self._resources_summary()

    def poison_run(self, stack: EmbeddedStack, keys: list[str], values: list[bytes], number: int,
                   clean: dict[str, Any]) -> dict[str, Any]:
        """The max-rate run again (EventSink, fresh ids) with one bad line after every 100 events, of
        every kind the contract rejects: valid events per second against the clean run's."""
        import random

        from producers.workload import corrupt

        rng = random.Random(self.plan.seed)
        tag = f"x{number}_"
        mixed_keys, mixed_values, bad = [], [], 0
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            key, value = key.replace("run_", tag + "run_"), value.replace(b':"run_', b':"' + tag.encode() + b"run_")
            mixed_keys.append(key)
            mixed_values.append(value)
            if i % 100 == 99:
                mixed_keys.append(key)
                mixed_values.append(corrupt(orjson.loads(value), bad, rng))
                bad += 1
        before, before_rejected = self._stored(stack), self._rejected(stack)
        run = self.throughput(stack, self._sink(stack, "sink"), mixed_keys, mixed_values, "poison")
        valid_rate = len(values) / run["seconds"]
        run.update(producer="sink", valid_events=len(values), bad_lines=bad,
                   valid_events_per_s=round(valid_rate),
                   ratio_to_clean_run=ratio_of(valid_rate, clean.get("events_per_s")))
        self._check_stored(stack, run, expected=before + len(values), expected_rejected=before_rejected + bad)
        return run

    def throughput(self, stack: EmbeddedStack, sink: BenchSink, keys: list[str], values: list[bytes],
                   label: str = "") -> dict[str, Any]:
        n = len(values)
        worker_pid = self.worker_pid(stack)
        broker_pid = stack.broker.proc.pid if stack.broker is not None else None
        w0, b0, p0 = proc_cpu_seconds(worker_pid), proc_cpu_seconds(broker_pid) if broker_pid else None, \
            time.process_time()
        t0 = time.monotonic()
        send = sink.send
        for i in range(n):
            send(keys[i], values[i])
            if i % 20_000 == 0:
                self.show(f"throughput: {i:,} sent", i, n)
        sink.flush()
        t_sent = time.monotonic()
        producer_cpu = time.process_time() - p0
        lag, t_done = self._wait_lag_zero(stack, 300 + n / 500, total=n, label="throughput",
                                          on_sample=lambda: self._sample_rss(stack, f"throughput {label}"))
        worker_cpu = delta_of(proc_cpu_seconds(worker_pid), w0)
        broker_cpu = delta_of(proc_cpu_seconds(broker_pid), b0) if broker_pid else None
        seconds = t_done - t0
        base = self.result.get("baselines", {})
        rate = n / seconds
        out = {
            "what": "pre-generated events handed to the runlens producer path as fast as possible; timed from "
                    "the first send until the worker group's committed lag on the events topic was 0 "
                    "(the worker commits every second, lag polled every 0.25 s)",
            "events": n, "seconds": round(seconds, 2), "events_per_s": round(rate),
            "producer_seconds": round(t_sent - t0, 2), "final_lag": lag,
            "records": getattr(getattr(sink, "batcher", None), "records", None) or getattr(sink, "records", None),
            "worker_cpu_s": rounded(worker_cpu, 2), "broker_cpu_s": rounded(broker_cpu, 2),
            "producer_cpu_s": round(producer_cpu, 2),
            "worker_cpu_s_per_million": rounded(worker_cpu / n * 1e6 if worker_cpu is not None else None, 2),
            "ratio_to": {name: ratio_of(rate, base.get(name, {}).get("events_per_s")) for name in ("B0", "B1", "B2")},
        }
        if lag != 0:
            raise RuntimeError(f"the worker did not catch up: lag {lag:,} after {seconds:.0f}s")
        return out
