"""The embedded stack's processes fail one at a time under load. Two workers in one consumer group:
one is SIGKILLed mid-batch and later added back; the survivor takes the dead worker's partitions
over within the session timeout (plus a rebalance). The warehouse process is SIGKILLed: readers get
a clear error meanwhile, `supervise` restarts it, the workers retry their batch. Each time, in the
end, every event is stored once and every aggregate equals the recomputation."""

from __future__ import annotations

import signal
import threading
import time

from confluent_kafka import Consumer, TopicPartition

from tests.helpers import run_cli, wait_caught_up, wait_for
from tests.reliability.conftest import FULL, make_workload, oracle_problems, reader_of, report

SESSION_TIMEOUT_S = 6.0   # streams.app: broker_session_timeout


def _committed(stack) -> dict[int, int]:
    """The consumer group's committed offset per partition of the events topic (-1: none yet)."""
    s = stack.settings
    consumer = Consumer({"bootstrap.servers": stack.brokers, "group.id": s.consumer_group,
                         "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(s.events_topic, p) for p in range(s.partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def _stored(stack) -> int:
    with reader_of(stack) as client:
        return int(client.query("SELECT count() FROM events").result_rows[0][0])


def test_a_killed_worker_is_replaced_by_its_peer_and_rejoins(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=8 if FULL else 4, duplicate_rate=0.02, reorder_rate=0.02,
                             late_rate=0.01)
    stack = stack_factory(workers=2, partitions=4, batch_max_records=10, batch_max_seconds=0.2)
    publisher = threading.Thread(target=lambda: run_cli(stack.settings, "publish", str(workload.path)), daemon=True)
    publisher.start()
    wait_for(lambda: _stored(stack), lambda n: n > 2_000, timeout=120, what="both workers storing")
    at_kill = _committed(stack)
    killed = time.monotonic()
    assert stack.stop_worker(signal.SIGKILL, index=1) == -signal.SIGKILL

    # Every partition moves on again: the survivor owns the dead worker's share now.
    def moved() -> dict[int, int]:
        now = _committed(stack)
        return {p: now[p] - at_kill[p] for p in now}
    lag_after = wait_for(moved, lambda delta: all(d > 0 for d in delta.values()), timeout=60,
                         what="every partition committing again after the kill")
    takeover = time.monotonic() - killed
    assert stack.workers[0] is not None and stack.workers[0].poll() is None, "the survivor died"

    time.sleep(2)
    stack.start_worker(1)   # added back: the group rebalances again, mid-load
    publisher.join(300)
    wait_caught_up(stack, timeout=300)
    report("rebalance", events=len(workload.lines), takeover_s=round(takeover, 1),
           committed_since_kill=sum(lag_after.values()))
    # a session timeout for the broker to notice, a rebalance, and the survivor's first batch
    assert takeover < SESSION_TIMEOUT_S + 20, takeover
    client = reader_of(stack)
    assert oracle_problems(client, workload) == []
    count, positions = client.query(
        "SELECT count(), uniqExact(source_partition, source_offset, source_index) FROM events").result_rows[0]
    assert count == positions, "a position was stored twice"


def test_readers_outlive_a_worker_and_the_warehouse_outlives_its_own_crash(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=4 if FULL else 2, duplicate_rate=0.01)
    stack = stack_factory(batch_max_records=10, batch_max_seconds=0.2)
    publisher = threading.Thread(target=lambda: run_cli(stack.settings, "publish", str(workload.path)), daemon=True)
    publisher.start()
    wait_for(lambda: _stored(stack), lambda n: n > 1_000, timeout=120, what="the worker storing")

    # a dead worker takes no reader down: the warehouse is another process
    stack.stop_worker(signal.SIGKILL)
    query = run_cli(stack.settings, "query", "SELECT count() > 0 AS stored FROM events", "-f", "csv")
    assert query.returncode == 0 and query.stdout.decode().split() == ["stored", "1"], query.stderr
    stack.start_worker()

    # a dead warehouse: readers get one line, the worker retries, supervise brings it back on its port
    wait_for(lambda: _stored(stack), lambda n: n > 3_000, timeout=120, what="more events stored")
    port, warehouse = stack.warehouse_port, stack.warehouse
    assert warehouse is not None
    warehouse.send_signal(signal.SIGKILL)
    assert warehouse.wait(30) == -signal.SIGKILL
    down = run_cli(stack.settings, "query", "SELECT 1")
    assert down.returncode == 1 and len(down.stderr.decode().strip().splitlines()) == 1, down.stderr
    stack.supervise()   # what `runlens up` does every second
    assert stack.warehouse_restarts == 1 and stack.warehouse_port == port
    publisher.join(300)
    wait_caught_up(stack, timeout=300)
    worker = stack.workers[0]
    assert worker is not None and worker.poll() is None, "the worker gave up instead of retrying"
    client = reader_of(stack)
    assert oracle_problems(client, workload) == []
    count, positions = client.query(
        "SELECT count(), uniqExact(source_partition, source_offset, source_index) FROM events").result_rows[0]
    assert count == positions, "a position was stored twice"

