"""The Grafana provisioning files, checked the way Grafana would read them (no Grafana runs here),
the plugin's macro/variable expansion, and the report renderer on canned results."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path

import pytest
import yaml

from dashboards import grafana as G
from dashboards import panels as P
from dashboards.definitions.variables import TEXT_VARIABLES
from dashboards.macros import (
    ALL,
    BACKEND_MACROS,
    MacroError,
    TimeRange,
    Variable,
    apply_conditional_all,
    expand,
    used_macros,
    used_variables,
)

ROOT = Path(__file__).resolve().parents[3]
PROVISIONING = ROOT / "dashboards" / "provisioning"
T0 = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)


def _dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))}


def _datasource_uids() -> set[str]:
    uids = set()
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            uids.add(ds["uid"])
    return uids


def _rules() -> list[dict]:
    data = yaml.safe_load((PROVISIONING / "alerting" / "rules.yaml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _all_targets(dashboard: dict):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


# --------------------------------------------------------------------------- generated files


def test_committed_files_equal_a_fresh_generation():
    stale = G.stale_files()
    assert not stale, f"run `python -m dashboards.grafana`: stale {[str(p) for p in stale]}"


def test_one_dashboard_file_per_definition_with_unique_uids():
    dashboards = _dashboards()
    assert set(dashboards) == {d.uid for d in P.DASHBOARDS}
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)) == 7
    assert all(name == d["uid"] for name, d in dashboards.items())


@pytest.mark.parametrize("uid", [d.uid for d in P.DASHBOARDS])
def test_panel_ids_unique_and_grid_positions_do_not_overlap(uid):
    panels = _dashboards()[uid]["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {uid}: {ids}"
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= 24, f"{uid} panel {p['title']!r} is wider than the grid"
        boxes.append((p["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for (a, ax0, ay0, ax1, ay1), (b, bx0, by0, bx1, by1) in combinations(boxes, 2):
        overlap = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
        assert not overlap, f"{uid}: panels {a!r} and {b!r} overlap"


@pytest.mark.parametrize("uid", [d.uid for d in P.DASHBOARDS])
def test_datasource_references_resolve(uid):
    known = _datasource_uids()
    dashboard = _dashboards()[uid]
    refs = [p["datasource"] for p in dashboard["panels"]]
    refs += [t["datasource"] for _, t in _all_targets(dashboard)]
    refs += [v["datasource"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert refs
    for ref in refs:
        assert ref["uid"] in known, f"{uid}: datasource {ref} is not provisioned ({known})"
        assert ref["type"] == "grafana-clickhouse-datasource"


@pytest.mark.parametrize("uid", [d.uid for d in P.DASHBOARDS])
def test_every_variable_used_is_defined_before_use(uid):
    dashboard = _dashboards()[uid]
    variables = dashboard["templating"]["list"]
    names = [v["name"] for v in variables]
    assert names == list(P.dashboard(uid).variables)
    assert names[0] == "account" and set(names) <= {v.name for v in P.VARIABLES}
    if P.dashboard(uid) in P.ANALYTICS:
        assert names == ["account", "workflow", "version", "type", "trigger", "site", "card"]
    for index, v in enumerate(variables):
        if v["type"] == "query":
            assert used_variables(v["query"]) <= set(names[:index]), f"{v['name']} uses a later variable"
        if v["type"] == "textbox":   # typed in: one value, empty = no filter
            assert v["name"] in TEXT_VARIABLES and not v["multi"] and not v["includeAll"] and v["query"] == ""
        else:
            assert v["multi"] and v["includeAll"] and v["current"]["value"] == ["$__all"]
    for panel, target in _all_targets(dashboard):
        undefined = used_variables(target["rawSql"]) - set(names)
        assert not undefined, f"{uid} {panel['title']!r} uses undefined variables {undefined}"
        unknown = used_macros(target["rawSql"]) - BACKEND_MACROS
        assert not unknown, f"{uid} {panel['title']!r} uses macros the plugin lacks: {unknown}"


@pytest.mark.parametrize("uid", [d.uid for d in P.DASHBOARDS])
def test_panels_carry_the_definitions_sql_and_format(uid):
    definition = P.dashboard(uid)
    dashboard = _dashboards()[uid]
    assert len(dashboard["panels"]) == len(definition.panels)
    for panel in dashboard["panels"]:
        spec = definition.panel(panel["id"])
        (target,) = panel["targets"]
        assert panel["type"] == spec.type and panel["title"] == spec.title
        assert target["rawSql"] == spec.sql
        assert target["editorType"] == "sql"
        assert target["format"] == (0 if panel["type"] in ("timeseries", "heatmap") else 1)
        if uid == P.RUN_DETAILS.uid:
            continue   # one run, whatever the time range (the link sets the range to the run's window)
        assert "$__timeFilter(" in spec.sql or "$__fromTime" in spec.sql or "$__toTime" in spec.sql, \
            f"{spec.title!r} ignores the dashboard's time range"
        if panel["type"] == "timeseries":
            assert "$__timeInterval(" in spec.sql and "ORDER BY" in spec.sql


def test_variable_filters_degrade_to_nothing_when_all():
    values = {v.name: [ALL] for v in P.VARIABLES}
    for _, panel in P.all_panels():
        sql = expand(panel.sql, TimeRange(T0, T1), values)
        assert "$" not in sql and "${" not in sql, f"{panel.title!r}: {sql}"


def test_dashboard_provider_and_compose_mount_agree():
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "runlens.yaml").read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts
    assert provider["folder"] == P.FOLDER_TITLE


# --------------------------------------------------------------------------- alerting


def test_alert_rules_structure():
    rules = _rules()
    assert {r["uid"] for r in rules} == {r.uid for r in P.ALERT_RULES}
    assert len({r["uid"] for r in rules}) == len(rules) == 11
    dashboards = _dashboards()
    known = _datasource_uids() | {"__expr__"}
    for rule in rules:
        ref_ids = [q["refId"] for q in rule["data"]]
        assert len(ref_ids) == len(set(ref_ids))
        assert rule["condition"] in ref_ids, f"{rule['uid']}: condition {rule['condition']} is not a query"
        for query in rule["data"]:
            assert query["datasourceUid"] in known
            assert query["model"]["refId"] == query["refId"]
            if query["datasourceUid"] == "__expr__":
                assert query["model"]["expression"] in ref_ids, f"{rule['uid']}: expression refers to a missing query"
                assert query["model"]["expression"] != query["refId"]
            else:
                sql = query["model"]["rawSql"]
                assert query["relativeTimeRange"]["from"] > query["relativeTimeRange"]["to"] == 0
                assert not used_variables(sql), "alert queries run without dashboard variables"
                assert "$__conditionalAll" not in sql
                assert used_macros(sql) <= BACKEND_MACROS
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["noDataState"] in ("OK", "NoData", "Alerting")
        assert rule["execErrState"] in ("OK", "Error", "Alerting")
        assert {"summary", "description", "runbook", "panel"} <= set(rule["annotations"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        # labels and titles are interpolated with environment variables by file provisioning
        assert "$" not in rule["title"] + "".join(rule["labels"].values())
        panel_ids = {p["id"] for p in dashboards[rule["dashboardUid"]]["panels"]}
        assert rule["panelId"] in panel_ids, f"{rule['uid']} links to a missing panel"
        assert f"/d/{rule['dashboardUid']}?viewPanel=panel-{rule['panelId']}" == rule["annotations"]["panel"]


def test_failure_spike_rule_has_volume_floor_and_pending_period():
    (rule,) = [r for r in _rules() if r["uid"] == "runlens-failure-spike"]
    sql = rule["data"][0]["model"]["rawSql"]
    assert re.search(r"HAVING sum\(finished\) >= \d+", sql)
    assert rule["for"] != "0s"
    assert "AS workflow" in sql and "AS account" in sql   # the labels the policy groups by


def test_notifications_webhook_and_grouping():
    data = yaml.safe_load((PROVISIONING / "alerting" / "notifications.yaml").read_text())
    (point,) = data["contactPoints"]
    (receiver,) = point["receivers"]
    assert receiver["type"] == "webhook" and receiver["settings"]["url"] == f"${P.WEBHOOK_URL_ENV}"
    (policy,) = data["policies"]
    assert policy["receiver"] == point["name"]
    assert {"account", "workflow"} <= set(policy["group_by"])


def test_alert_rules_for_the_api_carry_panel_link_annotations():
    for rule in G.alert_rules_api():
        assert rule["folderUID"] == P.FOLDER_UID and rule["ruleGroup"] == P.ALERT_GROUP
        assert rule["annotations"]["__dashboardUid__"] in {d.uid for d in P.DASHBOARDS}
        assert int(rule["annotations"]["__panelId__"]) > 0


def test_datasource_provisioning_is_read_only_user():
    (ds,) = yaml.safe_load((PROVISIONING / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert ds["uid"] == P.DATASOURCE_UID and ds["type"] == P.DATASOURCE_TYPE
    users = (ROOT / "sinks" / "server" / "users.d" / "runlens_reader.xml").read_text()
    assert f"<{ds['jsonData']['username']}>" in users and "<readonly>" in users


# --------------------------------------------------------------------------- macros

TR = TimeRange(datetime(2026, 11, 16, 0, 0, tzinfo=UTC), datetime(2026, 11, 16, 6, 0, 30, 500000, tzinfo=UTC), 300)
FROM_S, TO_S = 1794787200, 1794808830


def test_time_macros_expand_like_the_plugin():
    sql = "SELECT $__timeInterval(ts) t FROM x WHERE $__timeFilter(ts) AND d >= $__fromTime AND d < $__toTime"
    assert expand(sql, TR) == (
        "SELECT toStartOfInterval(toDateTime(ts), INTERVAL 300 second) t FROM x WHERE "
        f"ts >= toDateTime({FROM_S}) AND ts <= toDateTime({TO_S}) AND d >= toDateTime({FROM_S}) "
        f"AND d < toDateTime({TO_S})")
    assert expand("$__interval_s", TR) == "300"
    assert expand("$__dateFilter(day)", TR) == "day >= toDate('2026-11-16') AND day <= toDate('2026-11-16')"
    assert expand("$__timeFilter_ms(ts)", TR) == (
        "ts >= fromUnixTimestamp64Milli(1794787200000) AND ts <= fromUnixTimestamp64Milli(1794808830500)")
    assert expand("$__timeInterval_ms(ts)", TR) == "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 300000 millisecond)"
    assert expand("$__dt(d, t)", TR) == (f"(d >= toDate('2026-11-16') AND d <= toDate('2026-11-16')) AND "
                                         f"(t >= toDateTime({FROM_S}) AND t <= toDateTime({TO_S}))")
    assert expand("$__timeFilter( toDateTime(a, 'UTC') )", TR).startswith("toDateTime(a, 'UTC') >= ")
    sub_second = TimeRange(TR.start, TR.end, 0.2)
    assert expand("$__interval_s", sub_second) == "1"


def test_conditional_all_and_variable_formats():
    sql = "WHERE $__conditionalAll(a IN (${acct:singlequote}), $acct) AND $__conditionalAll(w IN ($wf), ${wf})"
    assert expand(sql, TR, {"acct": [ALL], "wf": ALL}) == "WHERE 1=1 AND 1=1"
    assert expand(sql, TR, {"acct": ["acme", "o'neil"], "wf": ["x", "y"]}) == \
        "WHERE a IN ('acme','o\\'neil') AND w IN ('x','y')"
    assert expand(sql, TR, {"acct": "acme", "wf": "x"}) == "WHERE a IN ('acme') AND w IN (x)"
    assert expand(sql, TR, {"acct": [""], "wf": ""}) == "WHERE 1=1 AND 1=1"
    assert expand("${v:csv} ${v:pipe} ${v:sqlstring} ${v:doublequote} [[v]]", TR, {"v": ["a", "b'c"]}) == \
        "a,b'c a|b'c 'a','b''c' \"a\",\"b'c\" 'a','b'c'"


def test_all_without_conditional_uses_options_or_custom_all_value():
    specs = {"t": Variable("t", all_values=("card", "site")), "c": Variable("c", custom_all=".*")}
    assert expand("t IN (${t:singlequote}) AND c = '$c'", TR, {"t": [ALL], "c": [ALL]}, specs) == \
        "t IN ('card','site') AND c = '.*'"
    with pytest.raises(MacroError):
        expand("$x", TR, {"x": [ALL]})


def test_strictness_and_builtins():
    with pytest.raises(MacroError, match=r"\$nope"):
        expand("SELECT $nope", TR, {})
    with pytest.raises(MacroError, match="unknown macro"):
        expand("SELECT $__timeGroup(ts, 1m)", TR, {})
    assert expand("SELECT $nope, $__foo", TR, {}, strict=False) == "SELECT $nope, $__foo"
    assert expand("$__from $__to ${__interval} $__interval_ms $__range_s", TR) == \
        "1794787200000 1794808830500 5m 300000 21630"
    with pytest.raises(MacroError):
        expand("$__timeFilter(a, b)", TR)


def test_conditional_all_edge_cases_follow_the_frontend():
    # a variable the dashboard does not know keeps the condition; a malformed macro stops expansion
    assert apply_conditional_all("$__conditionalAll(x = 1, $ghost)", {}) == "x = 1"
    assert apply_conditional_all("$__conditionalAll(x = 1)", {"a": ALL}) == "$__conditionalAll(x = 1)"
    # JavaScript String.replace: '$$' in the condition collapses to '$'
    assert apply_conditional_all("$__conditionalAll(p = '$$', $v)", {"v": "1"}) == "p = '$'"
    nested = "$__conditionalAll(f(a, g(b, c)) = 1, $v) OR $__conditionalAll(k IN ($v), $v)"
    assert apply_conditional_all(nested, {"v": ["z"]}) == "f(a, g(b, c)) = 1 OR k IN ($v)"


# JavaScript's encodeURIComponent, then !'()* encoded too (Grafana's encodeURIComponentStrict)
@pytest.mark.parametrize("value, encoded", [
    ("acme", "acme"),
    ("x\\') OR 1=1 --", "x%5C%27%29%20OR%201%3D1%20--"),
    (["acme", "o'neil"], "%7Bacme%2Co%27neil%7D"),
    (["acme"], "%7Bacme%7D"),
    ("\u2019\U0001f600", "%E2%80%99%F0%9F%98%80"),
    ("A-z_0.9~!*()", "A-z_0.9~%21%2A%28%29"),
    ("a\nb\"$__all%", "a%0Ab%22%24__all%25"),
])
def test_percentencode_is_grafanas_strict_encoding(value, encoded):
    assert expand("${v:percentencode}", TR, {"v": value}) == encoded


def test_percentencode_refuses_what_javascript_cannot_encode():
    with pytest.raises(MacroError, match="URIError"):
        expand("${v:percentencode}", TR, {"v": ["\ud800"]})


def test_percentencode_output_cannot_end_or_escape_a_literal():
    from urllib.parse import unquote

    from hypothesis import given, settings
    from hypothesis import strategies as st

    texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)

    @settings(max_examples=200, deadline=None)
    @given(st.one_of(texts, st.lists(texts, max_size=4)))
    def check(value):
        out = expand("${v:percentencode}", TR, {"v": value})
        assert re.fullmatch(r"[A-Za-z0-9_.~%-]*", out), out
        assert unquote(out) == (value if isinstance(value, str) else "{" + ",".join(value) + "}")

    check()


def test_variables_reach_the_sql_only_percent_encoded_in_a_literal():
    """A dashboard variable appears in a query as '${name:percentencode}' (decoded by ClickHouse)
    or as the second argument of $__conditionalAll (never formatted); in no other form."""
    queries = [(f"{d.uid} {p.title}", p.sql) for d, p in P.all_panels()]
    queries += [(f"variable {v.name}", v.sql) for v in P.VARIABLES if v.sql]
    for where, sql in queries:
        rest = sql
        for name in used_variables(sql):
            rest = rest.replace(f"'${{{name}:percentencode}}'", "''").replace(f", ${name})", ")")
        assert not used_variables(rest), f"{where}: a variable in another form: {rest}"
        assert ":singlequote" not in sql and ":sqlstring" not in sql and ":raw" not in sql


def test_bound_expansion_puts_no_value_in_the_sql():
    from dashboards.macros import expand_bound

    sql = "SELECT 1 WHERE $__conditionalAll(a IN " + P.values_of("v") + ", $v) AND t >= $__fromTime"
    text, params = expand_bound(sql, TR, {"v": ["x\\') OR 1=1 --", "b"]})
    assert "OR 1=1" not in text and "{var_v:String}" in text and f"toDateTime({FROM_S})" in text
    assert params == {"var_v": "%7Bx%5C%27%29%20OR%201%3D1%20--%2Cb%7D"}
    text, params = expand_bound(sql, TR, {"v": [ALL]})
    assert params == {} and "1=1" in text and "var_v" not in text
    with pytest.raises(MacroError, match="bound form"):
        expand_bound("SELECT 1 WHERE a IN (${v:singlequote})", TR, {"v": ["x"]})
    with pytest.raises(MacroError, match="bound form"):
        expand_bound("SELECT 1 WHERE a = '$v'", TR, {"v": ["x"]})


def test_used_variables_ignores_macros_and_builtins():
    sql = P.VARIABLES[1].sql + " ${__data.fields.x} $__interval_s"
    assert used_variables(sql) == {"account"}


# --------------------------------------------------------------------------- report (canned data)


class _Type:
    def __init__(self, name):
        self.name = name


class _Result:
    def __init__(self, columns, types, rows):
        self.column_names, self.column_types, self.result_rows = columns, [_Type(t) for t in types], rows


class FakeClient:
    """Answers each panel's query with canned rows of the shape its panel type needs."""

    def __init__(self):
        self.queries: list[str] = []
        self.parameters: list[dict | None] = []

    def query(self, sql, parameters=None):
        self.queries.append(sql)
        self.parameters.append(parameters)
        if "FAIL_ME" in sql:
            raise RuntimeError("Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)")
        t = datetime(2026, 11, 16, 0, 0)
        if "toStartOfDay(bucket) AS time" in sql:       # heatmap
            return _Result(["time", "00", "01"], ["DateTime", "UInt64", "UInt64"], [(t, 3, 4)])
        if "$" in sql:
            raise AssertionError(f"unexpanded query: {sql}")
        if "toStartOfInterval" in sql:                    # time series, long format
            return _Result(["time", "account_id", "value"], ["DateTime", "LowCardinality(String)", "Float64"],
                           [(t + timedelta(minutes=i), a, float(i)) for i in range(3) for a in ("acme", "x")])
        return _Result(["name", "value"], ["String", "Nullable(Float64)"], [("a", 1.5), ("b", None)])


def test_report_renders_every_panel_once_with_plotly_inlined(tmp_path):
    from dashboards.report import write_report

    client = FakeClient()
    path = write_report(client, tmp_path / "r.html", T0, T1, {"account": "acme"})
    page = path.read_text()
    panels = [(d, p) for d in P.ANALYTICS for p in d.panels]   # the report draws the analytics dashboards
    assert len(client.queries) == len(panels)
    filtered = [(q, p) for q, p in zip(client.queries, client.parameters, strict=True) if "account_id IN" in q]
    assert filtered, "no panel filtered on the account"
    for sql, params in filtered:   # the value travels as a bound parameter, never in the SQL text
        assert "acme" not in sql and "{var_account:String}" in sql
        assert params == {"var_account": "%7Bacme%7D"}
    assert page.count('class="panel"') == len(panels)
    for d, p in panels:
        assert f'data-panel="{d.uid}-panel-{p.id}"' in page
    assert page.count("Plotly.newPlot") == len(panels)
    assert "<script src=" not in page and "<link" not in page   # self-contained: nothing to fetch
    assert "query failed" not in page


def test_report_shows_a_failing_panel_and_rejects_bad_input(tmp_path):
    from dashboards import report as R

    broken = P.Dashboard("x", "x / Broken", "d", (P.Panel(1, "Broken", "table", "SELECT FAIL_ME $__fromTime",
                                                          (0, 0, 24, 4)),))
    items = R.collect(FakeClient(), T0, T1, None, [broken])
    assert items[0].result.error and "Unknown table" in items[0].result.error
    assert "query failed" in R.render_html(items, T0, T1, R.variable_values(None))
    with pytest.raises(ValueError, match="unknown dashboard variable"):
        R.variable_values({"acount": "acme"})
    with pytest.raises(ValueError, match="empty"):
        R.write_report(FakeClient(), tmp_path / "x.html", T1, T0)


def test_query_interval_follows_range_and_min_interval():
    from dashboards.report import column_kind, query_interval

    ts = P.OVERVIEW.panel(5)          # min interval 1m
    assert query_interval(ts, T0, T0 + timedelta(minutes=30)) == 60
    assert query_interval(ts, T0, T0 + timedelta(days=7)) == 3600
    assert query_interval(P.PIPELINE.panel(1), T0, T0 + timedelta(minutes=10)) == 10
    assert column_kind("Nullable(DateTime64(3, 'UTC'))") == "time"
    assert column_kind("SimpleAggregateFunction(max, Float64)") == "number"
    assert column_kind("LowCardinality(Nullable(String))") == "string"
    assert column_kind("Array(Float32)") == "other"


# --------------------------------------------------------------------------- cost of the queries

# The `runs` / `steps` views fold every run / step attempt ever stored (a GROUP BY over all of
# run_state / step_state): a panel reading them gets slower with every day of history. Panels
# and the summary read minute aggregates or the small pre-aggregated tables of migration 007.
_PER_RUN_VIEW = re.compile(r"\b(?:FROM|JOIN)\s+(runs|steps|run_state|step_state)\b", re.IGNORECASE)


@pytest.mark.parametrize("uid, panel_id", [(d.uid, p.id) for d, p in P.all_panels()],
                         ids=[f"{d.uid}-{p.id}" for d, p in P.all_panels()])
def test_panels_do_not_fold_every_run(uid, panel_id):
    if uid in (P.RUN_LIST.uid, P.RUN_DETAILS.uid):
        pytest.skip("lists runs one by one: reads the runs / steps views by their key, applied before the fold "
                    "(tests/unit/dashboards/test_run_dashboards.py)")
    panel = P.dashboard(uid).panel(panel_id)
    assert not _PER_RUN_VIEW.search(panel.sql), f"{panel.title!r} reads a per-run view:\n{panel.sql}"


def test_summary_does_not_fold_every_run():
    from dashboards.summary import SUMMARY_PANELS

    for panel in SUMMARY_PANELS:
        assert not _PER_RUN_VIEW.search(panel.sql), f"{panel.key} reads a per-run view"


def test_duration_histogram_bands_match_the_migration():
    migration = (ROOT / "sinks" / "migrations" / "007_panel_state.sql").read_text()
    columns = [column for _, column in P.DURATION_BANDS]
    assert len(set(columns)) == len(columns) == 7
    for column in columns:
        assert f"ADD COLUMN IF NOT EXISTS {column} " in migration
        assert f"AS {column}," in migration or f"AS {column}\n" in migration


# --------------------------------------------------------------------------- tenants' dashboards

_TABLE = re.compile(r"\b(?:FROM|(?<!ARRAY )JOIN)\s+([A-Za-z_]\w*)", re.IGNORECASE)
# Names a query defines itself (``WITH name AS (...), other AS (...)``): not tables.
_CTE = re.compile(r"(?:\bWITH|,)\s*([A-Za-z_]\w*)\s+AS\s*\(\s*SELECT\b", re.IGNORECASE)


def _tables(sql: str) -> set[str]:
    return set(_TABLE.findall(sql)) - {"system"} - set(_CTE.findall(sql))


def test_tenant_dashboards_read_only_what_a_tenant_may_read():
    """Every panel and variable query of a tenant's dashboards reads tables and views its
    ClickHouse user is granted (sinks.tenancy.READABLE): none fails on the tenant's datasource."""
    from sinks import tenancy

    assert P.PIPELINE not in G.TENANT_DASHBOARDS and len(G.TENANT_DASHBOARDS) == len(P.DASHBOARDS) - 1
    queries = [(f"{d.uid} {p.title}", p.sql) for d in G.TENANT_DASHBOARDS for p in d.panels]
    queries += [(f"variable {v.name}", v.sql) for v in P.VARIABLES if v.sql]
    for where, sql in queries:
        tables = _tables(sql)
        assert tables, where
        assert tables <= set(tenancy.READABLE), f"{where} reads {tables - set(tenancy.READABLE)}"
    # and the pipeline dashboard is the operators' because it reads what tenants may not
    assert any(_tables(p.sql) & set(tenancy.NOT_TENANT_READABLE) for p in P.PIPELINE.panels)


def test_tenant_dashboards_use_the_tenants_datasource_with_the_account_fixed():
    from sinks import tenancy

    models = G.tenant_dashboards("acme")
    assert [m["uid"] for m in models] == [f"{d.uid}-acme" for d in G.TENANT_DASHBOARDS]
    for model in models:
        text = json.dumps(model)
        assert P.DATASOURCE_UID not in text, f"{model['uid']} refers to the all-accounts datasource"
        refs = [p["datasource"] for p in model["panels"]] + [t["datasource"] for _, t in _all_targets(model)]
        refs += [v["datasource"] for v in model["templating"]["list"] if v["type"] == "query"]
        assert {r["uid"] for r in refs} == {tenancy.datasource_uid("acme")}
        account = model["templating"]["list"][0]
        assert account["name"] == "account" and account["type"] == "constant" and account["query"] == "acme"
        assert account["hide"] == 2, "the account variable is hidden on a tenant's dashboard"
        assert model["tags"] == ["runlens-tenant-acme"]
        for link in re.findall(r"/d/([\w-]+)\?", text):
            assert link in {m["uid"] for m in models}, f"{model['uid']} links to {link}"
    assert "runlens-tenant-acme" in model["links"][0]["tags"]


def test_tenant_uids_fit_grafanas_limit():
    from sinks import tenancy

    long = "a" * 60
    assert len(G.tenant_uid("runlens-workflow", long)) <= 40
    assert G.tenant_uid("runlens-workflow", long) != G.tenant_uid("runlens-workflow", long[:-1] + "b")
    assert len(tenancy.datasource_uid(long)) <= 40 and len(G.tenant_folder(long)[0]) <= 40
    with pytest.raises(ValueError):
        G.tenant_dashboards("acme' OR 1=1")


def test_operator_variables_take_no_typed_in_values():
    """No typed-in values but in the textboxes made for them (a run id, a contact id)."""
    for d in _dashboards().values():
        for v in d["templating"]["list"]:
            if v["type"] == "textbox":
                assert v["name"] in TEXT_VARIABLES and d["uid"] in (P.RUN_LIST.uid, P.RUN_DETAILS.uid)
                continue
            assert v["allowCustomValue"] is False, f"{d['uid']}: ${v['name']} accepts typed-in values"


def test_pipeline_health_reads_figures_not_scans():
    """Pipeline health reads the workers' figures (``pipeline_metrics``), never a scan of the
    events or run state, and only metric names the workers write."""
    import re

    from streams.figures import BATCH_METRICS, DEAD_LETTER_BATCH_METRIC

    written = set(BATCH_METRICS) | {DEAD_LETTER_BATCH_METRIC, "consumer_lag", "partition_lag"}
    for panel in P.PIPELINE.panels:
        assert not _tables(panel.sql) & {"events", "run_state", "runs", "steps", "dead_letters"}, panel.title
        if "pipeline_metrics" in _tables(panel.sql):
            names = set(re.findall(r"'([a-z0-9_]+)'", panel.sql)) - {"UTC"}
            assert names and names <= written, f"{panel.title} reads {names - written}"
    for panel_id in (1, 3, 4):
        assert _tables(P.PIPELINE.panel(panel_id).sql) == {"pipeline_metrics"}
