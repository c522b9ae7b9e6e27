"""Kafka adapter for producers: client config, topic creation, a delivery-checked producer.

Promises: idempotent producer with ``acks=all`` (a retried send never duplicates within a
partition); ``flush()`` returns only when every record was acknowledged and raises
``DeliveryFailed`` naming what was not; an unreachable broker is reported at open as
``BrokerUnavailable`` instead of hanging.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """No Kafka broker answered at the configured address."""


class DeliveryFailed(Exception):
    """Some records were not acknowledged by the broker."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1


def producer_config(brokers: str, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": 60_000,
        "socket.connection.setup.timeout.ms": 5_000,
        "log.connection.close": False,
    }
    config.update(overrides)
    return config


def check_reachable(brokers: str, timeout: float = 5.0) -> None:
    """Raise BrokerUnavailable unless a broker at ``brokers`` answers a metadata request."""
    admin = AdminClient({"bootstrap.servers": brokers, "socket.connection.setup.timeout.ms": 3000})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot reach Kafka at {brokers} ({exc.args[0].str()})") from exc


def ensure_topics(brokers: str, specs: Iterable[TopicSpec], timeout: float = 15.0) -> None:
    """Create the topics that do not exist yet. Idempotent; existing topics are left as they are."""
    check_reachable(brokers)
    admin = AdminClient({"bootstrap.servers": brokers})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor)
              for s in specs if s.name not in existing]
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items() if wanted else ():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic %s", name)


class CheckedProducer:
    """A confluent-kafka producer that counts deliveries and surfaces failures on flush."""

    def __init__(self, brokers: str, **overrides: object):
        check_reachable(brokers)
        self.brokers = brokers
        self._producer = Producer(producer_config(brokers, **overrides))
        self.delivered = 0
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            self.delivered += 1
        else:
            self._failures.append(err.str())

    def send(self, topic: str, value: bytes, key: bytes | str | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        """Queue one record; blocks (serving callbacks) while the local queue is full."""
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=self._on_delivery, **extra)
                return
            except BufferError:
                self._producer.poll(0.05)

    def partition_count(self, topic: str, timeout: float = 10.0) -> int:
        metadata = self._producer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise BrokerUnavailable(f"topic {topic} does not exist on {self.brokers} (is the stack up?)")
        return len(metadata.partitions)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for every queued record. Returns how many were delivered in total."""
        remaining = self._producer.flush(timeout)
        if remaining:
            raise DeliveryFailed(f"{remaining} records still undelivered after {timeout:.0f}s "
                                 f"(broker {self.brokers} unreachable?)")
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryFailed(f"{len(failures)} records were not delivered: {failures[0]}")
        return self.delivered

    def close(self) -> None:
        self.flush()


class EventBatcher:
    """Packs the events of one partition into multi-event records (NDJSON lines), which saves
    the consumer its per-record cost. Partitions exactly as librdkafka does by key (CRC32 of
    the run id modulo the partition count), so a run's events stay on one partition, in
    order, whichever producer sends them. ``flush()`` sends what is buffered and waits for
    the broker's acknowledgement of everything."""

    def __init__(self, producer: CheckedProducer, topic: str, *, max_events: int = 500,
                 max_bytes: int = 256 * 1024):
        self.producer, self.topic = producer, topic
        self.max_events, self.max_bytes = max_events, max_bytes
        self.partitions = producer.partition_count(topic)
        self._lines: list[list[bytes]] = [[] for _ in range(self.partitions)]
        self._keys: list[bytes] = [b""] * self.partitions
        self._sizes = [0] * self.partitions
        self.records = 0

    def partition_of(self, run_id: str) -> int:
        return zlib.crc32(run_id.encode()) % self.partitions

    def send(self, run_id: str, payload: bytes) -> None:
        partition = self.partition_of(run_id)
        lines = self._lines[partition]
        if not lines:
            self._keys[partition] = run_id.encode()
        lines.append(payload)
        self._sizes[partition] += len(payload) + 1
        if len(lines) >= self.max_events or self._sizes[partition] >= self.max_bytes:
            self._emit(partition)

    def _emit(self, partition: int) -> None:
        lines = self._lines[partition]
        if lines:
            self.producer.send(self.topic, b"\n".join(lines), key=self._keys[partition], partition=partition)
            self.records += 1
            self._lines[partition] = []
            self._sizes[partition] = 0

    def push(self) -> None:
        """Hand every buffered event to the producer now, without waiting for acknowledgement."""
        for partition in range(self.partitions):
            self._emit(partition)
        self.producer.poll()

    def flush(self, timeout: float = 60.0) -> int:
        self.push()
        return self.producer.flush(timeout)


def consumer_lag(brokers: str, group: str, topics: Iterable[str], timeout: float = 10.0) -> int:
    """Records in ``topics`` not yet committed by consumer group ``group`` (0 = caught up)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout).topics
        partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        committed = consumer.committed(partitions, timeout=timeout)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            start = tp.offset if tp.offset >= 0 else low
            lag += max(0, high - start)
        return lag
    finally:
        consumer.close()
