"""A realistic workload with duplicates, out-of-order and late events, replays and bad lines,
published with `runlens publish`: the `runs` and `steps` views equal a batch recomputation
from the raw lines, row by row."""

from __future__ import annotations

import pytest

from tests.integration.oracle_window import END, START
from tests.oracle import (
    actual_runs,
    actual_steps,
    diff,
    expected_queue_depth,
    expected_run_stats,
    expected_runs,
    expected_step_stats,
    expected_steps,
    rank_error,
    run_ids_mentioned,
    valid_events,
)

pytestmark = pytest.mark.integration

def test_file_has_the_faults_it_claims(perturbed_file):
    _, lines = perturbed_file
    events = valid_events(lines)
    assert len(lines) - len(events) > 100          # duplicates and bad lines are there
    assert len({e.run_id for e in events}) > 1000
    assert any(e.replay_of for e in events)


def test_runs_view_equals_batch_recomputation(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = expected_runs(valid_events(lines))
    actual = actual_runs(reader, run_ids_mentioned(lines))
    assert len(actual) == len(expected)
    assert diff(expected, actual) == []


def test_steps_view_equals_batch_recomputation(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = expected_steps(valid_events(lines))
    actual = actual_steps(reader, run_ids_mentioned(lines))
    assert len(actual) == len(expected)
    assert diff(expected, actual) == []


def test_every_bad_line_is_dead_lettered_once(perturbed_file, published, reader):
    path, lines = perturbed_file
    bad = len(lines) - sum(1 for _ in valid_events(lines)) - _duplicates(lines)
    rows = reader.query("SELECT count(), uniqExact(source_offset) FROM rejected_events WHERE source = {s:String}",
                        parameters={"s": f"file:{path}"}).result_rows
    assert rows == [(bad, bad)]


def _duplicates(lines) -> int:
    from schemas import Rejection, parse_event

    ids = [e.event_id for e in (parse_event(ln) for ln in lines) if not isinstance(e, Rejection)]
    return len(ids) - len(set(ids))


# --------------------------------------------------------------------------- aggregates

RUN_KEY = ("bucket", "account_id", "workflow_id", "workflow_version", "workflow_type", "trigger",
           "site_id", "card_id")


def _accounts(lines):
    return sorted({e.account_id for e in valid_events(lines)})


def test_run_stats_counts_equal_batch_recomputation(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = {k: (v["finished"], v["succeeded"], v["failed"], v["stopped"], len(v["queue_waits"]))
                for k, v in expected_run_stats(valid_events(lines)).items()}
    rows = reader.query(
        f"SELECT {', '.join(RUN_KEY)}, finished, succeeded, failed, stopped, queue_samples FROM run_stats "
        "WHERE bucket >= {start:DateTime} AND bucket < {end:DateTime} AND account_id IN {accounts:Array(String)}",
        parameters={"start": START, "end": END, "accounts": _accounts(lines)}).result_rows
    actual = {tuple(r[:8]): tuple(r[8:]) for r in rows}
    assert sum(v[0] for v in expected.values()) > 1000
    assert diff({k: {"counts": v} for k, v in expected.items()},
                {k: {"counts": v} for k, v in actual.items()}) == []


def test_run_stats_percentiles_are_within_digest_error(perturbed_file, published, reader):
    """Merged across minutes per workflow: each digest percentile's rank within 2% of the truth."""
    _, lines = perturbed_file
    durations: dict[tuple, list] = {}
    for key, cell in expected_run_stats(valid_events(lines)).items():
        durations.setdefault((key[1], key[2]), []).extend(cell["durations"])
    rows = reader.query(
        "SELECT account_id, workflow_id, quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(duration_digest) "
        "FROM run_stats_state WHERE account_id IN {accounts:Array(String)} AND bucket >= {start:DateTime} "
        "GROUP BY account_id, workflow_id", parameters={"accounts": _accounts(lines), "start": START}).result_rows
    checked = 0
    for account, workflow, estimates in rows:
        values = durations[(account, workflow)]
        if len(values) < 50:
            continue
        for q, estimate in zip((0.5, 0.9, 0.95, 0.99), estimates, strict=True):
            assert rank_error(values, estimate, q) <= 0.02, (account, workflow, q, estimate)
        checked += 1
    assert checked >= 5


def test_step_stats_counts_equal_batch_recomputation(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = {k: {"counts": (v["executions"], v["failed"], v["skipped"], v["retries"])}
                for k, v in expected_step_stats(valid_events(lines)).items()}
    rows = reader.query(
        "SELECT bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type, "
        "executions, failed, skipped, retries FROM step_stats "
        "WHERE bucket >= {start:DateTime} AND bucket < {end:DateTime} AND account_id IN {accounts:Array(String)}",
        parameters={"start": START, "end": END, "accounts": _accounts(lines)}).result_rows
    actual = {tuple(r[:7]): {"counts": tuple(r[7:])} for r in rows}
    assert diff(expected, actual) == []
    shares = reader.query(
        "SELECT sum(share_of_run_time) FROM step_stats WHERE bucket >= {start:DateTime} "
        "AND account_id IN {accounts:Array(String)} GROUP BY bucket, account_id, workflow_id, workflow_version "
        "HAVING sum(duration_sum_ms) > 0", parameters={"start": START, "accounts": _accounts(lines)}).result_rows
    assert shares and all(abs(total - 1) < 0.01 for (total,) in shares)


def test_queue_depth_matches_lifecycle_replay(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = expected_queue_depth(valid_events(lines))
    rows = reader.query("SELECT account_id, time, pending, running FROM queue_depth "
                        "WHERE account_id IN {accounts:Array(String)} AND time < {end:DateTime}",
                        parameters={"accounts": _accounts(lines), "end": END}).result_rows
    actual = {(a, t): (p, r) for a, t, p, r in rows}
    assert len(actual) == len(expected) > 500
    sampled = sorted(expected)[::25]
    assert [(k, actual.get(k)) for k in sampled] == [(k, expected[k]) for k in sampled]
    assert max(p for p, _ in expected.values()) > 0
