"""The demo summary's panels read aggregate state (run_stats_state, queue_state, failures), not
the `runs` / `steps` views; on the perturbed workload (duplicates, reordering, late events)
they must answer as the views do: counts exactly, percentiles within t-digest rank error."""

from __future__ import annotations

import pytest

from dashboards.summary import SUMMARY_PANELS

pytestmark = pytest.mark.integration

PANELS = {p.key: p for p in SUMMARY_PANELS}

ORACLES = {
    "runs_by_status": """
        SELECT status, count() AS runs, round(100 * runs / sum(runs) OVER (), 1) AS pct
        FROM runs GROUP BY status ORDER BY runs DESC, status""",
    "success_by_type": """
        SELECT workflow_type,
               countIf(status IN ('success', 'failed', 'stopped')) AS finished,
               countIf(status = 'success') AS succeeded,
               countIf(status = 'failed') AS failed,
               round(100 * succeeded / nullIf(finished, 0), 1) AS success_pct
        FROM runs GROUP BY workflow_type HAVING finished > 0 ORDER BY workflow_type""",
    "top_failing_steps": """
        SELECT any(workflow_name) AS workflow, step, sum(n) AS failures,
               arraySort(x -> (-x.1, x.2), groupArray((n, error_code)))[1].2 AS top_error
        FROM (
            SELECT s.workflow_id AS workflow_id, s.step_name AS step, s.error_code AS error_code,
                   any(r.workflow_name) AS workflow_name, count() AS n
            FROM steps AS s
            INNER JOIN (SELECT account_id, run_id, workflow_name FROM runs) AS r
                ON r.account_id = s.account_id AND r.run_id = s.run_id
            WHERE s.status = 'failed'
            GROUP BY workflow_id, step, error_code
        )
        GROUP BY workflow_id, step ORDER BY failures DESC, workflow_id, step LIMIT 8""",
}


@pytest.mark.parametrize("key", sorted(ORACLES))
def test_summary_counts_equal_the_views(reader, published, key):
    got = reader.query(PANELS[key].sql).result_rows
    expected = reader.query(ORACLES[key]).result_rows
    assert expected
    if key == "runs_by_status":   # ties in the count may come in either order
        got, expected = sorted(got), sorted(expected)
    assert got == expected


def test_summary_durations_within_digest_error(reader, published):
    got = {row[0]: row[1:] for row in reader.query(PANELS["durations"].sql).result_rows}
    by_type = {}
    for workflow_type, duration_ms in reader.query(
            "SELECT workflow_type, duration_ms FROM runs WHERE duration_ms IS NOT NULL").result_rows:
        by_type.setdefault(workflow_type, []).append(duration_ms)
        by_type.setdefault("", []).append(duration_ms)
    assert set(got) == set(by_type)
    for workflow_type, values in by_type.items():
        p50_s, p95_s, _queue_p95_s = got[workflow_type]
        # rounded to 10 ms: the digest's estimate lies within 5 ms of the value shown; its rank
        # must be within 3 % of n of the exact quantile's rank (t-digest error, small groups)
        ordered = sorted(values)
        n = len(ordered)
        for q, estimate in ((0.5, p50_s), (0.95, p95_s)):
            below = sum(1 for v in ordered if v < estimate * 1000 - 5)
            upto = sum(1 for v in ordered if v <= estimate * 1000 + 5)
            assert below - 0.03 * n <= q * n <= upto + 0.03 * n, (workflow_type, q, estimate, below, upto, n)
