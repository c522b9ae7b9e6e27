"""Every Grafana panel, variable and alert query, expanded the way the ClickHouse plugin expands
it, run against the warehouse filled by the shared 6-hour workload (2026-11-16 00:00-06:00 UTC,
accounts acme/globex/initech).

Column shapes are read with DESCRIBE (so they are checked even where a query returns no rows);
the rows must be there wherever the workload guarantees them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboards import panels as P
from dashboards.macros import ALL, TimeRange, expand
from dashboards.report import column_kind, query_interval, variable_specs, variable_values
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
ACME = variable_values({"account": "acme"})

# Panels over ingestion time (the pipeline's own clock), not event time: run over the minutes
# the shared workload was ingested. Throughput and dead-letter rate read the workers' per-batch
# figures (pipeline_metrics), written with the worker's next metrics sample: `ingestion_window`
# waits for them.
INGESTION_PANELS = {("runlens-pipeline", 1), ("runlens-pipeline", 3), ("runlens-pipeline", 5)}
# Panels the workload cannot fill: consumer lag (sampled, may be all before the window), live-event
# latency (the workload is all backfill: no batch has a live event), detector alerts.
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
    # the figures of the last batch of each topic: a batch's time is after its rows' ingested_at
    # (events) or received_at (dead letters)
    covered = """
        SELECT (SELECT max(time) FROM pipeline_metrics WHERE metric = 'batch_events_stored')
                   >= (SELECT max(ingested_at) FROM events),
               (SELECT max(time) FROM pipeline_metrics WHERE metric = 'batch_dead_letters_stored')
                   >= (SELECT max(received_at) FROM dead_letters)"""
    wait_for(lambda: reader.query(covered).result_rows[0], lambda done: all(done), timeout=60,
             what="the workers' batch figures to cover the stored events and dead letters")
    return start - timedelta(minutes=1), end + timedelta(minutes=1)


def test_batch_figures_count_what_was_stored(reader, published, ingestion_window):
    """The figures the throughput panels sum account for every stored row: each row of `events`
    was counted by the batch that wrote it (repeats and redeliveries may add to the figures, never
    take away); the panel over the ingestion window sums to all of them."""
    (stored, dead, records), = reader.query(
        "SELECT sumIf(value, metric = 'batch_events_stored'), sumIf(value, metric = 'batch_dead_letters_stored'), "
        "sumIf(value, metric = 'batch_records') FROM pipeline_metrics").result_rows
    (rows,), = reader.query("SELECT count() FROM events").result_rows
    (letters,), = reader.query("SELECT count() FROM dead_letters").result_rows
    assert stored >= rows > 10_000 and dead >= letters > 0 and records > 0
    start, end = ingestion_window
    panel = P.PIPELINE.panel(1)
    time = TimeRange(start, end, query_interval(panel, start, end))
    got = reader.query(_panel_sql(panel, start, end)).result_rows
    assert sum(row[2] for row in got) * time.interval_s == pytest.approx(stored)


def _panel_sql(panel: P.Panel, start: datetime, end: datetime, values=ACME) -> str:
    return expand(panel.sql, TimeRange(start, end, query_interval(panel, start, end)), values, variable_specs())


@pytest.fixture(scope="module")
def details_run(reader, published) -> str:
    """The run the Run details panels are asked about: an acme run of the window that was
    replayed and has a retried step (so every panel of the dashboard has rows)."""
    rows = reader.query(
        "SELECT replay_of FROM runs WHERE account_id = 'acme' AND replay_of IS NOT NULL "
        "AND replay_of IN (SELECT run_id FROM steps WHERE account_id = 'acme' AND attempt > 1) "
        "AND started_at >= '2026-11-16 00:00:00' AND started_at < '2026-11-16 06:00:00' "
        "ORDER BY replay_of LIMIT 1").result_rows
    assert rows, "the workload has no replayed acme run with a retry"
    return rows[0][0]


@pytest.mark.parametrize("uid, panel_id", [(d.uid, p.id) for d, p in P.all_panels()],
                         ids=[f"{d.uid}-{p.id}" for d, p in P.all_panels()])
def test_panel_query(reader, published, ingestion_window, details_run, uid, panel_id):
    panel = P.dashboard(uid).panel(panel_id)
    start, end = ingestion_window if (uid, panel_id) in INGESTION_PANELS else (T0, T1)
    values = variable_values({"account": "acme", "run": details_run}) if uid == P.RUN_DETAILS.uid else ACME
    sql = _panel_sql(panel, start, end, values)
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
    # the reconciliation rule: every account of the workload, no drift
    drift = rules["runlens-aggregate-drift"]
    rows = _value(reader, expand(drift.sql, TimeRange(T0, T1, 1.0), {}, {}))
    assert {r[0] for r in rows} == {"acme", "globex", "initech"} and all(r[1] == 0 for r in rows)


def test_all_means_no_filter(reader, published):
    values = {v.name: [ALL] for v in P.VARIABLES}
    sql = _panel_sql(P.OVERVIEW.panel(1), T0, T1, values)
    assert "1=1" in sql and "IN (" not in sql


# --------------------------------------------------------------------------- pre-aggregated panels
# The panels below read pre-aggregated state (migration 007: run_notes, the duration
# histogram in run_stats_state) instead of the `runs` / `steps` views. Each must return what the
# same question asked of the views returns, on the perturbed workload (duplicates, reordering,
# late events): counts exactly. `runs` filters on finished_at; minute-bucketed state on the
# finish minute, hence toStartOfMinute(finished_at) <= T1 where the panel filters on bucket.

WINDOW = "finished_at >= '2026-11-16 00:00:00' AND finished_at <= '2026-11-16 06:00:00'"
WINDOW_MINUTES = "finished_at >= '2026-11-16 00:00:00' AND toStartOfMinute(finished_at) <= '2026-11-16 06:00:00'"

ORACLES = {
    ("runlens-workflow", 3): """
        SELECT multiIf(duration_ms < 1000, '< 1 s', duration_ms < 5000, '1-5 s',
                       duration_ms < 15000, '5-15 s', duration_ms < 60000, '15-60 s',
                       duration_ms < 300000, '1-5 min', duration_ms < 1800000, '5-30 min',
                       '30 min +') AS duration, count() AS runs
        FROM runs WHERE {window_minutes} AND duration_ms IS NOT NULL AND {where}
        GROUP BY duration ORDER BY min(duration_ms)""",
    ("runlens-failures", 1): """
        SELECT error_code, count() AS failed_runs FROM runs
        WHERE status = 'failed' AND {window} AND {where}
        GROUP BY error_code ORDER BY failed_runs DESC, error_code LIMIT 10""",
    ("runlens-failures", 2): """
        SELECT ifNull(error_class, 'unknown') AS error_class, count() AS failed_runs FROM runs
        WHERE status = 'failed' AND {window} AND {where}
        GROUP BY error_class ORDER BY failed_runs DESC, error_class""",
    ("runlens-failures", 3): """
        SELECT any(workflow_name) AS workflow, step, any(step_type) AS type, sum(n) AS failures,
               uniqExactMerge(run_ids) AS runs, sum(retried) AS on_retry,
               arraySort(x -> (-x.1, x.2), groupArray((n, error_code)))[1].2 AS top_error,
               max(last) AS last_failure
        FROM (
            SELECT s.workflow_id AS workflow_id, s.step_name AS step, s.error_code AS error_code,
                   any(r.workflow_name) AS workflow_name, any(s.step_type) AS step_type, count() AS n,
                   uniqExactState(s.run_id) AS run_ids, countIf(s.attempt > 1) AS retried,
                   max(s.finished_at) AS last
            FROM steps AS s
            INNER JOIN (SELECT account_id, run_id, workflow_name FROM runs WHERE {where}) AS r
                ON r.account_id = s.account_id AND r.run_id = s.run_id
            WHERE s.status = 'failed' AND s.{window}
            GROUP BY workflow_id, step, error_code
        )
        GROUP BY workflow_id, step ORDER BY failures DESC, workflow_id, step LIMIT 20""",
    ("runlens-failures", 5): """
        SELECT ifNull(replay_mode, 'unknown') AS replay_mode,
               countIf(status = 'success') AS success, countIf(status = 'failed') AS failed,
               countIf(status = 'stopped') AS stopped,
               countIf(status IN ('pending', 'running')) AS in_progress
        FROM runs
        WHERE replay_of IS NOT NULL AND queued_at >= '2026-11-16 00:00:00'
          AND queued_at <= '2026-11-16 06:00:00' AND {where}
        GROUP BY replay_mode ORDER BY replay_mode""",
    ("runlens-failures", 6): """
        SELECT finished_at, account_id AS account, workflow_name AS workflow, workflow_id,
               workflow_version AS version, run_id, error_code, error_class, error_message
        FROM runs WHERE status = 'failed' AND {window} AND {where}
        ORDER BY finished_at DESC, account, run_id LIMIT 50""",
}

FILTERS = [
    ({"account": "acme"}, "account_id = 'acme'"),
    (None, "1"),
    ({"account": ["acme", "globex"], "type": ["contact", "integration", "card"], "trigger": "api,manual,automatic"},
     "account_id IN ('acme', 'globex') AND workflow_type IN ('contact', 'integration', 'card') "
     "AND trigger IN ('api', 'manual', 'automatic')"),
]


def _normalised(rows):
    return [tuple(str(v) if v is not None and not isinstance(v, (int, float, str)) else v for v in row)
            for row in rows]


@pytest.mark.parametrize("uid, panel_id", sorted(ORACLES), ids=[f"{u}-{i}" for u, i in sorted(ORACLES)])
@pytest.mark.parametrize("selection", range(len(FILTERS)))
def test_preaggregated_panels_equal_the_views(reader, published, uid, panel_id, selection):
    selected, where = FILTERS[selection]
    panel = P.dashboard(uid).panel(panel_id)
    got = reader.query(_panel_sql(panel, T0, T1, variable_values(selected))).result_rows
    expected = reader.query(ORACLES[(uid, panel_id)].format(
        window=WINDOW, window_minutes=WINDOW_MINUTES, where=where)).result_rows
    assert expected, f"{panel.title!r}: the workload should fill it"
    assert _normalised(got) == _normalised(expected), f"{panel.title!r} differs from the views"


def test_preaggregated_state_saw_the_duplicates_once(reader, published):
    """The perturbed stream delivers ~5 % of events twice: run_notes still holds each failed run,
    failed step attempt and replay run's lifecycle event once (even without FINAL)."""
    (failed_runs, failed_steps, replays), = reader.query(
        "SELECT countIf(scope = 'run'), countIf(scope = 'step'), uniqExactIf(run_id, scope = 'replay') "
        "FROM run_notes").result_rows
    assert failed_runs == reader.query("SELECT count() FROM runs WHERE status = 'failed'").result_rows[0][0]
    assert failed_steps == reader.query("SELECT count() FROM steps WHERE status = 'failed'").result_rows[0][0]
    assert replays > 0
    assert replays == reader.query("SELECT count() FROM runs WHERE replay_of IS NOT NULL").result_rows[0][0]
    (events,), = reader.query("SELECT count() FROM run_notes WHERE scope = 'replay'").result_rows
    assert events == reader.query("SELECT uniqExact(event_id) FROM events WHERE replay_of IS NOT NULL "
                                  "AND type IN ('run.queued', 'run.started', 'run.finished')").result_rows[0][0]


# Step panels read whole hours from step_stats_hourly and the ragged minutes from
# step_stats_state: the same as step_stats_state alone, for a range that starts and ends
# mid-hour. Sums and counts exactly; t-digest percentiles (merged minute -> hour -> range instead
# of minute -> range) within 5 %.
STEP_STATS_PANELS = [("runlens-workflow", 1), ("runlens-workflow", 2), ("runlens-workflow", 6)]


def _minutes_only(sql: str) -> str:
    replaced = re.sub(re.escape(P.STEP_STATS) + r"(\s+)WHERE ",
                      r"step_stats_state\1WHERE $__timeFilter(bucket) AND ", sql)
    assert replaced != sql
    return replaced


@pytest.mark.parametrize("uid, panel_id", STEP_STATS_PANELS, ids=[f"{u}-{i}" for u, i in STEP_STATS_PANELS])
@pytest.mark.parametrize("selection", range(len(FILTERS)))
def test_step_panels_over_hours_equal_the_minutes(reader, published, uid, panel_id, selection):
    selected, _ = FILTERS[selection]
    panel = P.dashboard(uid).panel(panel_id)
    start, end = T0 + timedelta(minutes=17, seconds=30), T1 - timedelta(minutes=23)
    if selection == 1:   # a range over whole days (the workload's day) and ragged hours
        start, end = T0 - timedelta(days=1, hours=2, minutes=5), T1 + timedelta(days=1, minutes=7)
    time = TimeRange(start, end, query_interval(panel, start, end))
    values = variable_values(selected)
    got = reader.query(expand(panel.sql, time, values, variable_specs())).result_rows
    expected = reader.query(expand(_minutes_only(panel.sql), time, values, variable_specs())).result_rows
    assert expected
    if panel_id == 2:   # workflow, step, type, runs, failure_pct exact; p50/p95/p99 within 5 %
        key = {row[:3]: row for row in expected}
        if len(expected) < 20:   # otherwise the top 20 by p95 may differ at the cut
            assert sorted(r[:5] for r in got) == sorted(r[:5] for r in expected)
        for row in got:
            if row[:3] in key:
                assert row[3:5] == key[row[:3]][3:5]
                for a, b in zip(row[5:], key[row[:3]][5:], strict=False):
                    assert abs(a - b) <= 0.05 * max(abs(b), 1), (row, key[row[:3]])
    else:
        assert got == expected


def test_step_stats_hourly_and_daily_hold_the_minutes(reader, published):
    sums = ("sum(executions), sum(succeeded), sum(failed), sum(skipped), sum(retries), "
            "round(sum(duration_sum_ms)), sum(delays), sum(delays_late), round(sum(lateness_sum_ms)), "
            "max(lateness_max_ms), max(step_index)")
    group = "account_id, toStartOfHour(bucket) AS h, workflow_id, workflow_version, step_id, step_name, step_type"
    hourly = reader.query(f"SELECT {group}, {sums} FROM step_stats_hourly GROUP BY ALL ORDER BY ALL").result_rows
    minutes = reader.query(f"SELECT {group}, {sums} FROM step_stats_state GROUP BY ALL ORDER BY ALL").result_rows
    assert hourly and hourly == minutes
    by_day = group.replace("toStartOfHour(bucket) AS h", "toStartOfDay(bucket) AS d")
    daily = reader.query(f"SELECT {by_day}, {sums} FROM step_stats_daily GROUP BY ALL ORDER BY ALL").result_rows
    assert daily == reader.query(f"SELECT {by_day}, {sums} FROM step_stats_state GROUP BY ALL ORDER BY ALL").result_rows
