"""Phase 1, baselines: B0 bare produce, B1 bare consume, B2 bare consume + decode + insert."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from runlens.bench.base import BenchBase
from runlens.bench.common import b2_batch_rows
from runlens.bench.probes import b2_plan

if TYPE_CHECKING:
    from confluent_kafka import Consumer


class Yardsticks(BenchBase):
    """Bench phase: the bare loops the pipeline is measured against."""

    def baselines(self, keys: list[str], values: list[bytes]) -> None:
        from embedded.broker import start_broker
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
            self.step("B2: bare consume + decode + insert")
            out["B2"] = self.b2_insert(broker.bootstrap, topic, len(values), folder / "warehouse",
                                       b2_batch_rows(settings))
        finally:
            broker.stop()

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

    def b2_insert(self, brokers: str, topic: str, n: int, warehouse: Path, batch_rows: int) -> dict:
        from sinks.clickhouse import connect, migrate

        database = "bench_b2"
        client = connect(f"chdb://{warehouse}")
        try:
            migrate(client, database)
            described = client.query(f"DESCRIBE TABLE {database}.events").result_rows
            columns = [(row[0], row[1]) for row in described if row[2] == ""]  # no DEFAULT / MATERIALIZED
            names = [name for name, _ in columns]
            plan = b2_plan(columns)
            consumer = self._consumer(brokers, f"bench-b2-{self.run_id}")
            consumer.subscribe([topic])
            count, inserts, t0, cpu0 = 0, 0, None, 0.0
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
                        raise TimeoutError(f"B2 consumed {count:,} of {n:,} records")
                    batch = consumer.consume(2000, 1.0)
                    if batch and t0 is None:
                        t0, cpu0 = time.perf_counter(), time.process_time()
                    for message in batch:
                        if message.error() is not None:
                            continue
                        payload = message.value()
                        if payload is None:   # the bench sends no tombstones
                            raise RuntimeError("B2 read a record without a value")
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
                        self.show(f"B2: {count:,} inserted", count, n)
                insert()
                if t0 is None:
                    raise RuntimeError("B2 consumed no records")
                seconds = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
            finally:
                consumer.close()
            stored = client.query(f"SELECT count() FROM {database}.events").result_rows[0][0]
        finally:
            client.close()
        if stored != n:
            raise RuntimeError(f"B2 stored {stored:,} rows of {n:,}")
        return {"what": f"consume(2000) + orjson decode + timestamp parsing + columnar clickhouse-connect insert "
                        f"of {batch_rows:,} rows into `events` of a migrated chDB warehouse (materialized views "
                        "included) + synchronous commit after each insert; no validation, ledger or dead letters",
                "events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds),
                "inserts": inserts, "batch_rows": batch_rows, "cpu_s_per_million": round(cpu / count * 1e6, 2)}
