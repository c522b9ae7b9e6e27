"""Grafana dashboards and alert rules, generated from ``dashboards.panels`` with Grafana's own
dashboards-as-code library (grafana-foundation-sdk).

The generated files are committed; Grafana provisions them:

* ``dashboards/json/<uid>.json``                        dashboard JSON (file provider)
* ``dashboards/provisioning/alerting/rules.yaml``       unified alerting rules
* ``dashboards/provisioning/alerting/notifications.yaml`` contact point and notification policy

Regenerate after changing a panel or rule::

    python -m dashboards.grafana            # writes the files
    python -m dashboards.grafana --check    # exit 1 if the committed files are stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import yaml
from grafana_foundation_sdk.builders import alerting as al
from grafana_foundation_sdk.builders import barchart, heatmap, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as am
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import piechart as pm

from dashboards import panels as P
from sinks import tenancy

ROOT = Path(__file__).resolve().parent
JSON_DIR = ROOT / "json"
ALERTING_DIR = ROOT / "provisioning" / "alerting"
DATASOURCES_FILE = ROOT / "provisioning" / "datasources" / "clickhouse.yaml"

DATASOURCE = dm.DataSourceRef(type_val=P.DATASOURCE_TYPE, uid=P.DATASOURCE_UID)
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1   # the plugin's (sqlds') result formats


# The panel builders ``_panel`` makes (each panel type has its own builder class).
PanelBuilder: TypeAlias = (timeseries.Panel | stat.Panel | table.Panel | barchart.Panel | piechart.Panel
                           | heatmap.Panel)


# --------------------------------------------------------------------------- the plugin's query


class ClickHouseQuery(cogvariants.Dataquery):
    """A target of the grafana-clickhouse-datasource plugin in SQL editor mode (the SDK ships
    no builder for this plugin; this is its query model)."""

    def __init__(self, ref_id: str, raw_sql: str, time_series: bool, for_alerting: bool = False,
                 datasource_uid: str = P.DATASOURCE_UID):
        self.ref_id, self.raw_sql, self.time_series, self.for_alerting = ref_id, raw_sql, time_series, for_alerting
        self.datasource_uid = datasource_uid

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": P.DATASOURCE_TYPE, "uid": self.datasource_uid},
            "editorType": "sql",
            "format": FORMAT_TIME_SERIES if self.time_series else FORMAT_TABLE,
            "queryType": "timeSeries" if self.time_series else "table",   # the plugin's QueryType
            "rawSql": self.raw_sql,
        }
        if self.for_alerting:
            payload.update(intervalMs=1000, maxDataPoints=43200)
        return payload


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, ref_id: str, raw_sql: str, time_series: bool, for_alerting: bool = False,
                 datasource_uid: str = P.DATASOURCE_UID):
        self._internal = ClickHouseQuery(ref_id, raw_sql, time_series, for_alerting, datasource_uid)

    def build(self) -> ClickHouseQuery:
        return self._internal


class ExpressionQuery(cogvariants.Dataquery):
    """A server-side expression (threshold) of an alert rule."""

    def __init__(self, ref_id: str, expression: str, op: str, value: float):
        self.ref_id, self.expression, self.op, self.value = ref_id, expression, op, value

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": "__expr__", "uid": "__expr__"},
            "type": "threshold",
            "expression": self.expression,
            "conditions": [{"evaluator": {"type": self.op, "params": [self.value]}}],
        }


class ExpressionBuilder(cogbuilder.Builder[ExpressionQuery]):
    def __init__(self, ref_id: str, expression: str, op: str, value: float):
        self._internal = ExpressionQuery(ref_id, expression, op, value)

    def build(self) -> ExpressionQuery:
        return self._internal


# --------------------------------------------------------------------------- dashboards


@dataclass(frozen=True)
class Target:
    """Whom a dashboard is built for: the operators (every account, the all-accounts
    datasource) or one tenant (its own datasource, whose ClickHouse user row policies hold to
    the tenant's rows; the account variable fixed to the tenant and hidden)."""

    account: str | None = None

    @property
    def datasource_uid(self) -> str:
        return tenancy.datasource_uid(self.account) if self.account else P.DATASOURCE_UID

    @property
    def datasource(self) -> dm.DataSourceRef:
        return dm.DataSourceRef(type_val=P.DATASOURCE_TYPE, uid=self.datasource_uid)

    def uid(self, dashboard_uid: str) -> str:
        return tenant_uid(dashboard_uid, self.account) if self.account else dashboard_uid

    @property
    def tag(self) -> str:
        return f"runlens-tenant-{self.account}" if self.account else "runlens"


OPERATORS = Target()


def tenant_uid(base: str, account: str) -> str:
    """A tenant's copy of uid ``base`` (dashboard or folder); Grafana uids have at most 40
    characters, so a long account id is replaced by a digest."""
    tenancy.check_account(account)
    uid = f"{base}-{account}"
    if len(uid) > 40:
        uid = f"{base}-t{hashlib.sha256(account.encode()).hexdigest()[:12]}"
    return uid


def _variable(v: P.Variable, target: Target = OPERATORS) -> cogbuilder.Builder[dm.VariableModel]:
    if target.account and v.name == "account":
        # fixed and hidden: the tenant's datasource sees no other account anyway
        return (db.ConstantVariable(v.name).label(v.label).value(target.account)
                .description("The tenant this dashboard belongs to (fixed)."))
    if v.textbox:
        # typed in; empty is no filter ($__conditionalAll drops it). The value reaches the SQL only
        # percent-encoded, as every other variable's (panels.values_of).
        text = db.TextBoxVariable(v.name).label(v.label).default_value("")
        return text.description(v.description) if v.description else text
    builder: db.QueryVariable | db.CustomVariable
    if v.sql:   # v.kind == "query" (narrows v.sql to str)
        builder = (db.QueryVariable(v.name).label(v.label).datasource(target.datasource).query(v.sql)
                   .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.DISABLED))
    else:
        builder = (db.CustomVariable(v.name).label(v.label).values(",".join(v.options))
                   .options([dm.VariableOption(text=o, value=o, selected=False) for o in v.options]))
    if v.description:
        builder = builder.description(v.description)
    # No typed-in values (defence in depth only: a URL can still carry any value, which the
    # panels' percent-encoded comparison keeps out of the SQL; see panels.values_of).
    return (builder.multi(v.multi).include_all(v.include_all).allow_custom_value(False)
            .current(dm.VariableOption(text=["All"], value=["$__all"], selected=True)))


def _link_url(url: str, target: Target) -> str:
    """A link to another runlens dashboard, pointed at the target's copy of it."""
    if target.account:
        for d in P.DASHBOARDS:
            url = url.replace(f"/d/{d.uid}?", f"/d/{target.uid(d.uid)}?")
    return url


def _links_override(panel: P.Panel, builder: PanelBuilder, target: Target = OPERATORS) -> PanelBuilder:
    for link in panel.links:
        builder = builder.override_by_name(link.column, [dm.DynamicConfigValue(
            id_val="links", value=[{"title": link.title, "url": _link_url(link.url, target), "targetBlank": False}])])
    return builder


def _panel(panel: P.Panel, target: Target = OPERATORS) -> PanelBuilder:
    kind = panel.type
    builder: PanelBuilder
    if kind == "timeseries":
        lines = (timeseries.Panel().line_width(1).fill_opacity(20 if panel.stacked or panel.bars else 10)
                   .show_points(cm.VisibilityMode.NEVER).span_nulls(False)
                   .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                           .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
                   .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.NONE)))
        if panel.bars:
            lines = lines.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
        if panel.stacked:
            lines = lines.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        builder = lines
    elif kind == "stat":
        builder = (stat.Panel().graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.VALUE)
                   .text_mode(cm.BigValueTextMode.AUTO)
                   .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    elif kind == "table":
        rows = table.Panel().cell_height(cm.TableCellHeight.SM).filterable(False)
        if panel.paginate:
            rows = rows.footer(cb.TableFooterOptions().show(False).reducer(["count"]).enable_pagination(True))
        builder = rows
    elif kind == "barchart":
        bars = (barchart.Panel().show_value(cm.VisibilityMode.AUTO).fill_opacity(80)
                   .orientation(cm.VizOrientation.HORIZONTAL if panel.horizontal else cm.VizOrientation.AUTO)
                   .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                           .placement(cm.LegendPlacement.BOTTOM).show_legend(True)))
        if panel.stacked:
            bars = bars.stacking(cm.StackingMode.NORMAL)
        builder = bars
    elif kind == "piechart":
        builder = (piechart.Panel().pie_type(pm.PieChartType.DONUT)
                   .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
                   .legend(piechart.PieChartLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                           .placement(cm.LegendPlacement.RIGHT).show_legend(True)
                           .values([pm.PieChartLegendValues.VALUE, pm.PieChartLegendValues.PERCENT])))
    elif kind == "heatmap":
        builder = (heatmap.Panel().calculate(False).cell_gap(1)
                   .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT))
                   .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges")
                          .fill("dark-orange").steps(64).exponent(0.5).scale(hm.HeatmapColorScale.EXPONENTIAL).reverse(False))
                   .show_legend().show_value(cm.VisibilityMode.AUTO))
    else:
        raise ValueError(f"panel {panel.title!r}: unknown panel type {kind!r}")
    x, y, w, h = panel.grid
    builder = (builder.id(panel.id).title(panel.title).datasource(target.datasource)
               .grid_pos(dm.GridPos(h=h, w=w, x=x, y=y))
               .with_target(ClickHouseQueryBuilder("A", panel.sql, panel.time_series,
                                                   datasource_uid=target.datasource_uid)))
    if panel.description:
        builder = builder.description(panel.description)
    if panel.unit:
        builder = builder.unit(panel.unit)
    if panel.decimals is not None:
        builder = builder.decimals(panel.decimals)
    if panel.min_interval:
        builder = builder.interval(panel.min_interval)
    for name in panel.hidden_series:
        builder = builder.override_by_name(name, [
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "transparent"}),
            dm.DynamicConfigValue(id_val="custom.hideFrom", value={"legend": True, "tooltip": True, "viz": False})])
    return _links_override(panel, builder, target)


def build_dashboard(d: P.Dashboard, target: Target = OPERATORS) -> dict[str, Any]:
    title = f"{d.title} ({target.account})" if target.account else d.title
    builder = (db.Dashboard(title).uid(target.uid(d.uid)).description(d.description).tags([target.tag])
               .time(d.time_from, "now").timezone("utc").refresh(d.refresh).editable()
               .tooltip(dm.DashboardCursorSync.CROSSHAIR)
               .link(db.DashboardLink("runlens").type(dm.DashboardLinkType.DASHBOARDS).tags([target.tag])
                     .as_dropdown(False).include_vars(True).keep_time(True).target_blank(False)))
    for v in P.VARIABLES:
        if v.name in d.variables:
            builder = builder.with_variable(_variable(v, target))
    for panel in d.panels:
        builder = builder.with_panel(_panel(panel, target))
    return _plain(builder.build())


# --------------------------------------------------------------------------- tenants

# What a tenant's team gets: every dashboard but Pipeline health, which reads the dead letters
# and the workers' metrics (every account's traffic; not tenant-readable). Alert rules read every
# account and stay with the operators.
TENANT_DASHBOARDS = tuple(d for d in P.DASHBOARDS if d.uid != P.PIPELINE.uid)
TENANT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/runlens-tenants"


def tenant_folder(account: str) -> tuple[str, str]:
    """(uid, title) of the account's Grafana folder."""
    return tenant_uid(P.FOLDER_UID, account), f"{P.FOLDER_TITLE} {tenancy.check_account(account)}"


def tenant_dashboards(account: str) -> list[dict[str, Any]]:
    target = Target(tenancy.check_account(account))
    return [build_dashboard(d, target) for d in TENANT_DASHBOARDS]


def tenant_files(account: str, *, org_id: int = 1, dashboards_path: str | None = None, database: str = "runlens",
                 host: str = "clickhouse", port: int = 8123, secure: bool = False) -> dict[str, str]:
    """Grafana file provisioning for one tenant, as {relative path: content}:

    * ``dashboards/<uid>.json`` — the tenant's dashboards (``TENANT_DASHBOARDS``) on the
      tenant's datasource, the account variable fixed to the tenant and hidden;
    * ``provisioning/datasources/runlens-<account>.yaml`` — that datasource, logging in as the
      account's ClickHouse reader (``sinks.tenancy``; password from
      ``RUNLENS_GRAFANA_<ACCOUNT>_PASSWORD`` in Grafana's environment);
    * ``provisioning/dashboards/runlens-<account>.yaml`` — a file provider putting the
      dashboards (mounted at ``dashboards_path``) into the tenant's folder.

    All in organisation ``org_id``. Grafana OSS lets every member of an organisation query every
    datasource in it, so a tenant's team is kept to its rows only in an organisation of its own
    (create it first: provisioning does not create organisations)."""
    account = tenancy.check_account(account)
    if int(org_id) < 1:
        raise ValueError(f"org id {org_id!r}: Grafana organisations start at 1")
    folder_uid, folder_title = tenant_folder(account)
    path = dashboards_path or f"{TENANT_DASHBOARDS_PATH}/{account}"
    command = f"runlens grafana provision --tenant {account} --org-id {int(org_id)}"
    files = {f"dashboards/{d['uid']}.json": json.dumps(d, indent=2, ensure_ascii=False) + "\n"
             for d in tenant_dashboards(account)}
    files[f"provisioning/datasources/runlens-{account}.yaml"] = tenancy.grafana_datasources(
        [account], database, org_id=int(org_id), host=host, port=port, secure=secure, command=command)
    provider = {"apiVersion": 1, "providers": [{
        "name": f"runlens-{account}", "orgId": int(org_id), "folder": folder_title, "folderUid": folder_uid,
        "type": "file", "disableDeletion": True, "allowUiUpdates": False, "options": {"path": path}}]}
    files[f"provisioning/dashboards/runlens-{account}.yaml"] = (
        f"# Generated by `{command}`: the tenant's dashboards, in its own folder and organisation.\n"
        + yaml.safe_dump(provider, sort_keys=False))
    return files


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, cls=JSONEncoder))


# --------------------------------------------------------------------------- alerting


def _rule_builder(rule: P.AlertRule) -> al.Rule:
    return (al.Rule(rule.title).uid(rule.uid).condition("B").for_val(rule.pending)
            .no_data_state(rule.no_data_state).exec_err_state(rule.exec_err_state)
            .folder_uid(P.FOLDER_UID).rule_group(P.ALERT_GROUP).org_id(1).is_paused(False)
            .labels({"severity": rule.severity, "team": "runlens", **rule.labels})
            .with_query(al.Query("A").datasource_uid(P.DATASOURCE_UID)
                        .relative_time_range(_relative(rule.window_s))
                        .model(ClickHouseQueryBuilder("A", rule.sql, False, for_alerting=True)))
            .with_query(al.Query("B").datasource_uid("__expr__")
                        .model(ExpressionBuilder("B", "A", rule.op, rule.threshold))))


def _relative(seconds: int) -> am.RelativeTimeRange:
    return am.RelativeTimeRange(from_val=seconds, to=0)


def _annotations(rule: P.AlertRule) -> dict[str, str]:
    return {"summary": rule.summary, "description": rule.description, "runbook": rule.runbook,
            "panel": f"/d/{rule.dashboard_uid}?viewPanel=panel-{rule.panel_id}"}


def alert_rules_api() -> list[dict[str, Any]]:
    """The rules as Grafana's alerting provisioning HTTP API takes them."""
    rules = []
    for rule in P.ALERT_RULES:
        built = _plain(_rule_builder(rule).annotations({
            **_annotations(rule), "__dashboardUid__": rule.dashboard_uid, "__panelId__": str(rule.panel_id)}).build())
        rules.append(built)
    return rules


def alert_rules_file() -> dict[str, Any]:
    """The rules in Grafana's file provisioning format (provisioning/alerting/*.yaml)."""
    rules = []
    for rule in P.ALERT_RULES:
        built = _plain(_rule_builder(rule).annotations(_annotations(rule)).build())
        for api_only in ("folderUID", "ruleGroup", "orgID"):
            built.pop(api_only, None)
        built["dashboardUid"] = rule.dashboard_uid
        built["panelId"] = rule.panel_id
        rules.append(built)
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": P.ALERT_GROUP, "folder": P.FOLDER_TITLE, "interval": P.ALERT_INTERVAL, "rules": rules}]}


def contact_point() -> dict[str, Any]:
    return _plain(al.ContactPoint().uid(P.CONTACT_POINT).name(P.CONTACT_POINT).type("webhook")
                  .settings({"url": f"${P.WEBHOOK_URL_ENV}", "httpMethod": "POST"})
                  .disable_resolve_message(False).build())


def notification_policy() -> dict[str, Any]:
    return _plain(al.NotificationPolicy().receiver(P.CONTACT_POINT).group_by(list(P.GROUP_BY))
                  .group_wait("30s").group_interval("5m").repeat_interval("4h").build())


def notifications_file() -> dict[str, Any]:
    point = contact_point()
    receiver = {"uid": point["uid"], "type": point["type"], "settings": point["settings"],
                "disableResolveMessage": point.get("disableResolveMessage", False)}
    return {"apiVersion": 1,
            "contactPoints": [{"orgId": 1, "name": point["name"], "receivers": [receiver]}],
            "policies": [{"orgId": 1, **notification_policy()}]}


# --------------------------------------------------------------------------- files


HEADER = ("# Generated by `python -m dashboards.grafana` from dashboards/panels.py; do not edit by hand.\n")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the SQL) as literal blocks, so the files read like the queries."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def _yaml(data: dict[str, Any]) -> str:
    return HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def rendered() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {JSON_DIR / f"{d.uid}.json": json.dumps(build_dashboard(d), indent=2, ensure_ascii=False) + "\n"
             for d in P.DASHBOARDS}
    files[ALERTING_DIR / "rules.yaml"] = _yaml(alert_rules_file())
    files[ALERTING_DIR / "notifications.yaml"] = _yaml(notifications_file())
    return files


def stale_files() -> list[Path]:
    out = []
    for path, text in rendered().items():
        if not path.is_file() or path.read_text() != text:
            out.append(path)
    known = {p.name for p in rendered() if p.parent == JSON_DIR}
    out.extend(p for p in JSON_DIR.glob("*.json") if p.name not in known)
    return out


def write() -> list[Path]:
    written = []
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.grafana", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the committed files are current")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT.parent)}", file=sys.stderr)
        return 1 if stale else 0
    for path in write():
        print(f"wrote {path.relative_to(ROOT.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
