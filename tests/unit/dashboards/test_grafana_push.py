"""`runlens grafana push` against a stand-in for Grafana's HTTP API on loopback: what it uploads,
that a second push updates instead of duplicating, the one-line errors for a wrong URL or
token, where the token comes from (the environment; --token only with a warning) and that it is
never printed; a tenant's push and provisioning files."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboards import panels as P

TOKEN = "glsa_test_token"


class FakeGrafana:
    """The endpoints grafana-client calls, with Grafana's status codes (404 for a missing uid,
    409 for creating a uid twice, 401 without the right bearer token)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.groups: dict[tuple[str, str], dict] = {}
        self.contact_points: dict[str, dict] = {}
        self.policy: dict = {"receiver": "grafana-default-email",
                             "routes": [{"receiver": "ops", "object_matchers": [["team", "=", "ops"]]}]}
        self.calls: list[tuple[str, str]] = []
        self.org_headers: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?")[0]
                fake.calls.append((method, path))
                fake.org_headers.append(self.headers.get("X-Grafana-Org-Id"))
                if path == "/api/health":
                    return self._reply(200, {"database": "ok", "version": "11.6.0"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._reply(401, {"message": "invalid API key"})
                status, answer = fake.route(method, path, body)
                self._reply(status, answer)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def do_PUT(self):  # noqa: N802
                self._handle("PUT")

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, method, path, body):  # noqa: C901 - one branch per endpoint
        parts = path.strip("/").split("/")[1:]   # drop "api"
        missing = (404, {"message": "not found"})
        if parts == ["org"]:
            return 200, {"id": 1, "name": "Main Org."}
        if parts[:2] == ["datasources", "uid"]:
            uid = parts[2]
            if method == "GET":
                return (200, self.datasources[uid]) if uid in self.datasources else missing
            if uid not in self.datasources:
                return missing
            self.datasources[uid] = {**body, "id": self.datasources[uid]["id"]}
            return 200, {"message": "Datasource updated"}
        if parts == ["datasources"] and method == "POST":
            if body["uid"] in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            self.datasources[body["uid"]] = {**body, "id": len(self.datasources) + 1}
            return 200, {"message": "Datasource added"}
        if parts[0] == "folders":
            if method == "POST":
                if body["uid"] in self.folders:
                    return 409, {"message": "a folder with the same uid already exists"}
                self.folders[body["uid"]] = body
                return 200, body
            uid = parts[1]
            if method == "GET":
                return (200, self.folders[uid]) if uid in self.folders else missing
            self.folders[uid].update(title=body["title"])
            return 200, self.folders[uid]
        if parts == ["dashboards", "db"]:
            model = body["dashboard"]
            if model["uid"] in self.dashboards and not body.get("overwrite"):
                return 412, {"message": "dashboard exists"}
            assert body["folderUid"] in self.folders, "dashboard pushed before its folder"
            self.dashboards[model["uid"]] = body
            return 200, {"uid": model["uid"], "status": "success"}
        if parts[:2] == ["dashboards", "uid"]:
            uid = parts[2]
            return (200, {"dashboard": self.dashboards[uid]["dashboard"]}) if uid in self.dashboards else missing
        if parts[:3] == ["v1", "provisioning", "alert-rules"]:
            if method == "POST":
                if body["uid"] in self.rules:
                    return 409, {"message": "rule uid exists"}
                self.rules[body["uid"]] = body
                return 201, body
            uid = parts[3]
            if method == "GET":
                return (200, self.rules[uid]) if uid in self.rules else missing
            if uid not in self.rules:
                return missing
            self.rules[uid] = body
            return 200, body
        if parts[:3] == ["v1", "provisioning", "folder"] and parts[4] == "rule-groups":
            assert all(r["uid"] in self.rules for r in body["rules"])
            self.groups[(parts[3], parts[5])] = body
            return 200, body
        if parts[:3] == ["v1", "provisioning", "contact-points"]:
            if method == "GET":
                return 200, list(self.contact_points.values())
            if method == "POST":
                self.contact_points[body["uid"]] = body
                return 202, body
            if parts[3] not in self.contact_points:
                return missing
            self.contact_points[parts[3]] = body
            return 202, {"message": "contactpoint updated"}
        if parts[:3] == ["v1", "provisioning", "policies"]:
            if method == "GET":
                return 200, self.policy
            self.policy = body
            return 202, {"message": "policies updated"}
        return 404, {"message": f"no route {method} {path}"}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    """The token where it belongs: in the environment."""
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    monkeypatch.setenv("RUNLENS_GRAFANA_TOKEN", TOKEN)


@pytest.fixture
def push(run_cli):
    """``runlens grafana push ARGS`` in this process: (exit code, stdout, stderr)."""
    return lambda *args: run_cli("grafana", "push", *args)


def test_push_uploads_everything_and_is_idempotent(push):
    with FakeGrafana() as grafana:
        args = ("--url", grafana.url, "--clickhouse-url", "http://ch.example:8124",
                "--reader-password", "secret", "--webhook-url", "http://hooks.example/runlens")
        code, out, err = push(*args)
        assert code == 0, err
        assert "Grafana 11.6.0" in out and "dashboard runlens-overview: created" in out
        ds = grafana.datasources[P.DATASOURCE_UID]
        assert ds["type"] == P.DATASOURCE_TYPE and ds["jsonData"]["host"] == "ch.example"
        assert ds["jsonData"]["port"] == 8124 and ds["secureJsonData"]["password"] == "secret"
        assert ds["jsonData"]["username"] == "runlens_reader"
        assert set(grafana.dashboards) == {d.uid for d in P.DASHBOARDS}
        assert all(body["folderUid"] == P.FOLDER_UID for body in grafana.dashboards.values())
        assert set(grafana.rules) == {r.uid for r in P.ALERT_RULES}
        group = grafana.groups[(P.FOLDER_UID, P.ALERT_GROUP)]
        assert group["interval"] == 60 and len(group["rules"]) == len(P.ALERT_RULES)
        assert grafana.contact_points["runlens-webhook"]["settings"]["url"] == "http://hooks.example/runlens"
        routes = grafana.policy["routes"]
        assert routes[0]["receiver"] == "runlens-webhook" and {"account", "workflow"} <= set(routes[0]["group_by"])
        assert routes[1]["receiver"] == "ops", "push must not drop the organisation's other routes"
        first = json.dumps([grafana.datasources, grafana.folders, grafana.dashboards, grafana.rules,
                            grafana.contact_points, grafana.policy], sort_keys=True)

        code, out, err = push(*args)
        assert code == 0, err
        assert ": created" not in out
        assert "dashboard runlens-overview: updated" in out and "folder runlens: unchanged" in out
        second = json.dumps([grafana.datasources, grafana.folders, grafana.dashboards, grafana.rules,
                             grafana.contact_points, grafana.policy], sort_keys=True)
        assert first == second, "a second push changed what the first one uploaded"
        assert len(grafana.policy["routes"]) == 2


def test_push_without_webhook_leaves_notifications_alone(push):
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url)
        assert code == 0, err
        assert not err, "a push over loopback with the token in the environment warns about nothing"
        assert "contact point: skipped" in out
        assert not grafana.contact_points and grafana.policy["receiver"] == "grafana-default-email"
        assert grafana.datasources[P.DATASOURCE_UID]["jsonData"]["host"] == "clickhouse"


def test_wrong_token_is_one_line(push, monkeypatch):
    monkeypatch.setenv("RUNLENS_GRAFANA_TOKEN", "glsa_wrong_but_secret_0123")
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url)
        assert code == 1
        assert err.strip().splitlines() == [
            f"runlens: error: Grafana at {grafana.url} rejected the token (401 Unauthorized): "
            "check RUNLENS_GRAFANA_TOKEN"]
        assert not grafana.dashboards
        assert "glsa_wrong_but_secret_0123" not in out + err


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:9", "cannot reach Grafana at http://127.0.0.1:9: connection refused"),
    ("localhost:3000", "is not an http(s) URL"),
])
def test_wrong_url_is_one_line(push, url, message):
    code, out, err = push("--url", url, "--timeout", "3")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_url_that_is_not_grafana(push):
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url + "/nothing-here")
        assert code == 1 and "does not answer like Grafana" in err


# --------------------------------------------------------------------------- the token


def test_token_from_the_other_environment_variable(push, monkeypatch):
    monkeypatch.delenv("RUNLENS_GRAFANA_TOKEN")
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url)
        assert code == 0 and not err, err
        assert set(grafana.dashboards) == {d.uid for d in P.DASHBOARDS}


def test_token_on_the_command_line_works_but_warns(push, monkeypatch):
    monkeypatch.delenv("RUNLENS_GRAFANA_TOKEN")
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url, "--token", TOKEN)
        assert code == 0, err
        (line,) = err.strip().splitlines()
        assert line.startswith("runlens: warning: --token is deprecated") and "RUNLENS_GRAFANA_TOKEN" in line
        assert TOKEN not in out + err


def test_token_file(push, monkeypatch, tmp_path):
    monkeypatch.delenv("RUNLENS_GRAFANA_TOKEN")
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url, "--token-file", str(path))
        assert code == 0 and not err, err
    path.write_text("")
    code, out, err = push("--url", "http://127.0.0.1:9", "--token-file", str(path))
    assert code == 1 and err.strip().splitlines() == [f"runlens: error: --token-file: {path} is empty"]


def test_no_token_is_one_line(push, monkeypatch):
    monkeypatch.delenv("RUNLENS_GRAFANA_TOKEN")
    code, out, err = push("--url", "http://127.0.0.1:9")
    assert code == 1
    assert err.strip().splitlines() == [
        "runlens: error: no Grafana token: set RUNLENS_GRAFANA_TOKEN (or GRAFANA_TOKEN), or use --token-file"]


def _local_address() -> str | None:
    """This machine's address on its outgoing interface (not loopback), if it has one. A UDP
    connect picks the interface without sending anything."""
    import ipaddress
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("203.0.113.1", 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


def test_plain_http_to_another_host_warns_and_never_shows_the_token(push, monkeypatch):
    address = _local_address()
    if address is None:
        pytest.skip("no non-loopback interface to serve the stand-in Grafana on")
    with FakeGrafana(address) as grafana:
        code, out, err = push("--url", grafana.url)
        assert code == 0, err
        assert err.strip().splitlines() == [
            f"runlens: warning: sending the Grafana token over plain http to {address}: anyone on the network path "
            "can read it (use https)"]
        assert TOKEN not in out + err


def test_credentials_in_the_url_are_never_printed(push, monkeypatch):
    monkeypatch.delenv("RUNLENS_GRAFANA_TOKEN")
    code, out, err = push("--url", "http://admin:s3cret-pass@127.0.0.1:9", "--timeout", "3")
    assert code == 1
    assert "s3cret-pass" not in out + err
    assert "--url carries a password" in err


@pytest.mark.parametrize("url, warned", [
    ("http://grafana.example:3000", True), ("http://10.0.0.5", True), ("https://grafana.example", False),
    ("http://localhost:3000", False), ("http://127.0.0.2:3000", False), ("http://[::1]:3000", False),
])
def test_transport_warning(url, warned):
    from runlens.cli.grafana import transport_warning

    assert (transport_warning(url) is not None) == warned


# --------------------------------------------------------------------------- tenants


def test_tenant_push_uses_the_tenants_datasource_folder_and_organisation(push, monkeypatch):
    from sinks import tenancy

    monkeypatch.setenv("RUNLENS_GRAFANA_ACME_PASSWORD", "acme-secret")
    with FakeGrafana() as grafana:
        code, out, err = push("--url", grafana.url, "--tenant", "acme", "--org-id", "3")
        assert code == 0, err
        assert set(grafana.org_headers) == {"3"}, "every request goes to the tenant's organisation"
        (ds,) = grafana.datasources.values()
        assert ds["uid"] == tenancy.datasource_uid("acme") and ds["jsonData"]["username"] == "runlens_acme"
        assert ds["secureJsonData"]["password"] == "acme-secret"
        assert set(grafana.folders) == {"runlens-acme"}
        assert len(grafana.dashboards) == len(P.DASHBOARDS) - 1 == 6
        assert not grafana.rules and not grafana.contact_points
        for body in grafana.dashboards.values():
            text = json.dumps(body["dashboard"])
            assert P.DATASOURCE_UID not in text, "a tenant dashboard refers to the all-accounts datasource"
            assert body["folderUid"] == "runlens-acme"
        assert "alert rules: skipped" in out
        assert "acme-secret" not in out + err


def test_tenant_must_be_a_valid_account(push):
    code, out, err = push("--url", "http://127.0.0.1:9", "--tenant", "acme' OR 1=1")
    assert code == 1 and err.startswith("runlens: error: --tenant:")


def test_provision_writes_the_tenants_files(run_cli, tmp_path):
    import yaml

    code, out, err = run_cli("grafana", "provision", "--tenant", "globex", "--org-id", "4", "--out", str(tmp_path),
                             "--clickhouse-url", "https://ch.internal:9443")
    assert code == 0, err
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == ["dashboards/runlens-failures-globex.json", "dashboards/runlens-overview-globex.json",
                     "dashboards/runlens-queue-globex.json", "dashboards/runlens-run-globex.json",
                     "dashboards/runlens-runs-globex.json", "dashboards/runlens-workflow-globex.json",
                     "provisioning/dashboards/runlens-globex.yaml", "provisioning/datasources/runlens-globex.yaml"]
    (ds,) = yaml.safe_load((tmp_path / "provisioning/datasources/runlens-globex.yaml").read_text())["datasources"]
    assert ds["orgId"] == 4 and ds["jsonData"]["username"] == "runlens_globex"
    assert ds["jsonData"]["host"] == "ch.internal" and ds["jsonData"]["port"] == 9443 and ds["jsonData"]["secure"]
    (provider,) = yaml.safe_load((tmp_path / "provisioning/dashboards/runlens-globex.yaml").read_text())["providers"]
    assert provider["orgId"] == 4 and provider["folderUid"] == "runlens-globex"
