"""docker-compose.yml: a structural check that always runs, and (where a Docker engine and the
compose plugin are reachable) the whole stack brought up, an event published to Kafka and read
back through a Grafana panel query."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from dashboards import panels as P
from runlens.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_services_and_their_roles(compose):
    services = compose["services"]
    assert {"kafka", "clickhouse", "grafana", "worker", "simulator"} <= set(services)
    kafka = _env(services["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "Kafka runs in KRaft mode"
    assert "ZOOKEEPER" not in " ".join(kafka) and "zookeeper" not in services
    assert "clickhouse-server" in services["clickhouse"]["image"]
    grafana = services["grafana"]
    assert "grafana-clickhouse-datasource" in _env(grafana)["GF_INSTALL_PLUGINS"]
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert services["simulator"]["profiles"] == ["demo"], "the simulator is optional"
    assert services["worker"]["command"] == ["worker"] and "build" in services["worker"]


def test_health_checks_and_start_order(compose):
    services = compose["services"]
    for name in ("kafka", "clickhouse", "grafana"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] > 0
    for name, needs in {"worker": {"kafka", "clickhouse"}, "grafana": {"clickhouse"}}.items():
        depends = services[name]["depends_on"]
        assert {k for k, v in depends.items() if v["condition"] == "service_healthy"} == needs


def test_named_volumes_are_declared_and_used(compose):
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared == {"kafka-data", "clickhouse-data", "grafana-data"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"bind mount {source} does not exist"


def test_workers_and_simulator_share_valid_runlens_settings(compose):
    worker, simulator = (_env(compose["services"][n]) for n in ("worker", "simulator"))
    assert worker == simulator
    fields = set(Settings.model_fields)
    for key in worker:
        assert key.startswith("RUNLENS_") and key[len("RUNLENS_"):].lower() in fields, f"unknown setting {key}"
    Settings(**{k[len("RUNLENS_"):].lower(): v for k, v in worker.items()})   # values parse
    broker_host = worker["RUNLENS_BROKERS"].split(":")[0]
    assert broker_host == "kafka" and "@clickhouse:" in worker["RUNLENS_WAREHOUSE_DSN"]


def test_grafana_gets_every_variable_its_provisioning_reads(compose):
    env = _env(compose["services"]["grafana"])
    referenced = set()
    for path in (ROOT / "dashboards" / "provisioning").rglob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        # only what Grafana interpolates: datasource files and the contact points' settings
        interpolated = {k: v for k, v in data.items() if k in ("datasources", "contactPoints")}
        referenced |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\}?", yaml.safe_dump(interpolated)))
    assert {"RUNLENS_GRAFANA_READER_PASSWORD", "RUNLENS_GRAFANA_WEBHOOK_URL"} <= referenced
    missing = referenced - set(env)
    assert not missing, f"Grafana's provisioning reads {sorted(missing)}, which compose does not set"


def test_datasource_passwords_match_the_clickhouse_users(compose):
    """Each provisioned datasource logs in as a users.d user with the password compose gives it."""
    env = _env(compose["services"]["grafana"])
    users = "".join(p.read_text() for p in (ROOT / "sinks" / "server" / "users.d").glob("*.xml"))
    for path in (ROOT / "dashboards" / "provisioning" / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            user = ds["jsonData"]["username"]
            variable = re.fullmatch(r"\$\{?(\w+)\}?", ds["secureJsonData"]["password"]).group(1)
            block = re.search(rf"<{user}>(.*?)</{user}>", users, re.S)
            assert block, f"{ds['uid']}: ClickHouse user {user} is not defined in users.d"
            assert f"<password>{env[variable]}</password>" in block.group(1), f"{ds['uid']}: wrong password"


# --------------------------------------------------------------------------- the real stack


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0 and plugin.returncode == 0


def _grafana(path: str, body: dict | None = None):
    request = urllib.request.Request(f"http://localhost:3000{path}", data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.skipif(not _docker_compose_available(), reason="no Docker engine with the compose plugin reachable")
def test_event_reaches_a_grafana_panel(tmp_path, run_prefix):
    from dashboards.macros import TimeRange, expand_frontend
    from dashboards.report import variable_specs, variable_values
    import orjson

    from producers.workload import WorkloadConfig, generate
    from tests.helpers import run_cli

    project = ["docker", "compose", "-p", f"runlens-{run_prefix}", "-f", str(COMPOSE)]
    up = subprocess.run([*project, "up", "-d", "--build", "--wait", "--wait-timeout", "600"],
                        capture_output=True, timeout=1200, cwd=ROOT)
    try:
        assert up.returncode == 0, up.stderr.decode()[-3000:]
        now = datetime.now(timezone.utc)
        events = generate(WorkloadConfig(seed=5, accounts=1, backfill_runs_per_hour=600),
                          now - timedelta(minutes=20), now - timedelta(minutes=1))
        path = tmp_path / "events.ndjson"
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
        settings = Settings(data_dir=tmp_path, brokers="localhost:29092",
                            warehouse_dsn="http://runlens:runlens@localhost:8123")
        published = run_cli(settings, "publish", str(path))
        assert published.returncode == 0, published.stderr

        assert _grafana("/api/dashboards/uid/runlens-overview")["dashboard"]["uid"] == "runlens-overview"
        assert {r["uid"] for r in _grafana("/api/v1/provisioning/alert-rules")} == {r.uid for r in P.ALERT_RULES}
        panel = P.OVERVIEW.panel(1)            # runs finished, through the plugin and the read-only user
        start, end = now - timedelta(hours=1), now + timedelta(minutes=5)
        sql = expand_frontend(panel.sql, TimeRange(start, end, 60), variable_values(None), variable_specs())
        query = {"from": str(int(start.timestamp() * 1000)), "to": str(int(end.timestamp() * 1000)),
                 "queries": [{"refId": "A", "datasource": {"uid": P.DATASOURCE_UID, "type": P.DATASOURCE_TYPE},
                              "editorType": "sql", "format": 1, "queryType": "table", "rawSql": sql,
                              "intervalMs": 60000, "maxDataPoints": 300}]}
        deadline, finished = time.monotonic() + 300, 0
        while time.monotonic() < deadline:
            frames = _grafana("/api/ds/query", query)["results"]["A"].get("frames", [])
            values = frames[0]["data"]["values"] if frames else []
            finished = values[0][0] if values and values[0] and values[0][0] is not None else 0
            if finished > 0:
                break
            time.sleep(3)
        assert finished > 0, "the published runs never showed up in the Grafana panel query"
    finally:
        subprocess.run([*project, "down", "-v"], capture_output=True, timeout=300, cwd=ROOT)
