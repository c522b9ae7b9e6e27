"""Phase 1, baselines: B0 bare produce, B1 bare consume, B2 bare consume + decode + insert into a
warehouse process over HTTP (the shape the workers write in), and the in-process B2 of the old
shape (chDB inside the consuming process) next to it."""

from __future__ import annotations

import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from embedded.processes import proc_memory_mb
from runlens.bench import peer_quix as peer
from runlens.bench.base import BenchBase
from runlens.bench.common import b2_batch_rows, delta_of, proc_cpu_seconds, ratio_of, rounded
from runlens.bench.probes import b2_plan
from runlens.settings import Settings

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from confluent_kafka import Consumer

B2_DATABASE = "bench_b2"


def warehouse_process(settings: Settings, database: str) -> tuple[subprocess.Popen[bytes], str]:
    """A warehouse process (``runlens warehouse``) of its own on ``settings``' folder serving
    ``database``, with fresh passwords; returns it and the writer's DSN once it listens (its
    schema is current). The caller stops it (``embedded.processes.stop``)."""
    from embedded.processes import free_port, spawn, stop, wait_for_port

    port = free_port()
    write_password = secrets.token_urlsafe(32)
    env = dict(os.environ)
    env.update(settings.to_env())
    env.update(RUNLENS_DATA_DIR=str(settings.data_dir), RUNLENS_WAREHOUSE_PORT=str(port),
               RUNLENS_DATABASE=database, RUNLENS_READ_PASSWORD=secrets.token_urlsafe(32),
               RUNLENS_WRITE_PASSWORD=write_password)
    proc = spawn([sys.executable, "-m", "runlens", "warehouse"],
                 log_file=settings.data_dir / "logs" / "warehouse.log", env=env)
    try:
        wait_for_port(port, timeout=120, proc=proc)
    except BaseException:
        stop(proc, timeout=10)
        raise
    return proc, f"http://runlens_writer:{write_password}@127.0.0.1:{port}"


class Yardsticks(BenchBase):
    """Bench phase: the bare loops the pipeline is measured against."""

    def baselines(self, keys: list[str], values: list[bytes]) -> None:
        from embedded.broker import start_broker
        from embedded.processes import stop
        from producers.kafka import TopicSpec, ensure_topics

        settings = self.settings_for("baselines")
        folder = settings.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        broker = start_broker(folder / "broker.log")
        out: dict[str, Any] = {}
        self.result["baselines"] = out
        try:
            topic = f"{settings.topic_prefix}.events"
            ensure_topics(broker.bootstrap, [TopicSpec(topic, settings.partitions)])
            self.step("B0: bare produce loop")
            out["B0"] = self.b0_produce(broker.bootstrap, topic, keys, values)
            self.step("B1: bare consume loop")
            out["B1"] = self.b1_consume(broker.bootstrap, topic, len(values))
            batch_rows = b2_batch_rows(settings)
            self.step("B2: starting a warehouse process")
            warehouse, dsn = self.b2_warehouse(settings)
            try:
                idle = proc_memory_mb(warehouse.pid)
                self.step("B2: bare consume + decode + insert into the warehouse process")
                b2 = self.b2_insert(broker.bootstrap, topic, len(values), dsn, batch_rows, "B2",
                                    server_pid=warehouse.pid)
                memory = proc_memory_mb(warehouse.pid)
                b2.update(warehouse_rss_mb_idle=rounded(idle.get("VmRSS")),
                          warehouse_rss_mb_after=rounded(memory.get("VmRSS")),
                          warehouse_rss_mb_peak=rounded(memory.get("VmHWM")))
                out["B2"] = b2
                self.step("P1: the peer yardstick, a quix-streams application into the same warehouse process")
                out["P1"] = self.p1_peer(broker.bootstrap, settings, keys, values, dsn, warehouse.pid)
            finally:
                stop(warehouse, timeout=30)
            self.step("B2 in process: the same loop into chDB inside this process")
            in_process = self.b2_insert(broker.bootstrap, topic, len(values),
                                        f"chdb://{(folder / 'warehouse-in-process').resolve()}", batch_rows,
                                        "B2_in_process")
            in_process["ratio_to_B2"] = ratio_of(in_process["events_per_s"], out["B2"]["events_per_s"])
            out["B2_in_process"] = in_process
        finally:
            broker.stop()

    def b2_warehouse(self, settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
        return warehouse_process(settings, B2_DATABASE)

    def p1_peer(self, brokers: str, settings: Settings, keys: list[str], values: list[bytes], dsn: str,
                warehouse_pid: int) -> dict[str, Any]:
        """P1 (``runlens.bench.peer_quix``): the same events as multi-event records (the emitter's
        path, as the pipeline's max-rate run sends them; run and event ids tagged ``p1_`` so that
        they are new to the warehouse after B2) on a topic of their own, consumed by a quix-streams
        application in its own venv that validates, maps and inserts into ``events`` of B2's
        warehouse process. Never raises: a venv that cannot be built, or a peer that fails, is
        recorded as ``skipped`` / ``error`` with the reason."""
        what = ("quix-streams 3.28.1 application (own venv): consume multi-event records, split into lines, "
                "validate each with runlens' contract (schemas.validation.decode_event, invalid lines skipped), "
                "map with sinks.rows, BatchingSink inserting each partition's batch into `events` of the "
                "warehouse process over HTTP (clickhouse-connect) at each checkpoint (commit interval 1 s); "
                "timed from the first record to the last insert acknowledged; CPU from time.process_time "
                "(all its threads), the warehouse's from /proc")
        venv = peer.peer_venv_dir()
        reason = peer.skip_reason(self.plan.quick, peer.venv_ready(venv))
        if reason is None and not peer.venv_ready(venv):
            self.show(f"P1: building the peer venv in {venv} (pip install {' '.join(peer.PEER_PACKAGES)})")
            reason = peer.ensure_peer_venv(venv)
        if reason is not None:
            return {"what": what, "skipped": reason}
        try:
            return self._p1_run(venv, brokers, settings, keys, values, dsn, warehouse_pid) | {"what": what}
        except Exception as exc:  # noqa: BLE001 - the peer's failure is a figure we could not get, not the bench's
            return {"what": what, "error": f"{type(exc).__name__}: {exc}"[:600]}

    def _p1_run(self, venv: Path, brokers: str, settings: Settings, keys: list[str],
                values: list[bytes], dsn: str, warehouse_pid: int) -> dict[str, Any]:
        from producers.kafka import CheckedProducer, TopicSpec, ensure_topics
        from runlens.bench.probes import EmitterSink
        from sinks.clickhouse import connect

        topic = f"{settings.topic_prefix}.p1"
        ensure_topics(brokers, [TopicSpec(topic, settings.partitions)])
        sink = EmitterSink(CheckedProducer(brokers), topic)
        n = len(values)
        for i in range(n):
            sink.send("p1_" + keys[i], values[i].replace(b':"run_', b':"p1_run_'))
        sink.flush()
        records = sink.batcher.records
        del sink
        client = connect(dsn, database=B2_DATABASE)
        try:
            before = client.query("SELECT count() FROM events").result_rows[0][0]
            spec = peer.PeerSpec(brokers=brokers, topic=topic, group=f"bench-p1-{self.run_id}", dsn=dsn,
                                 database=B2_DATABASE, lines=n, timeout_s=180 + n / 2_000)
            self.show(f"P1: quix-streams consuming {n:,} events ({records:,} records)")
            cpu0 = proc_cpu_seconds(warehouse_pid)
            doc, _ = peer.run_peer(venv, spec)
            warehouse_cpu = delta_of(proc_cpu_seconds(warehouse_pid), cpu0)
            stored = client.query("SELECT count() FROM events").result_rows[0][0] - before
        finally:
            client.close()
        if doc["events"] != n or stored != n:
            raise RuntimeError(f"P1 reported {doc['events']:,} events inserted and {stored:,} were stored, of {n:,}")
        out = peer.p1_figures(doc, warehouse_cpu)
        out.update(records=records, ratio_to_B2=ratio_of(out["events_per_s"], (self.result.get("baselines") or {})
                                                          .get("B2", {}).get("events_per_s")))
        self.show(f"P1: quix-streams consuming {n:,} events while they are produced (timed as the pipeline is)")
        out["as_pipeline"] = self._p1_live(venv, brokers, settings, keys, values, dsn, warehouse_pid)
        return dict(out)

    def _p1_live(self, venv: Path, brokers: str, settings: Settings, keys: list[str], values: list[bytes],
                 dsn: str, warehouse_pid: int) -> dict[str, Any]:
        """P1 timed as the pipeline's max-rate run is: the application is running and has inserted a
        warm-up; the events (run and event ids tagged ``p1l_``, in place and back) are then handed to
        the emitter's path as fast as possible; timed from the first send to the last insert
        acknowledged, with the producer on the same cores."""
        from producers.kafka import CheckedProducer, TopicSpec, ensure_topics
        from runlens.bench.common import encoded, live_events, retag
        from runlens.bench.probes import EmitterSink
        from sinks.clickhouse import connect

        topic = f"{settings.topic_prefix}.p1live"
        ensure_topics(brokers, [TopicSpec(topic, settings.partitions)])
        warm_keys, warm_values = encoded(live_events(self.plan.seed + 300, datetime.now(UTC) - timedelta(days=2)), 200)
        producer = CheckedProducer(brokers)
        sink = EmitterSink(producer, topic)
        n = len(values)
        marks: dict[str, float | None] = {}

        def warm_up() -> None:
            for key, value in zip(warm_keys, warm_values, strict=True):
                sink.send("p1w_" + key, value.replace(b':"run_', b':"p1w_run_'))
            sink.flush()

        def send() -> float:
            marks["warehouse_cpu0"] = proc_cpu_seconds(warehouse_pid)
            t0 = time.perf_counter()
            for i in range(n):
                sink.send(keys[i], values[i])
                if i % 20_000 == 0:
                    self.show(f"P1 as the pipeline: {i:,} sent", i, n)
            sink.flush()
            return t0

        client = connect(dsn, database=B2_DATABASE)
        retag(keys, values, "", "p1l_")
        try:
            before = client.query("SELECT count() FROM events").result_rows[0][0]
            spec = peer.PeerSpec(brokers=brokers, topic=topic, group=f"bench-p1live-{self.run_id}", dsn=dsn,
                                 database=B2_DATABASE, lines=len(warm_values) + n, timeout_s=180 + n / 2_000,
                                 warm_lines=len(warm_values))
            doc = peer.run_peer_live(venv, spec, warm_up, send)
            warehouse_cpu = delta_of(proc_cpu_seconds(warehouse_pid), marks.get("warehouse_cpu0"))
            stored = client.query("SELECT count() FROM events").result_rows[0][0] - before
        finally:
            retag(keys, values, "p1l_", "")
            client.close()
            sink.batcher.close()
        if doc["events"] != n or stored != n + len(warm_values):
            raise RuntimeError(f"P1 (as the pipeline) reported {doc['events']:,} events inserted and "
                               f"{stored - len(warm_values):,} were stored, of {n:,}")
        out = peer.p1_figures(doc, warehouse_cpu)
        out["what"] = ("the same application, running and warmed up (200 events inserted) while the events are "
                       "handed to the emitter's producer path as fast as possible: timed from the first send to "
                       "the last insert acknowledged, as the pipeline's max-rate run is timed (first send -> lag 0)")
        return out

    def b0_produce(self, brokers: str, topic: str, keys: list[str], values: list[bytes]) -> dict:
        from confluent_kafka import Producer

        from producers.kafka import producer_config

        failures = []
        producer = Producer(producer_config(brokers))
        n = len(values)
        cpu0, t0 = time.process_time(), time.perf_counter()
        produce, poll = producer.produce, producer.poll
        for i in range(n):
            while True:
                try:
                    produce(topic, values[i], keys[i])
                    break
                except BufferError:
                    poll(0.05)
            if i % 20_000 == 0:
                poll(0)
                self.show(f"B0: {i:,} sent", i, n)
        remaining = producer.flush(120)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        if remaining:
            failures.append(f"{remaining} records undelivered")
        if failures:
            raise RuntimeError("B0: " + "; ".join(failures))
        return {"what": "confluent-kafka produce() of pre-encoded events, one record per event, runlens "
                        "producer config (idempotent, acks=all, lz4, linger 20 ms), until flush() returned",
                "events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds),
                "cpu_s_per_million": round(cpu / n * 1e6, 2)}

    def _consumer(self, brokers: str, group: str, **extra: Any) -> Consumer:
        from confluent_kafka import Consumer

        config = {"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
        config.update(extra)
        return Consumer(config)

    def b1_consume(self, brokers: str, topic: str, n: int) -> dict:
        consumer = self._consumer(brokers, f"bench-b1-{self.run_id}")
        consumer.subscribe([topic])
        count, t0, cpu0 = 0, None, 0.0
        deadline = time.monotonic() + 120 + n / 10_000
        try:
            while count < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"B1 consumed {count:,} of {n:,} records")
                batch = consumer.consume(2000, 1.0)
                if batch and t0 is None:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                for message in batch:
                    if message.error() is None:
                        count += 1
                if count and count % 50_000 < 2000:
                    self.show(f"B1: {count:,} consumed", count, n)
            if t0 is None:
                raise RuntimeError("B1 consumed no records")
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        finally:
            consumer.close()
        return {"what": "confluent-kafka consume(2000) loop that only counts records; timed from the first "
                        "record (group join excluded)",
                "events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds),
                "cpu_s_per_million": round(cpu / count * 1e6, 2)}

    def b2_insert(self, brokers: str, topic: str, n: int, dsn: str, batch_rows: int, label: str,
                  server_pid: int | None = None) -> dict:
        """Consume + decode + columnar insert into ``events`` of the warehouse at ``dsn`` (a
        warehouse process over HTTP, or ``chdb://`` in this process). ``server_pid``: the
        warehouse process, whose CPU is measured too."""
        from sinks.clickhouse import connect, migrate

        database = B2_DATABASE
        client = connect(dsn)
        in_process = dsn.startswith("chdb:")
        try:
            migrate(client, database)
            described = client.query(f"DESCRIBE TABLE {database}.events").result_rows
            columns = [(row[0], row[1]) for row in described if row[2] == ""]  # no DEFAULT / MATERIALIZED
            names = [name for name, _ in columns]
            plan = b2_plan(columns)
            consumer = self._consumer(brokers, f"bench-{label.lower()}-{self.run_id}")
            consumer.subscribe([topic])
            count, inserts, t0, cpu0, server0 = 0, 0, None, 0.0, None
            buffer: dict[str, list] = {name: [] for name in names}
            loads, fromiso = orjson.loads, datetime.fromisoformat
            deadline = time.monotonic() + 180 + n / 5_000
            try:
                def insert() -> None:
                    nonlocal buffer, inserts
                    if buffer[names[0]]:
                        client.insert(f"{database}.events", [buffer[name] for name in names], column_names=names,
                                      column_oriented=True)
                        consumer.commit(asynchronous=False)
                        inserts += 1
                        buffer = {name: [] for name in names}

                while count < n:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{label} consumed {count:,} of {n:,} records")
                    batch = consumer.consume(2000, 1.0)
                    if batch and t0 is None:
                        t0, cpu0 = time.perf_counter(), time.process_time()
                        server0 = proc_cpu_seconds(server_pid) if server_pid else None
                    for message in batch:
                        if message.error() is not None:
                            continue
                        payload = message.value()
                        if payload is None:   # the bench sends no tombstones
                            raise RuntimeError(f"{label} read a record without a value")
                        doc = loads(payload)
                        error = doc.get("error") or {}
                        for name, kind, source in plan:
                            if kind == 0:
                                value = doc.get(name)
                            elif kind == 1:
                                value = doc.get(name)
                                value = None if value is None else fromiso(value)
                            elif kind == 2:
                                value = error.get(source)
                            elif kind == 3:
                                value = doc.get(name)
                                value = None if value is None else orjson.dumps(value).decode()
                            elif kind == 4:
                                value = message.partition()
                            elif kind == 5:
                                value = message.offset()
                            else:
                                value = source
                            buffer[name].append(value)
                        count += 1
                        if len(buffer[names[0]]) >= batch_rows:
                            insert()
                    if count and count % 50_000 < 2000:
                        self.show(f"{label}: {count:,} inserted", count, n)
                insert()
                if t0 is None:
                    raise RuntimeError(f"{label} consumed no records")
                seconds = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                server_cpu = delta_of(proc_cpu_seconds(server_pid), server0) if server_pid else None
            finally:
                consumer.close()
            stored = client.query(f"SELECT count() FROM {database}.events").result_rows[0][0]
        finally:
            client.close()
        if stored != n:
            raise RuntimeError(f"{label} stored {stored:,} rows of {n:,}")
        where = ("a migrated chDB warehouse opened in this process (chdb://, the old in-process shape)" if in_process
                 else "a migrated warehouse process (`runlens warehouse`, chDB behind ClickHouse's HTTP interface) "
                      "over HTTP as its writer, as the workers write")
        out = {"what": f"consume(2000) + orjson decode + timestamp parsing + columnar clickhouse-connect insert "
                       f"of {batch_rows:,} rows into `events` of {where} (materialized views included) + "
                       "synchronous commit after each insert; no validation, ledger or dead letters",
               "events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds),
               "inserts": inserts, "batch_rows": batch_rows, "cpu_s_per_million": round(cpu / count * 1e6, 2)}
        if server_pid:
            server_per_million = server_cpu / count * 1e6 if server_cpu is not None else None
            out["warehouse_cpu_s_per_million"] = rounded(server_per_million, 2)
            out["total_cpu_s_per_million"] = rounded(cpu / count * 1e6 + server_per_million
                                                     if server_per_million is not None else None, 2)
        return out
