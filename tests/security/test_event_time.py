"""Event time cannot switch alerting off: one account's (or sender's) clock cannot delay,
suppress or fabricate another account's alerts, nor stall the worker.

The attack, for real, through `runlens publish`, the broker and the worker: account "mallory"
sends events dated two days ahead, one dated in year 9999 and one 30 s ahead (within any
validation tolerance; the far ones may be dead-lettered by validation, the test holds either
way). Then the victim account publishes 70 minutes of live traffic, up to now, with a real
failure spike 28 minutes ago and runs still in flight; then mallory sends more events from two
days ahead, then a probe run of the victim.

Before the fix the worker had one watermark (the newest event time seen, from any account):
every victim event arrived "too late", the spike was never raised, mallory's later events moved
that watermark past the victim's runs in flight (stuck alerts for runs that had run for
minutes), and the year-9999 event kept the event loop busy for hours, minute by minute, so
nothing published after it was stored (the bounded waits below time out).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from producers.workload import Spike, WorkloadConfig, generate
from streams.detectors import AccountWatermarks, Detectors
from tests.helpers import run_cli, wait_caught_up, wait_for

pytestmark = [pytest.mark.security, pytest.mark.integration]

TOKEN = secrets.token_hex(3)
VICTIM, MALLORY = f"acme-{TOKEN}", f"mallory-{TOKEN}"   # accounts of this test only (shared stack)
NOW = datetime.now(UTC).replace(microsecond=0)           # the victim's traffic runs up to the wall clock
SPIKE_AT = NOW - timedelta(minutes=28)
LATENESS = timedelta(seconds=120)                          # the worker's default alert lateness
DETECTION_BOUND = timedelta(minutes=10)                    # 5-minute window + lateness + a few runs' length


def _fmt(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _run_event(account: str, run_id: str, type_: str, at: datetime, n: int, **extra) -> dict:
    return {"event_id": f"{run_id}-{n}", "schema_version": 1, "type": type_, "ts": _fmt(at), "account_id": account,
            "run_id": run_id, "workflow_id": "wf-m", "workflow_name": "Mallory", "workflow_version": 1,
            "workflow_type": "integration", "trigger": "api", **extra}


def _mallory(at: datetime, tag: str, runs: int = 3) -> list[dict]:
    """Runs of mallory whose sender's clock says ``at``: queued and started, one finished failed."""
    out = []
    for i in range(runs):
        run_id = f"{MALLORY}-{tag}-{i}"
        out += [_run_event(MALLORY, run_id, "run.queued", at + timedelta(seconds=i), 0),
                _run_event(MALLORY, run_id, "run.started", at + timedelta(seconds=i + 1), 1)]
    out.append(_run_event(MALLORY, f"{MALLORY}-{tag}-0", "run.finished", at + timedelta(seconds=9), 2,
                          status="failed", started_at=_fmt(at + timedelta(seconds=1)),
                          error={"code": "E", "message": "m", "class": "internal"}))
    return out


@pytest.fixture(scope="module")
def victim_events() -> list[dict]:
    """70 minutes of the victim's live run lifecycle up to now (step events left out: the
    detectors read run events), with wf-welcome failing 80% of the time for 12 minutes."""
    config = WorkloadConfig(seed=41, accounts=3, live_runs_per_second=3,
                            spikes=(Spike("acme/wf-welcome", SPIKE_AT, rate=0.8, minutes=12),))
    start = NOW - timedelta(minutes=70)
    out = []
    for event in generate(config, start, NOW, start):
        if event["account_id"] != "acme" or not event["type"].startswith("run."):
            continue
        event = dict(event, account_id=VICTIM, run_id=f"{TOKEN}-{event['run_id']}",
                     event_id=f"{TOKEN}-{event['event_id']}")
        if event.get("replay_of"):
            event["replay_of"] = f"{TOKEN}-{event['replay_of']}"
        out.append(event)
    return out


def _publish(settings, folder, name: str, events: list[dict]) -> None:
    path = folder / f"{name}.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    result = run_cli(settings, "publish", str(path))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def attacked(victim_events, embedded_stack, stack_settings, reader, tmp_path_factory):
    folder = tmp_path_factory.mktemp("event-time")
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    _publish(stack_settings, folder, "mallory-first", _mallory(NOW + timedelta(days=2), "d2")
             + _mallory(far, "y9999", runs=1) + _mallory(NOW + timedelta(seconds=30), "soon", runs=1))
    wait_caught_up(embedded_stack, timeout=60)          # mallory's clock is set before the victim speaks
    _publish(stack_settings, folder, "victim", victim_events)
    _publish(stack_settings, folder, "mallory-again", _mallory(NOW + timedelta(days=2, minutes=10), "d2b"))
    wait_caught_up(embedded_stack, timeout=120)
    # dated like the victim's newest event: the probe must not move the victim's clock (the module's
    # NOW was taken at import, maybe minutes before this runs, and in-flight runs would go stuck)
    probe, newest = f"{VICTIM}-probe", max(e["ts"] for e in victim_events)
    _publish(stack_settings, folder, "probe", [dict(victim_events[0], run_id=probe, event_id=f"{probe}-0",
                                                    ts=newest, type="run.queued")])
    wait_for(lambda: reader.query("SELECT count() FROM runs WHERE account_id = {a:String} AND run_id = {r:String}",
                                  parameters={"a": VICTIM, "r": probe}).result_rows[0][0],
             lambda n: n == 1, timeout=60, what="the probe run, published after the attack, to be stored")
    return reader


def _alerts(reader, account: str) -> list[dict]:
    return list(reader.query(
        "SELECT kind, subject, state, started_at, resolved_at, summary FROM alerts WHERE account_id = {a:String} "
        "ORDER BY started_at, subject", parameters={"a": account}).named_results())


def test_premise_the_victims_traffic_holds_a_spike_the_detectors_raise(victim_events):
    """Judged alone by the pure detectors, the victim's traffic raises the wf-welcome spike and no
    stuck run (so what the stack must show below is a property of the stack, not of the data)."""
    detectors, clocks = Detectors(), AccountWatermarks(LATENESS, timedelta(minutes=1), timedelta(days=1))
    raised = []
    for event in victim_events:
        clocks.observe(event["account_id"], 0, datetime.fromisoformat(event["ts"].replace("Z", "+00:00")), NOW)
        detectors.observe_event(event)
        raised += detectors.advance(clocks.moved(NOW))
    welcome = [a.kind for a in raised if a.subject == "wf-welcome" and a.state == "firing"]
    assert welcome.count("failure_spike") == 1, welcome
    assert not [a for a in raised if a.kind == "stuck_run"]


def test_a_real_spike_fires_although_another_account_is_dated_days_ahead(attacked):
    spikes = [a for a in _alerts(attacked, VICTIM) if a["kind"] == "failure_spike" and a["subject"] == "wf-welcome"]
    assert len(spikes) == 1, spikes
    started = spikes[0]["started_at"].replace(tzinfo=UTC)
    assert SPIKE_AT < started <= SPIKE_AT + DETECTION_BOUND
    assert "Welcome email" in spikes[0]["summary"]


def test_no_stuck_run_alert_is_fabricated_for_runs_in_flight(attacked, victim_events):
    """A stuck alert says since when a run is stuck: never a moment the victim has not reached."""
    newest = max(datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in victim_events)
    in_flight = ({e["run_id"] for e in victim_events if e["type"] == "run.started"}
                 - {e["run_id"] for e in victim_events if e["type"] == "run.finished"})
    assert in_flight, "premise: some of the victim's runs are still running"
    stuck = [a for a in _alerts(attacked, VICTIM) if a["kind"] == "stuck_run"]
    assert [a for a in stuck if a["started_at"].replace(tzinfo=UTC) > newest] == []
    assert not [a for a in stuck if a["subject"] in in_flight]


def test_the_sender_from_the_future_judges_nothing_of_its_own_future(attacked):
    """Mallory's clock stops at the wall clock plus a small tolerance: its runs dated ahead are
    stored (as validation allows) but never judged stuck, and its in-tolerance run is stored."""
    assert _alerts(attacked, MALLORY) == []
    stored = attacked.query("SELECT run_id FROM runs WHERE account_id = {a:String}",
                            parameters={"a": MALLORY}).result_rows
    assert (f"{MALLORY}-soon-0",) in stored


def test_the_worker_stayed_up(attacked, embedded_stack):
    """Responsive without a restart: the probe above was stored within its bounded wait."""
    assert embedded_stack.worker is not None and embedded_stack.worker.poll() is None
    embedded_stack.supervise()
    assert embedded_stack.worker_restarts == 0
