"""The synthetic workload generator: deterministic, valid per the contract, time-ordered, and
containing what the demo needs (every type, trigger, step type, error class, retries, replays,
late resumes, seasonality, queueing); injected spikes and backlogs show up; delivery faults
from ``perturb`` come at about the requested rates and only bad lines are rejected."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from producers.workload import Backlog, Silence, Spike, WorkloadConfig, catalog, check_workload, generate, perturb
from schemas import Rejection, parse_event

MONDAY = datetime(2026, 11, 16, 13, 0, tzinfo=UTC)  # a Monday afternoon in Europe, morning in the US
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

CONTEXT = ("account_id", "run_id", "workflow_id", "workflow_name", "workflow_version", "workflow_version_name",
           "workflow_type", "trigger", "site_id", "site_name", "card_id", "card_name", "contact_id", "replay_of",
           "replay_mode")
COMMON = {"event_id", "schema_version", "type", "ts", *CONTEXT}
STEP = {"step_id", "step_index", "step_name", "step_type", "attempt"}
ALLOWED = {
    "run.queued": COMMON,
    "run.started": COMMON,
    "run.finished": COMMON | {"status", "started_at", "error"},
    "step.started": COMMON | STEP,
    "step.finished": COMMON | STEP | {"status", "started_at", "input", "output", "error", "condition_result",
                                      "branch", "action_kind", "target", "scheduled_resume_at", "resumed_at"},
}


def ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def runs_of(events: list[dict]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for ev in events:
        runs[ev["run_id"]].append(ev)
    return runs


SAMPLE_CONFIG = WorkloadConfig(seed=11, backfill_runs_per_hour=1800, replay_probability=0.5)
SAMPLE_START, SAMPLE_END = MONDAY, MONDAY + timedelta(hours=2)


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    """About 3,600 runs over two busy hours."""
    return list(generate(SAMPLE_CONFIG, SAMPLE_START, SAMPLE_END))


@pytest.fixture(scope="module")
def week() -> list[dict]:
    """A week at the default rate, run.queued and run.started only (enough for seasonality)."""
    start = datetime(2026, 11, 9, tzinfo=UTC)
    return [ev for ev in generate(WorkloadConfig(), start, start + timedelta(days=7))
            if ev["type"] in ("run.queued", "run.started")]


# --------------------------------------------------------------------------- determinism


def digest(events) -> str:
    h = hashlib.sha256()
    for ev in events:
        h.update(orjson.dumps(ev))
        h.update(b"\n")
    return h.hexdigest()


def test_same_config_gives_identical_bytes_and_another_seed_differs(sample):
    assert digest(generate(SAMPLE_CONFIG, SAMPLE_START, SAMPLE_END)) == digest(sample)
    other = WorkloadConfig(seed=12, backfill_runs_per_hour=1800, replay_probability=0.5)
    assert digest(generate(other, SAMPLE_START, SAMPLE_END)) != digest(sample)
    first_ids = {ev["event_id"] for ev, _ in zip(generate(other, SAMPLE_START, SAMPLE_END), range(2000), strict=False)}
    assert not first_ids & {ev["event_id"] for ev in sample}, "ids do not collide across seeds"


def test_a_shorter_window_is_a_prefix_of_a_longer_one(sample):
    shorter = list(generate(SAMPLE_CONFIG, SAMPLE_START, SAMPLE_START + timedelta(hours=1)))
    cut = SAMPLE_START + timedelta(hours=1)
    assert shorter == [ev for ev in sample if ms(ev["ts"]) < cut.timestamp() * 1000]


# --------------------------------------------------------------------------- contract


def test_every_event_validates_and_has_only_contract_fields(sample):
    assert len({ev["run_id"] for ev in sample}) > 3000
    for ev in sample:
        parsed = parse_event(orjson.dumps(ev))
        assert not isinstance(parsed, Rejection), (str(parsed), ev)
        assert set(ev) <= ALLOWED[ev["type"]], set(ev) - ALLOWED[ev["type"]]
        assert COMMON <= set(ev)
        assert ev["schema_version"] == 1
        for key in ("ts", "started_at", "scheduled_resume_at", "resumed_at"):
            if ev.get(key) is not None:
                assert TS.match(ev[key]), ev[key]
    assert len({ev["event_id"] for ev in sample}) == len(sample)


def test_events_are_time_ordered_and_inside_the_window(sample):
    times = [ms(ev["ts"]) for ev in sample]
    assert times == sorted(times)
    assert SAMPLE_START.timestamp() * 1000 <= times[0] and times[-1] < SAMPLE_END.timestamp() * 1000
    open_runs = {ev["run_id"] for ev in sample if ev["type"] == "run.queued"} - \
                {ev["run_id"] for ev in sample if ev["type"] == "run.finished"}
    assert open_runs, "runs in flight at `end` stay open"


def test_runs_are_consistent(sample):
    failed = {}
    for run_id, events in runs_of(sample).items():
        kinds = Counter(ev["type"] for ev in events)
        assert kinds["run.queued"] == 1 and events[0]["type"] == "run.queued"
        assert kinds["run.started"] <= 1 and kinds["run.finished"] <= 1
        first = events[0]
        for ev in events:
            assert all(ev[k] == first[k] for k in CONTEXT), "every event carries the same run context"
        if kinds["run.started"]:
            started = next(ev for ev in events if ev["type"] == "run.started")
            assert ms(started["ts"]) >= ms(first["ts"])
        steps = defaultdict(list)
        for ev in events:
            if ev["type"].startswith("step."):
                steps[(ev["step_id"], ev["attempt"])].append(ev)
                assert ev["step_id"] == f"st{ev['step_index'] + 1}"
        for (step_id, attempt), pair in steps.items():
            assert [ev["type"] for ev in pair] in (["step.started", "step.finished"], ["step.started"])
            if attempt > 1:
                prior = steps[(step_id, attempt - 1)]
                assert prior[-1]["status"] == "failed" and prior[-1]["error"]["class"] == "external_service"
            if len(pair) == 2:
                assert pair[1]["started_at"] == pair[0]["ts"]
        done = [ev for ev in events if ev["type"] == "run.finished"]
        if done:
            fin = done[0]
            assert fin["started_at"] == started["ts"]
            assert events[-1] is fin
            step_fins = [ev for ev in events if ev["type"] == "step.finished"]
            if fin["status"] == "failed":
                assert fin["error"] == step_fins[-1]["error"] and step_fins[-1]["status"] == "failed"
                failed[run_id] = fin
            elif fin["status"] == "success":
                assert all(ev["status"] != "failed" for ev in step_fins[-1:])
    replays = [ev for ev in sample if ev["type"] == "run.queued" and ev["replay_of"]]
    assert replays
    for ev in replays:
        original = failed[ev["replay_of"]]  # the original run is in the sample and failed
        assert ms(ev["ts"]) > ms(original["ts"])
        assert ev["workflow_id"] == original["workflow_id"] and ev["account_id"] == original["account_id"]
        if ev["replay_mode"] == "exact":
            assert ev["workflow_version"] == original["workflow_version"]
            assert ev["contact_id"] == original["contact_id"]
        else:
            assert ev["workflow_version"] >= original["workflow_version"]


# --------------------------------------------------------------------------- what the workload contains


def test_the_workload_covers_every_kind(sample):
    queued = [ev for ev in sample if ev["type"] == "run.queued"]
    fins = [ev for ev in sample if ev["type"] == "step.finished"]
    run_fins = [ev for ev in sample if ev["type"] == "run.finished"]
    assert {ev["workflow_type"] for ev in queued} == {"card", "site", "contact", "survey", "integration"}
    assert {ev["trigger"] for ev in queued} == {"manual", "automatic", "api", "scheduled"}
    assert {ev["step_type"] for ev in fins} == {"trigger", "action", "condition", "delay"}
    assert {ev["replay_mode"] for ev in queued} == {None, "exact", "modified"}
    assert {ev["status"] for ev in run_fins} == {"success", "failed", "stopped"}
    assert {ev["status"] for ev in fins} == {"success", "failed", "skipped"}
    classes = Counter(ev["error"]["class"] for ev in run_fins if ev["status"] == "failed")
    assert {"config", "data", "external_service", "logic"} <= set(classes)
    assert {"email", "tag", "webhook", "crm_sync"} <= {ev.get("action_kind") for ev in fins}
    assert max(ev["attempt"] for ev in fins) == 3
    conditions = [ev for ev in fins if ev["step_type"] == "condition" and ev["status"] == "success"]
    assert {ev["condition_result"] for ev in conditions} == {True, False}
    assert all(ev["branch"] for ev in conditions)
    delays = [ev for ev in fins if ev["step_type"] == "delay" and ev.get("resumed_at")]
    lateness = [ms(ev["resumed_at"]) - ms(ev["scheduled_resume_at"]) for ev in delays]
    assert min(lateness) >= 0 and sum(late > 2000 for late in lateness) >= 0.02 * len(delays)
    assert len({ev["account_id"] for ev in queued}) == 3
    assert all(ev["contact_id"] for ev in queued if ev["workflow_type"] == "contact")
    assert any(ev["card_name"] for ev in queued) and any(ev["site_name"] for ev in queued)
    assert {ev["workflow_version_name"] is None for ev in queued} == {True, False}


def test_errors_have_variable_messages_stack_traces_and_fixes(sample):
    errors = [ev["error"] for ev in sample if ev["type"] == "step.finished" and ev["status"] == "failed"]
    assert errors
    for err in errors:
        assert err["code"].isupper() and err["message"] and err["suggested_fix"]
        assert err["stack_trace"].startswith("Traceback") and err["stack_trace"].count("\n") >= 4
        assert err["stack_trace"].endswith(err["message"])
    by_code = defaultdict(set)
    for err in errors:
        by_code[err["code"]].add(err["message"])
    assert len(by_code) >= 10
    assert any(len(messages) >= 5 for messages in by_code.values()), "messages carry ids, emails, URLs, numbers"


def test_durations_are_heavy_tailed_and_one_crm_step_is_consistently_slow(sample):
    durations = defaultdict(list)
    for ev in sample:
        if ev["type"] == "step.finished" and ev["status"] == "success":
            durations[ev["step_name"]].append(ms(ev["ts"]) - ms(ev["started_at"]))
    emails = sorted(durations["Send welcome email"])
    assert emails[int(len(emails) * 0.99)] > 4 * emails[len(emails) // 2]
    slow = sorted(durations["Upsert lead in Salesforce"])
    assert slow[len(slow) // 10] > 5000, "the Salesforce upsert is slow even at its 10th percentile"


def test_seasonality_and_queueing(week):
    acme = [ev for ev in week if ev["account_id"] == "acme"]
    queued_at = {ev["run_id"]: ms(ev["ts"]) for ev in acme if ev["type"] == "run.queued"}
    local = {rid: datetime.fromtimestamp(t / 1000, UTC) - timedelta(hours=5) for rid, t in queued_at.items()}
    busy = [rid for rid, t in local.items() if t.weekday() < 5 and 10 <= t.hour < 16]
    night = [rid for rid, t in local.items() if t.weekday() < 5 and 0 <= t.hour < 6]
    weekend = [rid for rid, t in local.items() if t.weekday() >= 5]
    assert len(busy) / (5 * 6) > 4 * len(night) / (5 * 6), "business hours are busier than nights"
    assert len(weekend) / 2 < 0.6 * (len(queued_at) - len(weekend)) / 5, "weekends are quieter"
    wait = {ev["run_id"]: ms(ev["ts"]) - queued_at[ev["run_id"]] for ev in acme if ev["type"] == "run.started"}
    mean = lambda ids: sum(wait[i] for i in ids if i in wait) / len(ids)  # noqa: E731
    assert mean(busy) > 10 * mean(night), "queue wait grows at peaks (per-account concurrency limit)"


def test_versions_change_over_time():
    start = datetime(2026, 11, 9, tzinfo=UTC)
    versions = defaultdict(list)
    for ev in generate(WorkloadConfig(replay_probability=0.0), start, start + timedelta(days=10)):
        if ev["type"] == "run.queued" and ev["account_id"] == "acme":
            versions[ev["workflow_id"]].append((ev["ts"], ev["workflow_version"], ev["workflow_version_name"]))
    assert all(len({v for _, v, _ in seq}) >= 2 for seq in versions.values())
    for seq in versions.values():
        assert [v for _, v, _ in seq] == sorted(v for _, v, _ in seq)
        for _, v, name in seq:
            assert name is None or name.startswith(f"v{v} - ")


def test_catalog_matches_what_is_generated(sample):
    cat = catalog(SAMPLE_CONFIG)
    by_account = defaultdict(list)
    for wf in cat:
        by_account[wf["account_id"]].append(wf)
    assert list(by_account) == ["acme", "globex", "initech"]
    for workflows in by_account.values():
        assert 5 <= len(workflows) <= 8
        assert {wf["type"] for wf in workflows} == {"card", "site", "contact", "survey", "integration"}
        assert len({wf["workflow_id"] for wf in workflows}) == len(workflows)
        assert any(wf["schedule"] for wf in workflows)
        for wf in workflows:
            assert wf["steps"][0]["type"] == "trigger"
    known = {(wf["account_id"], wf["workflow_id"], wf["name"], wf["type"]) for wf in cat}
    seen = {(ev["account_id"], ev["workflow_id"], ev["workflow_name"], ev["workflow_type"]) for ev in sample}
    assert seen <= known
    assert len(catalog(WorkloadConfig(accounts=5))) > len(cat)


# --------------------------------------------------------------------------- injected faults


def test_a_spike_raises_the_failure_rate_of_its_workflow_inside_the_window():
    at = MONDAY + timedelta(minutes=45)
    spike = Spike(workflow="wf-welcome", at=at, rate=0.7, minutes=40)
    config = WorkloadConfig(seed=3, backfill_runs_per_hour=4000, spikes=(spike,))
    events = list(generate(config, MONDAY, MONDAY + timedelta(minutes=105)))
    inside, outside = Counter(), Counter()
    started = {}
    for ev in events:
        if ev["type"] == "run.started":
            started[ev["run_id"]] = ms(ev["ts"])
        elif ev["type"] == "run.finished" and ev["workflow_id"] == "wf-welcome" and not ev["replay_of"]:
            s0 = at.timestamp() * 1000
            bucket = inside if s0 <= started[ev["run_id"]] < s0 + 40 * 60_000 else outside
            bucket[ev["status"]] += 1
    rate = lambda c: c["failed"] / sum(c.values())  # noqa: E731
    assert sum(inside.values()) > 200 and sum(outside.values()) > 200
    assert 0.6 < rate(inside) < 0.8
    assert rate(outside) < 0.1
    codes = {ev["error"]["code"] for ev in events if ev["type"] == "run.finished" and ev["status"] == "failed"
             and ev["workflow_id"] == "wf-welcome"
             and at.timestamp() * 1000 <= started[ev["run_id"]] < at.timestamp() * 1000 + 2_400_000}
    assert "EMAIL_SERVICE_UNAVAILABLE" in codes


def test_a_spike_naming_no_workflow_is_an_error():
    with pytest.raises(ValueError, match="no-such-workflow"):
        generate(WorkloadConfig(spikes=(Spike("no-such-workflow", MONDAY, 0.5),)), MONDAY, MONDAY + timedelta(hours=1))


def _queue_waits(events, account):
    queued, waits = {}, {}
    for ev in events:
        if ev["account_id"] != account:
            continue
        if ev["type"] == "run.queued":
            queued[ev["run_id"]] = ms(ev["ts"])
        elif ev["type"] == "run.started":
            waits[ev["run_id"]] = (queued[ev["run_id"]], ms(ev["ts"]) - queued[ev["run_id"]])
    return waits


def test_a_backlog_raises_queue_wait_of_its_account_only():
    now = MONDAY
    backlog = Backlog.parse("at=+10m,minutes=6,account=acme,capacity=0.2", now)
    base = WorkloadConfig(seed=5, live_runs_per_second=3)
    window = (now, now + timedelta(minutes=25), now)
    without = list(generate(base, *window))
    with_backlog = list(generate(WorkloadConfig(seed=5, live_runs_per_second=3, backlogs=(backlog,)), *window))
    lo = backlog.at.timestamp() * 1000
    hi = lo + 6 * 60_000

    def mean_wait(events):
        waits = [w for q, w in _queue_waits(events, "acme").values() if lo <= q < hi]
        return sum(waits) / len(waits)

    assert mean_wait(without) < 2_000
    assert mean_wait(with_backlog) > 30_000
    assert [ev for ev in with_backlog if ev["account_id"] == "globex"] == \
           [ev for ev in without if ev["account_id"] == "globex"], "other accounts are untouched"


def test_a_silenced_workflow_starts_no_run_in_its_window_and_the_others_go_on():
    now = MONDAY
    window = (now - timedelta(hours=6), now + timedelta(minutes=20), now)
    silence = Silence.parse("workflow=acme/wf-welcome,at=-2h", now)
    assert (silence.at, silence.minutes) == (now - timedelta(hours=2), None)
    base = dict(seed=5, backfill_runs_per_hour=2_000, live_runs_per_second=2)

    def last_queued(events) -> dict[tuple[str, str], int]:
        last: dict[tuple[str, str], int] = {}
        for ev in events:
            if ev["type"] == "run.queued":
                key = (ev["account_id"], ev["workflow_id"])
                last[key] = max(last.get(key, 0), ms(ev["ts"]))
        return last

    without = last_queued(generate(WorkloadConfig(**base), *window))
    silenced = last_queued(generate(WorkloadConfig(**base, silences=(silence,)), *window))
    quiet_from = int(silence.at.timestamp() * 1000)
    assert without[("acme", "wf-welcome")] >= quiet_from, "the workflow ran in the window without the silence"
    assert silenced[("acme", "wf-welcome")] < quiet_from
    late = {key for key, t in silenced.items() if t >= quiet_from}
    assert late == {key for key, t in without.items() if t >= quiet_from} - {("acme", "wf-welcome")}


def test_a_silence_with_minutes_ends_and_bad_silences_are_refused():
    now = MONDAY
    silence = Silence.parse("workflow=Welcome email,at=-3h,minutes=60", now)
    assert (silence.at, silence.minutes) == (now - timedelta(hours=3), 60.0)
    events = generate(WorkloadConfig(seed=3, backfill_runs_per_hour=4_000, silences=(silence,)),
                      now - timedelta(hours=4), now, now)
    lo, hi = int(silence.at.timestamp() * 1000), int(silence.at.timestamp() * 1000) + 3_600_000
    welcome = [ms(ev["ts"]) for ev in events if ev["type"] == "run.queued" and ev["workflow_id"] == "wf-welcome"]
    assert not [t for t in welcome if lo <= t < hi] and [t for t in welcome if t >= hi], "quiet, then back"
    for text, names in [("at=-5m", "workflow"), ("workflow=x", "at"), ("workflow=x,at=-5m,minutes=0", "minutes"),
                        ("workflow=x,at=-5m,rate=1", "rate")]:
        with pytest.raises(ValueError, match=names):
            Silence.parse(text, now)
    with pytest.raises(ValueError, match="silence: workflow 'nope' matches no workflow"):
        check_workload(WorkloadConfig(silences=(Silence("nope", now),)))


def test_live_rate_is_the_configured_average():
    start = MONDAY
    config = WorkloadConfig(seed=2, backfill_runs_per_hour=0, live_runs_per_second=8)
    queued = sum(ev["type"] == "run.queued" for ev in generate(config, start, start + timedelta(minutes=10), start))
    assert 0.85 * 8 * 600 < queued < 1.2 * 8 * 600


# --------------------------------------------------------------------------- Spike / Backlog parsing


def test_spike_and_backlog_parse_good_text():
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    s = Spike.parse("workflow=wf-welcome,at=2026-11-20T10:00:00Z,rate=0.6,minutes=10", now)
    assert s == Spike("wf-welcome", datetime(2026, 11, 20, 10, tzinfo=UTC), 0.6, 10.0)
    assert Spike.parse("workflow=Welcome email, at=+5m, rate=1", now).at == now + timedelta(minutes=5)
    assert Spike.parse("workflow=x,at=-2h,rate=0", now).at == now - timedelta(hours=2)
    assert Spike.parse("workflow=x,at=+30s,rate=0.5", now).minutes == 15.0
    assert (Spike.parse("workflow=x,at=2026-11-20T12:00:00+02:00,rate=0.5", now).at
            == datetime(2026, 11, 20, 10, tzinfo=UTC))
    b = Backlog.parse("at=+10m,minutes=5", now)
    assert b == Backlog(None, now + timedelta(minutes=10), 5.0, 0.2)
    b = Backlog.parse("at=+10m,minutes=5,account=acme,capacity=0.5", now)
    assert (b.account, b.capacity_factor) == ("acme", 0.5)


@pytest.mark.parametrize("text, names", [
    ("at=+5m,rate=0.5", "workflow"),
    ("workflow=x,at=+5m", "rate"),
    ("workflow=x,at=+5m,rate=1.5", "rate"),
    ("workflow=x,at=+5m,rate=lots", "rate"),
    ("workflow=x,at=yesterday,rate=0.5", "yesterday"),
    ("workflow=x,at=+5m,rate=0.5,minutes=-3", "minutes"),
    ("workflow=x,at=+5m,rate=0.5,colour=red", "colour"),
    ("workflow=x,at=+5m,rate=0.5,rate=0.6", "rate"),
    ("workflow=x,at=+5m,0.5", "0.5"),
])
def test_spike_parse_rejects_bad_text(text, names):
    with pytest.raises(ValueError) as info:
        Spike.parse(text, MONDAY)
    assert names in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, names", [
    ("minutes=5", "at"),
    ("at=+10m", "minutes"),
    ("at=+10m,minutes=5,capacity=2", "capacity"),
    ("at=soon,minutes=5", "soon"),
    ("at=+10m,minutes=zero", "minutes"),
    ("at=+10m,minutes=5,acount=acme", "acount"),
])
def test_backlog_parse_rejects_bad_text(text, names):
    with pytest.raises(ValueError) as info:
        Backlog.parse(text, MONDAY)
    assert names in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("make, message", [
    (lambda: Spike("wf-welcome", MONDAY, 1.5), "spike: bad rate=1.5"),
    (lambda: Spike("wf-welcome", MONDAY, 0.5, minutes=0), "spike: bad minutes=0"),
    (lambda: Spike("wf-welcome", MONDAY, 0.5, minutes=float("inf")), "spike: bad minutes=inf"),
    (lambda: Backlog(None, MONDAY, -1), "backlog: bad minutes=-1"),
    (lambda: Backlog("acme", MONDAY, 5, capacity_factor=-0.1), "backlog: bad capacity=-0.1"),
    (lambda: Backlog(None, MONDAY.replace(tzinfo=None), 5), "backlog: at"),
])
def test_spike_and_backlog_reject_bad_values_when_built_directly(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_a_backlog_for_an_unknown_account_is_an_error():
    with pytest.raises(ValueError, match="nobody"):
        generate(WorkloadConfig(backlogs=(Backlog("nobody", MONDAY, 5),)), MONDAY, MONDAY + timedelta(hours=1))


# --------------------------------------------------------------------------- perturb


def test_perturb_injects_faults_at_about_the_requested_rates(sample):
    events = sample[:30000]
    originals = {orjson.dumps(ev) for ev in events}
    kwargs = dict(seed=9, duplicate_rate=0.03, reorder_rate=0.05, late_rate=0.02, late_by=timedelta(minutes=1),
                  bad_line_rate=0.02)
    lines = list(perturb(events, **kwargs))
    assert lines == list(perturb(events, **kwargs)), "deterministic"
    assert all(isinstance(line, bytes) and not line.endswith(b"\n") for line in lines)

    good = [line for line in lines if line in originals]
    bad = [line for line in lines if line not in originals]
    assert set(good) == originals, "every event is delivered"
    duplicates = len(good) - len(originals)
    assert 0.02 * len(events) < duplicates < 0.04 * len(events)
    assert 0.013 * len(events) < len(bad) < 0.027 * len(events)
    assert all(c <= 2 for c in Counter(good).values())

    reasons = Counter()
    for line in lines:
        result = parse_event(line)
        if line in originals:
            assert not isinstance(result, Rejection), str(result)
        else:
            assert isinstance(result, Rejection), line[:200]
            reason = result.reason
            reasons["json" if "not valid JSON" in reason else
                    "array" if "JSON object" in reason else
                    "missing" if "missing required field" in reason else
                    "version" if "version" in reason and "supported" in reason else
                    "time" if result.field in ("ts", "started_at") else
                    "enum"] += 1
    assert set(reasons) == {"json", "array", "missing", "version", "time", "enum"}, reasons


def test_perturb_reorders_and_delivers_late_within_late_by(sample):
    events = sample[:20000]
    late_by = timedelta(minutes=1)
    lines = list(perturb(events, seed=4, reorder_rate=0.05, late_rate=0.02, late_by=late_by))
    assert len(lines) == len(events) and sorted(lines) == sorted(orjson.dumps(ev) for ev in events)
    times = [ms(orjson.loads(line)["ts"]) for line in lines]
    assert times != sorted(times)
    newest, lags = 0, []
    for t in times:
        lags.append(newest - t)
        newest = max(newest, t)
    assert max(lags) < late_by.total_seconds() * 1000, "no event is later than late_by"
    assert sum(lag > 5000 for lag in lags) > 0.005 * len(events), "some events arrive seconds late"
    assert list(perturb(events[:100], seed=1)) == [orjson.dumps(ev) for ev in events[:100]], "no faults, no changes"
