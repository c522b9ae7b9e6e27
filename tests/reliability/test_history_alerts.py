"""History read in one go raises the alerts the same events raise live.

The failure this guards against: a worker that takes hours of one partition in a batch before the
first minutes of the next moved its account's clock to the newest event of the first partition,
so nearly everything after it was "too late" for alerting and a failure spike in the history was
never raised. The worker is paused (SIGSTOP) while the whole history is published, so that it
reads the backlog in the largest batches it takes, then resumed.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import orjson

from producers.workload import Spike, WorkloadConfig, generate
from tests.helpers import run_cli, wait_caught_up, wait_for
from tests.reliability.conftest import reader_of, report

START = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
HOURS = 6
SPIKE_AT = START + timedelta(hours=3)
DETECTION_BOUND = timedelta(minutes=20)    # as in tests/integration/test_stream_alerts.py


def test_a_spike_in_history_read_in_one_go_is_alerted_and_nothing_else(tmp_path, stack_factory):
    config = WorkloadConfig(seed=23, accounts=2, backfill_runs_per_hour=5000,
                            spikes=(Spike(workflow="acme/wf-welcome", at=SPIKE_AT, rate=0.8, minutes=30),))
    path = tmp_path / "history.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in generate(config, START, START + timedelta(hours=HOURS)))
                     + b"\n")
    stack = stack_factory(partitions=4)
    worker = stack.worker
    assert worker is not None
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        result = run_cli(stack.settings, "publish", str(path))
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    wait_caught_up(stack, timeout=300)
    client = reader_of(stack)

    def spikes() -> list[dict]:
        return list(client.query(
            "SELECT account_id, subject, state, started_at FROM alert_events WHERE kind = 'failure_spike' "
            "ORDER BY started_at, subject").named_results())

    # judged as the history is read: the spike's minutes are hours before the history's end
    found = wait_for(spikes, lambda rows: any(r["subject"] == "wf-welcome" for r in rows), timeout=60,
                     what="a failure_spike alert on wf-welcome")
    firing = [r for r in found if r["state"] == "firing"]
    assert {(r["account_id"], r["subject"]) for r in firing} <= {("acme", "wf-welcome"), ("acme", "acme")}, firing
    welcome = [r for r in firing if r["subject"] == "wf-welcome"]
    at = welcome[0]["started_at"].replace(tzinfo=UTC) if welcome else None
    assert len(welcome) == 1 and at is not None and SPIKE_AT < at <= SPIKE_AT + DETECTION_BOUND, welcome
    too_late = client.query("SELECT sum(v) FROM (SELECT argMax(value, time) AS v FROM pipeline_metrics "
                            "WHERE metric = 'too_late_for_alerts' GROUP BY worker)").result_rows[0][0]
    batch_events = client.query("SELECT max(value) FROM pipeline_metrics WHERE metric = 'batch_events'"
                                ).result_rows[0][0]
    report("history-alerts", hours=HOURS, largest_batch_events=batch_events, too_late_for_alerts=too_late,
           spike_alert_at=str(at))
    assert too_late == 0
