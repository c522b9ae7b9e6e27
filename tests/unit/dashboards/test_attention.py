"""Workflows needing attention: the pure score over one workflow's facts, and the shape of the
facts query (one account, bound values). The query itself runs against the embedded stack in
tests/integration/test_attention.py."""

from __future__ import annotations

import math
import re
import shlex
from datetime import UTC, datetime, timedelta

import pytest

from dashboards import attention as at
from dashboards.runs import QueryError

SINCE = datetime(2026, 11, 27, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
WINDOW = at.Window(SINCE, UNTIL)


def facts(**given):
    """A healthy workflow's facts (no reason), with ``given`` changed."""
    row = {c: 0 for c in at.FACT_COLUMNS}
    row.update(account_id="acme", workflow_id="wf-1", workflow_name="One", runs=200, failed=4, base_runs=800,
               base_failed=16, current_version=3, current_runs=300, current_failed=6, current_p95_ms=1000.0,
               previous_version=2, previous_runs=700, previous_failed=14, previous_p95_ms=1000.0, p99_ms=2000.0,
               lookback_runs=1000, active_hours=100, longest_gap_s=3 * 3600, silence_s=0,
               queue_samples=200, queue_p95_ms=5000.0, base_queue_samples=800, base_queue_p95_ms=4000.0,
               new_signature_examples=[], delays=50, delays_late=2, lateness_avg_ms=2000.0, lateness_max_ms=3000.0,
               replays_finished=4, replays_failed=1)
    row.update(given)
    return row


def kinds(row) -> list[str]:
    return [r.kind for r in at.score(row, WINDOW).reasons]


def test_a_healthy_workflow_has_no_reason():
    assessed = at.score(facts(), WINDOW)
    assert assessed.reasons == () and assessed.score == 0
    assert at.rank([facts()], WINDOW) == []


def test_failure_rate_against_the_workflow_s_own_baseline():
    row = facts(runs=200, failed=120, base_runs=800, base_failed=16)
    (reason,) = at.score(row, WINDOW).reasons
    base = (16 + 1) / (800 + 20)
    assert reason.kind == "failure_rate"
    assert reason.points == pytest.approx(100 * (0.6 - base))
    assert reason.numbers["failure_pct"] == 60.0 and reason.numbers["baseline_pct"] == round(100 * base, 1)
    assert "120 of 200 runs" in reason.summary
    assert reason.drill[0] == ("runlens runs list --account acme --workflow wf-1 --status failed "
                               "--since 2026-11-27T00:00:00Z --until 2026-11-28T00:00:00Z")
    assert reason.drill[1].startswith("/d/runlens-failures?var-account=acme&var-workflow=wf-1&from=")


def test_a_workflow_that_always_fails_this_much_is_not_flagged():
    # 30 % in the window, 30 % before: its own normal
    assert "failure_rate" not in kinds(facts(runs=200, failed=60, base_runs=800, base_failed=240))


@pytest.mark.parametrize("runs, failed, base_runs, base_failed, flagged", [
    (10, 2, 0, 0, False),        # fewer than 3 failures
    (9, 9, 0, 0, False),         # fewer than 10 runs
    (60, 7, 0, 0, False),        # 11.7 % against the 5 % prior: +6.7 pp, but z = 2.4 (chance)
    (200, 13, 800, 16, False),   # 6.5 % against 2.1 %: 3x and z = 4.4, but only +4.4 pp
    (200, 18, 800, 16, True),    # 9 % against 2.1 %: 4x, +6.9 pp, z = 6.9
    (10, 3, 0, 0, True),         # 30 % of a few runs against the prior: z = 3.6
])
def test_small_or_unremarkable_failure_counts_are_not_a_reason(runs, failed, base_runs, base_failed, flagged):
    row = facts(runs=runs, failed=failed, base_runs=base_runs, base_failed=base_failed)
    assert ("failure_rate" in kinds(row)) is flagged


def test_without_history_the_baseline_is_the_prior():
    (reason,) = at.score(facts(runs=198, failed=24, base_runs=0, base_failed=0), WINDOW).reasons
    assert reason.kind == "failure_rate" and reason.numbers["baseline_pct"] == 5.0
    assert reason.points == pytest.approx(100 * (24 / 198 - 0.05))


def test_version_regression_slower_and_failing_more():
    slower = at.score(facts(current_p95_ms=3000.0, previous_p95_ms=1000.0), WINDOW).reasons
    assert [r.kind for r in slower] == ["version_regression"]
    assert slower[0].points == pytest.approx(20 * 2) and "p95 3.00x" in slower[0].summary
    assert slower[0].summary.startswith("v3 against v2")
    both = at.score(facts(current_p95_ms=2000.0, current_failed=90), WINDOW).reasons
    assert both[0].points == pytest.approx(20 * 1 + 100 * (90 / 300 - 14 / 700))
    assert "version_regression" not in kinds(facts(current_p95_ms=1400.0))           # 1.4x: not yet
    assert "version_regression" not in kinds(facts(current_p95_ms=9000.0, current_runs=9))   # too few runs
    assert "version_regression" not in kinds(facts(current_p95_ms=math.nan))         # no digest


def test_silent_compares_with_the_longest_gap_before():
    (reason,) = at.score(facts(silence_s=10 * 3600, longest_gap_s=3 * 3600), WINDOW).reasons
    assert reason.kind == "silent" and reason.points == pytest.approx(10 * 10 / 3)
    assert "silent" not in kinds(facts(silence_s=5 * 3600, longest_gap_s=3 * 3600))   # under 2x its gap
    assert "silent" not in kinds(facts(silence_s=2 * 3600, longest_gap_s=0))          # under 3 h
    assert "silent" not in kinds(facts(silence_s=99 * 3600, active_hours=5))          # never ran steadily
    capped = at.score(facts(silence_s=400 * 3600, longest_gap_s=3600), WINDOW).reasons[0]
    assert capped.points == at.SILENT_POINTS * at.SILENT_CAP


def test_stuck_runs_queue_late_delays_and_replays():
    stuck = at.score(facts(stuck_runs=3, stuck_oldest_ms=90 * 60_000), WINDOW).reasons[0]
    assert stuck.kind == "stuck_runs" and stuck.points == 15 and "--status running" in stuck.drill[0]
    assert "var-status=running" in stuck.drill[1]
    assert at.score(facts(stuck_runs=50), WINDOW).reasons[0].points == at.STUCK_POINTS * at.STUCK_CAP

    queue = at.score(facts(queue_p95_ms=300_000.0, base_queue_p95_ms=20_000.0), WINDOW).reasons[0]
    assert queue.kind == "queue_growing" and queue.points == pytest.approx(5 * 300 / 60)
    assert "queue_growing" not in kinds(facts(queue_p95_ms=150_000.0, base_queue_p95_ms=20_000.0))

    late = at.score(facts(delays=50, delays_late=20, lateness_avg_ms=120_000.0), WINDOW).reasons[0]
    assert late.kind == "late_delays" and late.points == pytest.approx(0.3 * 40)
    assert "late_delays" not in kinds(facts(delays=50, delays_late=20, lateness_avg_ms=5_000.0))

    replays = at.score(facts(replays_finished=5, replays_failed=4), WINDOW).reasons[0]
    assert replays.kind == "replays_failing" and replays.points == 20 and "4 of 5" in replays.summary
    assert "replays_failing" not in kinds(facts(replays_finished=10, replays_failed=4))   # under half


def test_new_error_signatures_need_a_history():
    row = facts(new_signatures=2, new_signature_failures=7, new_signature_examples=["E1 at Send", "E2 at Map"])
    (reason,) = at.score(row, WINDOW).reasons
    assert reason.kind == "new_errors" and reason.points == 20 and "E1 at Send" in reason.summary
    assert reason.drill[0].startswith("runlens sql error_signatures --account acme -p workflow=wf-1")
    assert "new_errors" not in kinds({**row, "base_runs": 5})
    assert at.score({**row, "new_signatures": 9}, WINDOW).reasons[0].points == 10 * at.NEW_ERRORS_CAP


def test_score_is_the_sum_of_the_points_and_rank_orders_by_it():
    a = facts(workflow_id="wf-a", runs=200, failed=150)                          # failure rate
    b = facts(workflow_id="wf-b", stuck_runs=1)                                  # 5 points
    c = facts(workflow_id="wf-c")                                                # nothing
    d = facts(workflow_id="wf-d", runs=200, failed=150, replays_finished=3, replays_failed=3)
    ranked = at.rank([b, c, a, d], WINDOW)
    assert [x.workflow_id for x in ranked] == ["wf-d", "wf-a", "wf-b"]
    assert ranked[0].score == round(sum(r.points for r in ranked[0].reasons), 1)
    assert [x.workflow_id for x in at.rank([b, c, a, d], WINDOW, limit=1)] == ["wf-d"]


def test_missing_and_nan_numbers_count_as_nothing():
    row = {"account_id": "acme", "workflow_id": "wf-x", "workflow_name": None, "current_p95_ms": math.nan,
           "queue_p95_ms": None}
    assert at.score(row, WINDOW).reasons == ()


def test_hostile_ids_stay_inert_in_the_drill_ins():
    account, workflow = "ac me'; rm -rf /", "wf&var-account=other#x"
    row = facts(account_id=account, workflow_id=workflow, runs=200, failed=150, stuck_runs=2)
    for reason in at.score(row, WINDOW).reasons:
        command, url = reason.drill
        argv = shlex.split(command)
        assert argv[argv.index("--account") + 1] == account and argv[argv.index("--workflow") + 1] == workflow
        assert "var-account=ac%20me%27%3B%20rm%20-rf%20%2F&var-workflow=wf%26var-account%3Dother%23x" in url


# --------------------------------------------------------------------------- the facts query


def test_facts_binds_every_value_and_reads_one_account():
    query = at.facts("acme", SINCE, UNTIL)
    assert query.params == {"account": "acme", "since": SINCE, "until": UNTIL,
                            "base_since": SINCE - timedelta(days=4), "sig_since": SINCE - timedelta(days=30)}
    assert "acme" not in query.sql and query.columns == at.FACT_COLUMNS
    # every scan of a stored table carries the account condition
    for table in ("run_stats_hourly", "run_stats_state", "step_stats_hourly", "step_stats_state", "run_notes",
                  "run_state"):
        scans = [m.end() for m in re.finditer(rf"FROM {table}\b", query.sql)]
        assert scans, table
        for end in scans:
            assert "account_id = {account:String}" in query.sql[end:end + 120], (table, query.sql[end:end + 120])


def test_the_baseline_is_four_windows_at_most_28_days():
    assert at.baseline_start(SINCE, UNTIL) == SINCE - timedelta(days=4)
    assert at.baseline_start(SINCE, SINCE + timedelta(days=7)) == SINCE - timedelta(days=28)
    assert at.baseline_start(SINCE, SINCE + timedelta(days=30)) == SINCE - timedelta(days=28)


@pytest.mark.parametrize("account, since, until, message", [
    ("", SINCE, UNTIL, "--account"), ("  ", SINCE, UNTIL, "--account"), ("acme", UNTIL, SINCE, "window is empty"),
])
def test_facts_refuses_what_it_cannot_answer(account, since, until, message):
    with pytest.raises(QueryError, match=message):
        at.facts(account, since, until)


def test_limit_bounds():
    at.check_limit(1)
    at.check_limit(at.MAX_LIMIT)
    for bad in (0, -1, at.MAX_LIMIT + 1):
        with pytest.raises(QueryError, match="--limit"):
            at.check_limit(bad)


def test_the_panel_applies_the_same_rules_and_reads_no_open_runs():
    sql = at.panel_sql(at.grafana_dialect("$__conditionalAll(account_id IN (x), $account)", "1", open_runs=False))
    assert "run_state" not in sql and "$__fromTime" in sql and "{account:String}" not in sql
    for kind in at.REASONS:
        assert f"AS p_{kind}" in sql
    assert "run_state" in at.facts_sql(at.grafana_dialect("1", "1"))
