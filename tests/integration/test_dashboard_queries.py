"""Every Grafana panel, variable and alert query, expanded the way the ClickHouse plugin expands
it, run against the warehouse filled by the shared 6-hour workload (2026-11-16 00:00-06:00 UTC,
accounts acme/globex/initech).

Column shapes are read with DESCRIBE (so they are checked even where a query returns no rows);
the rows must be there wherever the workload guarantees them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dashboards import panels as P
from dashboards.macros import ALL, TimeRange, expand
from dashboards.report import column_kind, query_interval, variable_specs, variable_values

pytestmark = pytest.mark.integration

UTC = timezone.utc
T0 = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
ACME = variable_values({"account": "acme"})

# Panels over ingestion time (the pipeline's own clock), not event time: run over the minutes
# the shared workload was ingested.
INGESTION_PANELS = {("runlens-pipeline", 1), ("runlens-pipeline", 3), ("runlens-pipeline", 5)}
# Panels the workload cannot fill: worker metrics (written by the worker later), live-event
# latency (the workload is all backfill), detector alerts.
NOT_GUARANTEED = {("runlens-pipeline", 2), ("runlens-pipeline", 4), ("runlens-pipeline", 6),
                  ("runlens-pipeline", 7)}


def _columns(reader, sql: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in reader.query(f"DESCRIBE TABLE ({sql})").result_rows]


def _check_shape(panel: P.Panel, columns: list[tuple[str, str]]) -> None:
    kinds = [column_kind(t) for _, t in columns]
    where = f"{panel.title!r} ({panel.type}) returns {columns}"
    assert "other" not in kinds[1:] or panel.type == "table", where
    if panel.type == "timeseries":
        assert kinds[0] == "time", f"{where}: the first column must be the time"
        assert "number" in kinds[1:] and set(kinds[1:]) <= {"number", "string"}, where
    elif panel.type == "heatmap":
        assert kinds[0] == "time" and set(kinds[1:]) == {"number"}, where
    elif panel.type == "barchart":
        assert kinds[0] == "string" and "number" in kinds and set(kinds) <= {"string", "number"}, where
    elif panel.type == "piechart":
        assert sorted(kinds) == ["number", "string"], where
    elif panel.type == "stat":
        assert kinds and set(kinds) == {"number"}, where
    else:
        assert panel.type == "table" and columns, where


@pytest.fixture(scope="module")
def ingestion_window(reader, published):
    start, end = reader.query("SELECT min(ingested_at), max(ingested_at) FROM events").result_rows[0]
    start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    return start - timedelta(minutes=1), end + timedelta(minutes=1)


def _panel_sql(panel: P.Panel, start: datetime, end: datetime, values=ACME) -> str:
    return expand(panel.sql, TimeRange(start, end, query_interval(panel, start, end)), values, variable_specs())


@pytest.mark.parametrize("uid, panel_id", [(d.uid, p.id) for d, p in P.all_panels()],
                         ids=[f"{d.uid}-{p.id}" for d, p in P.all_panels()])
def test_panel_query(reader, published, ingestion_window, uid, panel_id):
    panel = P.dashboard(uid).panel(panel_id)
    start, end = ingestion_window if (uid, panel_id) in INGESTION_PANELS else (T0, T1)
    sql = _panel_sql(panel, start, end)
    columns = _columns(reader, sql)
    _check_shape(panel, columns)
    result = reader.query(sql)
    rows = result.result_rows
    if (uid, panel_id) not in NOT_GUARANTEED:
        assert rows, f"{panel.title!r} returned no rows for {start}..{end}:\n{sql}"
    names = list(result.column_names)
    if panel.time_series and rows:
        times = [row[0] for row in rows]
        assert times == sorted(times), f"{panel.title!r}: the plugin needs rows in time order"
    for column in ("account", "account_id"):
        if column in names:
            values = {row[names.index(column)] for row in rows}
            assert values <= {"acme"}, f"{panel.title!r} ignored the account variable: {values}"


def _stat(reader, dashboard, panel_id, values) -> float:
    rows = reader.query(_panel_sql(dashboard.panel(panel_id), T0, T1, values)).result_rows
    return rows[0][0]


def _oracle_finished(reader, where: str) -> tuple[int, int]:
    return reader.query(
        "SELECT countIf(status IN ('success', 'failed', 'stopped')), countIf(status = 'failed') FROM runs "
        f"WHERE finished_at >= '2026-11-16 00:00:00' AND toStartOfMinute(finished_at) <= '2026-11-16 06:00:00' "
        f"AND {where}").result_rows[0]


def test_overview_stats_match_the_runs_view(reader, published):
    finished, failed = _oracle_finished(reader, "account_id = 'acme'")
    assert finished > 100 and failed > 0
    assert _stat(reader, P.OVERVIEW, 1, ACME) == finished
    assert _stat(reader, P.OVERVIEW, 3, ACME) == failed
    everyone = variable_values(None)
    assert _stat(reader, P.OVERVIEW, 1, everyone) == _oracle_finished(reader, "1")[0]


def test_variable_filters_narrow_like_the_runs_view(reader, published):
    values = variable_values({"account": "acme", "type": ["contact", "integration"], "trigger": "api,manual"})
    expected = _oracle_finished(
        reader, "account_id = 'acme' AND workflow_type IN ('contact', 'integration') AND trigger IN ('api', 'manual')")
    assert 0 < expected[0] < _oracle_finished(reader, "account_id = 'acme'")[0]
    assert _stat(reader, P.OVERVIEW, 1, values) == expected[0]
    (workflow, version), = reader.query(
        "SELECT workflow_id, toString(any(workflow_version)) FROM runs WHERE account_id = 'acme' "
        "GROUP BY workflow_id ORDER BY count() DESC LIMIT 1").result_rows
    one = variable_values({"account": "acme", "workflow": workflow, "version": version})
    assert _stat(reader, P.OVERVIEW, 1, one) == _oracle_finished(
        reader, f"account_id = 'acme' AND workflow_id = '{workflow}' AND workflow_version = {version}")[0]


def test_variable_queries(reader, published):
    time = TimeRange(T0, T1, 60)
    found = {}
    for variable in P.VARIABLES:
        if variable.sql:
            rows = reader.query(expand(variable.sql, time, ACME, variable_specs())).result_rows
            found[variable.name] = rows
    assert {r[0] for r in found["account"]} == {"acme", "globex", "initech"}
    workflows = {r[0] for r in found["workflow"]}
    assert workflows == {r[0] for r in reader.query(
        "SELECT DISTINCT workflow_id FROM runs WHERE account_id = 'acme' AND status != 'running'").result_rows}
    assert all(len(r) == 2 and r[0] in r[1] for r in found["workflow"])   # value = id, text = "name (id)"
    for name in ("version", "site", "card"):
        assert found[name], f"variable {name} has no options"
        assert all(isinstance(r[0], str) and r[0] for r in found[name])


def _alert_sql(rule: P.AlertRule, end: datetime) -> str:
    return expand(rule.sql, TimeRange(end - timedelta(seconds=rule.window_s), end, 1.0), {}, {})


@pytest.mark.parametrize("uid", [r.uid for r in P.ALERT_RULES])
def test_alert_query_shape(reader, published, uid):
    rule = next(r for r in P.ALERT_RULES if r.uid == uid)
    columns = _columns(reader, _alert_sql(rule, T0 + timedelta(hours=3)))
    kinds = [column_kind(t) for _, t in columns]
    assert kinds.count("number") == 1, f"{uid}: alerting needs exactly one value column, got {columns}"
    assert set(kinds) <= {"number", "string"}, f"{uid}: other columns become labels and must be strings"
    labels = {name for name, t in columns if column_kind(t) == "string"}
    assert labels <= {"account", "workflow", "workflow_name", "worker"}


def _value(reader, sql: str) -> list[tuple]:
    return reader.query(sql).result_rows


def test_alert_queries_on_the_workload(reader, published, ingestion_window):
    rules = {r.uid: r for r in P.ALERT_RULES}
    # queue depth is known for every account at any moment of the workload
    rows = _value(reader, _alert_sql(rules["runlens-queue-growing"], T0 + timedelta(hours=3)))
    assert {r[0] for r in rows} == {"acme", "globex", "initech"}
    assert all(r[1] < rules["runlens-queue-growing"].threshold for r in rows)   # light load: no backlog
    # right after ingestion events arrived (no-data quiet) and ~1% were dead-lettered (below 5%)
    after = ingestion_window[1]
    (ingested,), = _value(reader, _alert_sql(rules["runlens-no-data"], after))
    assert ingested > 10_000
    (dead_pct,), = _value(reader, _alert_sql(rules["runlens-dead-letter-rate"], after))
    assert 0.1 < dead_pct < rules["runlens-dead-letter-rate"].threshold
    # long after it, nothing arrives: the no-data rule's value drops below its threshold
    (later,), = _value(reader, _alert_sql(rules["runlens-no-data"], after + timedelta(hours=2)))
    assert later < rules["runlens-no-data"].threshold
    # the failure-spike query yields one row per busy workflow over a window wide enough
    spike = rules["runlens-failure-spike"]
    wide = expand(spike.sql, TimeRange(T0, T1, 1.0), {}, {})
    rows = _value(reader, wide)
    assert rows and all(0 <= r[3] <= 100 for r in rows)
    assert {r[0] for r in rows} <= {"acme", "globex", "initech"}


def test_all_means_no_filter(reader, published):
    values = {v.name: [ALL] for v in P.VARIABLES}
    sql = _panel_sql(P.OVERVIEW.panel(1), T0, T1, values)
    assert "1=1" in sql and "IN (" not in sql
