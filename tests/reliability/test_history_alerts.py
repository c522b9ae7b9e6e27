"""Alerts hold however the work is spread: history read in one go, one worker or two, a worker
killed mid-stream. Each run's alerts are compared with an oracle: the pure detectors
(``streams.detection``) fed every run event of the workload at once, then judged to the end.

The failure the first test guards against: a worker that takes hours of one partition in a batch
before the first minutes of the next moved its account's clock to the newest event of the first
partition, so nearly everything after it was "too late" for alerting and a failure spike in the
history was never raised. The worker is paused (SIGSTOP) while the whole history is published,
so that it reads the backlog in the largest batches it takes, then resumed.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from producers.kafka import read_partitions
from producers.workload import Spike, WorkloadConfig, generate
from schemas.validation import decode_event
from streams.detection import PartitionDetectors
from streams.signals import Packet, signal_of
from tests.helpers import run_cli, wait_caught_up, wait_for, workers_paused
from tests.reliability.conftest import reader_of, report

START = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
HOURS = 6
SPIKE_AT = START + timedelta(hours=3)
DETECTION_BOUND = timedelta(minutes=20)    # as in tests/integration/test_stream_alerts.py
IDLE_SECONDS = 5.0                          # the history's last minutes are judged soon after it ends
Row = tuple[str, str, str, str, datetime, datetime | None]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, set[Row]]:
    """Six hours of two accounts with a 30-minute failure spike in acme's wf-welcome, and the
    alerts the pure detectors raise on it (kind, account, subject, state, started, resolved)."""
    config = WorkloadConfig(seed=23, accounts=2, backfill_runs_per_hour=5000,
                            spikes=(Spike(workflow="acme/wf-welcome", at=SPIKE_AT, rate=0.8, minutes=30),))
    events = list(generate(config, START, START + timedelta(hours=HOURS)))
    path = tmp_path_factory.mktemp("history") / "history.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    oracle = PartitionDetectors(timedelta(seconds=120), idle=timedelta(seconds=IDLE_SECONDS))
    signals = []
    for offset, raw in enumerate(events):
        signal_ = signal_of(decode_event(orjson.dumps(raw)), 0, offset, 0)
        if signal_ is not None:
            signals.append(signal_)
    now = datetime.now(UTC)
    raised = oracle.apply(Packet(signals, {0: False}), now)
    raised += oracle.advance(now + timedelta(minutes=10), every_account=True)
    return path, {(a.kind, a.account_id, a.subject, a.state, a.started_at, a.resolved_at) for a in raised}


def _alerts(stack) -> list[Row]:
    rows = reader_of(stack).query("SELECT kind, account_id, subject, state, started_at, resolved_at "
                                  "FROM alert_events FINAL ORDER BY started_at, kind, subject, state").result_rows
    return [(k, a, s, st, started.replace(tzinfo=UTC), None if resolved is None else resolved.replace(tzinfo=UTC))
            for k, a, s, st, started, resolved in rows]


def _same_as(stack, expected: set[Row], what: str) -> list[Row]:
    """Wait until the stack's alerts are the oracle's (the last minutes are judged once the input
    has been quiet for IDLE_SECONDS); fail naming the difference."""
    wait_caught_up(stack, timeout=300)

    def difference() -> tuple[set[Row], set[Row]]:   # (missing, extra): named on a timeout
        found = set(_alerts(stack))
        return expected - found, found - expected

    wait_for(difference, lambda diff: diff == (set(), set()), timeout=90,
             what=f"the alerts of {what} to equal the oracle's (missing, extra)")
    found = _alerts(stack)
    assert len(found) == len(set(found)), "one alert state change stored under two ids"
    return found


def test_the_oracle_holds_the_spike_and_nothing_else(history):
    _, expected = history
    spikes = {(a, s) for k, a, s, state, *_ in expected if k == "failure_spike" and state == "firing"}
    assert spikes == {("acme", "wf-welcome"), ("acme", "acme")} or spikes == {("acme", "wf-welcome")}, spikes
    welcome = [r for r in expected if r[0] == "failure_spike" and r[2] == "wf-welcome" and r[3] == "firing"]
    assert len(welcome) == 1 and SPIKE_AT < welcome[0][4] <= SPIKE_AT + DETECTION_BOUND


def test_history_read_in_one_go_raises_the_alerts_of_the_oracle(history, stack_factory):
    path, expected = history
    stack = stack_factory(partitions=4, alert_idle_seconds=IDLE_SECONDS)
    assert stack.worker is not None
    with workers_paused(stack):
        result = run_cli(stack.settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    _same_as(stack, expected, "one worker reading the backlog")
    client = reader_of(stack)
    too_late = client.query("SELECT sum(v) FROM (SELECT argMax(value, time) AS v FROM pipeline_metrics "
                            "WHERE metric = 'too_late_for_alerts' GROUP BY worker)").result_rows[0][0]
    largest = client.query("SELECT max(value) FROM pipeline_metrics WHERE metric = 'batch_records'").result_rows[0][0]
    report("history-alerts-one-worker", hours=HOURS, alerts=len(expected), largest_batch_records=largest,
           too_late_for_alerts=too_late)
    assert too_late == 0


def test_two_workers_raise_the_same_alerts_as_one(history, stack_factory):
    path, expected = history
    stack = stack_factory(workers=2, partitions=4, alert_idle_seconds=IDLE_SECONDS)
    assert run_cli(stack.settings, "publish", str(path)).returncode == 0
    _same_as(stack, expected, "two workers")


def test_a_worker_killed_mid_stream_misses_no_alert_and_fires_none_twice(history, stack_factory):
    path, expected = history
    # small batches: the history takes a while, and the kill lands in the middle of it
    stack = stack_factory(workers=2, partitions=4, alert_idle_seconds=IDLE_SECONDS, batch_max_records=4)
    total = path.read_bytes().count(b"\n")
    sender = threading.Thread(target=run_cli, args=(stack.settings, "publish", str(path)), daemon=True)
    sender.start()

    def stored() -> int:
        return int(reader_of(stack).query("SELECT count() FROM events").result_rows[0][0])

    def snapshotted() -> int:
        """Detector partitions with a snapshot in the detector-state table's changelog."""
        changelog = f"{stack.settings.consumer_group}-detector-state-changelog"
        return len({record.partition for record in read_partitions(stack.brokers, changelog)})

    # the kill lands after every detector partition has a snapshot, so the new owner restores one
    wait_for(lambda: (stored(), snapshotted()), lambda got: got[0] > total * 0.4 and got[1] == 4, timeout=300,
             what="40 % of the history stored and a snapshot of every detector partition")
    assert stack.stop_worker(signal.SIGKILL, index=1) == -signal.SIGKILL
    killed_at = time.monotonic()
    sender.join(300)
    stack.start_worker(1)   # back while the survivor works: the group rebalances again
    found = _same_as(stack, expected, "two workers, one killed mid-stream and restarted")
    restored = [line for i in (0, 1) for line in stack.worker_log(i).read_text().splitlines()
                if "restored: snapshot to offset" in line]
    report("history-alerts-worker-killed", alerts=len(found), restarted_after_s=round(time.monotonic() - killed_at, 1),
           restores=len(restored))
    assert restored, "no detector partition was restored after the kill"


def test_records_the_consumer_drops_change_no_alert(history, stack_factory):
    """Faust can drop delivered records after a rebalance (``streams.continuity``); the worker reads
    them from the topic. The hook drops every third batch and detector packet that way: the
    alerts must still be the oracle's."""
    path, expected = history
    stack = stack_factory(partitions=4, alert_idle_seconds=IDLE_SECONDS, batch_max_records=4,
                          fault_drop_batch_every=3)
    assert run_cli(stack.settings, "publish", str(path)).returncode == 0
    _same_as(stack, expected, "one worker whose consumer drops every third batch")
    assert "were skipped by the consumer" in stack.worker_log(0).read_text()
