"""Tenant isolation enforced by a ClickHouse server: the production read path (HTTP, Grafana's
datasources) with one reader per account, from the provisioned users.d file and from the SQL
of sinks/tenancy.py. Runs where a Docker engine is reachable; skips cleanly elsewhere (the
embedded read endpoint is a single-user loopback endpoint: there, the runlens commands scope
every query to --account, as test_explorer.py shows)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.test_containers import CLICKHOUSE_IMAGE, _docker_engine_reachable

pytestmark = [pytest.mark.integration, pytest.mark.docker]

USERS_D = Path(__file__).resolve().parents[2] / "sinks" / "server" / "users.d"


def _events():
    from schemas import parse_event

    at = datetime.now(UTC) - timedelta(hours=1)
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
    out = []
    for account in ("acme", "globex", "initech"):
        base = {"schema_version": 1, "account_id": account, "run_id": f"run-{account}", "workflow_id": "wf",
                "workflow_name": "W", "workflow_version": 1, "workflow_type": "site", "trigger": "api"}
        out += [{**base, "event_id": f"{account}-1", "type": "run.started", "ts": stamp(at)},
                {**base, "event_id": f"{account}-2", "type": "step.finished", "ts": stamp(at + timedelta(seconds=1)),
                 "step_id": "st1", "step_index": 0, "step_name": "T", "step_type": "trigger", "attempt": 1,
                 "status": "success", "started_at": stamp(at)},
                {**base, "event_id": f"{account}-3", "type": "run.finished", "ts": stamp(at + timedelta(seconds=2)),
                 "status": "success", "started_at": stamp(at)}]
    return [parse_event(json.dumps(e).encode()) for e in out]


@pytest.mark.skipif(not _docker_engine_reachable(), reason="no Docker engine reachable")
def test_each_account_reader_sees_only_its_own_rows():
    from testcontainers.community.clickhouse import ClickHouseContainer

    from sinks.clickhouse import Warehouse, connect, migrate
    from sinks.rows import event_columns, sourced
    from sinks.tenancy import NOT_TENANT_READABLE, READABLE, tenant_sql

    container = (ClickHouseContainer(CLICKHOUSE_IMAGE, username="runlens", password="runlens")
                 .with_env("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "1")
                 .with_volume_mapping(str(USERS_D / "runlens_reader.xml"),
                                      "/etc/clickhouse-server/users.d/runlens_reader.xml", "ro")
                 .with_volume_mapping(str(USERS_D / "runlens_tenants.xml"),
                                      "/etc/clickhouse-server/users.d/runlens_tenants.xml", "ro"))
    with container as clickhouse:
        base = f"{clickhouse.get_container_host_ip()}:{clickhouse.get_exposed_port(8123)}"
        admin = connect(f"http://runlens:runlens@{base}")
        migrate(admin, "runlens")
        events = _events()
        columns = event_columns(sourced(e, 0, i) for i, e in enumerate(events))
        Warehouse(admin, "runlens").insert_columns("events", columns, token="tenancy")
        # initech's reader comes from the SQL provisioning, acme's and globex's from users.d
        for statement in tenant_sql("runlens", "initech", hashlib.sha256(b"initech-secret").hexdigest()):
            admin.command(statement)
        readers = {"acme": "acme_reader", "globex": "globex_reader", "initech": "initech-secret"}
        for account, password in readers.items():
            client = connect(f"http://runlens_{account}:{password}@{base}", database="runlens")
            for view in ("runs", "steps", "events"):
                seen = {r[0] for r in client.query(f"SELECT DISTINCT account_id FROM {view}").result_rows}
                assert seen == {account}, (account, view)
            for name in READABLE:     # every table and view a tenant may read, held to its rows
                seen = {r[0] for r in client.query(f"SELECT DISTINCT account_id FROM {name}").result_rows}
                assert seen <= {account}, (account, name, seen)
            assert client.query("SELECT count() FROM runs WHERE account_id != {a:String}",
                                parameters={"a": account}).result_rows == [(0,)]
            for name in NOT_TENANT_READABLE:
                with pytest.raises(Exception, match="(?i)not enough privileges|ACCESS_DENIED"):
                    client.query(f"SELECT count() FROM {name}")
        # the admin and the all-accounts reader are not held by the tenants' policies
        assert admin.query("SELECT uniqExact(account_id) FROM runlens.runs").result_rows == [(3,)]
