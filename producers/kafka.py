"""Kafka adapter for producers: client config, topic creation, a delivery-checked producer.

Promises: idempotent producer with ``acks=all`` (a retried send never duplicates within a
partition); ``flush()`` returns only when every record was acknowledged and raises
``DeliveryFailed`` naming what was not; an unreachable broker is reported at open as
``BrokerUnavailable`` instead of hanging.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.errors import RetryableError, UnavailableError

log = logging.getLogger(__name__)


class BrokerUnavailable(UnavailableError):
    """No Kafka broker answered at the configured address (or the topic is not there): raised at
    open, reported to the person, never retried by a caller."""

    code = "broker_unavailable"


class DeliveryFailed(RetryableError):
    """Some records were not acknowledged by the broker; sending them again may succeed."""

    code = "delivery_failed"


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
        self._on_one_delivery = partial(self._on_delivery_of, 1)

    def _on_delivery_of(self, events: int, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            self.delivered += events
        else:
            self._failures.append(err.str())

    def send(self, topic: str, value: bytes, key: bytes | str | None = None,
             headers: Sequence[tuple[str, bytes]] | None = None, partition: int | None = None,
             events: int = 1) -> None:
        """Queue one record holding ``events`` events (what ``delivered`` counts); blocks
        (serving callbacks) while the local queue is full."""
        record_headers: list[tuple[str, str | bytes | None]] | None = None if headers is None else list(headers)
        callback = self._on_one_delivery if events == 1 else partial(self._on_delivery_of, events)
        while True:
            try:
                if partition is None:  # no partition argument: the client's partitioner picks (by key)
                    self._producer.produce(topic, value, key, headers=record_headers, on_delivery=callback)
                else:
                    self._producer.produce(topic, value, key, headers=record_headers, on_delivery=callback,
                                           partition=partition)
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
        """Wait for every queued record. Returns how many events were delivered in total."""
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
    the broker's acknowledgement of everything.

    With ``linger`` (seconds) a background thread sends what has waited that long, the way
    telemetry exporters batch: an engine's event is on its way within ``linger`` even when no
    other event follows. Events still buffered when the process dies are lost like the ones in
    librdkafka's own queue; only ``flush()`` promises delivery. Thread-safe."""

    def __init__(self, producer: CheckedProducer, topic: str, *, max_events: int = 500,
                 max_bytes: int = 256 * 1024, linger: float | None = None):
        self.producer, self.topic = producer, topic
        self.max_events, self.max_bytes = max_events, max_bytes
        self.partitions = producer.partition_count(topic)
        self._lines: list[list[bytes]] = [[] for _ in range(self.partitions)]
        self._keys: list[bytes] = [b""] * self.partitions
        self._sizes = [0] * self.partitions
        self.records = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pusher: threading.Thread | None = None
        if linger is not None:
            self._pusher = threading.Thread(target=self._push_every, args=(linger,), daemon=True,
                                            name="runlens-event-batcher")
            self._pusher.start()

    def partition_of(self, run_id: str) -> int:
        return zlib.crc32(run_id.encode()) % self.partitions

    def send(self, run_id: str, payload: bytes) -> None:
        partition = self.partition_of(run_id)
        with self._lock:
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
            self.producer.send(self.topic, b"\n".join(lines), key=self._keys[partition], partition=partition,
                               events=len(lines))
            self.records += 1
            self._lines[partition] = []
            self._sizes[partition] = 0

    def push(self) -> None:
        """Hand every buffered event to the producer now, without waiting for acknowledgement."""
        with self._lock:
            for partition in range(self.partitions):
                self._emit(partition)
        self.producer.poll()

    def _push_every(self, linger: float) -> None:
        while not self._closed.wait(linger):
            self.push()

    def flush(self, timeout: float = 60.0) -> int:
        self.push()
        return self.producer.flush(timeout)

    def close(self) -> None:
        """Stop the background sender; what is buffered is sent by ``flush()``."""
        self._closed.set()
        if self._pusher is not None:
            self._pusher.join()


# How long a reader lets the broker wait before it answers a fetch. A durable Tansu (object store)
# reads a partition's records from the store once it has restarted, and answers a fetch that
# outlasts its wait with no records: at 10 ms a fresh reader got nothing for 40 s after a restart,
# so a hole the worker read back was never read (measured on moto's S3: 0.1-0.2 s to the first
# record at 100 ms, 0.5 s at 500 ms). Memory Tansu and Kafka answer as soon as records are there:
# the wait only delays the answer at a partition's end.
READ_FETCH_WAIT_MS = 500
"""Reading records (``read_partitions``): a slow store still answers."""

LAG_FETCH_WAIT_MS = 100
"""Probing lag (``partition_lags``): its fetch is at the committed offset, often the partition's
end, where every probe waits this long for the answer."""


def consumer_lag(brokers: str, group: str, topics: Iterable[str], timeout: float = 10.0) -> int:
    """Records in ``topics`` not yet committed by consumer group ``group`` (0 = caught up)."""
    return sum(partition_lags(brokers, group, topics, timeout).values())


def partition_lags(brokers: str, group: str, topics: Iterable[str],
                   timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """Records not yet committed by consumer group ``group``, per (topic, partition) of ``topics``.

    The end of each partition is read from a fetch at the committed offset, not from
    ListOffsets: Tansu (the embedded broker) answers ListOffsets(latest) with the first offset
    of the newest record batch + 1, which is short of the end whenever a producer batched."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False,
                         "enable.partition.eof": True, "fetch.wait.max.ms": LAG_FETCH_WAIT_MS,
                         "max.partition.fetch.bytes": 1024,
                         "socket.connection.setup.timeout.ms": 5000})
    try:
        metadata = consumer.list_topics(timeout=timeout).topics
        partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        if not partitions:
            return {}
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=timeout)}
        start: dict[tuple[str, int], int] = {}
        for tp in partitions:
            offset = committed[(tp.topic, tp.partition)]
            if offset < 0:   # nothing committed yet: the group starts from the beginning
                offset = consumer.get_watermark_offsets(tp, timeout=timeout)[0]
            start[(tp.topic, tp.partition)] = offset
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in start.items()])
        pending = set(start)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None:   # a record or the partition's end: its fetch brought the high watermark
                pending.discard((message.topic(), message.partition()))
        if pending:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no fetch answer for {sorted(pending)}"))
        lags = {}
        for (topic, partition), offset in start.items():
            high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)[1]
            lags[(topic, partition)] = max(0, high - offset)
        return lags
    finally:
        consumer.close()


@dataclass(frozen=True)
class GroupMember:
    """One member of a consumer group as the broker sees it, with the partitions it owns."""

    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]
    member_id: str = ""


def group_members(brokers: str, group: str, timeout: float = 10.0) -> list[GroupMember]:
    """The members of consumer group ``group`` and their assigned partitions (empty while it
    rebalances or when nobody consumes)."""
    # log_level 4: librdkafka's notices (e.g. a background queue purged as the client goes) are no news
    admin = AdminClient({"bootstrap.servers": brokers, "socket.connection.setup.timeout.ms": 5000, "log_level": 4})
    description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout)
    members = []
    for member in description.members:
        assigned = member.assignment.topic_partitions if member.assignment is not None else []
        members.append(GroupMember(member.client_id, member.host,
                                   tuple(sorted((tp.topic, tp.partition) for tp in assigned)), member.member_id))
    return sorted(members, key=lambda m: m.partitions)


class TopicRecord(NamedTuple):
    """A record read with ``read_partitions``."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None
    timestamp: float | None   # the record's time (epoch seconds), None when the broker has none


def read_partitions(brokers: str, topic: str, ranges: dict[int, tuple[int, int | None]] | None = None,
                    timeout: float = 30.0) -> list[TopicRecord]:
    """The records of ``topic`` at offsets ``start`` .. ``end - 1`` of
    each partition in ``ranges`` (``end`` None: to its current end; ``ranges`` None: every partition
    from its beginning to its end), read outside any consumer group (nothing is committed). Raises
    ``BrokerUnavailable`` when not all of them can be read within ``timeout``: a caller must not go
    on with a gap. A topic that does not exist holds nothing."""
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"runlens-reader-{topic}",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": READ_FETCH_WAIT_MS,
                         "socket.connection.setup.timeout.ms": 5000})
    records: list[TopicRecord] = []
    try:
        if ranges is None:
            metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return records
            ranges = {p: (0, None) for p in metadata.partitions}
        pending = {p: end for p, (start, end) in ranges.items() if end is None or end > start}
        if not pending:
            return records
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            partition, error = message.partition(), message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise BrokerUnavailable(f"reading {topic}[{partition}]: {error.str()}")
                if partition is not None:
                    pending.pop(partition, None)   # at its end
                continue
            offset = message.offset()
            if partition is None or offset is None or partition not in pending:
                continue
            end = pending[partition]
            if end is not None and offset >= end:
                pending.pop(partition)
                continue
            kind, millis = message.timestamp()
            sent = millis / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else None
            records.append(TopicRecord(partition, offset, message.value(), message.key(), sent))
            if end is not None and offset + 1 >= end:
                pending.pop(partition)
        if pending:
            raise BrokerUnavailable(f"reading {topic} partitions {sorted(pending)} timed out after {timeout:.0f}s")
    finally:
        consumer.close()
    return records


def read_range(brokers: str, topic: str, partition: int, start: int, end: int,
               timeout: float = 30.0) -> list[TopicRecord]:
    """The records of ``topic``/``partition`` at offsets ``start`` .. ``end - 1`` (``read_partitions``)."""
    return read_partitions(brokers, topic, {partition: (start, end)}, timeout)
