"""Phase 2, the pipeline: sustained throughput per producer path and the poison run."""

from __future__ import annotations

import gc
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from embedded.processes import proc_memory_mb, rss_mb
from runlens.bench.base import BenchSink
from runlens.bench.common import (
    BASELINES,
    PRODUCERS,
    delta_of,
    encoded,
    live_events,
    proc_cpu_seconds,
    ratio_of,
    retag,
    rounded,
)
from runlens.bench.latency import Latency

if TYPE_CHECKING:
    from embedded.stack import EmbeddedStack


OTHER_PRODUCER_EVENTS = 200_000
"""Most events of a max-rate run through a producer other than the chosen one."""


class Pipeline(Latency):
    """Bench phase: the runlens pipeline on one embedded stack."""

    def pipeline(self, data: dict[str, list[Any]]) -> None:
        """The pipeline phase on a stack of ``plan.workers`` workers (the settings' ``workers`` when
        unset). Leaves the events in ``data`` (under their last ids, ``data["tag"]``) for the
        workers phase."""
        from embedded.stack import EmbeddedStack
        from sinks.clickhouse import connect

        settings = self.settings_for("pipeline")
        if self.plan.workers is not None:
            settings = settings.model_copy(update={"workers": self.plan.workers})
        self.step(f"pipeline: starting the stack ({settings.workers} worker{'s' if settings.workers > 1 else ''})")
        pipeline: dict[str, Any] = {"workers": settings.workers}
        resources: dict[str, Any] = {}
        self.result["pipeline"] = pipeline
        self.result["resources"] = resources
        with EmbeddedStack(settings) as stack:
            sink = self.warm_up(stack, "warm-up")
            worker_pid = self.worker_pid(stack)
            resources["worker_rss_mb_idle"] = rounded(rss_mb(worker_pid))
            resources["workers_rss_mb_idle"] = self._workers_rss(stack)
            resources["warehouse_rss_mb_idle"] = rounded(self._warehouse_memory(stack).get("VmRSS"))
            self.advance()

            keys, values = data["keys"], data["values"]
            tags = [""]   # the ids the events carry now: each run sends them under fresh ones
            pipeline["throughput_by_producer"] = {}

            def max_rate_run(mode: str, number: int) -> dict:
                # the other producers' runs compare paths: at most OTHER_PRODUCER_EVENTS events (one record
                # per event runs at ~2k events/s, so a million would take the full bench ten minutes)
                n = len(values) if mode == self.plan.producer else min(len(values), OTHER_PRODUCER_EVENTS)
                self.step(f"pipeline: {n:,} events at maximum rate ({mode} producer)")
                if number:  # the same events under other ids: no duplicates for the worker to skip
                    retag(keys, values, tags[-1], f"x{number}_")
                    tags.append(f"x{number}_")
                before = self._stored(stack)
                run = self.throughput(stack, self._sink(stack, mode), keys[:n], values[:n], mode)
                run["producer"] = mode
                # a repeated event would be stored, then merged away: the count catches repeats too
                self._check_stored(stack, run, expected=before + n)
                pipeline["throughput_by_producer"][mode] = run
                self.advance()
                return run

            # the chosen producer first: the fixed-rate runs and the soak follow it on a worker that has
            # seen only that producer's batches; the other producer's max-rate run comes last
            pipeline["throughput"] = max_rate_run(self.plan.producer, 0)
            resources["worker_rss_mb_after_throughput"] = rounded(rss_mb(self.worker_pid(stack)))
            resources["workers_rss_mb_after_throughput"] = self._workers_rss(stack)
            resources["warehouse_rss_mb_after_throughput"] = rounded(self._warehouse_memory(stack).get("VmRSS"))
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
            pipeline["poison"] = self.poison_run(stack, keys, values, tags[-1], len(PRODUCERS) + 1,
                                                 pipeline["throughput_by_producer"].get("sink", {}))
            tags.append(f"x{len(PRODUCERS) + 1}_")
            self.advance()
            memory = self._warehouse_memory(stack)
            resources["warehouse_rss_mb_end"] = rounded(memory.get("VmRSS"))
            resources["warehouse_rss_mb_peak"] = rounded(memory.get("VmHWM"))
            resources["worker_restarts"] = stack.worker_restarts
            resources["warehouse_restarts"] = stack.warehouse_restarts
            data["tag"] = [tags[-1]]
            gc.collect()   # producers caught in reference cycles go now, before the broker does
        self._resources_summary()

    def workers_side_by_side(self, data: dict[str, list[Any]]) -> None:
        """The pipeline phase's max-rate run (its producer, the same events under fresh ids) on a
        second stack with another number of workers: 2 when the pipeline phase ran 1, else 1.
        Consumes ``data``'s events: they are freed when this is done."""
        from embedded.stack import EmbeddedStack

        pipeline = self.result.get("pipeline", {})
        main = pipeline.get("throughput")
        keys, values, tag = data.get("keys"), data.get("values"), (data.get("tag") or [""])[0]
        if not main or not keys or not values:
            raise RuntimeError("the pipeline phase measured no max-rate run to compare with")
        main_workers = int(pipeline.get("workers") or 1)
        other = 2 if main_workers == 1 else 1
        settings = self.settings_for("workers").model_copy(update={"workers": other})
        self.step(f"workers: starting a stack with {other} worker{'s' if other > 1 else ''}")
        resources = self.result.get("resources", {})
        base = self.result.get("baselines", {})

        def entry(run: dict[str, Any], workers_rss: list[float | None], warehouse_rss: float | None) -> dict:
            return {"workers": run.get("workers"), "events": run["events"], "seconds": run["seconds"],
                    "events_per_s": run["events_per_s"],
                    "ratio_to_B2": ratio_of(run["events_per_s"], base.get("B2", {}).get("events_per_s")),
                    "ratio_to_B2_in_process": ratio_of(run["events_per_s"],
                                                       base.get("B2_in_process", {}).get("events_per_s")),
                    "workers_rss_mb_after": workers_rss, "warehouse_rss_mb_after": warehouse_rss,
                    "worker_cpu_s_per_million": run.get("worker_cpu_s_per_million"),
                    "warehouse_cpu_s_per_million": run.get("warehouse_cpu_s_per_million")}

        side: dict[str, Any] = {str(main_workers): entry(main, resources.get("workers_rss_mb_after_throughput") or [],
                                                         resources.get("warehouse_rss_mb_after_throughput"))}
        side[str(main_workers)]["stack"] = "the pipeline phase's (its first max-rate run)"
        with EmbeddedStack(settings) as stack:
            warm_sink = self.warm_up(stack, "workers warm-up")
            idle_workers, idle_warehouse = self._workers_rss(stack), self._warehouse_memory(stack).get("VmRSS")
            new_tag = "w_"
            retag(keys, values, tag, new_tag)
            data["tag"] = [new_tag]
            self.step(f"workers: {len(values):,} events at maximum rate on {other} workers "
                      f"({self.plan.producer} producer)")
            before = self._stored(stack)
            sink = self._sink(stack, self.plan.producer)
            run = self.throughput(stack, sink, keys, values, f"{other} workers (first worker)")
            del sink, warm_sink   # librdkafka clients must go before the broker does, or they log reconnects
            gc.collect()
            run["producer"] = self.plan.producer
            self._check_stored(stack, run, expected=before + len(values))
            memory = self._warehouse_memory(stack)
            row = entry(run, self._workers_rss(stack), rounded(memory.get("VmRSS")))
            row.update(stack="a stack of its own (fresh broker, warehouse and database), warmed up the same way",
                       workers_rss_mb_idle=idle_workers, warehouse_rss_mb_idle=rounded(idle_warehouse),
                       workers_rss_mb_peak=[rounded(proc_memory_mb(pid).get("VmHWM"))
                                            for pid in self.worker_pids(stack)],
                       warehouse_rss_mb_peak=rounded(memory.get("VmHWM")), worker_restarts=stack.worker_restarts,
                       run=run)
            side[str(other)] = row
            self.advance()
        keys.clear()
        values.clear()
        data.clear()
        ordered = dict(sorted(side.items(), key=lambda item: int(item[0])))
        pipeline["throughput_by_workers"] = {n: row["events_per_s"] for n, row in ordered.items()}
        pipeline["workers_side_by_side"] = ordered
        one, two = ordered.get("1", {}).get("events_per_s"), ordered.get("2", {}).get("events_per_s")
        pipeline["workers_2_to_1"] = ratio_of(two, one)
        if "resources" in self.result:   # the samples of this run too
            self.result["resources"]["rss_timeline"] = [(phase, round(t, 1), round(mb, 1))
                                                        for phase, t, mb in self.rss_samples]

    def warm_up(self, stack: EmbeddedStack, label: str) -> BenchSink:
        """Every worker has joined the group and holds partitions, and the group has consumed a
        first 2,000 events (each worker loads its state and writes a first batch). Returns the
        plan's producer path, connected."""
        self.step(f"pipeline: {label} ({len(stack.workers)} worker{'s' if len(stack.workers) > 1 else ''})")
        if len(stack.workers) > 1:
            self._wait_group(stack, len(stack.workers), timeout=120)
        warm_keys, warm_values = encoded(live_events(self.plan.seed + 100, datetime.now(UTC) - timedelta(days=2)),
                                         2000)
        sink = self._sink(stack, self.plan.producer)
        for key, value in zip(warm_keys, warm_values, strict=True):
            sink.send(key, value)
        sink.flush()
        lag, _ = self._wait_lag_zero(stack, 180, label=label)
        if lag != 0:
            raise RuntimeError(f"the worker did not consume the warm-up events (lag {lag})")
        return sink

    def _wait_group(self, stack: EmbeddedStack, members: int, timeout: float) -> None:
        """Until the worker group has ``members`` members that between them own every partition:
        as the broker describes the group, or (brokers that do not, Tansu) as the workers report
        the partitions they own in ``pipeline_metrics`` (every few seconds)."""
        from producers.kafka import group_members
        from sinks.clickhouse import connect

        s = self.settings_of(stack)
        deadline = time.monotonic() + timeout
        owners, owned = 0, 0
        reader = connect(stack.reader_dsn, database=s.database)
        try:
            while time.monotonic() < deadline:
                stack.supervise()
                try:
                    seen = group_members(stack.brokers, s.consumer_group)
                except Exception:  # noqa: BLE001 - the group may not exist yet
                    seen = []
                if seen:
                    owners = sum(1 for m in seen if m.partitions)
                    owned = len({tp for m in seen for tp in m.partitions if tp[0] == s.events_topic})
                else:
                    row = reader.query(
                        "SELECT uniqExact(owner), count() FROM (SELECT partition, argMax(worker, time) AS owner "
                        "FROM pipeline_metrics WHERE metric = 'partition_lag' AND time > now64(3) - INTERVAL 8 SECOND "
                        "GROUP BY partition)").result_rows[0]
                    owners, owned = int(row[0]), int(row[1])
                self.show(f"waiting for the group: {owners} of {members} workers own partitions, {owned} of "
                          f"{s.partitions} partitions owned")
                if owners == members and owned >= s.partitions:
                    return
                time.sleep(0.5)
        finally:
            reader.close()
        raise TimeoutError(f"the worker group did not settle with {members} members owning every partition within "
                           f"{timeout:.0f}s (last seen: {owners} owning {owned} of {s.partitions} partitions)")

    def _workers_rss(self, stack: EmbeddedStack) -> list[float | None]:
        return [rounded(rss_mb(pid)) for pid in self.worker_pids(stack)]

    def _warehouse_memory(self, stack: EmbeddedStack) -> dict[str, float]:
        pid = self.warehouse_pid(stack)
        return proc_memory_mb(pid) if pid is not None else {}

    def poison_run(self, stack: EmbeddedStack, keys: list[str], values: list[bytes], tagged: str, number: int,
                   clean: dict[str, Any]) -> dict[str, Any]:
        """The max-rate run again (EventSink, the events retagged ``x<number>_`` in place) with one bad
        line after every 100 events, of every kind the contract rejects: valid events per second
        against the clean run's."""
        import random

        from producers.workload import corrupt

        rng = random.Random(self.plan.seed)
        retag(keys, values, tagged, f"x{number}_")   # in place: the bench holds one copy of the events
        mixed_keys, mixed_values, bad = [], [], 0
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
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
        worker_pids = self.worker_pids(stack)
        warehouse_pid = self.warehouse_pid(stack)
        broker_pid = stack.broker.proc.pid if stack.broker is not None else None
        w0, b0, p0 = self.cpu_of(worker_pids), proc_cpu_seconds(broker_pid) if broker_pid else None, \
            time.process_time()
        h0 = proc_cpu_seconds(warehouse_pid) if warehouse_pid else None
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
        worker_cpu = delta_of(self.cpu_of(worker_pids), w0)
        warehouse_cpu = delta_of(proc_cpu_seconds(warehouse_pid), h0) if warehouse_pid else None
        broker_cpu = delta_of(proc_cpu_seconds(broker_pid), b0) if broker_pid else None
        seconds = t_done - t0
        base = self.result.get("baselines", {})
        rate = n / seconds
        out = {
            "what": "pre-generated events handed to the runlens producer path as fast as possible; timed from "
                    "the first send until the worker group's committed lag on the events topic was 0 "
                    "(the worker commits every second, lag polled every 0.25 s); CPU of all workers together and "
                    "of the warehouse process, from /proc/<pid>/stat",
            "events": n, "seconds": round(seconds, 2), "events_per_s": round(rate),
            "producer_seconds": round(t_sent - t0, 2), "final_lag": lag,
            "records": getattr(getattr(sink, "batcher", None), "records", None) or getattr(sink, "records", None),
            "workers": len(worker_pids),
            "worker_cpu_s": rounded(worker_cpu, 2), "warehouse_cpu_s": rounded(warehouse_cpu, 2),
            "broker_cpu_s": rounded(broker_cpu, 2), "producer_cpu_s": round(producer_cpu, 2),
            "worker_cpu_s_per_million": rounded(worker_cpu / n * 1e6 if worker_cpu is not None else None, 2),
            "warehouse_cpu_s_per_million": rounded(warehouse_cpu / n * 1e6 if warehouse_cpu is not None else None,
                                                   2),
            "ratio_to": {name: ratio_of(rate, base.get(name, {}).get("events_per_s")) for name in BASELINES},
        }
        if lag != 0:
            raise RuntimeError(f"the worker did not catch up: lag {lag:,} after {seconds:.0f}s")
        return out
