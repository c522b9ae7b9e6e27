"""The run-level alerts on the real stack: a day of runs ending ten minutes ago in which one
steady workflow went silent, another got a new version that fails more (with an error code it
never had), and two runs of a third never finish. The stack (one worker, its watermark
following the wall clock once the input is quiet) must raise ``silent_workflow`` for the silent
workflow and for no workflow that kept running, ``version_regression`` and
``new_error_signature`` for the released one and ``run_deadline`` for the two hung runs, the
same as the pure detectors (``streams.detection``) fed the same events.

The day is generated at a fixed time of day and moved by whole hours to end shortly before the
test runs: the detectors judge by event time only, so their verdicts move with it, and the
workload is the same whenever the suite runs (generated for the actual time of day it was not:
a workflow run only in the daytime with less than a day of history was silent at some hours).

Two rules keep the stack and the oracle judging the same time:
- the workers are paused while the day is published, so a pause of the publisher longer than the
  idle timeout cannot count as quiet input mid-day (its watermark would follow the wall clock
  there, and the runs open at that moment would pass their deadline: a loaded CI run did so);
- the oracle, too, follows the wall clock once the input is quiet, to the horizon: the runs the
  day ends in the middle of never finish, and the stack raises their deadlines (they start after
  the last event but before the horizon)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from producers.workload import Spike, WorkloadConfig, generate
from schemas.validation import decode_event
from streams.detection import PartitionDetectors
from streams.signals import Packet, signal_of
from tests.helpers import run_cli, wait_caught_up, wait_for, workers_paused
from tests.reliability.conftest import reader_of, report

IDLE_SECONDS = 5.0
NEW_CODE = "QUOTA_EXCEEDED_V2"
REFERENCE_END = datetime(2026, 12, 2, 4, 26, tzinfo=UTC)   # where the day is generated (see above)
TIME_FIELDS = ("ts", "started_at", "scheduled_resume_at", "resumed_at")
Key = tuple[str, str, str, datetime]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _queued(ev: dict) -> datetime:
    return _time(ev["ts"])


def _moved(ev: dict[str, Any], by: timedelta) -> dict[str, Any]:
    """The event with every time in it ``by`` later (written as the generator writes times)."""
    return {**ev, **{f: (_time(ev[f]) + by).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                     for f in TIME_FIELDS if ev.get(f)}}


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    end = REFERENCE_END
    start, release, silent_from = end - timedelta(hours=26), end - timedelta(minutes=100), end - timedelta(minutes=75)
    released = "wf-welcome"
    config = WorkloadConfig(seed=31, accounts=2, backfill_runs_per_hour=600,
                            spikes=(Spike(workflow=f"acme/{released}", at=release, rate=0.8, minutes=30),))
    events = [e for e in generate(config, start, end) if _queued(e) < end + timedelta(minutes=9)]
    queued = {e["run_id"]: (e["account_id"], e["workflow_id"], _queued(e)) for e in events if e["type"] == "run.queued"}
    busiest = Counter(wf for a, wf, _ in queued.values() if a == "acme" and wf != released).most_common(2)
    silent, slow = busiest[0][0], busiest[1][0]
    gone = {r for r, (a, wf, t) in queued.items() if a == "acme" and wf == silent and t >= silent_from}
    hung = sorted(r for r, (a, wf, t) in queued.items()
                  if a == "acme" and wf == slow and end - timedelta(minutes=60) <= t < end - timedelta(minutes=50))[:2]
    out = []
    for e in events:
        rid = e["run_id"]
        if rid in gone or (rid in hung and e["type"] not in ("run.queued", "run.started")):
            continue
        account, wf, t = queued.get(rid, ("", "", start))
        if account == "acme" and wf == released and t >= release:
            e = {**e, "workflow_version": int(e["workflow_version"]) + 1}
            if e["type"] == "run.finished" and e.get("status") == "failed":
                e["error"] = {**e["error"], "code": NEW_CODE}
        out.append(e)
    # moved by whole hours (the detectors' hourly rates keep their boundaries) to end 15-75 min ago:
    # the stack's wall-clock watermark (now - idle - lateness) is past the horizon from the start
    by = timedelta(hours=(datetime.now(UTC) - timedelta(minutes=15) - end) // timedelta(hours=1))
    out = [_moved(e, by) for e in out]
    start, end, release, silent_from = start + by, end + by, release + by, silent_from + by
    path = tmp_path_factory.mktemp("runalerts") / "run-alerts.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in out) + b"\n")
    horizon = end + timedelta(minutes=10)
    lateness = timedelta(seconds=120)
    oracle = PartitionDetectors(lateness, idle=timedelta(seconds=IDLE_SECONDS))
    signals = [s for i, raw in enumerate(out)
               if (s := signal_of(decode_event(orjson.dumps(raw)), 0, i, 0)) is not None]
    raised = oracle.apply(Packet(signals, {0: False}), end)
    quiet = horizon + timedelta(seconds=IDLE_SECONDS) + lateness   # the input read to its end, quiet since
    raised += oracle.apply(Packet([], {0: False}), quiet)
    raised += oracle.advance(quiet, every_account=True)
    assert all(oracle.watermarks.watermark(a) >= horizon for a in ("acme", "globex"))
    expected = {(a.kind, a.account_id, a.subject, a.started_at) for a in raised
                if a.state == "firing" and a.started_at < horizon}
    resolved = {a.alert_id for a in raised if a.state == "resolved"}
    still_silent = {(a.account_id, a.subject) for a in raised
                    if a.kind == "silent_workflow" and a.state == "firing" and a.alert_id not in resolved
                    and a.started_at < horizon}
    return {"path": path, "end": end, "horizon": horizon, "silent": silent, "released": released,
            "hung": hung, "expected": expected, "release": release, "still_silent": still_silent,
            "silent_from": silent_from}


def test_the_workload_holds_what_it_claims(workload):
    expected, end = workload["expected"], workload["end"]
    # silent at the end: the workflow that stopped, none that kept running (the first day's quiet
    # hours, judged before a day of history gives the hour-of-day rate, fired and resolved)
    assert workload["still_silent"] == {("acme", workload["silent"])}, workload["still_silent"]
    assert any(k == "silent_workflow" and s == workload["silent"] and t > workload["silent_from"]
               for k, a, s, t in expected)
    # (the generator's own releases regress too, after 2026-08-03: those are true alerts as well)
    assert any(k == "version_regression" and (a, s) == ("acme", workload["released"]) and t > workload["release"]
               for k, a, s, t in expected)
    signatures = {s for k, a, s, _ in expected if k == "new_error_signature"}
    assert any(s.startswith(f"{workload['released']}:{NEW_CODE}:") for s in signatures), signatures
    assert set(workload["hung"]) <= {s for k, a, s, _ in expected if k == "run_deadline"}
    # the runs the day ends in the middle of pass their deadline after the last event, judged by
    # the wall clock once the input is quiet
    assert any(k == "run_deadline" and t > end for k, a, s, t in expected)
    assert all(t < end + timedelta(minutes=10) for *_, t in expected)


def _firings(stack, since: datetime, horizon: datetime) -> set[Key]:
    rows = reader_of(stack).query(
        "SELECT kind, account_id, subject, started_at FROM alert_events FINAL "
        "WHERE started_at >= {since:DateTime64(3)} AND started_at < {horizon:DateTime64(3)}",
        parameters={"since": since, "horizon": horizon}).result_rows
    return {(k, a, s, t.replace(tzinfo=UTC)) for k, a, s, t in rows}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_stack_raises_the_run_level_alerts_of_the_oracle(workload, stack_factory, workers):
    stack = stack_factory(workers=workers, partitions=4, alert_idle_seconds=IDLE_SECONDS)
    with workers_paused(stack):
        result = run_cli(stack.settings, "publish", str(workload["path"]))
    assert result.returncode == 0, result.stderr
    wait_caught_up(stack, timeout=300)
    since = workload["end"] - timedelta(hours=27)
    expected = {x for x in workload["expected"] if x[3] >= since}
    kinds = {"silent_workflow", "version_regression", "new_error_signature", "run_deadline"}
    want = {x for x in expected if x[0] in kinds}
    try:
        found = wait_for(lambda: {x for x in _firings(stack, since, workload["horizon"]) if x[0] in kinds},
                         lambda got: got == want, timeout=180,
                         what="the stack's run-level alerts to equal the oracle's")
    except AssertionError:
        got = {x for x in _firings(stack, since, workload["horizon"]) if x[0] in kinds}
        raise AssertionError(f"missing {sorted(want - got)}; extra {sorted(got - want)}") from None
    by_kind = Counter(k for k, *_ in found)
    report("run-level-alerts", workers=workers, **by_kind)
    open_silent = reader_of(stack).query(
        "SELECT account_id, subject FROM alerts WHERE kind = 'silent_workflow' AND state = 'firing' "
        "AND started_at >= {since:DateTime64(3)} AND started_at < {horizon:DateTime64(3)}",
        parameters={"since": since, "horizon": workload["horizon"]}).result_rows
    assert {(a, s) for a, s in open_silent} == {("acme", workload["silent"])}
