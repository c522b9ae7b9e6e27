"""The broker restarts under load.

Durable storage: the embedded Tansu broker on an S3-compatible object store (moto's server,
a test dependency, on loopback; the vendored Tansu 0.6.0 has no PostgreSQL engine) is
stopped with SIGTERM (Tansu ignores it while clients are connected: SIGKILL after 5 s) and
later SIGKILLed while a producer sends a workload one event per record and the worker
consumes. Every event the broker acknowledged is stored once and counted once; a producer
that cannot deliver while the broker is down gets a clear error; the worker survives (or is
restarted by the stack) and resumes from its committed offsets. Two producers: the project's
idempotent one, and at-least-once (retries without idempotence; the worker's event_id
deduplication makes a resent event harmless). With idempotence Tansu 0.6.0 can acknowledge a
batch it never wrote (see the xfail in the test): the at-least-once variant has no such gap.

Memory storage (the default): a restart loses every topic, record and committed offset.

Tansu 0.6.0 answers ListOffsets(latest) with the base offset of the newest record batch + 1,
not the high watermark, so ``consumer_lag`` cannot tell when the worker is done: these tests
wait for the warehouse to hold the acknowledged events instead.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from embedded.processes import free_port, spawn, stop, wait_for_port
from producers.kafka import CheckedProducer, DeliveryFailed, producer_config
from streams.continuity import HOLE_READ_SECONDS, REREAD_ATTEMPTS
from streams.delivery import RETRY_BACKOFF
from tests.helpers import run_cli, wait_for
from tests.reliability.conftest import FULL, Workload, dump, make_workload, oracle_problems, reader_of, report

BUCKET = "runlens-broker"


@pytest.fixture
def s3_store(tmp_path, monkeypatch):
    """An S3-compatible endpoint on loopback (moto's server) with an empty bucket; the broker
    reads the endpoint and credentials from the AWS_* variables it inherits."""
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError:
        pytest.skip("the durable-broker test needs an S3 endpoint: moto[server] and boto3 come with "
                    "`pip install -e .[test]` (scripts/test.sh installs them)")
    port = free_port()
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                 log_file=tmp_path / "s3.log")
    try:
        wait_for_port(port, timeout=30, proc=proc)
        endpoint = f"http://127.0.0.1:{port}"
        env = {"AWS_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": "runlens", "AWS_SECRET_ACCESS_KEY": "runlens",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="runlens", aws_secret_access_key="runlens",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield f"s3://{BUCKET}/"
    finally:
        stop(proc, timeout=5)


class TrackedProducer:
    """The project's producer configuration (idempotent, acks=all), one record per event keyed
    by run id, remembering which lines the broker acknowledged and which failed and why."""

    def __init__(self, brokers: str, **overrides: object):
        self.producer = Producer(producer_config(brokers, **overrides))
        self.acked: list[bytes] = []
        self.failed: list[tuple[bytes, str]] = []
        self.positions: dict[bytes, tuple[int, int, float]] = {}   # line -> (partition, offset, ack time)

    def send(self, topic: str, line: bytes) -> None:
        key = orjson.loads(line).get("run_id", "").encode()

        def on_delivery(err, _msg, line=line):
            if err is None:
                self.acked.append(line)
                self.positions[line] = (_msg.partition(), _msg.offset() if _msg.offset() is not None else -1,
                                        time.monotonic())
            else:
                self.failed.append((line, err.str()))

        while True:
            try:
                self.producer.produce(topic, line, key, on_delivery=on_delivery)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)


def _stored(stack) -> tuple[int, int]:
    """(distinct event ids, rows) in the warehouse; (-1, -1) while the read endpoint is down."""
    try:
        with reader_of(stack) as client:
            distinct, rows = client.query("SELECT uniqExact(event_id), count() FROM events").result_rows[0]
            return distinct, rows
    except Exception:  # noqa: BLE001 - the worker (and its read endpoint) may be restarting
        return -1, -1


# How long the worker may store nothing while it decides that the broker lost a record it
# acknowledged (``streams.delivery.read_again``): REREAD_ATTEMPTS reads of up to HOLE_READ_SECONDS with
# the backoff between them, then one read of the offset after the hole and one of its first offset
# (~89 s), plus a margin. A stall limit of 90 s failed a fresh-clone run while the worker was deciding.
LOST_RECORD_STALL = HOLE_READ_SECONDS * (REREAD_ATTEMPTS + 2) + sum(RETRY_BACKOFF) + 60


def _wait_stored(stack, distinct: int, stall: float) -> tuple[int, int]:
    """Until ``distinct`` events are stored; fails when nothing more was stored for ``stall`` seconds
    (a durable broker on an object store is slow on a loaded machine, never stuck)."""
    def probe():
        stack.supervise()          # what `runlens up` does: restart a worker that died
        return _stored(stack)

    return wait_for(probe, lambda v: v[0] >= distinct, timeout=400, stall=stall, interval=0.5,
                    what=f"{distinct} distinct events in the warehouse")


def _served(stack) -> dict[str, tuple[int, int]]:
    """event_id -> (partition, offset) of every event the broker serves now, read from offset 0
    by a consumer of its own (independent of the worker and the warehouse)."""
    topic, partitions = stack.settings.events_topic, stack.settings.partitions
    consumer = Consumer({"bootstrap.servers": stack.brokers, "group.id": "runlens-reliability-reader",
                         "enable.auto.commit": False})
    served: dict[str, tuple[int, int]] = {}
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        quiet = time.monotonic()
        while time.monotonic() - quiet < 3:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    quiet = time.monotonic()
                    served.setdefault(orjson.loads(msg.value())["event_id"], (msg.partition(), msg.offset()))
    finally:
        consumer.close()
    return served


def _event_id(line: bytes) -> str:
    return orjson.loads(line)["event_id"]


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "at-least-once"])
def test_durable_broker_restarts_under_load(tmp_path, stack_factory, s3_store, idempotent):
    # half an hour (~13k events, one per record): every record costs the object store several requests
    workload = make_workload(tmp_path, hours=2 if FULL else 0.5, seed=21)
    stack = stack_factory(broker_storage=s3_store, batch_max_records=200, batch_max_seconds=0.2)
    topic, broker = stack.settings.events_topic, stack.broker
    assert broker is not None and broker.durable
    worker_pid = stack.worker.pid

    producer = TrackedProducer(stack.brokers, **({} if idempotent else {"enable.idempotence": False}))
    send_seconds = 14.0
    done = threading.Event()

    def produce():
        # paced: the load spans both restarts
        step = max(1, len(workload.lines) // int(send_seconds * 20))
        for start in range(0, len(workload.lines), step):
            for line in workload.lines[start:start + step]:
                producer.send(topic, line)
            time.sleep(0.05)
        producer.flush(90)
        done.set()

    sender = threading.Thread(target=produce, daemon=True)
    sender.start()
    recoveries: dict[str, float] = {}
    refused: list[str] = []
    marks: dict[str, float] = {}

    def restart(name: str, sig: int, while_down=None) -> None:
        started = time.monotonic()
        code = broker.restart(sig, while_down=while_down)
        back = time.monotonic()
        before = _stored(stack)[1]

        def rows() -> int:
            stack.supervise()          # what `runlens up` does: restart a worker that died
            return _stored(stack)[1]

        # recovered: the worker stores events again (new ones only exist once the broker is back)
        wait_for(rows, lambda n: n > before, timeout=60, interval=0.1,
                 what=f"the pipeline to move again after the {name} restart")
        recoveries[f"{name}_down_s"] = round(back - started, 2)
        recoveries[f"{name}_recovery_s"] = round(time.monotonic() - back, 2)
        marks[name] = back
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL

    def undeliverable_while_down() -> None:
        """A producer that cannot reach the broker is told so, naming what was not delivered."""
        lines = [orjson.dumps({**orjson.loads(workload.lines[0]), "event_id": f"undelivered-{i}",
                               "run_id": "run-undelivered"}) for i in range(5)]
        try:
            for line in lines:
                short.send(topic, line, key=b"run-undelivered")
            short.flush(timeout=10)
        except DeliveryFailed as exc:
            refused.append(str(exc))

    time.sleep(send_seconds * 0.25)
    restart("sigterm", signal.SIGTERM)
    short = CheckedProducer(stack.brokers, **{"message.timeout.ms": 1500})
    time.sleep(send_seconds * 0.25)
    restart("sigkill", signal.SIGKILL, while_down=undeliverable_while_down)

    sender.join(120)
    assert done.is_set(), "the producer did not finish"
    assert producer.failed == [], f"{len(producer.failed)} events not delivered: {producer.failed[:1]}"
    acked = producer.acked
    assert len(acked) == len(workload.lines)
    # librdkafka either expires the records (message.timeout.ms) or still holds them when the
    # flush gives up, depending on whether it had learnt the topic's leaders before the kill;
    # either way the producer is told, with the count of what was not delivered.
    assert len(refused) == 1, refused
    assert re.search(r"^5 records (were not delivered: .*timed out|still undelivered after 10s "
                     r"\(broker .* unreachable\?\))", refused[0], re.IGNORECASE), refused

    # What the broker kept of what it acknowledged, read independently of the pipeline.
    served = _served(stack)
    lost = [line for line in acked if _event_id(line) not in served]
    kept = [line for line in acked if _event_id(line) in served]
    distinct, rows = _wait_stored(stack, len(Workload(tmp_path, kept).events), stall=LOST_RECORD_STALL)
    lost_at = sorted(producer.positions[line] for line in lost)
    report(f"broker-restart-{'idempotent' if idempotent else 'at-least-once'}", events=len(acked), restarts=2,
           storage=s3_store, **recoveries, stored=distinct, duplicate_deliveries=rows - distinct,
           acknowledged_but_not_on_broker=len(lost), worker_restarts=stack.worker_restarts,
           worker_survived=stack.worker is not None and stack.worker.pid == worker_pid, undeliverable=refused[0])

    # Everything the broker serves is stored once and counted once; nothing else shows up.
    kept_workload = Workload(tmp_path / "kept.ndjson", kept)
    kept_workload.path.write_bytes(dump(kept))
    client = reader_of(stack)
    assert oracle_problems(client, kept_workload) == []
    count, positions = client.query("SELECT count(), uniqExact(source_partition, source_offset, source_index) "
                                    "FROM events").result_rows[0]
    assert count == positions
    assert client.query("SELECT count() FROM runs WHERE run_id = 'run-undelivered'").result_rows[0][0] == 0

    if lost and idempotent:
        # Tansu 0.6.0 (dynostore) advances an idempotent producer's sequence in its metadata
        # object before it writes the batch: a batch in flight when the broker dies is, on retry,
        # answered DUPLICATE_SEQUENCE_NUMBER, which the client takes as success; the records
        # were never written. (Kafka keeps sequence state in the log itself.)
        pytest.xfail(f"Tansu 0.6.0 acknowledged {len(lost)} of {len(acked)} events it never stored, all "
                     f"retried after a restart (partition, offset, ack time vs restarts {marks}): "
                     f"{lost_at[:2]}..{lost_at[-1:]}")
    assert lost == [], f"{len(lost)} acknowledged events are not on the broker"


def test_memory_broker_restart_empties_the_broker(tmp_path, stack_factory):
    """Documents the default: with memory storage a broker restart empties the broker (topics,
    records, committed offsets); the warehouse keeps what it stored. Tansu re-creates the events
    topic on the next produce, so a producer is not refused. Events sent after the reset reuse
    offsets from 0 that the warehouse already holds other events at: the worker's ledger must
    store them (a reused position with another event id), not skip them as redelivered."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_workload(tmp_path / "a", hours=0.1, seed=22)
    second = make_workload(tmp_path / "b", hours=0.1, seed=23)
    assert not {e.event_id for e in first.events} & {e.event_id for e in second.events}
    stack = stack_factory(metrics_interval_seconds=1.0, batch_max_records=200, batch_max_seconds=0.2)
    assert run_cli(stack.settings, "publish", str(first.path)).returncode == 0
    stored = _wait_stored(stack, len(first.events), stall=60)[0]

    stack.broker.restart(signal.SIGTERM)
    consumer = Consumer({"bootstrap.servers": stack.brokers, "group.id": stack.settings.consumer_group,
                         "enable.auto.commit": False})
    try:
        topics = consumer.list_topics(timeout=10).topics
        # The worker declares its topics again when it reconnects, so the events topic may be
        # back already: if so, it must be a new, empty one (records and offsets are gone).
        events = topics.get(stack.settings.events_topic)
        ends = [] if events is None else [
            consumer.get_watermark_offsets(TopicPartition(stack.settings.events_topic, partition), timeout=10)[1]
            for partition in events.partitions]
    finally:
        consumer.close()
    assert all(end == 0 for end in ends), f"the events topic kept records after the restart: ends {ends}"
    result = run_cli(stack.settings, "publish", str(second.path))
    wanted = len(first.events) + len(second.events)
    try:
        after = _wait_stored(stack, wanted, stall=90)[0]   # the worker reconnects first
    except AssertionError:
        after = _stored(stack)[0]
    with reader_of(stack) as client:
        skipped = client.query("SELECT argMax(value, time) FROM pipeline_metrics "
                               "WHERE metric = 'skipped_redelivered'").result_rows[0][0]
    report("memory-restart", stored_before=stored, topics_after_restart=sorted(topics),
           publish_after_exit=result.returncode, publish_after=result.stdout.decode().strip(),
           sent_after=len(second.events), stored_after=after - stored, skipped_as_redelivered=int(skipped),
           worker_restarts=stack.worker_restarts)
    assert after >= stored                                    # the warehouse keeps its data
    assert result.returncode == 0, result.stderr
    assert after == wanted, f"{wanted - after} of {len(second.events)} events sent after the reset are missing"


RESTART_READ_RECORDS = 1200


def test_skipped_records_are_read_back_after_a_durable_restart(tmp_path, s3_store):
    """After a restart, a durable Tansu reads a partition's records from its object store, and
    answers a fetch that outlasts the reader's wait with no records. The worker reads the
    offsets its consumer skipped with such a reader (``read_range``, within ``HOLE_READ_SECONDS``);
    with a wait of 10 ms it never got them, and the partition stalled for good."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from embedded.broker import start_broker
    from producers.kafka import partition_lags, read_range

    broker = start_broker(tmp_path / "broker.log", storage=s3_store)
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("skipped", 2, 1)])["skipped"].result(30)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for i in range(RESTART_READ_RECORDS):
            producer.produce("skipped", f"record-{i}".encode(), partition=i % 2)
            if i % 4 == 3:
                producer.flush(30)   # small batches: one object each in the store, as under a paced load
        assert producer.flush(30) == 0
        broker.restart(signal.SIGKILL)

        half = RESTART_READ_RECORDS // 2
        for partition, offset in ((0, 0), (0, half // 2 + 1), (1, half - 1)):
            found = read_range(broker.bootstrap, "skipped", partition, offset, offset + 1, timeout=HOLE_READ_SECONDS)
            assert [(r.offset, r.value) for r in found] == [(offset, f"record-{2 * offset + partition}".encode())]
        assert partition_lags(broker.bootstrap, "nobody-committed", ["skipped"]) == {("skipped", 0): half,
                                                                                    ("skipped", 1): half}
    finally:
        broker.stop(signal.SIGKILL)
