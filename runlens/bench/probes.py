"""The bench's producer paths (emitter, plain) and its latency probes (warehouse visibility, Kafka hop)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from runlens.bench.common import percentile, rounded, safe_label

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from producers.kafka import CheckedProducer


class EmitterSink:
    """How ``RunEmitter`` sends (without its per-call validation, the events being pre-encoded):
    multi-event records per partition through an ``EventBatcher`` that lingers
    ``producers.emitter.LINGER_SECONDS``."""

    def __init__(self, producer: CheckedProducer, topic: str) -> None:
        from producers.emitter import LINGER_SECONDS
        from producers.kafka import EventBatcher

        self.batcher = EventBatcher(producer, topic, linger=LINGER_SECONDS)

    def send(self, run_id: str, payload: bytes) -> None:
        self.batcher.send(run_id, payload)

    def push(self) -> None:
        """Nothing: RunEmitter's own thread sends what waited ``LINGER_SECONDS``, whatever the caller does."""

    def flush(self) -> None:
        self.batcher.flush()

    def __del__(self) -> None:
        self.batcher.close()


class PlainSink:
    """One record per event, key = run id, through CheckedProducer, polled after each send: how
    ``RunEmitter(one_record_per_event=True)`` sends."""

    def __init__(self, producer: CheckedProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.records = 0

    def send(self, run_id: str, payload: bytes) -> None:
        self.producer.send(self.topic, payload, key=run_id)
        self.producer.poll()
        self.records += 1

    def push(self) -> None:
        self.producer.poll()

    def flush(self) -> None:
        self.producer.flush()


def b2_plan(columns: list[tuple[str, str]]) -> list[tuple[str, int, Any]]:
    """How B2 fills each column of ``events`` from a decoded event: (name, kind, source)."""
    errors = {"error_code": "code", "error_class": "class", "error_message": "message",
              "error_stack_trace": "stack_trace", "error_suggested_fix": "suggested_fix"}
    constants = {"is_new": 1, "source_index": 0, "queue_wait_ms": None, "queue_wait_at": None}
    plan: list[tuple[str, int, Any]] = []
    for name, ch_type in columns:
        if name in errors:
            plan.append((name, 2, errors[name]))
        elif name in ("input", "output"):
            plan.append((name, 3, None))
        elif name == "source_partition":
            plan.append((name, 4, None))
        elif name == "source_offset":
            plan.append((name, 5, None))
        elif name in constants:
            plan.append((name, 6, constants[name]))
        elif "DateTime" in ch_type:
            plan.append((name, 1, None))
        else:
            plan.append((name, 0, None))
    return plan


class Visibility:
    """Polls the read endpoint for probe events becoming visible: the run's final state in
    ``runs`` and the run's count in its ``run_stats`` row. A probe is stamped when it is handed to
    the producer; it is seen at the start time of the first poll that finds it, so a figure is
    late by up to one ``interval`` plus a poll (100 ms and ~50 ms: 250 ms before session 9)."""

    def __init__(self, reader: Client, interval: float = 0.1, batch: int = 400) -> None:
        self.reader, self.interval, self.batch = reader, interval, batch
        self.lock = threading.Lock()
        self.runs: dict[str, tuple[str, float]] = {}           # run id -> (account, sent)
        self.stats: list[tuple[tuple, int, float]] = []        # (group, ordinal, sent)
        self.latency: dict[str, list[float]] = {"runs": [], "stats": []}
        self.added = 0
        self.polls = 0
        self.poll_ms: dict[str, list[float]] = {"runs": [], "stats": []}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-visibility", daemon=True)

    def add(self, probe: tuple, sent: float) -> None:
        run_id, account, group, ordinal = probe[:4]
        with self.lock:
            self.runs[run_id] = (account, sent)
            self.stats.append((group, ordinal, sent))
            self.added += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def pending(self) -> int:
        with self.lock:
            return len(self.runs) + len(self.stats)

    def wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._poll(started)
            except Exception as exc:  # noqa: BLE001 - reported in the summary
                if len(self.errors) < 5:
                    self.errors.append(str(exc).splitlines()[0][:200])
            self.polls += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _poll(self, started: float) -> None:
        with self.lock:
            runs = list(self.runs.items())[: self.batch]
            stats = list(self.stats[: self.batch])
        if runs:
            t = time.monotonic()
            ids = ",".join(f"'{safe_label(run_id)}'" for run_id, _ in runs)
            accounts = ",".join(sorted({f"'{safe_label(acct)}'" for _, (acct, _) in runs}))
            seen = {row[0] for row in self.reader.query(
                f"SELECT run_id FROM runs WHERE account_id IN ({accounts}) AND run_id IN ({ids}) "
                "AND finished_at IS NOT NULL").result_rows}
            self.poll_ms["runs"].append((time.monotonic() - t) * 1000)
            with self.lock:
                for run_id, (_, sent) in runs:
                    if run_id in seen:
                        self.latency["runs"].append(started - sent)
                        self.runs.pop(run_id, None)
        if stats:
            t = time.monotonic()
            buckets = ",".join(sorted({f"toDateTime('{g[0]}', 'UTC')" for g, _, _ in stats}))
            accounts = ",".join(sorted({f"'{safe_label(g[1])}'" for g, _, _ in stats}))
            workflows = ",".join(sorted({f"'{safe_label(g[2])}'" for g, _, _ in stats}))
            counts = {tuple(row[:-1]): row[-1] for row in self.reader.query(
                "SELECT toString(bucket), account_id, workflow_id, workflow_version, workflow_type, trigger, "
                "ifNull(site_id, ''), ifNull(card_id, ''), finished FROM run_stats "
                f"WHERE bucket IN ({buckets}) AND account_id IN ({accounts}) AND workflow_id IN ({workflows})"
            ).result_rows}
            self.poll_ms["stats"].append((time.monotonic() - t) * 1000)
            done = [item for item in stats if counts.get(item[0], 0) >= item[1]]
            if done:
                with self.lock:
                    for item in done:
                        self.latency["stats"].append(started - item[2])
                    gone = set(map(id, done))
                    self.stats = [item for item in self.stats if id(item) not in gone]

    def summary(self, which: str) -> dict[str, Any]:
        values = [v * 1000 for v in self.latency[which]]
        with self.lock:
            missing = len(self.runs) if which == "runs" else len(self.stats)
        out: dict[str, Any] = {"observed": len(values), "missing": missing,
               "p50_ms": rounded(percentile(values, 50)), "p95_ms": rounded(percentile(values, 95)),
               "p99_ms": rounded(percentile(values, 99)), "max_ms": rounded(max(values) if values else None),
               "poll_query_ms_p50": rounded(percentile(self.poll_ms[which], 50)),
               "poll_query_ms_max": rounded(max(self.poll_ms[which]) if self.poll_ms[which] else None)}
        if self.errors:
            out["poll_errors"] = self.errors
        return out


class KafkaHop:
    """The latency yardstick: a bare consumer on the events topic (assigned at the current end,
    no group join) that notes when each probe event arrives. Send -> received is what the
    producer, the broker and a fetch cost before the worker can do anything."""

    def __init__(self, brokers: str, topic: str):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"bench-hop-{uuid.uuid4().hex[:6]}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = []
        for p in partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)
        self.lock = threading.Lock()
        self.expected: dict[bytes, float] = {}  # stamped before the record can leave the producer
        self.latency: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-kafka-hop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def expect(self, event_id: str, sent: float) -> None:
        key = event_id.encode()
        with self.lock:
            self.expected[key] = sent

    def _loop(self) -> None:
        marker = b'"event_id":"'
        while not self._stop.is_set():
            batch = self.consumer.consume(500, 0.05)
            now = time.monotonic()
            if not batch:
                continue
            with self.lock:
                for message in batch:
                    value = message.value()
                    if message.error() is not None or not value:
                        continue
                    for line in value.split(b"\n"):
                        start = line.find(marker)
                        if start < 0:
                            continue
                        start += len(marker)
                        key = line[start:line.find(b'"', start)]
                        sent = self.expected.pop(key, None)
                        if sent is not None:
                            self.latency.append(now - sent)

    def wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.expected:
                    return
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()

    def summary(self) -> dict[str, Any]:
        values = [v * 1000 for v in self.latency]
        return {"what": "send -> received by a bare confluent-kafka consumer (fetch.wait.max.ms 10)",
                "observed": len(values), "missing": len(self.expected),
                "p50_ms": rounded(percentile(values, 50)), "p95_ms": rounded(percentile(values, 95)),
                "p99_ms": rounded(percentile(values, 99))}
