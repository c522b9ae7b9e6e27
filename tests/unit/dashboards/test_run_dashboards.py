"""The Workflow Runs and Run details dashboards (issue 15): their definitions checked like the
other dashboards' (variable forms, account filter, tenant-readable tables, layout, links), and
their SQL run in chDB on a small workload against the `runs` / `steps` views they fold like."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import pytest

from dashboards.definitions import variables as V
from dashboards.definitions.filters import ACCOUNT
from dashboards.definitions.run_details import RUN, RUN_DETAILS, TIMELINE_OFFSET, TIMELINE_STATES
from dashboards.definitions.runs_list import RUN_LINK, RUN_LIST, RUN_LIST_UID
from dashboards.macros import ALL, MacroError, TimeRange, Variable, expand, used_variables
from dashboards.runs import RUN_STATUSES

DASHBOARDS = {RUN_LIST.uid: (RUN_LIST, V.RUN_LIST_VARIABLES), RUN_DETAILS.uid: (RUN_DETAILS, V.RUN_DETAILS_VARIABLES)}
PANELS = [(d, p) for d, _ in DASHBOARDS.values() for p in d.panels]
IDS = [f"{d.uid}-{p.id}" for d, p in PANELS]
_TABLE = re.compile(r"\b(?:FROM|(?<!ARRAY )JOIN)\s+([A-Za-z_]\w*)", re.IGNORECASE)


# --------------------------------------------------------------------------- definitions


def test_uids_and_variables():
    assert RUN_LIST.uid == RUN_LIST_UID == "runlens-runs" and RUN_DETAILS.uid == "runlens-run"
    assert [v.name for v in V.RUN_LIST_VARIABLES] == [
        "account", "workflow", "version", "type", "trigger", "site", "card", "status", "search"]
    assert [v.name for v in V.RUN_DETAILS_VARIABLES] == ["account", "run"]
    assert set(V.STATUS.options) == set(RUN_STATUSES) and V.STATUS.multi
    for name in V.TEXT_VARIABLES:   # typed in: one value, no All, no options to pick from
        variable = next(v for v in (V.SEARCH, V.RUN) if v.name == name)
        assert not variable.multi and not variable.include_all and not variable.options and not variable.sql
    assert {"status", "search", "run"} <= {v.name for v in V.VARIABLES}
    assert RUN_LIST.variables == tuple(v.name for v in V.RUN_LIST_VARIABLES)
    assert RUN_DETAILS.variables == tuple(v.name for v in V.RUN_DETAILS_VARIABLES)
    assert V.TEXT_VARIABLES == {"search", "run"} and all(v.textbox for v in (V.SEARCH, V.RUN))


@pytest.mark.parametrize("uid", list(DASHBOARDS))
def test_every_variable_used_is_the_dashboards(uid):
    dashboard, variables = DASHBOARDS[uid]
    names = {v.name for v in variables}
    for panel in dashboard.panels:
        assert used_variables(panel.sql) <= names, f"{panel.title}: {used_variables(panel.sql) - names}"
        assert "account" in used_variables(panel.sql)


@pytest.mark.parametrize("uid, panel_id", [(d.uid, p.id) for d, p in PANELS], ids=IDS)
def test_variables_reach_the_sql_only_percent_encoded(uid, panel_id):
    """As every other panel: '${name:percentencode}' in a literal ClickHouse decodes, or the second
    argument of $__conditionalAll; no other form."""
    panel = DASHBOARDS[uid][0].panel(panel_id)
    rest = panel.sql
    for name in used_variables(panel.sql):
        rest = rest.replace(f"'${{{name}:percentencode}}'", "''").replace(f", ${name})", ")")
    assert not used_variables(rest), rest
    assert ":singlequote" not in panel.sql and ":sqlstring" not in panel.sql and ":raw" not in panel.sql


@pytest.mark.parametrize("uid, panel_id", [(d.uid, p.id) for d, p in PANELS], ids=IDS)
def test_per_run_state_is_read_only_for_the_selected_runs(uid, panel_id):
    """The per-run views are read with the account filter first (and on Run details the run
    filter): a condition on the views' key, which ClickHouse applies before their fold (see
    test_a_key_filter_on_the_views_reaches_the_tables_key). The raw events only to find a run's
    replays, by the account and replay_of (its bloom filter: test_replays_are_found_by_the_replay_of_index)."""
    from sinks import tenancy

    panel = DASHBOARDS[uid][0].panel(panel_id)
    tables = set(_TABLE.findall(panel.sql))
    assert tables <= set(tenancy.READABLE), tables - set(tenancy.READABLE)
    assert not tables & {"run_state", "step_state"}
    for match in re.finditer(r"FROM events\s+WHERE (.*)", panel.sql):
        assert (uid, panel_id) == (RUN_DETAILS.uid, 4), f"{panel.title} reads the raw events"
        by_replay_of = f"{ACCOUNT} AND has(arrayMap(pair -> pair.2, originals), replay_of)"
        assert match.group(1).startswith(by_replay_of), match.group(1)
    for match in re.finditer(r"FROM (runs|steps)\s+WHERE (.*)", panel.sql):
        where = match.group(2)
        assert where.startswith(ACCOUNT), f"{panel.title}: {match.group(1)} read without the account first"
        if uid == RUN_DETAILS.uid and match.group(1) == "steps":
            assert RUN in where


@pytest.mark.parametrize("view, table", [("runs", "run_state"), ("steps", "step_state")])
def test_a_key_filter_on_the_views_reaches_the_tables_key(tmp_path, view, table):
    """What makes reading the views by (account, run) cheap: ClickHouse moves the condition
    before the view's GROUP BY, onto the primary key of the state table it folds."""
    from sinks.clickhouse import connect, migrate

    client = connect(f"chdb://{tmp_path}")
    try:
        migrate(client, "keyed")
        client.command("INSERT INTO keyed.events (event_id, schema_version, type, ts, account_id, run_id, "
                       "workflow_id, workflow_name, workflow_version, workflow_type, trigger, step_id, step_index, "
                       "step_name, step_type, attempt, is_new, source_partition, source_offset, source_index) "
                       "SELECT toString(number), 1, 'step.started', now64(3) - number, "
                       "if(number % 2 = 0, 'acme', 'globex'), 'r' || toString(number % 5000), 'wf', 'WF', 1, "
                       "'marketing', 'manual', 's1', 0, 'S', 'action', 1, 1, 0, number, 0 FROM numbers(20000)")
        plan = "\n".join(row[0] for row in client.query(
            f"EXPLAIN indexes = 1 SELECT * FROM keyed.{view} WHERE account_id = 'acme' AND run_id = 'r2'").result_rows)
    finally:
        client.close()
    assert f"keyed.{table}" in plan or table in plan
    assert re.search(r"Condition: .*account_id in \['acme', 'acme'\]", plan), plan
    assert re.search(r"Condition: .*run_id in \['r2', 'r2'\]", plan), plan


def test_replays_are_found_by_the_replay_of_index(tmp_path):
    """The Replays panel and `runlens runs show` find a run's replays in `events` by replay_of:
    its bloom filter (migration 011) keeps that read to the granules that hold them."""
    from sinks.clickhouse import connect, migrate

    client = connect(f"chdb://{tmp_path}")
    try:
        migrate(client, "keyed")
        client.command("INSERT INTO keyed.events (event_id, schema_version, type, ts, account_id, run_id, "
                       "workflow_id, workflow_name, workflow_version, workflow_type, trigger, replay_of, is_new, "
                       "source_partition, source_offset, source_index) "
                       "SELECT toString(number), 1, 'run.queued', now64(3) - number, 'acme', "
                       "'r' || leftPad(toString(number), 6, '0'), 'wf', 'WF', 1, 'marketing', 'manual', "
                       "if(number % 10000 = 7, 'original-' || toString(number), NULL), 1, 0, number, 0 "
                       "FROM numbers(100000)")
        query = "SELECT run_id FROM keyed.events WHERE account_id = 'acme' AND replay_of = 'original-50007'"
        assert client.query(query).result_rows == [("r050007",)]
        plan = "\n".join(row[0] for row in client.query(f"EXPLAIN indexes = 1 {query}").result_rows)
    finally:
        client.close()
    skip = plan[plan.index("Name: replay_of_index"):]
    granules = re.search(r"Granules: (\d+)/(\d+)", skip)
    assert granules and int(granules.group(1)) == 1 and int(granules.group(2)) > 5, plan


@pytest.mark.parametrize("uid", list(DASHBOARDS))
def test_layout(uid):
    panels = DASHBOARDS[uid][0].panels
    assert len({p.id for p in panels}) == len(panels)
    boxes = [(p.title, x, y, x + w, y + h) for p in panels for x, y, w, h in [p.grid]]
    assert all(x1 <= 24 for _, _, _, x1, _ in boxes)
    for (a, ax0, ay0, ax1, ay1), (b, bx0, by0, bx1, by1) in combinations(boxes, 2):
        assert not (ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1), f"{a!r} overlaps {b!r}"


def test_run_links_carry_account_run_and_the_runs_window():
    assert "/d/runlens-run?" in RUN_LINK
    for part in ("var-account=${__data.fields.account:percentencode}", "var-run=${__data.fields.run_id:percentencode}",
                 "from=${__data.fields.window_from:percentencode}", "to=${__data.fields.window_to:percentencode}"):
        assert part in RUN_LINK
    for dashboard, panel_id in ((RUN_LIST, 2), (RUN_DETAILS, 4)):
        panel = dashboard.panel(panel_id)
        assert [link.url for link in panel.links if link.column == "run_id"] == [RUN_LINK]
        for column in ("run_id", "account", "window_from", "window_to"):
            assert re.search(rf"\b{column}\b", panel.sql), f"{panel.title} lacks {column}"
    workflow = RUN_LIST.panel(2).links[1]
    assert workflow.column == "workflow" and "${__url_time_range}" in workflow.url


def test_the_timeline_is_a_stacked_horizontal_bar_chart_offset_first():
    panel = RUN_DETAILS.panel(2)
    assert panel.type == "barchart" and panel.stacked and panel.horizontal
    columns = re.search(r"SELECT (.*?)\n", panel.sql).group(1)
    assert columns.startswith(f"step_attempt, {TIMELINE_OFFSET},")
    assert all(f"AS {s}_s" in panel.sql for s in TIMELINE_STATES)


def test_the_list_is_newest_first_and_counts_by_status():
    assert "ORDER BY started DESC" in RUN_LIST.panel(2).sql
    stat = RUN_LIST.panel(1)
    assert stat.type == "stat" and all(f"countIf(status = '{s}')" in stat.sql for s in RUN_STATUSES)


# --------------------------------------------------------------------------- expansion

TR = TimeRange(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 16, 2, tzinfo=UTC), 60)
EVERY = (*V.RUN_LIST_VARIABLES, V.RUN)
SPECS = {v.name: Variable(v.name, all_values=tuple(v.options)) for v in EVERY}


def _values(**selected) -> dict:
    values: dict = {v.name: [ALL] for v in EVERY}
    values["search"] = ""     # an empty textbox
    values.update(selected)
    return values


def test_all_and_an_empty_textbox_add_no_condition():
    sql = expand(RUN_LIST.panel(2).sql, TR, _values(), SPECS)
    assert "decodeURLComponent" not in sql and "1=1" in sql
    sql = expand(RUN_DETAILS.panel(3).sql, TR, _values(account="acme", run="run_1"), SPECS)
    assert sql.count("decodeURLComponent('acme')") >= 1 and "decodeURLComponent('run_1')" in sql


def test_a_typed_in_value_reaches_the_sql_percent_encoded_only():
    hostile = "x\\') OR 1=1 --"
    for dashboard, variable in ((RUN_LIST, "search"), (RUN_DETAILS, "run")):
        for panel in dashboard.panels:
            if variable not in used_variables(panel.sql):
                continue
            sql = expand(panel.sql, TR, _values(**{variable: hostile}), SPECS)
            assert "OR 1=1" not in sql and "decodeURLComponent('x%5C%27%29%20OR%201%3D1%20--')" in sql
    with pytest.raises(MacroError, match="URIError"):
        expand(RUN_DETAILS.panel(1).sql, TR, _values(run="\ud800"), SPECS)


# --------------------------------------------------------------------------- on a warehouse (chDB)

T0 = datetime(2026, 11, 16, tzinfo=UTC)
T1 = T0 + timedelta(hours=2)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    from producers.workload import Spike, WorkloadConfig, generate
    from schemas import parse_event
    from sinks.clickhouse import Warehouse, connect, migrate
    from sinks.rows import event_columns, sourced

    path: Path = tmp_path_factory.mktemp("runs-dashboards")
    client = connect(f"chdb://{path}")
    migrate(client, "runlens")
    spikes = (Spike(workflow="acme/wf-welcome", at=T0 + timedelta(minutes=20), rate=0.6, minutes=60),)
    config = WorkloadConfig(seed=5, accounts=3, backfill_runs_per_hour=300, spikes=spikes, replay_probability=0.5)
    events = [parse_event(json.dumps(e).encode()) for e in generate(config, T0, T1)]
    Warehouse(client, "runlens").insert_columns(
        "events", event_columns(sourced(e, 0, i) for i, e in enumerate(events)), token="runs-dashboards")
    client.close()
    reader = connect(f"chdb://{path}", database="runlens")
    yield reader
    reader.close()


def _cell(value):
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _rows(client, sql: str, **selected) -> list[tuple]:
    return [tuple(_cell(v) for v in row)
            for row in client.query(expand(sql, TimeRange(T0, T1, 60), _values(**selected), SPECS)).result_rows]


WINDOW = ("coalesce(started_at, queued_at, finished_at) >= '2026-11-16 00:00:00' "
          "AND coalesce(started_at, queued_at, finished_at) <= '2026-11-16 02:00:00'")


def test_the_run_list_is_the_runs_view(warehouse):
    got = _rows(warehouse, RUN_LIST.panel(2).sql, account=["acme"])
    names = list(warehouse.query(expand(RUN_LIST.panel(2).sql, TR, _values(account=["acme"]), SPECS)).column_names)
    expected = warehouse.query(
        "SELECT run_id, status, duration_ms, workflow_version, ifNull(contact_id, '') FROM runs "
        f"WHERE account_id = 'acme' AND {WINDOW} "
        "ORDER BY coalesce(started_at, queued_at, finished_at) DESC, run_id").result_rows
    assert len(expected) > 50
    pick = [names.index(c) for c in ("run_id", "status", "duration_ms", "version", "contact")]
    assert [tuple(row[i] for i in pick) for row in got] == [tuple(r) for r in expected]
    (counts,) = _rows(warehouse, RUN_LIST.panel(1).sql, account=["acme"])
    statuses = [row[names.index("status")] for row in got]
    assert counts == (len(got), *(statuses.count(s) for s in ("success", "failed", "running", "pending", "stopped")))
    assert counts[2] > 0


def test_the_run_list_filters(warehouse):
    panel = RUN_LIST.panel(2).sql
    every = _rows(warehouse, panel, account=["acme"])
    failed = _rows(warehouse, panel, account=["acme"], status=["failed", "stopped"])
    assert 0 < len(failed) < len(every) and {r[4] for r in failed} <= {"failed", "stopped"}
    run_id, contact = every[3][13], every[3][9]
    assert [r[13] for r in _rows(warehouse, panel, account=["acme"], search=run_id)] == [run_id]
    assert {r[9] for r in _rows(warehouse, panel, account=["acme"], search=contact)} == {contact}
    one = _rows(warehouse, panel, account=["acme"], workflow=["wf-welcome"], trigger=["manual", "api"])
    assert one and {r[14] for r in one} == {"wf-welcome"} and {r[8] for r in one} <= {"manual", "api"}
    assert not _rows(warehouse, panel, account=["globex"], search=run_id)


@pytest.fixture(scope="module")
def replayed(warehouse):
    """A failed acme run with a retried step and a replay."""
    (original, replay), = warehouse.query(
        "SELECT r.replay_of, any(r.run_id) FROM runs AS r WHERE account_id = 'acme' AND replay_of IS NOT NULL "
        "AND replay_of IN (SELECT run_id FROM steps WHERE account_id = 'acme' AND attempt > 1) "
        "GROUP BY r.replay_of ORDER BY r.replay_of LIMIT 1").result_rows
    return original, replay


def test_run_details_are_the_views_rows(warehouse, replayed):
    original, replay = replayed
    overview = dict((field, value) for run, field, value in _rows(warehouse, RUN_DETAILS.panel(1).sql,
                                                                   account="acme", run=replay))
    (status, contact, version, of), = warehouse.query(
        "SELECT status, contact_id, workflow_version, replay_of FROM runs "
        f"WHERE account_id = 'acme' AND run_id = '{replay}'").result_rows
    assert overview["Status"] == status and overview["Contact"] == contact and overview["Version"] == str(version)
    assert overview["Replay of (original run)"] == of == original
    log = _rows(warehouse, RUN_DETAILS.panel(3).sql, account="acme", run=original)
    expected = warehouse.query(
        "SELECT step_name, attempt, status, duration_ms, ifNull(error_code, '') FROM steps "
        f"WHERE account_id = 'acme' AND run_id = '{original}' ORDER BY step_index, attempt, started_at").result_rows
    assert [(r[1], r[3], r[4], r[7], r[10]) for r in log] == [tuple(r) for r in expected]
    assert max(r[3] for r in log) > 1, "the chosen run has a retried step"
    timeline = _rows(warehouse, RUN_DETAILS.panel(2).sql, account="acme", run=original)
    assert len(timeline) == len(log)
    first = min(row[5] for row in log)
    for row, bar in zip(sorted(log, key=lambda r: (r[5], r[0], r[3])), timeline, strict=True):
        # one bar per attempt: its offset from the first start, its duration under its status
        assert bar[0].endswith(row[1] + (f" #{row[3]}" if row[3] > 1 else ""))
        assert bar[1] == pytest.approx((row[5] - first).total_seconds())
        durations = dict(zip(TIMELINE_STATES, bar[2:], strict=True))
        assert durations.pop(row[4]) == pytest.approx(row[7] / 1000) and not any(durations.values())
    for run in (original, replay):
        lineage = _rows(warehouse, RUN_DETAILS.panel(4).sql, account="acme", run=run)
        relations = {r[1]: r[0] for r in lineage}
        assert relations[run] == "this run" and {original, replay} <= set(relations)
        assert relations[original] in ("original", "this run") and relations[replay] in ("replay", "this run")


def test_nothing_for_another_account_or_a_hostile_value(warehouse, replayed):
    original, _ = replayed
    for panel in RUN_DETAILS.panels:
        assert _rows(warehouse, panel.sql, account="acme", run=original)
        assert not _rows(warehouse, panel.sql, account="globex", run=original)
        for value in ("x\\') OR 1=1 --", "' OR '1'='1", "{acme,globex}"):
            assert not _rows(warehouse, panel.sql, account="acme", run=value)
    for value in ("x\\') OR 1=1 --", "' OR '1'='1"):
        assert not _rows(warehouse, RUN_LIST.panel(2).sql, account="acme", search=value)
        assert not _rows(warehouse, RUN_LIST.panel(2).sql, account=[value])
