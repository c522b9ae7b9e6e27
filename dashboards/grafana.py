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
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import alerting as al
from grafana_foundation_sdk.builders import barchart, heatmap, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards import panels as P

ROOT = Path(__file__).resolve().parent
JSON_DIR = ROOT / "json"
ALERTING_DIR = ROOT / "provisioning" / "alerting"
DATASOURCES_FILE = ROOT / "provisioning" / "datasources" / "clickhouse.yaml"

DATASOURCE = dm.DataSourceRef(type_val=P.DATASOURCE_TYPE, uid=P.DATASOURCE_UID)
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1   # the plugin's (sqlds') result formats


# --------------------------------------------------------------------------- the plugin's query


class ClickHouseQuery(cogvariants.Dataquery):
    """A target of the grafana-clickhouse-datasource plugin in SQL editor mode (the SDK ships
    no builder for this plugin; this is its query model)."""

    def __init__(self, ref_id: str, raw_sql: str, time_series: bool, for_alerting: bool = False):
        self.ref_id, self.raw_sql, self.time_series, self.for_alerting = ref_id, raw_sql, time_series, for_alerting

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": P.DATASOURCE_TYPE, "uid": P.DATASOURCE_UID},
            "editorType": "sql",
            "format": FORMAT_TIME_SERIES if self.time_series else FORMAT_TABLE,
            "queryType": "timeSeries" if self.time_series else "table",   # the plugin's QueryType
            "rawSql": self.raw_sql,
        }
        if self.for_alerting:
            payload.update(intervalMs=1000, maxDataPoints=43200)
        return payload


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, ref_id: str, raw_sql: str, time_series: bool, for_alerting: bool = False):
        self._internal = ClickHouseQuery(ref_id, raw_sql, time_series, for_alerting)

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


def _variable(v: P.Variable):
    if v.kind == "query":
        builder = (db.QueryVariable(v.name).label(v.label).datasource(DATASOURCE).query(v.sql)
                   .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.DISABLED))
    else:
        builder = (db.CustomVariable(v.name).label(v.label).values(",".join(v.options))
                   .options([dm.VariableOption(text=o, value=o, selected=False) for o in v.options]))
    if v.description:
        builder = builder.description(v.description)
    return (builder.multi(v.multi).include_all(v.include_all)
            .current(dm.VariableOption(text=["All"], value=["$__all"], selected=True)))


def _links_override(panel: P.Panel, builder):
    for link in panel.links:
        builder = builder.override_by_name(link.column, [dm.DynamicConfigValue(
            id_val="links", value=[{"title": link.title, "url": link.url, "targetBlank": False}])])
    return builder


def _panel(panel: P.Panel):
    kind = panel.type
    if kind == "timeseries":
        builder = (timeseries.Panel().line_width(1).fill_opacity(20 if panel.stacked or panel.bars else 10)
                   .show_points(cm.VisibilityMode.NEVER).span_nulls(False)
                   .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                           .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
                   .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.NONE)))
        if panel.bars:
            builder = builder.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
        if panel.stacked:
            builder = builder.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    elif kind == "stat":
        builder = (stat.Panel().graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.VALUE)
                   .text_mode(cm.BigValueTextMode.AUTO)
                   .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    elif kind == "table":
        builder = table.Panel().cell_height(cm.TableCellHeight.SM).filterable(False)
    elif kind == "barchart":
        builder = (barchart.Panel().show_value(cm.VisibilityMode.AUTO).fill_opacity(80)
                   .orientation(cm.VizOrientation.HORIZONTAL if panel.horizontal else cm.VizOrientation.AUTO)
                   .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                           .placement(cm.LegendPlacement.BOTTOM).show_legend(True)))
        if panel.stacked:
            builder = builder.stacking(cm.StackingMode.NORMAL)
    elif kind == "piechart":
        builder = (piechart.Panel().pie_type("donut")
                   .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True))
                   .legend(piechart.PieChartLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                           .placement(cm.LegendPlacement.RIGHT).show_legend(True).values(["value", "percent"])))
    elif kind == "heatmap":
        builder = (heatmap.Panel().calculate(False).cell_gap(1)
                   .y_axis(heatmap.YAxisConfig().axis_placement(cm.AxisPlacement.LEFT))
                   .color(heatmap.HeatmapColorOptions().mode("scheme").scheme("Oranges")
                          .fill("dark-orange").steps(64).exponent(0.5).scale("exponential").reverse(False))
                   .show_legend().show_value(cm.VisibilityMode.AUTO))
    else:
        raise ValueError(f"panel {panel.title!r}: unknown panel type {kind!r}")
    x, y, w, h = panel.grid
    builder = (builder.id(panel.id).title(panel.title).datasource(DATASOURCE)
               .grid_pos(dm.GridPos(h=h, w=w, x=x, y=y))
               .with_target(ClickHouseQueryBuilder("A", panel.sql, panel.time_series)))
    if panel.description:
        builder = builder.description(panel.description)
    if panel.unit:
        builder = builder.unit(panel.unit)
    if panel.decimals is not None:
        builder = builder.decimals(panel.decimals)
    if panel.min_interval:
        builder = builder.interval(panel.min_interval)
    return _links_override(panel, builder)


def build_dashboard(d: P.Dashboard) -> dict[str, Any]:
    builder = (db.Dashboard(d.title).uid(d.uid).description(d.description).tags(["runlens"])
               .time(d.time_from, "now").timezone("utc").refresh(d.refresh).editable()
               .tooltip(dm.DashboardCursorSync.CROSSHAIR)
               .link(db.DashboardLink("runlens").type(dm.DashboardLinkType.DASHBOARDS).tags(["runlens"])
                     .as_dropdown(False).include_vars(True).keep_time(True).target_blank(False)))
    for v in P.VARIABLES:
        builder = builder.with_variable(_variable(v))
    for panel in d.panels:
        builder = builder.with_panel(_panel(panel))
    return _plain(builder.build())


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


def _relative(seconds: int):
    from grafana_foundation_sdk.models import alerting as am

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
