"""An independent batch recomputation of the ``runs`` and ``steps`` views from raw events.

Written from the contract alone (not from the SQL) so that comparing the two checks the
pipeline: duplicates count once, order of arrival does not matter, latest state wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from schemas import Rejection, parse_event
from schemas.events import RunFinished, StepFinished


def _ms(later: datetime | None, earlier: datetime | None) -> int | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() * 1000)


def _naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=None)


def valid_events(lines: Iterable[bytes]) -> list:
    """Each distinct valid event once (first delivery of an (account_id, event_id) wins: ids are
    unique only within an account)."""
    seen, events = set(), []
    for line in lines:
        event = parse_event(line)
        if isinstance(event, Rejection) or (event.account_id, event.event_id) in seen:
            continue
        seen.add((event.account_id, event.event_id))
        events.append(event)
    return events


def expected_runs(events) -> dict[tuple[str, str], dict]:
    by_run: dict[tuple[str, str], list] = {}
    for event in events:
        by_run.setdefault((event.account_id, event.run_id), []).append(event)
    runs = {}
    for key, evs in by_run.items():
        latest = max(evs, key=lambda e: e.ts)
        queued = [e.ts for e in evs if e.type == "run.queued"]
        started = [e.ts for e in evs if e.type == "run.started"]
        finishes = [e for e in evs if isinstance(e, RunFinished)]
        finish = max(finishes, key=lambda e: e.ts) if finishes else None
        has_steps = any(e.type.startswith("step.") for e in evs)
        queued_at = min(queued) if queued else None
        first_started = min(started) if started else None
        if finish is not None:
            status = finish.status.value
        elif first_started is not None or has_steps:
            status = "running"
        else:
            status = "pending"
        started_at = finish.started_at if finish else first_started
        runs[key] = {
            "workflow_id": latest.workflow_id,
            "workflow_version": latest.workflow_version,
            "workflow_type": latest.workflow_type.value,
            "trigger": latest.trigger.value,
            "site_id": latest.site_id,
            "card_id": latest.card_id,
            "status": status,
            "queued_at": _naive(queued_at),
            "started_at": _naive(started_at),
            "finished_at": _naive(finish.ts if finish else None),
            "queue_ms": _ms(first_started or (finish.started_at if finish else None), queued_at),
            "duration_ms": _ms(finish.ts, finish.started_at) if finish else None,
            "error_code": finish.error.code if finish and finish.error else None,
            "error_class": finish.error.class_.value if finish and finish.error else None,
            "replay_of": latest.replay_of,
        }
    return runs


def expected_steps(events) -> dict[tuple[str, str, str, int], dict]:
    by_step: dict[tuple[str, str, str, int], list] = {}
    for event in events:
        if event.type.startswith("step."):
            by_step.setdefault((event.account_id, event.run_id, event.step_id, event.attempt), []).append(event)
    steps = {}
    for key, evs in by_step.items():
        latest = max(evs, key=lambda e: e.ts)
        started = [e.ts for e in evs if e.type == "step.started"]
        finishes = [e for e in evs if isinstance(e, StepFinished)]
        finish = max(finishes, key=lambda e: e.ts) if finishes else None
        started_at = finish.started_at if finish else (min(started) if started else None)
        steps[key] = {
            "workflow_id": latest.workflow_id,
            "step_index": latest.step_index,
            "step_name": latest.step_name,
            "step_type": latest.step_type.value,
            "status": finish.status.value if finish else "running",
            "started_at": _naive(started_at),
            "finished_at": _naive(finish.ts if finish else None),
            "duration_ms": _ms(finish.ts, finish.started_at) if finish else None,
            "error_code": finish.error.code if finish and finish.error else None,
            "error_class": finish.error.class_.value if finish and finish.error else None,
        }
    return steps


RUN_COLUMNS = ("account_id", "run_id", "workflow_id", "workflow_version", "workflow_type", "trigger",
               "site_id", "card_id", "status", "queued_at", "started_at", "finished_at", "queue_ms",
               "duration_ms", "error_code", "error_class", "replay_of")
STEP_COLUMNS = ("account_id", "run_id", "step_id", "attempt", "workflow_id", "step_index", "step_name",
                "step_type", "status", "started_at", "finished_at", "duration_ms", "error_code", "error_class")


def actual_runs(client, run_ids: Iterable[str]) -> dict[tuple[str, str], dict]:
    """The ``runs`` rows of these run ids (a shared test database holds other runs too)."""
    rows = client.query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id IN {{ids:Array(String)}}",
                        parameters={"ids": sorted(set(run_ids))}).named_results()
    return {(r.pop("account_id"), r.pop("run_id")): r for r in rows}


def actual_steps(client, run_ids: Iterable[str]) -> dict[tuple[str, str, str, int], dict]:
    rows = client.query(f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE run_id IN {{ids:Array(String)}}",
                        parameters={"ids": sorted(set(run_ids))}).named_results()
    return {(r.pop("account_id"), r.pop("run_id"), r.pop("step_id"), r.pop("attempt")): r for r in rows}


def diff(expected: dict, actual: dict, limit: int = 5) -> list[str]:
    """Readable differences between two keyed row sets (empty when equal)."""
    problems = []
    for key in sorted(set(expected) | set(actual), key=str):
        if key not in actual:
            problems.append(f"missing {key}")
        elif key not in expected:
            problems.append(f"unexpected {key}")
        elif expected[key] != actual[key]:
            fields = {f: (expected[key][f], actual[key].get(f)) for f in expected[key]
                      if expected[key][f] != actual[key].get(f)}
            problems.append(f"{key}: expected vs actual {fields}")
        if len(problems) >= limit:
            break
    return problems


def run_ids_mentioned(lines: Iterable[bytes]) -> set[str]:
    """Every run id that appears in the lines, valid or not (so a bad line that wrongly made a
    row would show up as unexpected)."""
    import re

    pattern = re.compile(rb'"run_id"\s*:\s*"([^"]+)"')
    return {m.group(1).decode() for line in lines for m in pattern.finditer(line)}


# --------------------------------------------------------------------------- aggregates


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0, tzinfo=None)


def expected_run_stats(events) -> dict[tuple, dict]:
    """Counts per (minute, account, workflow, version, type, trigger, site, card) from distinct
    run.finished events, and queue-wait sample counts in the minute each run started."""
    out: dict[tuple, dict] = {}

    def cell(moment, e):
        key = (_minute(moment), e.account_id, e.workflow_id, e.workflow_version, e.workflow_type.value,
               e.trigger.value, e.site_id, e.card_id)
        return out.setdefault(key, {"finished": 0, "succeeded": 0, "failed": 0, "stopped": 0,
                                    "durations": [], "queue_waits": []})

    queued, started = {}, {}
    for e in events:
        if isinstance(e, RunFinished):
            c = cell(e.ts, e)
            c["finished"] += 1
            c[{"success": "succeeded", "failed": "failed", "stopped": "stopped"}[e.status.value]] += 1
            c["durations"].append(_ms(e.ts, e.started_at))
        elif e.type == "run.queued":
            queued[(e.account_id, e.run_id)] = e
        elif e.type == "run.started":
            started[(e.account_id, e.run_id)] = e
    for run, s in started.items():
        if run in queued:
            cell(s.ts, s)["queue_waits"].append(_ms(s.ts, queued[run].ts))
    return out


def expected_step_stats(events) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for e in events:
        if isinstance(e, StepFinished):
            key = (_minute(e.ts), e.account_id, e.workflow_id, e.workflow_version, e.step_id, e.step_name,
                   e.step_type.value)
            c = out.setdefault(key, {"executions": 0, "failed": 0, "skipped": 0, "retries": 0, "durations": []})
            c["executions"] += 1
            c["failed"] += e.status.value == "failed"
            c["skipped"] += e.status.value == "skipped"
            c["retries"] += e.attempt > 1
            c["durations"].append(_ms(e.ts, e.started_at))
    return out


def expected_queue_depth(events, bucket_seconds: int = 10) -> dict[tuple[str, datetime], tuple[int, int]]:
    """(account, bucket start) -> (pending, running) at the end of each bucket that saw a transition."""
    from datetime import timedelta

    deltas: dict[tuple[str, datetime], list[int]] = {}
    for e in events:
        if e.type not in ("run.queued", "run.started", "run.finished"):
            continue
        ts = e.ts.replace(tzinfo=None)
        bucket = ts - timedelta(seconds=ts.second % bucket_seconds, microseconds=ts.microsecond)
        d = deltas.setdefault((e.account_id, bucket), [0, 0])
        if e.type == "run.queued":
            d[0] += 1
        elif e.type == "run.started":
            d[0] -= 1
            d[1] += 1
        else:
            d[1] -= 1
    depth, pending, running, account = {}, 0, 0, None
    for (acct, bucket), (dp, dr) in sorted(deltas.items()):
        if acct != account:
            account, pending, running = acct, 0, 0
        pending += dp
        running += dr
        depth[(acct, bucket)] = (pending, running)
    return depth


def rank_error(values: list[float], estimate: float, q: float) -> float:
    """How far (as a fraction of n) the estimate's rank is from the q-quantile's rank."""
    ordered = sorted(values)
    below = sum(1 for v in ordered if v < estimate)
    upto = sum(1 for v in ordered if v <= estimate)
    target = q * len(ordered)
    if below <= target <= upto:
        return 0.0
    return min(abs(below - target), abs(upto - target)) / len(ordered)
