"""docker-compose.yml: a structural check that always runs (roles, start order, ports on
loopback only, every secret from the environment and listed in .env.example), and (where a Docker
engine and the compose plugin are reachable) the whole stack brought up with fresh secrets, an
event published to Kafka and read back through a Grafana panel query."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from dashboards import panels as P
from runlens.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# ${NAME}, ${NAME:?message} (required), ${NAME:-default} (optional): compose's interpolation
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[?-])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|CREDENTIAL", re.IGNORECASE)


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
    # one party migrates, once, before any worker consumes (workers only wait for the schema)
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    assert services["worker"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_health_checks_and_start_order(compose):
    services = compose["services"]
    for name in ("kafka", "clickhouse", "grafana"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] > 0
    for name, needs in {"worker": {"kafka", "clickhouse"}, "grafana": {"clickhouse"}}.items():
        depends = services[name]["depends_on"]
        assert {k for k, v in depends.items() if v["condition"] == "service_healthy"} == needs, name


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


def _required_variable(value: str) -> str | None:
    """NAME when ``value`` is exactly ``${NAME:?message}`` (compose refuses to start without it)."""
    match = INTERPOLATION.fullmatch(value)
    return match.group(1) if match and match.group(2) == ":?" else None


def _all_env(compose) -> dict[tuple[str, str], str]:
    found = {("x-runlens-env", k): str(v) for k, v in compose["x-runlens-env"].items()}
    for name, service in compose["services"].items():
        found.update({(name, k): v for k, v in _env(service).items()})
    return found


def test_every_published_port_listens_on_loopback_only(compose):
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip", "") if isinstance(port, dict) else str(port)
            assert host_ip.startswith("127.0.0.1:") or host_ip == "127.0.0.1", f"{name} publishes {port}"
            published.append(name)
    assert set(published) == {"kafka", "clickhouse", "grafana"}


def test_every_secret_comes_from_the_environment_and_is_required(compose):
    """No literal password anywhere: each secret-named variable is exactly ${NAME:?...} (no
    default to fall back on), and no URL carries a password of its own."""
    secrets_seen = 0
    for (service, key), value in _all_env(compose).items():
        if SECRET_NAME.search(key):
            assert _required_variable(value), f"{service}.{key} = {value!r}: take it from ${{NAME:?...}}"
            secrets_seen += 1
        assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{service}.{key}: a password inside a URL"
    assert secrets_seen >= 9
    text = COMPOSE.read_text()
    for literal in ("admin/admin", "runlens:runlens@", "PASSWORD: runlens", "PASSWORD: admin"):
        assert literal not in text
    grafana = _env(compose["services"]["grafana"])
    assert _required_variable(grafana["GF_SECURITY_ADMIN_PASSWORD"]) == "GRAFANA_ADMIN_PASSWORD"
    worker = _env(compose["services"]["worker"])
    assert _required_variable(worker["RUNLENS_WAREHOUSE_PASSWORD"]) == "CLICKHOUSE_PASSWORD"
    assert _required_variable(_env(compose["services"]["clickhouse"])["CLICKHOUSE_PASSWORD"]) == "CLICKHOUSE_PASSWORD"


def test_env_example_lists_every_variable_compose_reads_without_values(compose):
    """.env.example names every required variable, with an empty value (a copied example never
    starts with a known password), and every optional one at least in a comment."""
    referenced = {m.group(1): m.group(2) for value in _all_env(compose).values()
                  for m in INTERPOLATION.finditer(value)}
    example = ENV_EXAMPLE.read_text()
    assigned = dict(re.findall(r"^(\w+)=(.*)$", example, re.M))
    required = {name for name, kind in referenced.items() if kind == ":?"}
    assert required and required <= set(assigned), f"missing from .env.example: {sorted(required - set(assigned))}"
    assert all(value == "" for value in assigned.values()), "secrets in .env.example must be left empty"
    for name in set(referenced) - required:
        assert re.search(rf"^#?\s*{name}=", example, re.M), f"{name} is not documented in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_no_literal_password_in_the_image_or_grafana_provisioning():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"(?i)(password|secret|token)\s*[=:]", dockerfile)
    for path in (ROOT / "dashboards" / "provisioning" / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            for key, value in (ds.get("secureJsonData") or {}).items():
                assert re.fullmatch(r"\$\{?\w+\}?", value), f"{path.name} {ds['uid']}.{key} is a literal"


def test_datasource_passwords_reach_grafana_from_the_environment(compose):
    """Each provisioned datasource's password variable is given to Grafana from .env."""
    env = _env(compose["services"]["grafana"])
    for path in (ROOT / "dashboards" / "provisioning" / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            variable = re.fullmatch(r"\$\{?(\w+)\}?", ds["secureJsonData"]["password"]).group(1)
            assert _required_variable(env[variable]) == variable, f"{ds['uid']}: {variable} not from .env"


def test_datasource_passwords_match_the_clickhouse_users(compose):
    """Each provisioned datasource logs in as a users.d user whose password ClickHouse reads from the
    same .env variable compose gives Grafana."""
    grafana, clickhouse = (_env(compose["services"][n]) for n in ("grafana", "clickhouse"))
    users = "".join(p.read_text() for p in (ROOT / "sinks" / "server" / "users.d").glob("*.xml"))
    for path in (ROOT / "dashboards" / "provisioning" / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            user = ds["jsonData"]["username"]
            variable = re.fullmatch(r"\$\{?(\w+)\}?", ds["secureJsonData"]["password"]).group(1)
            block = re.search(rf"<{user}>(.*?)</{user}>", users, re.S)
            assert block, f"{ds['uid']}: ClickHouse user {user} is not defined in users.d"
            from_env = re.search(r'<password\s+from_env="(\w+)"\s*/>', block.group(1))
            assert from_env, f"{ds['uid']}: {user}'s password is a literal in users.d"
            assert clickhouse.get(from_env.group(1)) == grafana[variable], f"{ds['uid']}: passwords differ"


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


def _grafana(path: str, body: dict | None = None, password: str = ""):
    auth = base64.b64encode(f"admin:{password}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:3000{path}", data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", "Authorization": "Basic " + auth})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
@pytest.mark.docker
@pytest.mark.skipif(not _docker_compose_available(), reason="no Docker engine with the compose plugin reachable")
def test_event_reaches_a_grafana_panel(tmp_path, run_prefix):
    import orjson

    from dashboards.macros import TimeRange, expand_frontend
    from dashboards.report import variable_specs, variable_values
    from producers.workload import WorkloadConfig, generate
    from tests.helpers import run_cli

    project = ["docker", "compose", "-p", f"runlens-{run_prefix}", "-f", str(COMPOSE)]
    required = re.findall(r"^(\w+)=$", ENV_EXAMPLE.read_text(), re.M)
    fresh = {name: secrets.token_hex(16) for name in required}      # never a known password
    env = {**os.environ, **fresh}
    up = subprocess.run([*project, "up", "-d", "--build", "--wait", "--wait-timeout", "600"],
                        capture_output=True, timeout=1200, cwd=ROOT, env=env)
    grafana = lambda path, body=None: _grafana(path, body, fresh["GRAFANA_ADMIN_PASSWORD"])  # noqa: E731
    try:
        assert up.returncode == 0, up.stderr.decode()[-3000:]
        now = datetime.now(UTC)
        events = generate(WorkloadConfig(seed=5, accounts=1, backfill_runs_per_hour=600),
                          now - timedelta(minutes=20), now - timedelta(minutes=1))
        path = tmp_path / "events.ndjson"
        path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
        settings = Settings(data_dir=tmp_path, brokers="127.0.0.1:29092", warehouse_dsn="http://runlens@127.0.0.1:8123",
                            warehouse_password=fresh["CLICKHOUSE_PASSWORD"])
        published = run_cli(settings, "publish", str(path))
        assert published.returncode == 0, published.stderr

        assert grafana("/api/dashboards/uid/runlens-overview")["dashboard"]["uid"] == "runlens-overview"
        assert {r["uid"] for r in grafana("/api/v1/provisioning/alert-rules")} == {r.uid for r in P.ALERT_RULES}
        panel = P.OVERVIEW.panel(1)            # runs finished, through the plugin and the read-only user
        start, end = now - timedelta(hours=1), now + timedelta(minutes=5)
        sql = expand_frontend(panel.sql, TimeRange(start, end, 60), variable_values(None), variable_specs())
        query = {"from": str(int(start.timestamp() * 1000)), "to": str(int(end.timestamp() * 1000)),
                 "queries": [{"refId": "A", "datasource": {"uid": P.DATASOURCE_UID, "type": P.DATASOURCE_TYPE},
                              "editorType": "sql", "format": 1, "queryType": "table", "rawSql": sql,
                              "intervalMs": 60000, "maxDataPoints": 300}]}
        deadline, finished = time.monotonic() + 300, 0
        while time.monotonic() < deadline:
            frames = grafana("/api/ds/query", query)["results"]["A"].get("frames", [])
            values = frames[0]["data"]["values"] if frames else []
            finished = values[0][0] if values and values[0] and values[0][0] is not None else 0
            if finished > 0:
                break
            time.sleep(3)
        assert finished > 0, "the published runs never showed up in the Grafana panel query"
    finally:
        subprocess.run([*project, "down", "-v"], capture_output=True, timeout=300, cwd=ROOT, env=env)


# --------------------------------------------------------------------------- docker-compose.cluster.yml

CLUSTER_COMPOSE = ROOT / "docker-compose.cluster.yml"
CLUSTER_CONFIG = ROOT / "sinks" / "server" / "cluster"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_COMPOSE.read_text())


def _named(services: dict, prefix: str) -> list[str]:
    return sorted(name for name in services if re.fullmatch(rf"{prefix}-\d+", name))


def _xml(path: Path):
    import xml.etree.ElementTree as ET

    return ET.parse(path).getroot()


def _mounted_config(service: dict, target: str) -> Path:
    """The repository file mounted at ``target`` in ``service``."""
    for volume in service.get("volumes", []):
        source, mounted = volume.split(":")[:2]
        if mounted == target:
            return ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def test_cluster_kafka_is_three_kraft_brokers(cluster):
    services = cluster["services"]
    brokers = _named(services, "kafka")
    assert brokers == ["kafka-1", "kafka-2", "kafka-3"] and "zookeeper" not in services
    envs = [_env(services[name]) for name in brokers]
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093" for name, env in zip(brokers, envs, strict=True)}
    assert len({env["KAFKA_NODE_ID"] for env in envs}) == 3 and len({env["CLUSTER_ID"] for env in envs}) == 1
    for name, env in zip(brokers, envs, strict=True):
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "KRaft, combined nodes"
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3 and int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
    worker = _env(services["worker"])
    assert sorted(worker["RUNLENS_BROKERS"].split(",")) == [f"{name}:9092" for name in brokers]
    assert int(worker["RUNLENS_REPLICATION_FACTOR"]) == len(brokers)


def test_cluster_clickhouse_is_one_shard_of_two_replicas_with_three_keepers(cluster):
    services = cluster["services"]
    replicas, keepers = _named(services, "clickhouse"), _named(services, "keeper")
    assert replicas == ["clickhouse-1", "clickhouse-2"] and keepers == ["keeper-1", "keeper-2", "keeper-3"]
    name = _env(services["migrate"])["RUNLENS_CLICKHOUSE_CLUSTER"]
    shared = _xml(_mounted_config(services["clickhouse-1"], "/etc/clickhouse-server/config.d/cluster.xml"))
    shards = shared.findall(f"remote_servers/{name}/shard")
    assert len(shards) == 1, f"remote_servers has no cluster {name} of one shard"
    assert shards[0].findtext("internal_replication") == "true"
    assert sorted(r.findtext("host") for r in shards[0].findall("replica")) == replicas
    assert sorted(n.findtext("host") for n in shared.findall("zookeeper/node")) == keepers
    macros = set()
    for replica in replicas:
        service = services[replica]
        assert "clickhouse-server" in service["image"] and service["hostname"] == replica
        assert "clickhouse" in service["networks"]["default"]["aliases"], "the DSN's host reaches every replica"
        assert _mounted_config(service, "/etc/clickhouse-server/config.d/cluster.xml") == \
            _mounted_config(services["clickhouse-1"], "/etc/clickhouse-server/config.d/cluster.xml")
        own = _xml(_mounted_config(service, "/etc/clickhouse-server/config.d/replica.xml"))
        assert own.findtext("macros/replica") == replica == own.findtext("interserver_http_host")
        macros.add((own.findtext("macros/shard"), own.findtext("macros/replica")))
    assert len(macros) == 2 and len({shard for shard, _ in macros}) == 1
    raft = None
    for number, keeper in enumerate(keepers, start=1):
        service = services[keeper]
        assert "clickhouse-keeper" in service["image"] and _env(service)["KEEPER_SERVER_ID"] == str(number)
        config = _xml(_mounted_config(service, "/etc/clickhouse-keeper/keeper_config.xml"))
        assert config.find("keeper_server/server_id").get("from_env") == "KEEPER_SERVER_ID"
        servers = {(s.findtext("id"), s.findtext("hostname"))
                   for s in config.findall("keeper_server/raft_configuration/server")}
        assert raft is None or servers == raft
        raft = servers
    assert raft == {(str(n), k) for n, k in enumerate(keepers, start=1)}
    assert {n.findtext("port") for n in shared.findall("zookeeper/node")} == \
        {config.findtext("keeper_server/tcp_port")}


def test_cluster_services_start_in_order_and_report_health(cluster):
    services = cluster["services"]
    for name, service in services.items():
        if name.startswith(("kafka", "keeper", "clickhouse", "grafana")):
            check = service["healthcheck"]
            assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] > 0, name
    healthy = lambda name: {k for k, v in services[name]["depends_on"].items()  # noqa: E731
                            if v["condition"] == "service_healthy"}
    brokers, replicas = set(_named(services, "kafka")), set(_named(services, "clickhouse"))
    assert healthy("worker") == brokers | replicas
    assert services["worker"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert healthy("migrate") == replicas and services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["migrate"] and services["worker"]["command"] == ["worker"]
    assert healthy("grafana") == replicas
    for replica in replicas:
        assert healthy(replica) == set(_named(services, "keeper"))
    assert services["worker"]["deploy"]["replicas"] >= 2, "N workers in one consumer group"
    assert services["simulator"]["profiles"] == ["demo"]


def test_cluster_grafana_is_provisioned_like_the_single_node_stack(cluster, compose):
    grafana, single = cluster["services"]["grafana"], compose["services"]["grafana"]
    assert grafana["volumes"] == single["volumes"] and _env(grafana) == _env(single)
    assert "grafana-clickhouse-datasource" in _env(grafana)["GF_INSTALL_PLUGINS"]
    for path in (ROOT / "dashboards" / "provisioning" / "datasources").glob("*.yaml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            assert ds["jsonData"]["host"] == "clickhouse", "the alias both replicas answer to"


def test_cluster_runlens_services_share_valid_settings(cluster):
    services = cluster["services"]
    worker, migrate, simulator = (_env(services[n]) for n in ("worker", "migrate", "simulator"))
    assert worker == migrate == simulator
    fields = set(Settings.model_fields)
    for key in worker:
        assert key.startswith("RUNLENS_") and key[len("RUNLENS_"):].lower() in fields, f"unknown setting {key}"
    settings = Settings(**{k[len("RUNLENS_"):].lower(): v for k, v in worker.items()})
    assert settings.clickhouse_cluster == "runlens_cluster"
    assert "@clickhouse:" in worker["RUNLENS_WAREHOUSE_DSN"]


def test_cluster_volumes_and_mounted_files_exist(cluster):
    declared, used = set(cluster["volumes"]), set()
    for name, service in cluster["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                used.add(source)
    assert used == declared
    for path in CLUSTER_CONFIG.glob("*.xml"):
        _xml(path)   # well-formed


def test_cluster_ports_loopback_and_secrets_required(cluster):
    for name, service in cluster["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    found = _all_env(cluster)
    seen = 0
    for (service, key), value in found.items():
        if SECRET_NAME.search(key):
            assert _required_variable(value), f"{service}.{key} = {value!r}: take it from ${{NAME:?...}}"
            seen += 1
        assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{service}.{key}: a password inside a URL"
    assert seen >= 9
    referenced = {m.group(1) for value in found.values() for m in INTERPOLATION.finditer(value)
                  if m.group(2) == ":?"}
    assigned = dict(re.findall(r"^(\w+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    assert referenced <= set(assigned), f"missing from .env.example: {sorted(referenced - set(assigned))}"
    password = _xml(CLUSTER_CONFIG / "cluster.xml").find("interserver_http_credentials/password")
    variable = password.get("from_env")
    for replica in _named(cluster["services"], "clickhouse"):
        assert _required_variable(_env(cluster["services"][replica])[variable]) == variable


def _compose_cli_available() -> bool:
    """The docker CLI with its compose plugin (``docker compose config`` needs no engine)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _compose_cli_available(), reason="no docker CLI with the compose plugin on this machine")
def test_cluster_compose_file_passes_docker_compose_config():
    required = re.findall(r"^(\w+)=$", ENV_EXAMPLE.read_text(), re.M)
    env = {**os.environ, **{name: secrets.token_hex(8) for name in required}}
    done = subprocess.run(["docker", "compose", "-f", str(CLUSTER_COMPOSE), "config", "--quiet"],
                          capture_output=True, timeout=60, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
