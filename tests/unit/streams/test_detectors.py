"""Alert detectors (``streams.detectors``): injected failure spikes fire fast and resolve,
two days of normal traffic raise no failure-spike or queue alert, low-volume workflows are
never judged on noise, late and reordered events give the same alerts, stuck runs and
growing queues are caught, output is deterministic and state stays under its caps; with one
event-time clock per account no account's clock changes another's alerts, and a watermark
that jumps by years costs only the minutes that hold data."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from producers.workload import Backlog, Spike, WorkloadConfig, generate, perturb
from streams.detectors import (
    AccountWatermarks,
    Alert,
    Detectors,
    FailureSpikeDetector,
    QueueGrowthDetector,
    StuckRunDetector,
    beta_binomial_tail,
    binomial_tail,
    describe,
)

MIN = timedelta(minutes=1)
# Before 2026-08-03 the generator keeps every workflow at version 1: the traffic is pure
# noise (seasonality, batches, retries, replays, heavy tails) without version regressions,
# which are real failure-rate increases a detector should report.
MONDAY = datetime(2026, 7, 13, tzinfo=UTC)


def ts(ev: dict) -> datetime:
    return datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))


def run_events(events, lateness: timedelta = 2 * MIN, *, detectors: Detectors | None = None,
               until: datetime | None = None, advance_every: int = 1):
    """Feed contract events the way the worker does (dedupe by event_id, watermark = max event
    time seen - lateness); return (alerts, detectors, late) where late counts events that
    arrived behind the watermark (the tests' premise is that there are none)."""
    d = detectors or Detectors()
    alerts: list[Alert] = []
    seen: set[str] = set()
    high = None
    late = 0
    for i, ev in enumerate(events):
        if not ev["type"].startswith("run."):
            continue
        if ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        t = ts(ev)
        if high is not None and t < high - lateness:
            late += 1
        d.observe_event(ev)
        if high is None or t > high:
            high = t
        if i % advance_every == 0:
            alerts += d.advance(high - lateness)
    if high is not None:
        alerts += d.advance(high - lateness)
    if until is not None:
        alerts += d.advance(until)
    return alerts, d, late


def run_ev(account, wf, run_id, kind, at, *, status=None, started=None, name=None, n=0):
    ev = {"event_id": f"{run_id}-{kind}-{n}", "type": kind, "ts": at.isoformat().replace("+00:00", "Z"),
          "account_id": account, "run_id": run_id, "workflow_id": wf, "workflow_name": name or wf}
    if kind == "run.finished":
        ev["status"] = status or "success"
        ev["started_at"] = (started or at).isoformat().replace("+00:00", "Z")
    return ev


def hand_stream(account, wf, runs):
    """runs: (run_id, queued, started or None, finished or None, status) -> time-ordered events."""
    evs = []
    for run_id, q, s, f, status in runs:
        evs.append(run_ev(account, wf, run_id, "run.queued", q))
        if s is not None:
            evs.append(run_ev(account, wf, run_id, "run.started", s))
        if f is not None:
            evs.append(run_ev(account, wf, run_id, "run.finished", f, status=status, started=s))
    evs.sort(key=lambda e: (e["ts"], e["event_id"]))
    return evs


def of(alerts, kind, state=None):
    return [a for a in alerts if a.kind == kind and (state is None or a.state == state)]


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("k,n,p", [(0, 10, 0.1), (1, 10, 0.1), (5, 10, 0.02), (9, 30, 0.05), (3, 200, 0.02),
                                   (40, 200, 0.02), (12, 12, 0.5), (150, 1000, 0.1), (80, 1000, 0.1),
                                   (13, 1000, 0.01), (2, 3, 0.9)])
def test_binomial_tail_matches_the_exact_sum(k, n, p):
    exact = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("k,n,a,b", [(5, 10, 0.4, 19.6), (9, 30, 5.4, 200.0), (3, 50, 1.0, 1.0), (1, 5, 2.0, 3.0)])
def test_beta_binomial_tail_matches_the_exact_sum(k, n, a, b):
    def pmf(i):
        return math.comb(n, i) * math.exp(math.lgamma(i + a) + math.lgamma(n - i + b) - math.lgamma(n + a + b)
                                          + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    exact = sum(pmf(i) for i in range(k, n + 1))
    assert beta_binomial_tail(k, n, a, b) == pytest.approx(exact, rel=1e-9)
    # uncertainty about the rate only makes extreme counts more plausible
    assert beta_binomial_tail(k, n, a, b) >= binomial_tail(k, n, a / (a + b)) * 0.999 or k <= n * a / (a + b)


# --------------------------------------------------------------------------- failure spikes


SPIKE_AT = MONDAY + timedelta(days=1, hours=15, minutes=7)  # Tuesday afternoon (acme: 10:07 local)


@pytest.fixture(scope="module")
def spike_run():
    spike = Spike("acme/wf-welcome", SPIKE_AT, rate=0.6, minutes=15)
    config = WorkloadConfig(seed=11, backfill_runs_per_hour=2000, spikes=(spike,))
    events = list(generate(config, SPIKE_AT - timedelta(hours=3), SPIKE_AT + timedelta(hours=1)))
    alerts, d, late = run_events(events)
    assert late == 0
    return spike, events, alerts


def test_an_injected_spike_fires_within_window_plus_two_minutes_and_resolves_after_it_ends(spike_run):
    spike, events, alerts = spike_run
    det = FailureSpikeDetector()
    bound = timedelta(minutes=det.window_minutes + 2)
    spikes = [a for a in of(alerts, "failure_spike") if a.subject != a.account_id]
    assert [(a.state, a.account_id, a.subject) for a in spikes] == \
        [("firing", "acme", "wf-welcome"), ("resolved", "acme", "wf-welcome")], spikes
    firing, resolved = spikes
    delay = firing.started_at - spike.at
    assert timedelta(0) < delay <= bound, f"detected {delay} after the spike began (bound {bound})"
    assert firing.subject_name == "Welcome email"
    assert firing.alert_id == f"failure_spike:acme:wf-welcome:{firing.started_at:%Y%m%dT%H%M}"
    x = firing.numbers
    assert x["window_runs"] >= det.min_runs and x["window_failures"] >= det.min_failures
    assert x["window_rate"] >= det.min_ratio * x["baseline_rate"]
    assert x["baseline_rate"] < 0.05 and x["baseline_runs"] > 100
    assert x["p_value"] <= det.max_p_value and x["p_value_predictive"] <= det.max_p_value
    assert f"{int(x['window_failures'])} of {int(x['window_runs'])} runs failed in the last 5 min" in firing.summary
    assert firing.summary.startswith("Welcome email (acme): ")
    # resolved: same id, after the spike ended (the window must first slide past it)
    spike_end = spike.at + timedelta(minutes=spike.minutes)
    assert resolved.alert_id == firing.alert_id and resolved.started_at == firing.started_at
    assert spike_end < resolved.resolved_at <= spike_end + bound, resolved.resolved_at - spike_end
    assert resolved.numbers["peak_window_rate"] > 0.5
    assert resolved.numbers["window_rate"] < 0.2
    # the account-wide variant sees it too, and nothing else fires
    accounts = [a for a in of(alerts, "failure_spike") if a.subject == a.account_id]
    assert [(a.state, a.account_id, a.subject_name) for a in accounts] == \
        [("firing", "acme", "acme"), ("resolved", "acme", "acme")]
    assert accounts[0].started_at - spike.at <= bound
    assert of(alerts, "queue_growing") == [] and of(alerts, "stuck_run") == []


def test_a_spike_longer_than_the_baseline_does_not_become_its_own_baseline():
    """10 runs a minute, 2% failing; then 40% failing for 150 min (> the 120 min baseline),
    and 40 minutes after it ended the same again for 15 min."""
    r = random.Random(5)
    t0 = MONDAY + timedelta(hours=6)
    spike_from, spike_to = t0 + timedelta(hours=3), t0 + timedelta(hours=5, minutes=30)
    again_from, again_to = spike_to + timedelta(minutes=40), spike_to + timedelta(minutes=55)
    runs = []
    for i in range(9 * 60 * 10):
        at = t0 + timedelta(seconds=6 * i)
        rate = 0.4 if (spike_from <= at < spike_to or again_from <= at < again_to) else 0.02
        runs.append((f"r{i}", at, at, at + timedelta(seconds=3), "failed" if r.random() < rate else "success"))
    alerts, _, _ = run_events(hand_stream("acme", "wf-x", runs),
                              detectors=Detectors(account_failure_spike=None))
    spikes = of(alerts, "failure_spike")
    assert [a.state for a in spikes] == ["firing", "resolved", "firing", "resolved"], [a.summary for a in spikes]
    # one alert for the whole long incident: its minutes never became "normal"
    assert spikes[0].started_at - spike_from <= timedelta(minutes=7)
    assert spike_to < spikes[1].resolved_at <= spike_to + timedelta(minutes=7)
    assert spikes[1].numbers["firing_minutes"] >= 150
    # and they did not feed the baseline after it either: the recurrence is caught as fast
    assert spikes[2].started_at - again_from <= timedelta(minutes=7)
    assert spikes[2].numbers["baseline_rate"] < 0.05


@pytest.fixture(scope="module")
def normal_two_days():
    config = WorkloadConfig(seed=4, backfill_runs_per_hour=1500)
    start, end = MONDAY, MONDAY + timedelta(days=2)
    finished = Counter()
    busy = Counter()

    def counted(events):
        for ev in events:
            if ev["type"] == "run.finished":
                finished[(ev["account_id"], ev["workflow_id"], ev["ts"][:13])] += 1
            yield ev

    alerts, d, late = run_events(counted(generate(config, start, end)))
    for key, n in finished.items():
        if n >= 120:
            busy[key] += 1
    return alerts, d, late, finished, busy


def test_two_days_of_normal_traffic_raise_no_failure_spike_or_queue_alert(normal_two_days):
    alerts, d, late, finished, busy = normal_two_days
    assert late == 0
    workflow_hours = len(finished)  # (account, workflow, hour) with at least one finished run
    workflows = {k[:2] for k in finished}
    assert len(workflows) >= 18 and workflow_hours > 700
    assert len(busy) > 150, "enough hours with >= 10 runs per 5 min for the detector to judge"
    judged = d.failure_spike.stats["judged_minutes"]
    assert judged > 10_000, judged  # workflow-minutes whose window had >= min_runs runs
    false_positives = of(alerts, "failure_spike", "firing")
    assert false_positives == [], [a.summary for a in false_positives]
    assert of(alerts, "queue_growing") == []
    # stuck alerts in normal traffic are only runs that really ran longer than their threshold
    for a in of(alerts, "stuck_run", "firing"):
        resolved = [b for b in alerts if b.alert_id == a.alert_id and b.state == "resolved"]
        assert resolved and resolved[0].numbers["duration_seconds"] > a.numbers["threshold_seconds"]
    assert len(of(alerts, "stuck_run", "firing")) <= 2


def test_a_workflow_with_three_runs_an_hour_never_fires_on_one_or_two_failures():
    t0 = MONDAY
    runs = []
    for i in range(3 * 24 * 3):  # three days, a run every 20 minutes
        at = t0 + timedelta(minutes=20 * i, seconds=7)
        status = "failed" if i in (100, 150, 151, 200, 201, 202) else "success"  # one, two and three in a row
        runs.append((f"r{i}", at, at, at + timedelta(seconds=40), status))
    evs = hand_stream("acme", "wf-rare", runs)
    alerts, d, _ = run_events(evs, until=t0 + timedelta(days=3, hours=1))
    assert of(alerts, "failure_spike") == []
    # even a workflow that always fails is not judged at this volume: never 10 runs in 5 min
    always = [(rid, q, s, f, "failed") for rid, q, s, f, _ in runs]
    alerts, d, _ = run_events(hand_stream("acme", "wf-rare", always), until=t0 + timedelta(days=3, hours=1),
                              detectors=Detectors(account_failure_spike=None))
    assert of(alerts, "failure_spike") == [] and d.failure_spike.stats["judged_minutes"] == 0


def test_a_busy_workflow_with_a_high_normal_failure_rate_is_judged_against_its_own_baseline():
    """20% of runs fail as a matter of course: 30% in a window is not a spike (ratio < 3),
    while the 2% prior alone would call it one."""
    r = random.Random(9)
    t0 = MONDAY
    runs = []
    for i in range(4 * 60 * 6):  # four hours, 6 runs a minute
        at = t0 + timedelta(seconds=10 * i)
        rate = 0.3 if t0 + timedelta(hours=3) <= at < t0 + timedelta(hours=3, minutes=10) else 0.2
        runs.append((f"r{i}", at, at, at + timedelta(seconds=2), "failed" if r.random() < rate else "success"))
    alerts, _, _ = run_events(hand_stream("acme", "wf-flaky", runs), until=t0 + timedelta(hours=5))
    assert of(alerts, "failure_spike") == []


# --------------------------------------------------------------------------- order, determinism


@pytest.fixture(scope="module")
def live_with_faults():
    """90 minutes of live traffic with a failure spike on acme's welcome email and a
    capacity drop at globex."""
    now = MONDAY + timedelta(hours=14)
    spike = Spike("acme/wf-welcome", now + timedelta(minutes=40), rate=0.7, minutes=10)
    backlog = Backlog("globex", now + timedelta(minutes=45), minutes=15, capacity_factor=0.1)
    config = WorkloadConfig(seed=21, live_runs_per_second=3, spikes=(spike,), backlogs=(backlog,))
    events = [e for e in generate(config, now, now + timedelta(minutes=90), now) if e["type"].startswith("run.")]
    return spike, backlog, events


def test_late_reordered_and_duplicated_events_give_the_same_alerts(live_with_faults):
    spike, backlog, events = live_with_faults
    lateness = timedelta(minutes=10)
    in_order, _, late = run_events(events, lateness)
    assert late == 0
    lines = perturb(events, seed=3, duplicate_rate=0.05, reorder_rate=0.1, late_rate=0.1,
                    late_by=timedelta(minutes=6))
    shuffled = [orjson.loads(line) for line in lines]
    assert len(shuffled) > len(events)  # duplicates
    high, lag = None, timedelta(0)
    for e in shuffled:
        high = ts(e) if high is None else max(high, ts(e))
        lag = max(lag, high - ts(e))
    assert lag > timedelta(minutes=4), "some events really arrive minutes late"
    out_of_order, _, late = run_events(shuffled, lateness)
    assert late == 0, "premise: every event arrived within the allowed lateness"
    kinds = Counter((a.kind, a.state) for a in in_order)
    assert kinds[("failure_spike", "firing")] >= 1 and kinds[("queue_growing", "firing")] == 1
    assert out_of_order == in_order


def test_the_same_input_twice_gives_identical_alerts_whatever_the_advance_cadence(live_with_faults):
    _, _, events = live_with_faults
    first, _, _ = run_events(events)
    second, _, _ = run_events(events)
    assert first and first == second
    assert [a.alert_id for a in first] == [a.alert_id for a in second]
    # the worker may advance once per batch: the same alerts (one advance call lists them
    # detector by detector, so the order across detectors may differ)
    coarse, _, _ = run_events(events, advance_every=5000)
    key = lambda a: (a.alert_id, a.state)  # noqa: E731
    assert sorted(coarse, key=key) == sorted(first, key=key)
    for kind in ("failure_spike", "stuck_run", "queue_growing"):
        assert of(coarse, kind) == of(first, kind)


def test_backlog_fires_queue_growing_for_its_account_only_and_resolves(live_with_faults):
    _, backlog, events = live_with_faults
    alerts, _, _ = run_events(events)
    queue = of(alerts, "queue_growing")
    assert [(a.state, a.account_id) for a in queue] == [("firing", "globex"), ("resolved", "globex")]
    firing, resolved = queue
    g = QueueGrowthDetector().growth_minutes
    assert firing.started_at - backlog.at <= timedelta(minutes=g + 1), firing.started_at - backlog.at
    x = firing.numbers
    assert x["pending"] >= 50 and x["growth_per_minute"] > 0
    assert x["arrivals_per_minute"] > x["starts_per_minute"] and x["eta_minutes"] == math.inf
    assert firing.severity == "warning" or x["pending"] >= 500 or x["starts_per_minute"] == 0
    assert resolved.alert_id == firing.alert_id
    assert backlog.at + timedelta(minutes=backlog.minutes) <= resolved.resolved_at


def test_steady_live_traffic_does_not_fire_queue_growing():
    now = MONDAY + timedelta(hours=14)
    config = WorkloadConfig(seed=21, live_runs_per_second=3)
    alerts, d, _ = run_events(generate(config, now, now + timedelta(minutes=45), now))
    assert alerts == [] and d.queue_growth.state_sizes()["accounts"] == 3


def test_queue_growth_from_a_hand_built_stall_and_the_depth_ignores_arrival_order():
    t0 = MONDAY + timedelta(hours=9)
    det = QueueGrowthDetector()
    deltas = []
    for i in range(40 * 60):  # one run queued a second for 40 minutes
        at = t0 + timedelta(seconds=i)
        deltas.append((at, 1, 0))
        if not (t0 + timedelta(minutes=10) <= at < t0 + timedelta(minutes=25)):  # starts stall for 15 min
            deltas.append((at + timedelta(milliseconds=500), -1, 1))
            deltas.append((at + timedelta(seconds=20), 0, -1))

    def feed(items, d):
        out = []
        for k, (at, dp, dr) in enumerate(items):
            d.lifecycle("acme", at, dp, dr)
            if k % 50 == 0:
                out += d.advance(max(a for a, _, _ in items[: k + 1]) - timedelta(minutes=2))
        return out + d.advance(t0 + timedelta(hours=1))

    alerts = feed(sorted(deltas), det)
    assert [a.state for a in alerts] == ["firing", "resolved"]
    firing = alerts[0]
    # pending >= 50 after 50 s of stall, grown in each of 5 minutes by the end of minute 15
    assert firing.started_at == t0 + timedelta(minutes=15)
    assert firing.numbers["pending"] == 300 and firing.numbers["growth_per_minute"] == 60
    assert firing.numbers["starts_per_minute"] == 0 and firing.severity == "critical"
    assert alerts[1].resolved_at == t0 + timedelta(minutes=26)  # the first minute it shrank
    r = random.Random(1)
    jittered = sorted(deltas, key=lambda x: x[0] + timedelta(seconds=r.uniform(0, 60)))
    assert feed(jittered, QueueGrowthDetector()) == alerts


# --------------------------------------------------------------------------- stuck runs


def normal_runs(account, wf, t0, count, seconds, every=timedelta(seconds=20), prefix="ok"):
    r = random.Random(prefix)
    return [(f"{prefix}{i}", t0 + i * every, t0 + i * every,
             t0 + i * every + timedelta(seconds=seconds * r.uniform(0.5, 1.5)), "success") for i in range(count)]


CLASSIC = {"silent_workflow": None, "version_regression": None, "error_signature": None, "run_deadline": None}
"""The four run-level detectors off: the stuck-run tests below stop their workflow, and pass
its runs' deadlines, on purpose (those rules have tests of their own: test_run_detectors.py)."""


def test_a_run_that_never_finishes_fires_once_past_the_threshold_and_resolves_when_it_finishes():
    t0 = MONDAY + timedelta(hours=8)
    runs = normal_runs("acme", "wf-a", t0, 200, 30)  # ~30 s each for 66 minutes
    hung_start = t0 + timedelta(minutes=10, seconds=5)
    evs = hand_stream("acme", "wf-a", runs + [("hung", hung_start, hung_start, None, None)])
    det = Detectors(**CLASSIC)
    alerts, d, _ = run_events(evs, detectors=det)
    stuck = of(alerts, "stuck_run")
    assert [(a.state, a.subject, a.subject_name) for a in stuck] == [("firing", "hung", "wf-a")]
    a = stuck[0]
    # p99 ~45 s, so 5 x p99 < the 300 s floor: stuck 5 minutes after it started
    assert a.numbers["threshold_seconds"] == 300 and a.numbers["p99_seconds"] < 60
    assert a.started_at == hung_start + timedelta(seconds=300)
    assert a.alert_id == f"stuck_run:acme:hung:{a.started_at:%Y%m%dT%H%M}"
    # it is reported at the first minute boundary after it became stuck, not before
    assert det.advance(t0 + timedelta(hours=2)) == []
    fin = hung_start + timedelta(hours=2)
    det.observe_event(run_ev("acme", "wf-a", "hung", "run.finished", fin, status="failed", started=hung_start))
    assert det.advance(fin - MIN) == []
    (res,) = det.advance(fin + MIN)
    assert (res.state, res.alert_id, res.resolved_at) == ("resolved", a.alert_id, fin)
    assert res.numbers["duration_seconds"] == 7200
    assert det.stuck_run.state_sizes()["runs"] == 0


def test_stuck_threshold_follows_the_workflows_p99():
    t0 = MONDAY
    det = StuckRunDetector()
    for rid, _q, s, f, _ in normal_runs("acme", "wf-slow", t0, 100, 120):  # 60..180 s
        det.run_started("acme", "wf-slow", "Slow", rid, s)
        det.run_finished("acme", "wf-slow", rid, s, f)
    det.advance(t0 + timedelta(hours=1))
    threshold = det.threshold_seconds("acme", "wf-slow")
    assert 5 * 170 <= threshold <= 5 * 180
    start = t0 + timedelta(hours=1, minutes=1)
    det.run_started("acme", "wf-slow", "Slow", "long", start)
    assert det.advance(start + timedelta(seconds=threshold - 60)) == []
    (a,) = det.advance(start + timedelta(seconds=threshold + 60))
    assert a.subject == "long" and a.numbers["threshold_seconds"] == threshold


def test_no_stuck_alert_for_normal_runs_or_a_run_whose_finish_arrived_before_its_start():
    t0 = MONDAY + timedelta(hours=8)
    runs = normal_runs("acme", "wf-a", t0, 100, 30)
    evs = hand_stream("acme", "wf-a", runs)
    s, f = t0 + timedelta(minutes=3), t0 + timedelta(minutes=4)
    backwards = [run_ev("acme", "wf-a", "rev", "run.finished", f, started=s),
                 run_ev("acme", "wf-a", "rev", "run.started", s),
                 run_ev("acme", "wf-a", "rev", "run.queued", s - timedelta(seconds=1))]
    det = Detectors(**CLASSIC)
    alerts, d, _ = run_events(backwards + evs, lateness=5 * MIN, detectors=det,
                              until=t0 + timedelta(hours=3))
    assert alerts == []
    sizes = det.stuck_run.state_sizes()
    assert sizes["runs"] == 0 and sizes["firing"] == 0
    # a start arriving after its run was closed (finish already passed) is ignored, not a phantom
    det.stuck_run.run_started("acme", "wf-a", "wf-a", "rev", s)
    assert det.stuck_run.stats["ignored_start_after_finish"] == 1
    assert det.advance(t0 + timedelta(hours=5)) == [] and det.stuck_run.state_sizes()["runs"] == 0


def test_a_long_run_gives_the_same_stuck_alerts_whatever_order_its_events_arrive_in():
    """A run is judged as running between its start and its finish (event time), so a 20-minute
    run of a ~30 s workflow is reported stuck and resolved even when its finish event arrives
    before its start; a run of normal length never is."""
    t0 = MONDAY + timedelta(hours=8)
    runs = normal_runs("acme", "wf-a", t0, 240, 30)  # 80 minutes of runs
    s, f = t0 + timedelta(minutes=40), t0 + timedelta(minutes=60)
    in_order = hand_stream("acme", "wf-a", runs + [("long", s, s, f, "success")])
    finish_first = [e for e in in_order if e["run_id"] != "long"]
    at = next(i for i, e in enumerate(finish_first) if ts(e) > s + timedelta(minutes=1))
    long_events = [e for e in in_order if e["run_id"] == "long"]
    finish_first[at:at] = long_events[::-1]  # finish, start, queued: the finish arrives 20 min early
    a, _, late = run_events(in_order, lateness=30 * MIN, until=t0 + timedelta(hours=2),
                            detectors=Detectors(**CLASSIC))
    b, _, late_b = run_events(finish_first, lateness=30 * MIN, until=t0 + timedelta(hours=2),
                              detectors=Detectors(**CLASSIC))
    assert late == late_b == 0
    assert [(x.state, x.subject) for x in a] == [("firing", "long"), ("resolved", "long")]
    assert a == b and a[1].resolved_at == f


def test_a_workflow_without_history_uses_the_cold_start_limit():
    t0 = MONDAY
    det = StuckRunDetector()
    det.run_started("acme", "wf-new", "New", "r1", t0)
    assert det.advance(t0 + timedelta(minutes=59)) == []  # floor alone would have fired at 5 min
    (a,) = det.advance(t0 + timedelta(minutes=61))
    assert a.numbers["threshold_seconds"] == 3600 and "cold-start" in a.summary
    off = StuckRunDetector(cold_floor_seconds=None)
    off.run_started("acme", "wf-new", "New", "r1", t0)
    assert off.advance(t0 + timedelta(days=1)) == []


def test_stuck_run_in_generated_traffic_only_the_hung_run_alerts():
    start = MONDAY + timedelta(hours=12)
    config = WorkloadConfig(seed=8, backfill_runs_per_hour=1000)
    events = [e for e in generate(config, start, start + timedelta(hours=5)) if e["type"].startswith("run.")]
    started = [e for e in events if e["type"] == "run.started" and e["account_id"] == "acme"
               and e["workflow_id"] == "wf-lead-sync-hubspot" and e["ts"] > (start + timedelta(hours=2)).isoformat()]
    hung = started[0]["run_id"]
    kept = [e for e in events if not (e["run_id"] == hung and e["type"] == "run.finished")]
    # stop judging well before the end: runs still in flight when the window closes are not stuck
    alerts, d, _ = run_events(e for e in kept if ts(e) < start + timedelta(hours=4))
    stuck = of(alerts, "stuck_run", "firing")
    assert [a.subject for a in stuck] == [hung]
    normal = sum(1 for e in kept if e["type"] == "run.finished" and ts(e) < start + timedelta(hours=4))
    assert normal > 3000  # none of them alerted


# --------------------------------------------------------------------------- memory bounds


def test_failure_spike_state_is_bounded_by_its_caps_and_forgets_idle_workflows():
    det = FailureSpikeDetector(max_keys=500)
    t0 = MONDAY
    for i in range(5000):  # 5000 distinct workflows, a run each, over ~3.5 days
        at = t0 + timedelta(minutes=i)
        det.observe(f"acct{i % 7}", f"wf{i}", f"WF {i}", at, i % 3 == 0)
        if i % 10 == 0:
            det.advance(at)
        assert det.state_sizes()["keys"] <= 500
    det.advance(t0 + timedelta(minutes=5000))
    sizes = det.state_sizes()
    window = det.window_minutes + det.baseline_minutes
    assert sizes["keys"] <= window + 20, sizes  # only workflows seen within the baseline horizon remain
    assert sizes["buckets"] <= window + 20 and sizes["active_minutes"] <= det.window_minutes + 1
    assert det.stats["evicted_keys"] == 0  # idle ones were forgotten before the cap was needed
    det.observe("a", "wf-old", "Old", t0, True)  # too late to matter: dropped
    assert det.stats["dropped_too_late"] == 1
    small = FailureSpikeDetector(max_keys=50)
    for i in range(1000):
        small.observe("a", f"wf{i}", "x", t0 + timedelta(seconds=i), False)
    assert small.state_sizes()["keys"] == 50 and small.stats["evicted_keys"] == 950


def test_stuck_run_state_is_bounded_by_its_caps():
    det = StuckRunDetector(max_open_runs=1000, max_workflows=50, sample_size=100, min_samples=20)
    t0 = MONDAY
    for i in range(20_000):
        at = t0 + timedelta(seconds=i)
        wf = f"wf{i % 300}"
        det.run_started("a", wf, wf, f"r{i}", at)
        if i % 4:  # three in four finish, the rest stay open forever
            det.run_finished("a", wf, f"r{i}", at, at + timedelta(seconds=5))
        if i % 100 == 0:
            det.advance(at)
            sizes = det.state_sizes()
            assert sizes["runs"] <= 1000 and sizes["closed_runs"] <= 1000 and sizes["workflows"] <= 50
            assert sizes["due_heap"] <= 2 * 1000 + 1024 + 100
            assert sizes["samples"] <= 50 * 100
    assert det.stats["evicted_open_runs"] > 0 and det.stats["evicted_workflows"] > 0


def test_queue_state_is_bounded_and_idle_accounts_are_forgotten():
    det = QueueGrowthDetector(max_accounts=100, idle_minutes=30)
    t0 = MONDAY
    for i in range(2000):
        at = t0 + timedelta(seconds=30 * i)
        acct = f"acct{i}"
        det.lifecycle(acct, at, 1, 0)
        det.lifecycle(acct, at + timedelta(seconds=1), -1, 1)
        det.lifecycle(acct, at + timedelta(seconds=2), 0, -1)
        det.advance(at)
        assert det.state_sizes()["accounts"] <= 100
    det.advance(t0 + timedelta(seconds=30 * 2000) + timedelta(hours=1))
    assert det.state_sizes() == {"accounts": 0, "buckets": 0, "firing": 0}


def test_detectors_facade_is_bounded_on_generated_traffic(normal_two_days):
    _, d, _, _, _ = normal_two_days
    sizes = d.state_sizes()
    assert sizes["failure_spike"]["keys"] <= 30 and sizes["failure_spike"]["buckets"] <= 30 * 140
    assert sizes["stuck_run"]["runs"] < 200 and sizes["stuck_run"]["samples"] <= 30 * 500
    assert sizes["queue_growth"]["accounts"] <= 3


# --------------------------------------------------------------------------- docs


def test_describe_states_every_rule_with_its_default_thresholds():
    text = describe()
    for needle in ("Failure spike (each workflow)", "each account", "last 5 min", "2h", ">= 10 finished runs",
                   ">= 5 failures", "3x the baseline", "1 in 10,000", "5 consecutive minutes", "Stuck run",
                   "5 min", "5 x the p99", "500 finished runs", "20 finished", "1 h", "Queue growing",
                   "last 5 minutes", ">= 50", "3 consecutive minutes", "watermark"):
        assert needle in text, needle
    import streams.detectors as mod
    assert "1 in 10,000" in mod.__doc__ and "max(5 minutes, 5 x the 99th percentile" in mod.__doc__


# --------------------------------------------------------------------------- one clock per account


TOLERANCE = timedelta(minutes=1)
IDLE = timedelta(days=365)   # these streams never go quiet: each account's watermark follows its events


def run_per_account(events, lateness: timedelta = 2 * MIN, *, wall=None, detectors: Detectors | None = None,
                    advance_every: int = 1):
    """Feed contract events the way the worker does now: dedupe by (account, event_id), one
    watermark per account (``AccountWatermarks``, one input partition), each account advanced by its own.
    ``wall(i, ev)`` is the worker's wall clock when it sees event i (default: the newest event
    time of the stream so far, i.e. a live stream read as it happens). Returns (alerts, detectors,
    clocks)."""
    d = detectors or Detectors()
    clocks = AccountWatermarks(lateness, TOLERANCE, IDLE)
    alerts: list[Alert] = []
    seen: set[tuple[str, str]] = set()
    newest = None
    for i, ev in enumerate(events):
        if not ev["type"].startswith("run.") or (ev["account_id"], ev["event_id"]) in seen:
            continue
        seen.add((ev["account_id"], ev["event_id"]))
        t = ts(ev)
        if ev["account_id"] != "mallory":
            newest = t if newest is None or t > newest else newest
        now = wall(i, ev) if wall is not None else (newest or t)
        clocks.observe(ev["account_id"], 0, t, now)
        d.observe_event(ev)
        if i % advance_every == 0:
            alerts += d.advance(clocks.moved(now))
    alerts += d.advance(clocks.moved(now))
    return alerts, d, clocks


def mallory_events(at: datetime, runs: int = 3, prefix: str = "m"):
    """A sender of account "mallory" whose clock says ``at``: runs queued, started, one finished."""
    evs = []
    for i in range(runs):
        evs += [run_ev("mallory", "wf-m", f"{prefix}{i}", "run.queued", at + timedelta(seconds=i)),
                run_ev("mallory", "wf-m", f"{prefix}{i}", "run.started", at + timedelta(seconds=i + 1))]
    evs.append(run_ev("mallory", "wf-m", f"{prefix}0", "run.finished", at + timedelta(seconds=5), status="failed",
                      started=at + timedelta(seconds=1)))
    return evs


def test_a_future_dated_account_cannot_suppress_or_fabricate_another_accounts_alerts(live_with_faults):
    """The attack: before a real failure spike in acme, account mallory sends events dated two
    days ahead (and one in year 9999). With one clock per worker the spike is never raised and
    acme's runs in flight look stuck; with one clock per account acme's alerts are exactly those
    of the same stream without mallory."""
    spike, _, events = live_with_faults
    start = ts(events[0])
    attack = mallory_events(start + timedelta(days=2)) + mallory_events(datetime(9999, 1, 1, tzinfo=UTC), 1, "n")
    honest, _, _ = run_per_account(events)
    # the wall clock of a live stream: mallory's events arrive at `start`; the others as they happen
    attacked, d, clocks = run_per_account(
        attack + events, wall=lambda i, ev: start if ev["account_id"] == "mallory" else ts(ev))
    mine = [a for a in attacked if a.account_id != "mallory"]
    assert mine == honest
    spikes = [a for a in mine if a.kind == "failure_spike" and a.account_id == "acme" and a.state == "firing"]
    assert spikes and all(spike.at < a.started_at <= spike.at + timedelta(minutes=7) for a in spikes)
    assert not [a for a in mine if a.kind == "stuck_run" and a.account_id == "acme"]
    assert clocks.watermark("mallory") <= start + TOLERANCE
    # premise: the same stream judged by one clock for everyone (the worker before) loses the spike
    single, _, _ = run_events(attack + events)
    assert not [a for a in single if a.kind == "failure_spike" and a.account_id == "acme"]


def test_each_accounts_alerts_depend_only_on_its_own_events(live_with_faults):
    """Advanced by per-account clocks, the mixed stream gives every account exactly the alerts its
    own events give when judged alone, however the accounts' traffic interleaves."""
    _, _, events = live_with_faults
    mixed, _, _ = run_per_account(events, advance_every=7)
    assert {a.account_id for a in mixed} >= {"acme", "globex"}
    for account in sorted({e["account_id"] for e in events}):
        alone, _, _ = run_events([e for e in events if e["account_id"] == account])
        assert [a for a in mixed if a.account_id == account] == alone, account


def test_advancing_to_year_9999_costs_only_the_minutes_that_hold_data():
    """A watermark that jumps by years evaluates the minutes that hold data or due work, not
    every minute in between: the counters of evaluated minutes stay the same whether the jump
    is a day or 8,000 years."""
    t0 = MONDAY + timedelta(hours=8)
    runs = normal_runs("acme", "wf-a", t0, 100, 30)
    hung = t0 + timedelta(minutes=20)
    evs = hand_stream("acme", "wf-a", runs + [("hung", hung, hung, None, None), ("q", hung, None, None, None)])

    def cost(target):
        d = Detectors()
        for ev in evs:
            d.observe_event(ev)
        d.advance(t0 + timedelta(hours=1))
        before = (d.failure_spike.stats["evaluated_minutes"], d.account_failure_spike.stats["evaluated_minutes"],
                  d.stuck_run.stats["ticks"], d.queue_growth.stats["sampled_minutes"])
        out = d.advance(target)
        after = (d.failure_spike.stats["evaluated_minutes"], d.account_failure_spike.stats["evaluated_minutes"],
                 d.stuck_run.stats["ticks"], d.queue_growth.stats["sampled_minutes"])
        return [b - a for a, b in zip(before, after, strict=True)], out, d

    day, day_alerts, _ = cost(t0 + timedelta(days=1))
    far, far_alerts, d = cost(datetime(9999, 12, 31, 23, 0, tzinfo=UTC))
    assert far == day and max(far) <= 10, far
    assert day_alerts == far_alerts == []   # "hung" fired within the first hour; nothing new
    # per-account mode: the same for one account's own far-future clock
    single = Detectors()
    for ev in evs:
        single.observe_event(ev)
    single.advance({"acme": datetime(9999, 12, 31, tzinfo=UTC)})
    assert single.stuck_run.stats["ticks"] < 100 and single.queue_growth.stats["sampled_minutes"] < 100
    assert single.failure_spike.stats["evaluated_minutes"] < 200


def test_a_run_not_judged_for_lack_of_history_waits_for_it_without_costing_ticks():
    t0 = MONDAY
    det = StuckRunDetector(cold_floor_seconds=None, min_samples=5)
    det.run_started("acme", "wf-new", "New", "waiting", t0)
    assert det.advance(datetime(9999, 1, 1, tzinfo=UTC)) == [] and det.stats["ticks"] <= 2
    # five runs of the workflow finish later (event time): from then on "waiting" is judged
    late = StuckRunDetector(cold_floor_seconds=None, min_samples=5)
    late.run_started("acme", "wf-new", "New", "waiting", t0)
    late.advance(t0 + timedelta(hours=2))
    for i in range(5):
        at = t0 + timedelta(hours=2, minutes=i)
        late.run_started("acme", "wf-new", "New", f"ok{i}", at)
        late.run_finished("acme", "wf-new", f"ok{i}", at, at + timedelta(seconds=30))
    (alert,) = late.advance(t0 + timedelta(hours=3))
    assert alert.subject == "waiting" and alert.numbers["threshold_seconds"] == 300
    assert alert.started_at == t0 + timedelta(minutes=5)             # stuck since start + threshold,
    assert alert.numbers["running_seconds"] == 2 * 3600 + 5 * 60      # reported once the history arrived
