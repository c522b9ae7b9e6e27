"""Alerts detected in the stream by the real worker: an injected failure spike and an injected
queue backlog raise alerts on the alerts topic and in the `alerts` view; nothing else fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from confluent_kafka import Consumer

from producers.workload import Backlog, Spike, WorkloadConfig, generate
from tests.helpers import own_stack, run_cli, wait_caught_up

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)   # after every other test's event times
SPIKE_AT = DAY + timedelta(hours=2, minutes=30)
BACKLOG_AT = DAY + timedelta(hours=3, minutes=15)
# At ~2 runs a minute of a workflow whose runs take ~2 minutes, the first failures finish ~2 min
# after the spike starts and the 5-minute window needs 10 runs: the stated bound is 20 minutes.
DETECTION_BOUND = timedelta(minutes=20)


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory, run_prefix):
    """A stack of its own: the alerts of this module's workload are the whole `alerts` table."""
    with own_stack(tmp_path_factory, run_prefix, "al") as stack_and_reader:
        yield stack_and_reader


@pytest.fixture(scope="module")
def stack_settings(alert_stack):
    return alert_stack[0].settings


@pytest.fixture(scope="module")
def embedded_stack(alert_stack):
    return alert_stack[0]


@pytest.fixture(scope="module")
def reader(alert_stack):
    return alert_stack[1]


@pytest.fixture(scope="module")
def spiky_day(tmp_path_factory, embedded_stack, stack_settings):
    # 5,000 runs an hour: the spiked workflow sees ~4 runs a minute, enough volume to judge.
    config = WorkloadConfig(seed=5, accounts=3, backfill_runs_per_hour=5000,
                            spikes=(Spike(workflow="acme/wf-welcome", at=SPIKE_AT, rate=0.8, minutes=20),),
                            backlogs=(Backlog(account="globex", at=BACKLOG_AT, minutes=25, capacity_factor=0.05),))
    path = tmp_path_factory.mktemp("alerts") / "spiky.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in generate(config, DAY, DAY + timedelta(hours=4))) + b"\n")
    result = run_cli(stack_settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    wait_caught_up(embedded_stack)


def _alerts(reader):
    return list(reader.query(
        "SELECT kind, account_id, subject, state, started_at, resolved_at, summary FROM alerts "
        "WHERE started_at >= {day:DateTime64(3)} ORDER BY started_at", parameters={"day": DAY}).named_results())


def test_injected_spike_fires_in_time_and_resolves(spiky_day, reader):
    spikes = [a for a in _alerts(reader) if a["kind"] == "failure_spike" and a["subject"] == "wf-welcome"]
    assert len(spikes) == 1, spikes
    alert = spikes[0]
    assert alert["account_id"] == "acme"
    started = alert["started_at"].replace(tzinfo=UTC)
    assert SPIKE_AT <= started <= SPIKE_AT + DETECTION_BOUND
    assert alert["state"] == "resolved" and "Welcome email" in alert["summary"]


def test_no_false_positive_spikes_elsewhere(spiky_day, reader):
    others = [a for a in _alerts(reader) if a["kind"] == "failure_spike"
              and not (a["account_id"] == "acme" and a["subject"] in ("wf-welcome", "acme"))]
    assert others == []


def test_backlog_raises_a_growing_queue_alert(spiky_day, reader):
    queue = [a for a in _alerts(reader) if a["kind"] == "queue_growing"]
    assert [a["account_id"] for a in queue] == ["globex"], queue
    started = queue[0]["started_at"].replace(tzinfo=UTC)
    assert BACKLOG_AT <= started <= BACKLOG_AT + timedelta(minutes=25)


def test_alerts_are_published_on_the_alerts_topic(spiky_day, embedded_stack, stack_settings):
    consumer = Consumer({"bootstrap.servers": embedded_stack.brokers, "group.id": f"{stack_settings.topic_prefix}-t",
                         "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    consumer.subscribe([stack_settings.alerts_topic])
    docs = []
    try:
        for _ in range(60):
            for message in consumer.consume(500, timeout=1.0):
                if message.error() is None:
                    docs.append(orjson.loads(message.value()))
            if any(d["subject"] == "wf-welcome" and d["state"] == "resolved" for d in docs):
                break
    finally:
        consumer.close()
    welcome = [d for d in docs if d["subject"] == "wf-welcome" and d["kind"] == "failure_spike"]
    assert [d["state"] for d in welcome] == ["firing", "resolved"]
    assert welcome[0]["numbers"]["window_failures"] >= 5
