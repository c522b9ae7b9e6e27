"""How the producers choose a partition (``producers.kafka.EventBatcher``): by the run id, CRC32
modulo the partition count as librdkafka does for a keyed record, so every event of a run lands
on one partition, in the order sent, whichever producer (emitter, publisher, simulator) sends it."""

from __future__ import annotations

import pytest

from producers.kafka import EventBatcher


class FakeProducer:
    """The part of ``CheckedProducer`` the batcher uses; records what it would produce."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.sent: list[tuple[str, bytes, bytes, int, int]] = []
        self.flushes = 0

    def partition_count(self, topic: str) -> int:
        return self.partitions

    def send(self, topic, value, key=None, headers=None, partition=None, events=1):
        self.sent.append((topic, value, key, partition, events))

    def poll(self) -> None:
        pass

    def flush(self, timeout: float = 60.0) -> int:
        self.flushes += 1
        return 0


def test_the_partition_is_the_crc32_of_the_run_id_modulo_the_partition_count():
    four, seven = EventBatcher(FakeProducer(4), "t"), EventBatcher(FakeProducer(7), "t")
    assert [four.partition_of(r) for r in ("run-1", "run-2", "run-3", "r1", "acme-0001")] == [3, 1, 3, 1, 0]
    assert [seven.partition_of(r) for r in ("run-1", "run-2", "run-3")] == [2, 3, 3]


def test_two_producers_agree_and_every_partition_is_in_range():
    a, b = EventBatcher(FakeProducer(6), "t"), EventBatcher(FakeProducer(6), "t")
    runs = [f"run-{i}" for i in range(500)]
    assert [a.partition_of(r) for r in runs] == [b.partition_of(r) for r in runs]
    assert {a.partition_of(r) for r in runs} == set(range(6))


def test_a_runs_events_travel_on_its_partition_in_order_keyed_by_the_run():
    producer = FakeProducer(4)
    batcher = EventBatcher(producer, "events")
    for i in range(3):
        batcher.send("run-1", b"run-1 #%d" % i)
        batcher.send("run-2", b"run-2 #%d" % i)
    assert producer.sent == []                       # nothing leaves before a flush or a full record
    assert batcher.flush() == 0 and producer.flushes == 1
    by_partition = {partition: (key, value, events) for _, value, key, partition, events in producer.sent}
    assert by_partition == {
        3: (b"run-1", b"run-1 #0\nrun-1 #1\nrun-1 #2", 3),
        1: (b"run-2", b"run-2 #0\nrun-2 #1\nrun-2 #2", 3),
    }
    assert batcher.records == 2


@pytest.mark.parametrize("limits,sends,records", [
    ({"max_events": 2}, 5, [2, 2, 1]),               # a record is sent once it holds max_events
    ({"max_bytes": 20}, 5, [2, 2, 1]),               # or max_bytes (9 bytes and a newline per event)
])
def test_a_full_record_is_sent_at_once(limits, sends, records):
    producer = FakeProducer(1)
    batcher = EventBatcher(producer, "events", **limits)
    for i in range(sends):
        batcher.send("run-1", b"event-%03d" % i)
    batcher.flush()
    assert [events for *_, events in producer.sent] == records
    assert all(partition == 0 for *_, partition, _ in producer.sent)
