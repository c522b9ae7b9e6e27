"""`runlens stats bottlenecks` reads whole hours from step_stats_hourly and the ragged minutes
of its range from step_stats_state (migration 007): on the perturbed workload it must answer as
step_stats_state alone does — counts exactly, t-digest percentiles within a few percent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboards import stats
from tests.integration.oracle_window import START

pytestmark = pytest.mark.integration


def _minutes_only(filters: stats.Filters, by: list[str]) -> stats.Query:
    """The same question over step_stats_state alone (the per-minute path)."""
    original = stats.step_source
    stats.step_source = lambda f, minutes=False, days=True: original(f, minutes=True)
    try:
        return stats.bottlenecks(filters, by)
    finally:
        stats.step_source = original


@pytest.mark.parametrize("by", [["workflow", "step"], ["account", "workflow", "version", "step"],
                                ["workflow", "step", "hour"], ["workflow", "step", "day"]])
@pytest.mark.parametrize("window", ["mid-hour", "days", "open"])
def test_bottlenecks_over_hours_equal_the_minutes(reader, published, by, window):
    if window == "mid-hour":
        filters = stats.Filters(since=START + timedelta(minutes=41, seconds=5),
                                until=START + timedelta(hours=4, minutes=13), account="acme")
    elif window == "days":   # the workload's day whole (from step_stats_daily), ragged hours around it
        filters = stats.Filters(since=START - timedelta(hours=2, minutes=5),
                                until=START + timedelta(days=1, minutes=30), account="acme")
    else:
        filters = stats.Filters(account="acme")
    got_q, expected_q = stats.bottlenecks(filters, by), _minutes_only(filters, by)
    assert "step_stats_hourly" in got_q.sql and "step_stats_hourly" not in expected_q.sql
    got = reader.query(got_q.sql.replace("LIMIT 200", ""), parameters=got_q.params).result_rows
    expected = reader.query(expected_q.sql.replace("LIMIT 200", ""), parameters=expected_q.params).result_rows
    assert expected
    n = len(by)
    # keys, step name/type, runs, failure_pct; late_resumes, late_by_avg_s
    counts = lambda rows: sorted(tuple(map(str, r[:n + 4] + r[n + 7:n + 9])) for r in rows)  # noqa: E731
    assert counts(got) == counts(expected)
    index = {tuple(map(str, r[:n + 2])): r for r in expected}
    for row in got:
        other = index[tuple(map(str, row[:n + 2]))]
        for a, b in ((row[n + 4], other[n + 4]), (row[n + 5], other[n + 5])):   # p50_s, p95_s
            assert abs(a - b) <= 0.05 * max(abs(b), 0.01), (row, other)


def _minutes_only_runs(build, filters, *args) -> stats.Query:
    original = stats.run_source
    stats.run_source = lambda f, minutes=False: original(f, minutes=True)
    try:
        return build(filters, *args)
    finally:
        stats.run_source = original


FILTERS = {
    "mid-hour": dict(since=START + timedelta(minutes=12, seconds=1), until=START + timedelta(hours=5, minutes=2),
                     account="acme"),
    "since": dict(since=START + timedelta(hours=1, minutes=30)),
    "open": {},
}


@pytest.mark.parametrize("window", sorted(FILTERS))
@pytest.mark.parametrize("question", ["success-workflow", "success-type-hour", "peaks", "durations-workflow",
                                      "durations-type-day"])
def test_run_stats_over_hours_equal_the_minutes(reader, published, window, question):
    filters = stats.Filters(**FILTERS[window])
    build, args = {
        "success-workflow": (stats.success, (["workflow"],)),
        "success-type-hour": (stats.success, (["type", "hour"],)),
        "peaks": (stats.peaks, ()),
        "durations-workflow": (stats.durations, (["workflow"],)),
        "durations-type-day": (stats.durations, (["type", "day"],)),
    }[question]
    got_q, expected_q = build(filters, *args), _minutes_only_runs(build, filters, *args)
    assert "run_stats_hourly" in got_q.sql and "run_stats_hourly" not in expected_q.sql
    got = reader.query(got_q.sql, parameters=got_q.params).result_rows
    expected = reader.query(expected_q.sql, parameters=expected_q.params).result_rows
    assert expected
    if not question.startswith("durations"):
        assert sorted(map(str, got)) == sorted(map(str, expected))
        return
    keys = len(args[0]) + (1 if "workflow" in args[0] else 0)
    by_key = {tuple(map(str, r[:keys])): r for r in expected}
    assert sorted(by_key) == sorted(tuple(map(str, r[:keys])) for r in got)
    for row in got:
        other = by_key[tuple(map(str, row[:keys]))]
        assert row[keys] == other[keys]                                   # runs_finished exactly
        for a, b in zip(row[keys + 1:], other[keys + 1:], strict=False):                 # percentiles (s) within 5 %
            if b is not None and a == a and b == b:                        # NaN: no samples in either
                assert abs(a - b) <= 0.05 * max(abs(b), 0.05), (row, other)
