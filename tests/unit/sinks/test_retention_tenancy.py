"""Retention TTL compilation and tenant provisioning, without a warehouse."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sinks import retention, tenancy
from sinks.clickhouse import migration_files, split_statements

ROOT = Path(__file__).resolve().parents[3]


def test_ttl_maps_each_account_to_its_days_and_keeps_the_rest():
    clause = retention.ttl_clause("toDateTime(ts)", {"acme": 7, "globex": 30, "initech": 0}, 0)
    assert clause.startswith("toDateTime(ts) + toIntervalDay(transform(toString(account_id), ['acme', 'globex'], ")
    assert "'initech'" not in clause  # kept forever: not in the mapping, default 0
    assert clause.endswith("> 0")


def test_ttl_with_a_default_plan_names_every_account():
    clause = retention.ttl_clause("toDateTime(ts)", {"acme": 7, "initech": 0}, 100)
    assert "['acme', 'initech']" in clause and "toUInt32(100))" in clause


def test_no_ttl_when_nothing_expires():
    assert retention.ttl_clause("toDateTime(ts)", {"acme": 0}, 0) is None
    assert retention.ttl_clause("toDateTime(ts)", {}, 0) is None
    assert retention.ttl_clause("toDateTime(ts)", {}, 30) == \
        "toDateTime(ts) + toIntervalDay(toUInt32(30)) WHERE toUInt32(30) > 0"


def test_account_ids_are_quoted_in_the_ttl():
    clause = retention.ttl_clause("toDateTime(ts)", {"a' OR 1=1, '": 7}, 0)
    assert "['a\\' OR 1=1, \\'']" in clause


def test_migration_005_creates_the_plan_tables_with_the_default_plans():
    files = {name: sql for _, name, sql in migration_files()}
    statements = split_statements(files["005_retention.sql"])
    text = " ".join(statements)
    assert "{db}.retention_plans" in text and "{db}.account_plans" in text
    for plan, days in (("free", 7), ("pro", 30), ("enterprise", 365)):
        assert f"('{plan}', {days}," in text


def test_tenant_sql_grants_the_query_surface_and_holds_rows_to_the_account():
    statements = tenancy.tenant_sql("runlens", "acme", "a" * 64)
    assert statements[0].startswith("CREATE USER IF NOT EXISTS runlens_acme IDENTIFIED WITH sha256_hash")
    assert "GRANT SELECT ON runlens.runs TO runlens_acme" in statements
    assert not any("dead_letters" in s or "rejected_events" in s or "account_plans" in s for s in statements)
    policy = statements[-1]
    assert "USING account_id = 'acme' TO runlens_acme" in policy
    for table in tenancy.POLICY_TABLES:
        assert f"runlens.{table}" in policy


@pytest.mark.parametrize("account", ["", "a'b", "acme; DROP USER x", "x" * 70])
def test_tenant_names_must_be_safe(account):
    with pytest.raises(ValueError):
        tenancy.tenant_sql("runlens", account, "a" * 64)


def test_provisioned_files_are_the_generated_ones():
    """The users.d file docker-compose mounts and the Grafana datasources match the generator."""
    accounts = ["acme", "globex", "initech"]
    users = ROOT / "sinks/server/users.d/runlens_tenants.xml"
    assert users.read_text() == tenancy.users_xml(accounts)
    root = ET.parse(users).getroot()
    acme = root.find("users/runlens_acme")
    assert acme.find("databases/runlens/run_state/filter").text == "account_id = 'acme'"
    assert {q.text for q in acme.findall("grants/query")} >= {"GRANT SELECT ON runlens.runs",
                                                              "GRANT SELECT ON runlens.steps"}
    grafana = ROOT / "dashboards/provisioning/datasources/tenants.yaml"
    assert grafana.read_text() == tenancy.grafana_datasources(accounts)
    import yaml

    sources = yaml.safe_load(grafana.read_text())["datasources"]
    assert [s["jsonData"]["username"] for s in sources] == ["runlens_acme", "runlens_globex", "runlens_initech"]


def test_the_dashboards_tables_carry_policies_and_the_dead_letters_none():
    for table in ("run_notes", "run_stats_hourly", "step_stats_hourly", "step_stats_daily", "alert_events"):
        assert table in tenancy.POLICY_TABLES and table in tenancy.READABLE
    for table in ("dead_letters", "rejected_events", "account_plans", "retention_plans", "pipeline_metrics"):
        assert table in tenancy.NOT_TENANT_READABLE and table not in tenancy.READABLE
    assert not set(tenancy.READABLE) & set(tenancy.NOT_TENANT_READABLE)


def test_row_policy_can_name_another_grantee_but_not_an_injected_one():
    policy = tenancy.row_policy_sql("runlens", "acme", to="default")
    assert policy.startswith("CREATE ROW POLICY IF NOT EXISTS runlens_acme_rows ON runlens.events, ")
    assert policy.endswith("USING account_id = 'acme' TO default")
    with pytest.raises(ValueError):
        tenancy.row_policy_sql("runlens", "acme", to="default, other")


def test_tenant_datasource_in_its_own_organisation():
    import yaml

    (ds,) = yaml.safe_load(tenancy.grafana_datasources(["acme"], org_id=7, host="ch.internal", port=8443,
                                                       secure=True))["datasources"]
    assert ds["orgId"] == 7 and ds["uid"] == tenancy.datasource_uid("acme")
    assert ds["jsonData"] == {"host": "ch.internal", "port": 8443, "protocol": "http", "secure": True,
                              "username": "runlens_acme", "defaultDatabase": "runlens"}
    assert ds["secureJsonData"]["password"] == "$RUNLENS_GRAFANA_ACME_PASSWORD"
    with pytest.raises(ValueError):
        tenancy.grafana_datasources(["acme"], host="ch\n  evil: 1")
