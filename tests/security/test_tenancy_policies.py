"""Tenant isolation enforced by ClickHouse itself, without a server: chDB (ClickHouse in-process)
loads users from a users.xml given in its config, with their grants and row filters, and runs
every query as the user ``default``. So each check runs in a child process (chDB allows one data
path per process) on a fresh warehouse built by the real migration code:

1. ``build``: migrate, store the events of three accounts through the worker's insert path
   (materialized views fill every state table), add alerts, a dead letter and a worker metric,
   and list every table and view (system.tables, system.columns).
2. ``read``: open the same warehouse as the provisioned tenant reader of
   ``sinks/server/users.d/runlens_tenants.xml`` (the very file docker-compose mounts), renamed
   to ``default`` because chDB cannot log in as anyone else, and read every table and view.

The tenant must see only its own rows in everything it may read, and be refused everything
else. A control removes one table's filter from the file: the check must see the other
accounts there. A classification test fails when a table or view of the migrations is in none
of sinks.tenancy's lists, so a new table cannot be forgotten.

SQL access management (``CREATE USER`` / ``CREATE ROW POLICY``, ``tenant_sql``) cannot run in
chDB: clickhouse-local sets up the users.xml storage only, and there is no writable access
storage (``ACCESS_STORAGE_FOR_INSERTION_NOT_FOUND``). Those statements are checked here by
ClickHouse's own parser (``formatQuery``) and against the XML; a server runs them in
tests/integration/test_tenancy_containers.py where Docker is available.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sinks import tenancy

pytestmark = [pytest.mark.security]

ROOT = Path(__file__).resolve().parents[2]
USERS_D = ROOT / "sinks" / "server" / "users.d"
DB = "runlens"
ACCOUNTS = ("acme", "globex", "initech")
TENANT = "acme"


# --------------------------------------------------------------------------- child process


def _build(path: str, out: str) -> None:
    """Child: a fresh warehouse with the data of three accounts; writes its catalogue to ``out``."""
    from datetime import datetime, timedelta

    from producers.workload import Spike, WorkloadConfig, generate
    from schemas import parse_event
    from sinks.clickhouse import Warehouse, connect, migrate
    from sinks.rows import event_columns, sourced

    client = connect(f"chdb://{path}")
    migrate(client, DB)
    start = datetime(2025, 5, 5, tzinfo=UTC)
    spikes = tuple(Spike(workflow=w, at=start + timedelta(minutes=20), rate=0.6, minutes=60)
                   for w in ("acme/wf-welcome", "initech/wf-lead-sync-hubspot", "globex/wf-prize-draw"))
    config = WorkloadConfig(seed=5, accounts=3, backfill_runs_per_hour=300, spikes=spikes, replay_probability=1.0)
    events = [parse_event(json.dumps(e).encode()) for e in generate(config, start, start + timedelta(hours=2))]
    Warehouse(client, DB).insert_columns(
        "events", event_columns(sourced(e, 0, i) for i, e in enumerate(events)), token="tenancy-policies")
    for n, account in enumerate(ACCOUNTS):
        client.command(
            f"INSERT INTO {DB}.alert_events (alert_id, kind, account_id, subject, subject_name, state, severity, "
            "started_at, resolved_at, summary, numbers) VALUES "
            f"('a{n}', 'failure_spike', '{account}', 'wf', 'W', 'firing', 'critical', "
            "'2025-05-05 00:30:00', NULL, 'spike', map('rate', 0.5))")
    _store_commands(Warehouse(client, DB))
    client.command(f"INSERT INTO {DB}.dead_letters (received_at, source, source_partition, source_offset, "
                   "source_index, reason, field, key, raw, dlq_partition, dlq_offset) VALUES "
                   "(now64(3), 'file:x', -1, 1, 0, 'bad json', NULL, NULL, '{\"account_id\": \"globex\"', 0, 0)")
    client.command(f"INSERT INTO {DB}.pipeline_metrics (time, worker, metric, value) "
                   "VALUES (now64(3), 'w1', 'consumer_lag', 3)")
    objects = client.query(
        "SELECT name, engine, create_table_query FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": DB}).result_rows
    columns = client.query("SELECT table, groupArray(name) FROM system.columns WHERE database = {db:String} "
                           "GROUP BY table", parameters={"db": DB}).result_rows
    seen = {}
    for name, engine, _ in objects:
        if "account_id" in dict(columns).get(name, []) and engine != "MaterializedView":
            seen[name] = sorted(r[0] for r in client.query(f"SELECT DISTINCT account_id FROM {DB}.{name}").result_rows)
    client.close()
    Path(out).write_text(json.dumps({
        "objects": {name: {"engine": engine, "create": create} for name, engine, create in objects},
        "columns": {table: sorted(names) for table, names in columns},
        "accounts_seen_by_admin": seen}))


def _store_commands(warehouse) -> None:
    """A replay command of each account and its outcome, through the worker's column mapping."""
    from producers.commands import make_command
    from schemas.commands import CommandAction, CommandOutcome, Outcome, to_json
    from schemas.events import ReplayMode
    from streams.batch import RawRecord
    from streams.commands import command_rows

    at = datetime(2025, 5, 5, 1, tzinfo=UTC)
    commands = [make_command(a, f"run-{a}", CommandAction.REPLAY, mode=ReplayMode.EXACT, command_id=f"cmd-{a}",
                             requested_by="test", requested_at=at) for a in ACCOUNTS]
    outcomes = [Outcome(command_id=c.command_id, account_id=c.account_id, run_id=c.run_id, action=c.action,
                        outcome=CommandOutcome.REPLAYED, new_run_id=f"{c.run_id}-replay", decided_at=at)
                for c in commands]
    for records, is_outcome in ((commands, False), (outcomes, True)):
        found = command_rows([RawRecord(None, to_json(r), "t", 0, i) for i, r in enumerate(records)],
                             outcomes=is_outcome, received=at)
        assert not found.dead_letters
        warehouse.insert_columns(found.table, found.columns, token=f"tenancy-{found.table}")


def _read(path: str, config: str, catalogue: str, out: str, queries: str = "") -> None:
    """Child: open the warehouse as the user of ``config`` ("-": chDB's own unrestricted
    default) and read every object of it, then run ``queries`` ({key: sql}) if given."""
    from chdb import session

    objects = json.loads(Path(catalogue).read_text())
    s = session.Session(path if config == "-" else f"{path}?config-file={config}")
    results = {"user": s.query("SELECT currentUser()", "CSV").bytes().decode().strip().strip('"')}

    def attempt(sql: str):
        try:
            return {"rows": json.loads(s.query(sql, "JSONCompact").bytes().decode() or "{}").get("data", [])}
        except Exception as exc:  # noqa: BLE001 - the refusal is the result
            text = str(exc)
            code = re.search(r"Code: (\d+)", text)
            return {"error": int(code.group(1)) if code else -1, "text": text.splitlines()[0][:300]}

    for name, info in objects["objects"].items():
        if "account_id" in objects["columns"].get(name, []) and info["engine"] != "MaterializedView":
            results[name] = attempt(f"SELECT DISTINCT account_id FROM {DB}.{name}")
        else:
            results[name] = attempt(f"SELECT count() FROM {DB}.{name}")
    if config != "-":   # what a tenant must be refused (unrestricted, url() would retry for minutes)
        results["file()"] = attempt("SELECT * FROM file('/etc/hostname', 'LineAsString')")
        results["url()"] = attempt("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')")
        results["insert"] = attempt(f"INSERT INTO {DB}.events (account_id) VALUES ('acme')")
        results["merge()"] = attempt(f"SELECT DISTINCT account_id FROM merge('{DB}', '^run_notes$')")
    if queries:
        s.query(f"USE {DB}")
        results["queries"] = {key: attempt(sql) for key, sql in json.loads(Path(queries).read_text()).items()}
    s.close()
    Path(out).write_text(json.dumps(results))


def _child(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tests.security.test_tenancy_policies", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"child {args[0]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("tenancy")
    path, catalogue = root / "warehouse", root / "catalogue.json"
    _child("build", str(path), str(catalogue))
    return path, catalogue, json.loads(catalogue.read_text())


def _tenant_users_xml(account: str, drop_filter: str | None = None) -> str:
    """The provisioned users.d files as one users.xml for chDB: the account's reader from
    runlens_tenants.xml, renamed to ``default`` (the one user chDB runs as; its password emptied:
    authentication is not what is tested), with the profiles of runlens_reader.xml."""
    tenants = ET.parse(USERS_D / "runlens_tenants.xml").getroot()
    reader = ET.parse(USERS_D / "runlens_reader.xml").getroot()
    user = tenants.find(f"users/{tenancy.user_name(account)}")
    assert user is not None, f"{account} is not provisioned in runlens_tenants.xml"
    user.tag = "default"
    password = user.find("password")
    password.attrib.clear()                     # from_env: the provisioned password comes from .env
    password.text = ""
    if drop_filter is not None:
        tables = user.find(f"databases/{DB}")
        tables.remove(tables.find(drop_filter))
    root = ET.Element("clickhouse")
    profiles = reader.find("profiles")
    ET.SubElement(profiles, "default")          # the server's own default profile
    root.append(profiles)
    users = ET.SubElement(root, "users")
    users.append(user)
    ET.SubElement(ET.SubElement(root, "quotas"), "default")
    return ET.tostring(root, encoding="unicode")


def _read_as(warehouse, tmp_path: Path, users_xml: str | None, queries: dict[str, str] | None = None) -> dict:
    """Read the warehouse as the one user of ``users_xml`` (None: unrestricted)."""
    path, catalogue, _ = warehouse
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = "-"
    if users_xml is not None:
        (tmp_path / "users.xml").write_text(users_xml)
        config = str(tmp_path / "config.xml")
        Path(config).write_text(
            f"<clickhouse><user_directories><users_xml><path>{tmp_path / 'users.xml'}</path></users_xml>"
            "</user_directories></clickhouse>")
    out, queries_file = tmp_path / "read.json", tmp_path / "queries.json"
    queries_file.write_text(json.dumps(queries or {}))
    _child("read", str(path), config, str(catalogue), str(out), str(queries_file) if queries else "")
    return json.loads(out.read_text())


# the data's window (see _build)
T0 = datetime(2025, 5, 5, 0, 0, tzinfo=UTC)
T1 = datetime(2025, 5, 5, 3, 0, tzinfo=UTC)


def _panel_queries(dashboards, account) -> dict[str, str]:
    """Every panel (and variable query) of ``dashboards`` as Grafana sends it, with ``account``
    as the account variable's value and every other variable All."""
    from dashboards import report as R
    from dashboards.macros import TimeRange, expand
    from dashboards.panels import VARIABLES

    values = R.variable_values(None)
    values["account"] = account
    out = {}
    for d in dashboards:
        for panel in d.panels:
            time = TimeRange(T0, T1, R.query_interval(panel, T0, T1))
            out[f"{d.uid}-{panel.id}"] = expand(panel.sql, time, values, R.variable_specs())
    for v in VARIABLES:
        if v.sql:
            out[f"variable-{v.name}"] = expand(v.sql, TimeRange(T0, T1, 60), values, R.variable_specs())
    return out


def _comparable(sql: str, rows: list) -> list:
    """Rows to compare across users: sorted; t-digest merges depend on the order states are merged
    in, so quantile columns are compared by presence only."""
    def cell(value):
        if isinstance(value, float):
            return "float" if "quantile" in sql else round(value, 6)
        if isinstance(value, list):
            return [cell(v) for v in value]
        return value
    return sorted(json.dumps([cell(v) for v in row]) for row in rows)


ACCESS_DENIED = 497


# --------------------------------------------------------------------------- tests


def test_every_table_and_view_is_classified(warehouse):
    """Each object the migrations create is a policy table, a tenant view, or not tenant-readable
    (with a reason); a view a tenant reads reads policy tables only."""
    _, _, found = warehouse
    objects, columns = found["objects"], found["columns"]
    lists = {"POLICY_TABLES": set(tenancy.POLICY_TABLES), "TENANT_VIEWS": set(tenancy.TENANT_VIEWS),
             "NOT_TENANT_READABLE": set(tenancy.NOT_TENANT_READABLE)}
    everything = set().union(*lists.values())
    assert sum(len(v) for v in lists.values()) == len(everything), "a name is in two lists"
    unclassified = sorted(set(objects) - everything)
    assert not unclassified, (f"classify {unclassified} in sinks/tenancy.py: a row policy (POLICY_TABLES), a "
                              "tenant view (TENANT_VIEWS) or NOT_TENANT_READABLE with the reason")
    stale = sorted(everything - set(objects))
    assert not stale, f"sinks/tenancy.py lists objects the migrations do not create: {stale}"
    assert set(tenancy.READABLE) == lists["POLICY_TABLES"] | lists["TENANT_VIEWS"]
    for name in tenancy.POLICY_TABLES:
        assert objects[name]["engine"] not in ("View", "MaterializedView"), f"{name} is not a stored table"
        assert "account_id" in columns[name], f"{name} has no account_id for its row policy"
    for name in tenancy.TENANT_VIEWS:
        assert objects[name]["engine"] == "View", f"{name} is not a plain view"
        assert "account_id" in columns[name], f"{name}: a tenant view must show account_id"
        sources = set(re.findall(rf"\b{DB}\.(\w+)", objects[name]["create"])) - {name}
        assert sources and sources <= set(tenancy.POLICY_TABLES), \
            f"view {name} reads {sources - set(tenancy.POLICY_TABLES)}"
    for name, info in objects.items():
        if info["engine"] == "MaterializedView":
            assert name in tenancy.NOT_TENANT_READABLE, f"materialized view {name} must not be granted"
    for name in ("dead_letters", "rejected_events", "account_plans", "pipeline_metrics"):
        assert name in tenancy.NOT_TENANT_READABLE


def test_the_data_covers_every_readable_table(warehouse):
    """Every table and view a tenant may read holds rows of all three accounts, so the reads
    below can show a leak wherever a policy is missing."""
    _, _, found = warehouse
    seen = found["accounts_seen_by_admin"]
    for name in tenancy.READABLE:
        assert seen.get(name) == sorted(ACCOUNTS), f"{name}: the admin sees {seen.get(name)}"


def test_a_tenant_reads_only_its_rows_and_nothing_else(warehouse, tmp_path):
    got = _read_as(warehouse, tmp_path, _tenant_users_xml(TENANT))
    assert got["user"] == "default"
    for name in tenancy.READABLE:
        assert "rows" in got[name], f"{TENANT} cannot read {name}: {got[name]}"
        assert got[name]["rows"] == [[TENANT]], f"{TENANT} reads {name} and sees {got[name]['rows']}"
    for name in tenancy.NOT_TENANT_READABLE:
        assert got[name].get("error") == ACCESS_DENIED, f"{TENANT} was not refused {name}: {got[name]}"
    for probe in ("file()", "url()", "insert"):
        assert "error" in got[probe], f"{TENANT} may use {probe}: {got[probe]}"
    # merge() reads the table under its own policy
    assert got["merge()"].get("rows", [[TENANT]]) == [[TENANT]], got["merge()"]


def test_control_a_missing_filter_is_caught(warehouse, tmp_path):
    """Without run_notes' filter the tenant sees every account's failures: what the test above
    would report if a table were forgotten."""
    got = _read_as(warehouse, tmp_path, _tenant_users_xml(TENANT, drop_filter="run_notes"))
    assert sorted(r[0] for r in got["run_notes"]["rows"]) == sorted(ACCOUNTS)
    assert got["runs"]["rows"] == [[TENANT]]


def test_the_tenants_dashboards_show_its_rows_and_the_others_show_nothing_more(warehouse, tmp_path):
    """Every panel of the tenant's dashboards (account fixed) runs on the tenant's reader and
    answers as the operators' dashboards filtered on the tenant. Every panel of every dashboard
    with every variable All (what an edited dashboard or a hand-written query would ask) either
    answers exactly that too or is refused: the row policies, not the dashboards, keep the
    tenant to its rows."""
    from dashboards import grafana as G
    from dashboards import panels as P

    tenant_view = _read_as(warehouse, tmp_path / "fixed", _tenant_users_xml(TENANT),
                           _panel_queries(G.TENANT_DASHBOARDS, TENANT))["queries"]
    everything = _read_as(warehouse, tmp_path / "all", _tenant_users_xml(TENANT),
                          _panel_queries(P.DASHBOARDS, ["$__all"]))["queries"]
    operators = _panel_queries(P.DASHBOARDS, [TENANT])
    oracle = _read_as(warehouse, tmp_path / "operators", None, operators)["queries"]
    # the account variable lists the accounts a reader can see: the operators' every account
    oracle["variable-account"] = {"rows": [[TENANT]]}
    with_rows = 0
    for key, result in tenant_view.items():
        assert "rows" in result, f"{key} fails on the tenant's datasource: {result}"
        assert "rows" in oracle[key], f"{key} fails for the operators: {oracle[key]}"
        assert _comparable(operators[key], result["rows"]) == _comparable(operators[key], oracle[key]["rows"]), key
        with_rows += bool(result["rows"])
    assert with_rows >= len(tenant_view) * 3 // 4, "too few panels have data to compare"
    refused = set()
    for key, result in everything.items():
        if "error" in result:
            assert result["error"] == ACCESS_DENIED, f"{key}: {result}"
            refused.add(key)
            continue
        assert _comparable(operators[key], result["rows"]) == _comparable(operators[key], oracle[key]["rows"]), \
            f"{key}: with every variable All the tenant sees more than its own rows"
    assert refused <= {f"{P.PIPELINE.uid}-{p.id}" for p in P.PIPELINE.panels}, refused
    assert refused, "the pipeline panels reading dead letters and worker metrics must be refused"


def test_tenant_sql_is_valid_clickhouse_and_says_what_the_xml_says():
    """The SQL provisioning (a server with access management) parses in ClickHouse 26.9 and
    grants and filters exactly what the users.d file does."""
    from chdb import session

    statements = tenancy.tenant_sql(DB, TENANT, "a" * 64)
    s = session.Session()
    try:
        for statement in statements:
            escaped = statement.replace("\\", "\\\\").replace("'", "\\'")
            formatted = s.query(f"SELECT formatQuery('{escaped}')", "TSVRaw").bytes().decode().strip()
            assert formatted.split()[0] in ("CREATE", "GRANT"), formatted
    finally:
        s.close()
    grants = {re.match(rf"GRANT SELECT ON {DB}\.(\w+) TO ", s_).group(1) for s_ in statements if s_.startswith("GRANT")}
    assert grants == set(tenancy.READABLE)
    policy = statements[-1]
    assert set(re.findall(rf"\b{DB}\.(\w+)", policy)) == set(tenancy.POLICY_TABLES)
    assert f"USING account_id = '{TENANT}' TO {tenancy.user_name(TENANT)}" in policy
    user = ET.parse(USERS_D / "runlens_tenants.xml").getroot().find(f"users/{tenancy.user_name(TENANT)}")
    assert {q.text.split(".")[-1] for q in user.findall("grants/query")} == grants
    filters = {t.tag: t.find("filter").text for t in user.find(f"databases/{DB}")}
    assert filters == {t: tenancy.policy_filter(TENANT) for t in tenancy.POLICY_TABLES}


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"build": _build, "read": _read}[command](*arguments)
