"""Events later than the alert lateness: stored and counted exactly like any other event, and
counted as too late for alerting (pipeline_metrics.too_late_for_alerts).

What the workers count (streams/detectors/watermarks.py): every new run event (first delivery of
its event_id; step events feed no detector) older than its account's watermark when the detectors
read it, the watermark being where the events before had judged that account to (its newest run
event time minus RUNLENS_ALERT_LATENESS_SECONDS, one partition here). The figure is per worker process, since its
start. The workload arrives in two parts: everything on time, stored (and so judged) before the
held-back runs and a few slightly late events are sent; so the expected figure is exact.
"""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import run_cli, wait_for
from tests.reliability.conftest import Workload, dump, make_workload, oracle_problems, reader_of, report

LATENESS = 30.0


def _is_run(event) -> bool:
    return event.type.startswith("run.")


def expected_too_late(judged, later, lateness: timedelta) -> int:
    """The rule replayed: ``later`` run events older than their account's newest ``judged`` run
    event time minus the lateness (duplicates already removed)."""
    judged, later = [e for e in judged if _is_run(e)], [e for e in later if _is_run(e)]
    newest: dict[str, object] = {}
    for event in judged:
        if event.account_id not in newest or event.ts > newest[event.account_id]:
            newest[event.account_id] = event.ts
    return sum(1 for event in later if event.account_id in newest and event.ts < newest[event.account_id] - lateness)


def test_events_beyond_the_alert_lateness_are_stored_counted_and_reported(tmp_path, stack_factory):
    generated = make_workload(tmp_path, hours=1, runs_per_hour=600, seed=31, duplicate_rate=0.02)
    lines, events = generated.lines, generated.events
    newest = max(e.ts for e in events)
    start = min(e.ts for e in events)
    lateness = timedelta(seconds=LATENESS)
    # every event of every 5th run queued in the first 10 minutes arrives after the whole hour
    early_runs = sorted({e.run_id for e in events if e.type == "run.queued" and e.ts < start + timedelta(minutes=10)})
    held_runs = set(early_runs[::5])
    # a few events from the last 20 s also arrive at the very end: late, but within the lateness
    slightly = {e.event_id for e in events
                if newest - timedelta(seconds=20) <= e.ts < newest - timedelta(seconds=5)
                and e.run_id not in held_runs}
    slightly = set(sorted(slightly)[:5])

    def run_of(line: bytes) -> str | None:
        return next((e.run_id for e in Workload(tmp_path, [line]).events), None)

    def event_id_of(line: bytes) -> str | None:
        return next((e.event_id for e in Workload(tmp_path, [line]).events), None)

    held = [line for line in lines if run_of(line) in held_runs]
    late_ok = [line for line in lines if event_id_of(line) in slightly and run_of(line) not in held_runs]
    on_time = [line for line in lines if run_of(line) not in held_runs and event_id_of(line) not in slightly]
    ordered = on_time + held + late_ok
    workload = Workload(tmp_path / "late.ndjson", ordered)
    workload.path.write_bytes(dump(ordered))
    distinct = workload.events
    first = Workload(tmp_path / "on-time.ndjson", on_time)
    first.path.write_bytes(dump(on_time))
    second = Workload(tmp_path / "held.ndjson", held + late_ok)
    second.path.write_bytes(dump(held + late_ok))
    too_late = expected_too_late(first.events, second.events, lateness)
    held_distinct = len(Workload(tmp_path, held).events)
    held_run_events = sum(1 for e in Workload(tmp_path, held).events if _is_run(e))
    assert too_late == held_run_events > 0     # by construction: exactly the held-back runs' run events

    # a quiet input never moves a watermark here (RUNLENS_ALERT_IDLE_SECONDS): only events do
    stack = stack_factory(partitions=1, alert_lateness_seconds=LATENESS, alert_idle_seconds=3600,
                          metrics_interval_seconds=1.0, batch_max_records=100, batch_max_seconds=0.2)
    client = reader_of(stack)
    for part, stored in ((first, len(first.events)), (second, len(distinct))):
        assert run_cli(stack.settings, "publish", str(part.path)).returncode == 0
        wait_for(lambda: client.query("SELECT uniqExact(event_id) FROM events").result_rows[0][0],
                 lambda n, stored=stored: n >= stored, timeout=120, what=f"{stored} events stored")

    def reported():
        rows = client.query("SELECT argMax(value, time) FROM pipeline_metrics "
                            "WHERE metric = 'too_late_for_alerts' GROUP BY worker").result_rows
        return [int(r[0]) for r in rows]

    figure = wait_for(reported, lambda v: v == [too_late], timeout=30, interval=0.5,
                      what=f"too_late_for_alerts = {too_late}")
    late_runs_stored = client.query("SELECT count() FROM runs WHERE run_id IN {ids:Array(String)}",
                                    parameters={"ids": sorted(held_runs)}).result_rows[0][0]
    report("late-events", events=len(distinct), lateness_s=LATENESS, held_back_runs=len(held_runs),
           beyond_lateness=held_distinct, within_lateness=len(late_ok), too_late_for_alerts=figure[0],
           late_runs_stored=late_runs_stored)
    assert late_runs_stored == len(held_runs)
    assert oracle_problems(client, workload) == []
