"""The query suite the bench times: summary panels, stats queries and Grafana panels."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass
class SuiteQuery:
    kind: str
    name: str
    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None


def query_suite(now: datetime, shown_run: dict[str, str] | None = None) -> list[SuiteQuery]:
    """Every summary panel, every `runlens stats` query with its CLI defaults, and every Grafana
    panel (All selected, last 7 days) if dashboards.panels is there. The Run details panels show
    one run, as they do for a user: ``shown_run`` (its ``account`` and ``run``); without one they
    are skipped, never timed over every run."""
    from dashboards import stats
    from dashboards.summary import SUMMARY_PANELS

    suite = [SuiteQuery("summary", p.key, p.sql) for p in SUMMARY_PANELS]
    week = stats.Filters(since=now - timedelta(days=7))
    builders = [
        ("success --by workflow --since 7d", lambda: stats.success(week, ["workflow"])),
        ("durations --by workflow --since 7d", lambda: stats.durations(week, ["workflow"])),
        ("bottlenecks --by workflow,step --since 7d", lambda: stats.bottlenecks(week, ["workflow", "step"])),
        ("queue --by hour --since 1d", lambda: stats.queue(stats.Filters(since=now - timedelta(days=1)), "hour")),
        ("peaks --since 28d", lambda: stats.peaks(stats.Filters(since=now - timedelta(days=28)))),
        ("alerts --since 7d", lambda: stats.alerts(week, None)),
    ]
    for name, build in builders:
        try:
            q = build()
            suite.append(SuiteQuery("stats", name, q.sql, dict(q.params)))
        except Exception as exc:  # noqa: BLE001 - reported per query
            suite.append(SuiteQuery("stats", name, skip=f"could not build: {exc}"))
    try:
        from dashboards import panels as P
        from dashboards.definitions.runs_list import RUN_DETAILS_UID
        from dashboards.macros import TimeRange, expand
        from dashboards.report import query_interval, variable_specs, variable_values
    except Exception as exc:  # noqa: BLE001 - another module's work in progress
        suite.append(SuiteQuery("panel", "*", skip=f"dashboards.panels not usable: {exc}"))
        return suite
    start, end = now - timedelta(days=7), now
    try:
        every, specs = variable_values({}), variable_specs()
        one_run = variable_values(shown_run) if shown_run else None
        for dashboard, panel in P.all_panels():
            name = f"{dashboard.uid.removeprefix('runlens-')}/{panel.id} {panel.title}"
            values = one_run if dashboard.uid == RUN_DETAILS_UID else every
            if values is None:
                suite.append(SuiteQuery("panel", name, skip="no run to show"))
                continue
            try:
                sql = expand(panel.sql, TimeRange(start, end, query_interval(panel, start, end)), values, specs)
                suite.append(SuiteQuery("panel", name, sql))
            except Exception as exc:  # noqa: BLE001
                suite.append(SuiteQuery("panel", name, skip=f"could not expand: {exc}"))
    except Exception as exc:  # noqa: BLE001
        suite.append(SuiteQuery("panel", "*", skip=f"dashboards.panels not usable: {exc}"))
    return suite
