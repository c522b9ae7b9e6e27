"""`runlens grafana push` against a stand-in for Grafana's HTTP API on loopback: what it uploads,
that a second push updates instead of duplicating, and the one-line errors for a wrong URL or
token."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboards import panels as P
from runlens.cli import main

TOKEN = "glsa_test_token"


class FakeGrafana:
    """The endpoints grafana-client calls, with Grafana's status codes (404 for a missing uid,
    409 for creating a uid twice, 401 without the right bearer token)."""

    def __init__(self):
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.groups: dict[tuple[str, str], dict] = {}
        self.contact_points: dict[str, dict] = {}
        self.policy: dict = {"receiver": "grafana-default-email", "routes": [{"receiver": "ops", "object_matchers": [["team", "=", "ops"]]}]}
        self.calls: list[tuple[str, str]] = []
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
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


def _push(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["grafana", "push", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_push_uploads_everything_and_is_idempotent(capsys):
    with FakeGrafana() as grafana:
        args = ("--url", grafana.url, "--token", TOKEN, "--clickhouse-url", "http://ch.example:8124",
                "--reader-password", "secret", "--webhook-url", "http://hooks.example/runlens")
        code, out, err = _push(capsys, *args)
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

        code, out, err = _push(capsys, *args)
        assert code == 0, err
        assert ": created" not in out
        assert "dashboard runlens-overview: updated" in out and "folder runlens: unchanged" in out
        second = json.dumps([grafana.datasources, grafana.folders, grafana.dashboards, grafana.rules,
                             grafana.contact_points, grafana.policy], sort_keys=True)
        assert first == second, "a second push changed what the first one uploaded"
        assert len(grafana.policy["routes"]) == 2


def test_push_without_webhook_leaves_notifications_alone(capsys):
    with FakeGrafana() as grafana:
        code, out, err = _push(capsys, "--url", grafana.url, "--token", TOKEN)
        assert code == 0, err
        assert "contact point: skipped" in out
        assert not grafana.contact_points and grafana.policy["receiver"] == "grafana-default-email"
        assert grafana.datasources[P.DATASOURCE_UID]["jsonData"]["host"] == "clickhouse"


def test_wrong_token_is_one_line(capsys):
    with FakeGrafana() as grafana:
        code, out, err = _push(capsys, "--url", grafana.url, "--token", "wrong")
        assert code == 1
        assert err.strip().splitlines() == [
            f"runlens: error: Grafana at {grafana.url} rejected the token (401 Unauthorized): check --token"]
        assert not grafana.dashboards


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:9", "cannot reach Grafana at http://127.0.0.1:9: connection refused"),
    ("localhost:3000", "is not an http(s) URL"),
])
def test_wrong_url_is_one_line(capsys, url, message):
    code, out, err = _push(capsys, "--url", url, "--token", TOKEN, "--timeout", "3")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


def test_url_that_is_not_grafana(capsys):
    with FakeGrafana() as grafana:
        code, out, err = _push(capsys, "--url", grafana.url + "/nothing-here", "--token", TOKEN)
        assert code == 1 and "does not answer like Grafana" in err
