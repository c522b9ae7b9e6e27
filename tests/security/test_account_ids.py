"""Ids are only unique within an account: two tenants that use the same event_ids and run_ids
(by accident or on purpose) must not lose each other's events or mix their runs.

The attack, for real, through `runlens publish`, the broker and the worker into the warehouse:
account A publishes a workload; account C publishes runs with A's run_ids (its own event_ids,
40 s later), interleaved with A's; the worker restarts (each partition's ledger is rebuilt from
the warehouse); then account B publishes A's events again under its own account, same event_ids
and run_ids, 90 s later, and C the rest of its runs. Every account's `runs`, `steps`, `run_stats`
counts and queue waits, and the events counted as new, must equal a batch recomputation from the
raw lines, account by account.

Before the fix the worker's ledger keyed duplicates by event_id and queue-wait pairs by run_id:
all of B's events were marked duplicates (B's aggregates stayed empty) and A's run.started was
paired with C's run.queued (wrong waits for A, none for C).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from producers.workload import WorkloadConfig, generate, perturb
from tests.helpers import run_cli, wait_caught_up
from tests.oracle import (
    actual_runs,
    actual_steps,
    diff,
    expected_run_stats,
    expected_runs,
    expected_steps,
    valid_events,
)

pytestmark = [pytest.mark.security, pytest.mark.integration]

TOKEN = secrets.token_hex(3)
A, B, C = f"ids-a-{TOKEN}", f"ids-b-{TOKEN}", f"ids-c-{TOKEN}"
ACCOUNTS = [A, B, C]
START = datetime(2026, 10, 5, 15, 0, tzinfo=UTC)   # a busy hour no other test writes to
RUN_KEY = ("bucket", "account_id", "workflow_id", "workflow_version", "workflow_type", "trigger", "site_id",
           "card_id")   # the grouping key of run_stats_state


def _fmt(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shifted(event: dict, account: str, by: timedelta, event_suffix: str = "") -> dict:
    """``event`` of another account: same run_id, event_id (+ suffix), every time ``by`` later."""
    out = dict(event, account_id=account, event_id=event["event_id"] + event_suffix)
    for field in ("ts", "started_at", "scheduled_resume_at", "resumed_at"):
        if out.get(field):
            out[field] = _fmt(datetime.fromisoformat(out[field].replace("Z", "+00:00")) + by)
    return out


@pytest.fixture(scope="module")
def workloads():
    """(phase 1 lines, phase 2 lines): A and C's queued events first; B and the rest of C after."""
    config = WorkloadConfig(seed=23, accounts=1, backfill_runs_per_hour=400)
    base = []
    for event in generate(config, START, START + timedelta(minutes=40)):
        event = dict(event, account_id=A, run_id=f"{TOKEN}-{event['run_id']}",
                     event_id=f"{TOKEN}-{event['event_id']}")
        if event.get("replay_of"):
            event["replay_of"] = f"{TOKEN}-{event['replay_of']}"
        base.append(event)
    c_events = [_shifted(e, C, timedelta(seconds=40), "-c") for e in base]
    b_events = [_shifted(e, B, timedelta(seconds=90)) for e in base]

    def ordered(events):
        return sorted(events, key=lambda e: e["ts"])

    phase1 = ordered(base + [e for e in c_events if e["type"] == "run.queued"])
    phase2 = ordered(b_events + [e for e in c_events if e["type"] != "run.queued"])
    # duplicate deliveries inside each account still count once
    lines1 = list(perturb(phase1, seed=1, duplicate_rate=0.03))
    lines2 = list(perturb(phase2, seed=2, duplicate_rate=0.03))
    return lines1, lines2


@pytest.fixture(scope="module")
def published(workloads, embedded_stack, stack_settings, tmp_path_factory):
    lines1, lines2 = workloads
    folder = tmp_path_factory.mktemp("account-ids")
    first, second = folder / "phase1.ndjson", folder / "phase2.ndjson"
    first.write_bytes(b"\n".join(lines1) + b"\n")
    second.write_bytes(b"\n".join(lines2) + b"\n")
    result = run_cli(stack_settings, "publish", str(first))
    assert result.returncode == 0, result.stderr
    wait_caught_up(embedded_stack)
    # a graceful restart: every partition's ledger is rebuilt from the warehouse (load_ledger)
    embedded_stack.stop_worker()
    embedded_stack.start_worker()
    result = run_cli(stack_settings, "publish", str(second))
    assert result.returncode == 0, result.stderr
    wait_caught_up(embedded_stack)
    return lines1 + lines2


def test_the_workload_really_reuses_ids_across_accounts(published):
    events = valid_events(published)
    ids = {}
    for e in events:
        ids.setdefault(e.event_id, set()).add(e.account_id)
    assert sum(1 for accounts in ids.values() if accounts == {A, B}) > 1000
    runs = {}
    for e in events:
        runs.setdefault(e.run_id, set()).add(e.account_id)
    assert all(accounts == {A, B, C} for accounts in runs.values()) and len(runs) > 300


def test_each_account_counts_each_of_its_events_once(published, reader):
    """The aggregates fed by the worker's new-event marks: lifecycle events (queue_state) and
    finished steps (step_stats_state) per account equal the distinct events of that account."""
    events = valid_events(published)
    expected = {account: tuple(sum(1 for e in events if e.account_id == account and e.type == kind)
                               for kind in ("run.queued", "run.started", "run.finished", "step.finished"))
                for account in ACCOUNTS}
    assert all(counts[0] > 300 for counts in expected.values())
    lifecycle = dict((r[0], r[1:]) for r in reader.query(
        "SELECT account_id, sum(queued), sum(started), sum(finished) FROM queue_state "
        "WHERE account_id IN {a:Array(String)} GROUP BY account_id", parameters={"a": ACCOUNTS}).result_rows)
    steps = dict(reader.query(
        "SELECT account_id, sum(executions) FROM step_stats_state WHERE account_id IN {a:Array(String)} "
        "GROUP BY account_id", parameters={"a": ACCOUNTS}).result_rows)
    actual = {account: tuple(int(v) for v in lifecycle.get(account, (0, 0, 0))) + (int(steps.get(account, 0)),)
              for account in ACCOUNTS}
    assert actual == expected


def test_runs_and_steps_of_every_account_equal_batch_recomputation(published, reader):
    events = valid_events(published)
    run_ids = {e.run_id for e in events}
    runs = actual_runs(reader, run_ids)
    assert {account for account, _ in runs} == set(ACCOUNTS)
    assert diff(expected_runs(events), runs) == []
    assert diff(expected_steps(events), actual_steps(reader, run_ids)) == []


def test_run_stats_counts_and_queue_waits_of_every_account_equal_batch_recomputation(published, reader):
    events = valid_events(published)
    expected = {k: {"counts": (v["finished"], v["succeeded"], v["failed"], v["stopped"], len(v["queue_waits"])),
                    "queue_wait_ms": sum(v["queue_waits"])}
                for k, v in expected_run_stats(events).items()}
    assert {k[1] for k in expected} == set(ACCOUNTS)
    rows = reader.query(
        "SELECT bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, nullIf(site_id, ''), "
        "nullIf(card_id, ''), sum(finished), sum(succeeded), sum(failed), sum(stopped), sum(queue_samples), "
        "round(sum(queue_wait_sum_ms)) FROM run_stats_state WHERE account_id IN {a:Array(String)} "
        f"GROUP BY {', '.join(RUN_KEY)}", parameters={"a": ACCOUNTS}).result_rows
    actual = {tuple(row[:8]): {"counts": tuple(int(v) for v in row[8:13]), "queue_wait_ms": int(row[13])}
              for row in rows}
    assert sum(v["counts"][4] for v in expected.values()) > 300
    assert diff(expected, actual) == []


def test_queue_waits_of_the_runs_view_are_each_accounts_own(published, reader):
    """The same run_id in three accounts: each account's queue wait is its own, as generated (C's
    and B's runs are A's moved in time, so their waits are A's)."""
    rows = reader.query(
        "SELECT run_id, groupArray((account_id, queue_ms)) FROM runs WHERE account_id IN {a:Array(String)} "
        "AND queue_ms IS NOT NULL GROUP BY run_id", parameters={"a": ACCOUNTS}).result_rows
    assert len(rows) > 300
    for run_id, pairs in rows:
        waits = dict(pairs)
        assert waits.keys() == {A, B, C} and len(set(waits.values())) == 1, (run_id, waits)
    samples = reader.query(
        "SELECT account_id, sum(queue_samples), round(sum(queue_wait_sum_ms)) FROM run_stats_state "
        "WHERE account_id IN {a:Array(String)} GROUP BY account_id ORDER BY account_id",
        parameters={"a": ACCOUNTS}).result_rows
    assert len({(n, total) for _, n, total in samples}) == 1 and samples[0][1] > 300, samples
