"""The run list finds a time range's runs in ``run_times`` (migration 012) and folds only them: its
answer must stay exactly the runs the fold places in the range (start, else queue time, else
finish), including the runs whose events straddle the range's ends. Real chDB, real SQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from dashboards import runs as rq
from dashboards.definitions import variables as V
from dashboards.definitions.runs_list import LIST_LIMIT, LIST_SCAN, RUN_LIST
from dashboards.macros import ALL, TimeRange, Variable, expand

SINCE = datetime(2026, 11, 16, 10, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=1)
SPECS = {v.name: Variable(v.name, all_values=tuple(v.options)) for v in V.RUN_LIST_VARIABLES}

# run id -> (queued, started, finished, started_at the run.finished carries), minutes after SINCE;
# None: no such event. The comment says where the fold places the run.
CRAFTED = {
    "queued-before-started-in": (-10, 5, 6, 5),       # start +5: in
    "started-in-finished-after": (50, 55, 90, 55),    # start +55: in
    "queued-in-started-after": (55, 65, 70, 65),      # start +65: out (a moment in the range, not its place)
    "started-before-finished-in": (-30, -20, 10, -20),  # start -20: out
    "pending-in": (20, None, None, None),             # queued +20, never started: in
    "finished-only-started-in": (None, None, 100, 30),  # the finish says it started at +30: in
    "finished-only-started-before": (None, None, 30, -5),  # out
    "finish-corrects-start": (None, 70, 80, 40),      # run.started +70, the finish says +40: in
    "running-in": (None, 45, None, None),             # in
    "starts-at-since": (-1, 0, 2, 0),                 # exactly at the start: in
    "starts-at-until": (59, 60, 61, 60),              # exactly at the end: out of [since, until)
}
EXPECTED = {"queued-before-started-in", "started-in-finished-after", "pending-in", "finished-only-started-in",
            "finish-corrects-start", "running-in", "starts-at-since"}


def _event(n: int, account: str, run_id: str, kind: str, minutes: float, **extra) -> dict:
    ts = SINCE + timedelta(minutes=minutes)
    event = {"event_id": f"{account}-{run_id}-{n}", "schema_version": 1, "type": kind,
             "ts": ts.isoformat().replace("+00:00", "Z"), "account_id": account, "run_id": run_id,
             "workflow_id": "wf-x", "workflow_name": "X", "workflow_version": 1, "workflow_type": "contact",
             "trigger": "manual", "site_id": None, "site_name": None, "card_id": None, "card_name": None,
             "contact_id": "c1", "replay_of": None, "replay_mode": None}
    event.update(extra)
    return event


def _crafted_events(account: str = "acme", prefix: str = "", shift: int = 0) -> list[dict]:
    """The CRAFTED runs, ``shift`` minutes later."""
    events = []
    for run_id, times in CRAFTED.items():
        queued, started, finished, started_at = (None if t is None else t + shift for t in times)
        run_id = prefix + run_id
        if queued is not None:
            events.append(_event(1, account, run_id, "run.queued", queued))
        if started is not None:
            events.append(_event(2, account, run_id, "run.started", started))
        if finished is not None:
            at = (SINCE + timedelta(minutes=started_at)).isoformat().replace("+00:00", "Z")
            events.append(_event(3, account, run_id, "run.finished", finished, status="success", started_at=at))
    return events


def _insert(client, database: str, events: list[dict], token: str) -> None:
    from schemas import parse_event
    from sinks.clickhouse import Warehouse
    from sinks.rows import event_columns, sourced

    parsed = [parse_event(json.dumps(e).encode()) for e in events]
    Warehouse(client, database).insert_columns("events", event_columns(sourced(e, 0, i) for i, e in enumerate(parsed)),
                                              token=token)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """The crafted runs of acme, the same run ids in globex at other times, and a workload."""
    from producers.workload import WorkloadConfig, generate
    from sinks.clickhouse import connect, migrate

    path = tmp_path_factory.mktemp("run-times")
    client = connect(f"chdb://{path}")
    migrate(client, "runlens")
    _insert(client, "runlens", _crafted_events(), "crafted")
    _insert(client, "runlens", _crafted_events("globex", shift=-120), "globex")
    config = WorkloadConfig(seed=11, accounts=2, backfill_runs_per_hour=4000)
    _insert(client, "runlens", list(generate(config, SINCE - timedelta(hours=1), UNTIL + timedelta(hours=1))),
            "workload")
    client.close()
    reader = connect(f"chdb://{path}", database="runlens")
    yield reader
    reader.close()


def _oracle(client, account: str, since: datetime, until: datetime, *, inclusive: bool = False,
            direction: str = "DESC", status: str | None = None) -> list[str]:
    """The range's runs by the fold alone (no run_times), newest first (``direction``)."""
    place = "coalesce(started_at, queued_at, finished_at)"
    end = "<=" if inclusive else "<"
    return [r[0] for r in client.query(
        f"SELECT run_id FROM runs WHERE account_id = {{a:String}} AND {place} >= {{s:DateTime64(3, 'UTC')}} "
        f"AND {place} {end} {{u:DateTime64(3, 'UTC')}} AND (status = {{st:String}} OR {{st:String}} = '') "
        f"ORDER BY {place} {direction} NULLS LAST, run_id",
        parameters={"a": account, "s": since, "u": until, "st": status or ""}).result_rows]


def _listed(client, filters: rq.RunFilters, limit: int = rq.MAX_PAGE_SIZE, page: int = 1, sort: str = "-started_at"
            ) -> list[str]:
    query = rq.run_list(filters, sort=sort, limit=limit, page=page)
    return [row[1] for row in client.query(query.sql, parameters=query.params).result_rows]


def test_the_crafted_runs_are_listed_exactly_by_their_place(warehouse):
    filters = rq.RunFilters(account="acme", since=SINCE, until=UNTIL)
    listed = _listed(warehouse, filters)
    assert {r for r in listed if r in CRAFTED} == EXPECTED
    assert listed == _oracle(warehouse, "acme", SINCE, UNTIL)
    count = rq.run_count(filters)
    assert warehouse.query(count.sql, parameters=count.params).result_rows == [(len(listed),)]
    # globex has the same run ids two hours earlier: none of them is acme's
    assert not set(_listed(warehouse, rq.RunFilters(account="globex", since=SINCE, until=UNTIL))) & set(CRAFTED)


@pytest.mark.parametrize("minutes", [2, 25, 180])
def test_sliding_ranges_list_what_the_fold_places_in_them(warehouse, minutes):
    """Ranges of several widths slid over the workload: every list equals the fold's."""
    start = SINCE - timedelta(minutes=50)
    checked = 0
    while start < UNTIL + timedelta(minutes=40):
        end = start + timedelta(minutes=minutes)
        for account in ("acme", "globex"):
            expected = _oracle(warehouse, account, start, end)
            filters = rq.RunFilters(account=account, since=start, until=end)
            assert _listed(warehouse, filters) == expected[:rq.MAX_PAGE_SIZE]
            # short pages read only the nearest rows of run_times: the same runs, page by page
            assert _listed(warehouse, filters, limit=3) == expected[:3]
            assert _listed(warehouse, filters, limit=3, page=2) == expected[3:6]
            oldest = _oracle(warehouse, account, start, end, direction="ASC")
            assert _listed(warehouse, filters, limit=4, sort="started_at:asc") == oldest[:4]
            checked += len(expected)
        start += timedelta(minutes=max(minutes, 13))
    assert checked > 100


def test_only_one_end_of_the_range(warehouse):
    for since, until in ((SINCE, None), (None, UNTIL)):
        filters = rq.RunFilters(account="acme", since=since, until=until)
        expected = _oracle(warehouse, "acme", since or datetime(2000, 1, 1, tzinfo=UTC),
                           until or datetime(2100, 1, 1, tzinfo=UTC))
        assert _listed(warehouse, filters) == expected and expected


def test_the_dashboard_lists_and_counts_what_the_fold_places_in_the_range(warehouse):
    """The Workflow Runs panels (Grafana's range: both ends included) against the fold alone."""
    values: dict = {name: [ALL] for name in SPECS}
    values.update(account=["acme"], search="")
    time_range = TimeRange(SINCE, UNTIL, 60)
    listed = [row for row in warehouse.query(expand(RUN_LIST.panel(2).sql, time_range, values, SPECS)).named_results()]
    expected = _oracle(warehouse, "acme", SINCE, UNTIL, inclusive=True)
    assert [row["run_id"] for row in listed] == expected
    assert {r for r in expected if r in CRAFTED} == EXPECTED | {"starts-at-until"}
    (counts,) = warehouse.query(expand(RUN_LIST.panel(1).sql, time_range, values, SPECS)).result_rows
    assert counts[0] == len(expected)
    # three hours: more rows than the table scans, so it reads the nearest only, unless a filter
    # matches few of them (failed runs), when it folds the rest of the range too
    wide = TimeRange(SINCE - timedelta(hours=1), UNTIL + timedelta(hours=1), 60)
    rows = warehouse.query("SELECT count() FROM run_times WHERE account_id = 'acme'").result_rows[0][0]
    assert rows > LIST_SCAN
    for status, take in (([ALL], LIST_LIMIT), (["failed"], LIST_LIMIT)):
        chosen = dict(values, status=status)
        got = [r["run_id"] for r in warehouse.query(expand(RUN_LIST.panel(2).sql, wide, chosen, SPECS)).named_results()]
        oracle = _oracle(warehouse, "acme", wide.start, wide.end, inclusive=True,
                         status=None if status == [ALL] else status[0])
        assert got == oracle[:take] and got


def test_a_page_folds_only_the_runs_nearest_its_end_and_the_rest_of_the_range_not_at_all(warehouse):
    """What keeps the list's cost to the page, not the account: the moment condition reaches
    run_times' key, the first fold reads the nearest runs by key, and when they suffice the
    second fold's key set is empty (no granule read)."""
    filters = rq.RunFilters(account="acme", since=SINCE, until=UNTIL)
    query = rq.run_list(filters, limit=5)
    plan = "\n".join(r[0] for r in warehouse.query(f"EXPLAIN indexes = 1 {query.sql}",
                                                   parameters=query.params).result_rows)
    conditions = re.findall(r"Condition: (.*)", plan)
    granules = re.findall(r"^[\s│]*Granules: (\d+)/\d+$", plan, re.MULTILINE)
    assert len(conditions) == len(granules) == 2, plan
    (first, second), read = conditions, granules[1]
    near = re.search(r"run_id in (\d+)-element set", first)
    assert near and 0 < int(near.group(1)) <= query.params["scan"], plan
    assert "run_id in 0-element set" in second and read == "0", plan
    nearest = re.search(r"\(SELECT run_id, moment FROM run_times WHERE .*? LIMIT \{scan:UInt64\}\)", query.sql)
    assert nearest, query.sql
    times = "\n".join(r[0] for r in warehouse.query(f"EXPLAIN indexes = 1 {nearest.group(0)[1:-1]}",
                                                    parameters=query.params).result_rows)
    assert re.search(r"Condition: .*moment in \[", times), times
    # a filter matching none of the nearest runs: the second fold runs, and the page is still exact
    rare = rq.RunFilters(account="acme", since=SINCE, until=UNTIL, statuses=("pending",))
    pending = _oracle(warehouse, "acme", SINCE, UNTIL, status="pending")
    assert "pending-in" in pending
    assert _listed(warehouse, rare, limit=5) == pending[:5]
    every_pending = _oracle(warehouse, "acme", datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC),
                            status="pending")
    assert _listed(warehouse, rq.RunFilters(account="acme", statuses=("pending",)), limit=2) == every_pending[:2]


def test_the_migration_fills_run_times_from_the_events_already_stored(warehouse):
    """A database made before migration 012 gets the moments of its stored runs (a database of
    its own beside the module's: chDB opens one data directory per process)."""
    from sinks.clickhouse import apply_migrations, bookkeeping_statements, migration_statements

    every = migration_statements("old")
    apply_migrations(warehouse, "old", bookkeeping_statements("old"), [m for m in every if m[0] < 12], fence=None)
    _insert(warehouse, "old", _crafted_events(), "before")
    assert not warehouse.query("EXISTS TABLE old.run_times").result_rows[0][0]
    apply_migrations(warehouse, "old", bookkeeping_statements("old"), every, fence=None)
    _insert(warehouse, "old", _crafted_events(prefix="later-"), "after")
    query = rq.run_list(rq.RunFilters(account="acme", since=SINCE, until=UNTIL), limit=100)
    listed = {row[1] for row in warehouse.query(query.sql.replace("FROM runs", "FROM old.runs")
                                                .replace("FROM run_times", "FROM old.run_times"),
                                                parameters=query.params).result_rows}
    assert listed == EXPECTED | {f"later-{r}" for r in EXPECTED}
