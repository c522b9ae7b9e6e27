"""Read-path clients and credentials, in pure unit form (no stack, no server).

- ``sinks.clickhouse.connect(readonly=True)`` and every reader built by ``query_client`` ask a
  ClickHouse server for ``readonly=1`` on every query, unless the server user is read-only
  already (a ``readonly=2`` user may not change ``readonly``: sending it would fail every
  query). No ClickHouse server runs here, so clickhouse-connect's client is replaced by a
  stand-in that records what it was asked (the only mock in the read-path tests).
- The stack file is created owner-only, holds the reader's credentials, and never prints them.
- ``authenticate`` accepts exactly the ways a ClickHouse server does.
"""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from clickhouse_connect.driver.models import SettingDef

from embedded.access import Credentials, Refused, authenticate
from embedded.stack import Reader, StackInfo, resolve_reader
from runlens.settings import Settings
from sinks import clickhouse
from sinks.clickhouse import readonly_setting

pytestmark = [pytest.mark.security]


class FakeClient:
    """Stands in for clickhouse-connect's HTTP client: a server whose user has ``readonly``."""

    def __init__(self, server_readonly: str):
        self.server_settings = {"readonly": SettingDef("readonly", server_readonly, 0 if server_readonly == "0" else 1)}
        self.client_settings: dict[str, str] = {}

    def set_client_setting(self, key: str, value: str) -> None:
        self.client_settings[key] = value


@pytest.fixture
def server(monkeypatch):
    calls: list[dict] = []
    state = {"readonly": "0"}

    def get_client(**kwargs):
        client = FakeClient(state["readonly"])
        calls.append({"kwargs": kwargs, "client": client})
        return client

    monkeypatch.setattr(clickhouse.clickhouse_connect, "get_client", get_client)
    return calls, state


@pytest.mark.parametrize("server_readonly, sent", [("0", "1"), ("1", None), ("2", None)])
def test_a_read_only_client_asks_the_server_for_readonly_1_unless_it_is_read_only_already(
        server, server_readonly, sent):
    calls, state = server
    state["readonly"] = server_readonly
    clickhouse.connect("http://runlens:runlens@clickhouse:8123", database="runlens", readonly=True)
    assert calls[-1]["client"].client_settings.get("readonly") == sent
    clickhouse.connect("http://runlens:runlens@clickhouse:8123", database="runlens")
    assert calls[-1]["client"].client_settings == {}   # a writer client is left alone


def test_readonly_setting_decision():
    assert readonly_setting({}) == "1"
    assert readonly_setting({"readonly": SettingDef("readonly", "0", 0)}) == "1"
    assert readonly_setting({"readonly": SettingDef("readonly", "1", 1)}) is None
    assert readonly_setting({"readonly": SettingDef("readonly", "2", 1)}) is None


def test_every_query_client_of_the_cli_is_read_only_on_a_server(server, tmp_path):
    from runlens.cli.common import query_client

    calls, _ = server
    for settings, dsn in (
            (Settings(data_dir=tmp_path, warehouse_dsn="http://runlens:runlens@clickhouse:8123"),
             "http://runlens:runlens@clickhouse:8123"),
            (Settings(data_dir=tmp_path, query_url="http://analyst:pw@clickhouse:8123", warehouse_password="override"),
             "http://analyst:pw@clickhouse:8123")):
        query_client(settings)
        call = calls[-1]
        assert call["kwargs"]["dsn"] == dsn and call["kwargs"]["database"] == settings.database
        assert call["kwargs"].get("password") == (settings.warehouse_password.get_secret_value()
                                                  if settings.warehouse_password else None)
        assert call["client"].client_settings == {"readonly": "1"}


def test_the_stack_file_is_created_owner_only_even_over_a_leftover(tmp_path):
    path = tmp_path / "stack.json"
    leftover = path.with_suffix(".tmp")
    leftover.write_text("{}")
    os.chmod(leftover, 0o666)
    old = os.umask(0)
    try:
        StackInfo("127.0.0.1:9092", "http://127.0.0.1:8123", os.getpid(), "runlens_reader", "pw-123456").write(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["reader_password"] == "pw-123456"
    info = StackInfo.read(path)
    assert info is not None and info.reader_password == "pw-123456"
    assert "pw-123456" not in repr(info)


def test_commands_find_the_reader_credentials_in_the_stack_file(tmp_path):
    settings = Settings(data_dir=tmp_path)
    credentials = Credentials.generate()
    StackInfo("127.0.0.1:9092", "http://127.0.0.1:8123", os.getpid(), credentials.user,
              credentials.password).write(settings.stack_file)
    reader = resolve_reader(settings)
    assert reader.url == f"http://runlens_reader:{credentials.password}@127.0.0.1:8123"
    assert credentials.password not in repr(reader) and credentials.password not in repr(credentials)
    # RUNLENS_QUERY_URL wins over the stack file
    assert resolve_reader(Settings(data_dir=tmp_path, query_url="http://u:p@h:1")) == Reader("http://u:p@h:1")


CREDENTIALS = Credentials("runlens_reader", "right-password")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("headers, args", [
    ({"Authorization": _basic("runlens_reader", "right-password")}, {}),
    ({"X-ClickHouse-User": "runlens_reader", "X-ClickHouse-Key": "right-password"}, {}),
    ({}, {"user": "runlens_reader", "password": "right-password"}),
])
def test_the_ways_clickhouse_accepts_credentials(headers, args):
    authenticate(headers, args, CREDENTIALS)


@pytest.mark.parametrize("headers, args, status", [
    ({}, {}, 401),
    ({"Authorization": _basic("runlens_reader", "wrong")}, {}, 403),
    ({"Authorization": _basic("default", "right-password")}, {}, 403),
    ({"Authorization": "Basic !!!"}, {}, 403),
    ({"Authorization": "Bearer right-password"}, {}, 403),
    ({"X-ClickHouse-User": "runlens_reader"}, {}, 403),
    ({}, {"password": "right-password"}, 403),
    ({"Authorization": _basic("runlens_reader", "right-password")},
     {"user": "runlens_reader", "password": "right-password"}, 403),
])
def test_missing_wrong_or_mixed_credentials_are_refused_as_clickhouse_refuses_them(headers, args, status):
    with pytest.raises(Refused) as refused:
        authenticate(headers, args, CREDENTIALS)
    assert refused.value.status == status and refused.value.code == 516
    assert refused.value.text.startswith("Code: 516. DB::Exception:")
    assert refused.value.text.endswith("(AUTHENTICATION_FAILED)")
    assert "right-password" not in refused.value.text
