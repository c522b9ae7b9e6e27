"""Worker crashes, graceful stops, lost insert replies and a warehouse outage under load:
nothing lost, nothing counted twice."""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import run_cli, wait_caught_up, wait_for
from tests.reliability.conftest import FULL, make_workload, oracle_problems, reader_of, report


def _stored(stack) -> int:
    try:
        with reader_of(stack) as client:
            return client.query("SELECT count() FROM events").result_rows[0][0]
    except Exception:  # noqa: BLE001 - the worker (and its read endpoint) may be down
        return -1


def _no_position_stored_twice(stack) -> bool:
    client = reader_of(stack)
    count, positions = client.query(
        "SELECT count(), uniqExact(source_partition, source_offset, source_index) FROM events").result_rows[0]
    return count == positions


def _publish_in_background(stack, path: Path) -> threading.Thread:
    thread = threading.Thread(target=lambda: run_cli(stack.settings, "publish", str(path)), daemon=True)
    thread.start()
    return thread


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_worker_killed_mid_batch_many_times(tmp_path, stack_factory):
    kills = 20 if FULL else 10
    workload = make_workload(tmp_path, hours=12 if FULL else 5, duplicate_rate=0.02, reorder_rate=0.02,
                             late_rate=0.01)
    # small batches so that a kill lands in the middle of many of them
    stack = stack_factory(batch_max_records=5, batch_max_seconds=0.2)
    size = len(workload.lines) // kills + 1
    chunks = [workload.lines[i:i + size] for i in range(0, len(workload.lines), size)]
    rng = random.Random(7)
    started = time.monotonic()
    for number, chunk in enumerate(chunks):
        part = tmp_path / f"part{number}.ndjson"
        part.write_bytes(b"\n".join(chunk) + b"\n")
        assert run_cli(stack.settings, "publish", str(part)).returncode == 0
        time.sleep(rng.uniform(0.5, 2.5))        # the worker is busy with this part
        stack.stop_worker(signal.SIGKILL)
        stack.start_worker()
    wait_caught_up(stack, timeout=300)
    report("sigkill", events=len(workload.lines), kills=len(chunks), seconds=round(time.monotonic() - started, 1))
    client = reader_of(stack)
    assert oracle_problems(client, workload) == []
    assert _no_position_stored_twice(stack)


def test_sigterm_mid_batch_gives_the_rest_up_and_restart_repeats_nothing(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=4, duplicate_rate=0.01)
    stack = stack_factory(batch_max_records=50, batch_max_seconds=0.2)
    publisher = _publish_in_background(stack, workload.path)
    wait_for(lambda: _stored(stack), lambda n: n > 1000, timeout=90, what="progress")
    code = stack.stop_worker(signal.SIGTERM)
    assert code == 0
    stack.start_worker()
    publisher.join(120)
    wait_caught_up(stack, timeout=300)
    client = reader_of(stack)
    assert oracle_problems(client, workload) == []
    assert _no_position_stored_twice(stack)


def test_lost_insert_replies_are_retried_without_duplicates(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=2)
    stack = stack_factory(fault_lose_reply_every=3, batch_max_records=20, batch_max_seconds=0.2)
    assert run_cli(stack.settings, "publish", str(workload.path)).returncode == 0
    wait_caught_up(stack, timeout=300)
    log = (stack.logs / "worker.log").read_text()
    assert "reply was lost" in log
    assert oracle_problems(reader_of(stack), workload) == []


def test_records_the_consumer_drops_are_read_from_the_topic(tmp_path, stack_factory):
    """Faust can drop delivered records for good after a rebalance (faust-streaming issues 596 and
    606): never handled, never acknowledged, its read position past them. The hook drops every
    third batch of events and every third detector packet that way; the worker must find each hole
    (the records after it, or a partition that stopped moving), read it from the topic, and commit
    past it: every event stored once, the aggregates equal to the recomputation."""
    workload = make_workload(tmp_path, hours=2, duplicate_rate=0.02)
    stack = stack_factory(fault_drop_batch_every=3, batch_max_records=20, batch_max_seconds=0.2)
    assert run_cli(stack.settings, "publish", str(workload.path)).returncode == 0
    wait_caught_up(stack, timeout=300)   # commits only move past a hole once it is filled
    log_path = stack.logs / "worker.log"
    log = log_path.read_text()
    assert "fault hook: dropped" in log and "were skipped by the consumer; reading them from the topic" in log
    assert oracle_problems(reader_of(stack), workload) == []
    assert _no_position_stored_twice(stack)
    # status packets reach the detector topic every few seconds: a dropped one is noticed at the next
    wait_for(log_path.read_text, lambda text: "packets before offset" in text, timeout=60,
             what="a skipped detector packet read from the topic")


def test_control_without_dedup_tokens_the_lost_reply_test_fails(tmp_path, stack_factory):
    """The same fault with deduplication tokens off double-counts: the test above can fail."""
    workload = make_workload(tmp_path, hours=2)
    stack = stack_factory(fault_lose_reply_every=3, insert_dedup=False, batch_max_records=20,
                          batch_max_seconds=0.2)
    assert run_cli(stack.settings, "publish", str(workload.path)).returncode == 0
    wait_caught_up(stack, timeout=300)
    problems = oracle_problems(reader_of(stack), workload)
    report("control", problems=len(problems), first=problems[:1])
    assert any(p.startswith(("run_stats", "step_stats", "queue_depth")) for p in problems)
    # the continuous reconciliation check sees the same drift
    reconcile = run_cli(stack.settings, "reconcile", "--since", "2026-11-01T00:00:00Z")
    assert reconcile.returncode == 3 and b"drift: 0 " not in reconcile.stderr
    # ... and so does the provisioned alert rule that runs it continuously
    from dashboards.macros import TimeRange, expand
    from dashboards.panels import ALERT_RULES

    rule = next(r for r in ALERT_RULES if r.uid == "runlens-aggregate-drift")
    window = TimeRange(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), 60.0)
    with reader_of(stack) as client:
        drift = client.query(expand(rule.sql, window)).result_rows
    assert drift and sum(value for _, value in drift) > rule.threshold


def test_warehouse_outage_applies_back_pressure_and_catches_up(tmp_path, stack_factory):
    outage_seconds = 60 if FULL else 12
    workload = make_workload(tmp_path, hours=3)
    outage = tmp_path / "warehouse-down"
    stack = stack_factory(fault_outage_file=outage)
    wait_for(lambda: _stored(stack), lambda n: n == 0, timeout=60, what="the worker to start")
    pid = stack.worker.pid
    rss_before = _rss_kib(pid)
    outage.touch()
    assert run_cli(stack.settings, "publish", str(workload.path)).returncode == 0
    samples = []
    for _ in range(outage_seconds):
        time.sleep(1)
        assert stack.worker.poll() is None, "the worker crashed during the outage"
        samples.append(_rss_kib(pid))
    stored_during = _stored(stack)
    outage.unlink()
    wait_caught_up(stack, timeout=300)
    assert stack.worker.pid == pid, "the worker was restarted"
    report("outage", seconds=outage_seconds, rss_before_mib=rss_before // 1024,
           rss_peak_mib=max(samples) // 1024, stored_during=stored_during)
    assert stored_during == 0
    assert max(samples) < rss_before + 512 * 1024   # bounded: one batch in memory, not the backlog
    assert "injected outage" in (stack.logs / "worker.log").read_text()
    assert oracle_problems(reader_of(stack), workload) == []
