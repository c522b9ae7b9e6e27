"""The embedded stack's read path attacked in its real form: raw HTTP (http.client, not
clickhouse-connect) against the worker's read endpoint of the session's stack (real broker,
real worker process, chDB owned by the worker).

Each attack that used to work is made for real and must be refused with ClickHouse's error text
and leave no trace: no file written, no byte sent to a listener, no session state seen by the
next client, no table dropped. Positive controls (the right credentials, an allowed query) show
that each refusal is the policy's and not a broken endpoint; the module publishes no data, so it
changes nothing other tests count.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import stat
import threading
from urllib.parse import urlencode, urlsplit

import pytest

from embedded.stack import StackInfo
from tests.helpers import run_cli

pytestmark = [pytest.mark.security, pytest.mark.integration]


# --------------------------------------------------------------------------- raw HTTP


class Endpoint:
    """The read endpoint's address and the credentials the stack file holds."""

    def __init__(self, url: str, user: str, password: str, database: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.user, self.password, self.database = user, password, database

    def request(self, method: str = "POST", query: dict[str, str] | None = None, body: bytes = b"",
                headers: dict[str, str] | None = None, path: str = "/") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            target = path + ("?" + urlencode(query) if query else "")
            conn.request(method, target, body=body if method == "POST" else None, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def basic(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        token = f"{user or self.user}:{self.password if password is None else password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode()}

    def sql(self, statement: str, **params: str) -> tuple[int, bytes]:
        """POST ``statement`` as clickhouse-connect does (body, basic auth, param_* in the URL)."""
        status, _, body = self.request("POST", {f"param_{k}": v for k, v in params.items()} or None,
                                       statement.encode(), self.basic())
        return status, body


@pytest.fixture(scope="module")
def endpoint(embedded_stack, stack_settings) -> Endpoint:
    info = StackInfo.read(stack_settings.stack_file)
    assert info is not None and info.reader_user and info.reader_password
    return Endpoint(embedded_stack.query_url, info.reader_user, info.reader_password, stack_settings.database)


def refused(status: int, body: bytes, code: int) -> bool:
    """A ClickHouse error with this code, as a ClickHouse server words it."""
    return status >= 400 and body.startswith(f"Code: {code}. DB::Exception:".encode())


# --------------------------------------------------------------------------- the stack file


def test_the_stack_file_is_owner_only_and_holds_the_reader_credentials(endpoint, stack_settings):
    mode = stat.S_IMODE(os.stat(stack_settings.stack_file).st_mode)
    assert mode == 0o600, oct(mode)
    assert len(endpoint.password) >= 32
    assert endpoint.sql("SELECT 1") == (200, b"1\n")   # and they are the endpoint's credentials


# --------------------------------------------------------------------------- authentication


def test_requests_without_credentials_are_refused_and_return_nothing(endpoint):
    get = endpoint.request("GET", {"query": "SELECT 'secret-' || toString(count()) FROM runs"})
    form = endpoint.request("POST", body=urlencode({"query": "SELECT 42"}).encode(),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    plain = endpoint.request("POST", body=b"SELECT 42")
    for status, _, body in (get, form, plain):
        assert status == 401
        assert refused(status, body, 516) and b"AUTHENTICATION_FAILED" in body
        assert b"secret-" not in body and b"42" not in body
    assert endpoint.request("GET", path="/ping")[0] == 200   # like ClickHouse: ping needs no login


@pytest.mark.parametrize("how", ["basic", "headers", "url"])
def test_every_way_clickhouse_accepts_credentials_works_and_a_wrong_password_is_refused(endpoint, how):
    def ask(user: str, password: str):
        if how == "basic":
            return endpoint.request("POST", body=b"SELECT 42", headers=endpoint.basic(user, password))
        if how == "headers":
            return endpoint.request("POST", body=b"SELECT 42",
                                    headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password})
        return endpoint.request("GET", {"query": "SELECT 42", "user": user, "password": password})

    status, _, body = ask(endpoint.user, endpoint.password)
    assert (status, body) == (200, b"42\n")
    for user, password in ((endpoint.user, endpoint.password[:-1]), (endpoint.user, ""),
                           ("default", endpoint.password), (endpoint.user, endpoint.password + "x")):
        status, _, body = ask(user, password)
        assert status == 403 and refused(status, body, 516), body
        assert b"42" not in body


def test_credentials_sent_two_ways_at_once_are_refused(endpoint):
    status, _, body = endpoint.request("POST", {"user": endpoint.user, "password": endpoint.password},
                                       b"SELECT 42", endpoint.basic())
    assert status == 403 and refused(status, body, 516)


def test_browser_requests_are_refused_even_with_the_password(endpoint):
    """A web page can make the browser POST a form to localhost: it carries an Origin header.
    A DNS-rebound page reaches the endpoint under its own host name."""
    form = urlencode({"query": "SELECT 42", "user": endpoint.user, "password": endpoint.password}).encode()
    for headers in ({"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
                    {"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"},
                    {"Host": f"evil.example:{endpoint.port}", "Content-Type": "application/x-www-form-urlencoded"}):
        status, _, body = endpoint.request("POST", body=form, headers=headers)
        assert status == 403 and refused(status, body, 497), body
    control = endpoint.request("POST", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert control[0] == 200 and control[2] == b"42\n"


# --------------------------------------------------------------------------- files, URLs, servers


@pytest.mark.parametrize("mode", ["", " TRUNCATE", " APPEND"])
def test_into_outfile_writes_nothing(endpoint, tmp_path, mode):
    fresh, existing = tmp_path / "fresh.tsv", tmp_path / "existing.tsv"
    existing.write_text("keep me\n")
    for target in (fresh, existing):
        status, body = endpoint.sql(f"SELECT run_id, account_id FROM runs INTO OUTFILE '{target}'{mode}")
        assert refused(status, body, 358), body
        status, body = endpoint.sql(f"SELECT 1 INTO OUTFILE '{target}'{mode} FORMAT CSV")
        assert refused(status, body, 358), body
    status, body = endpoint.sql(f"EXPLAIN SELECT 1 INTO OUTFILE '{fresh}'")
    assert refused(status, body, 358), body
    status, body = endpoint.sql(f"DESCRIBE TABLE runs INTO OUTFILE '{fresh}'")
    assert refused(status, body, 358), body
    assert not fresh.exists()
    assert existing.read_text() == "keep me\n"


def test_files_cannot_be_read(endpoint):
    for statement in ("SELECT * FROM file('/etc/passwd', 'LineAsString')",
                      "SELECT file('/etc/passwd')",
                      "SELECT line FROM file('/etc/passwd', 'LineAsString', 'line String')",
                      "DESCRIBE TABLE file('/etc/passwd', 'LineAsString')",
                      "SELECT count() FROM runs WHERE run_id IN file('/etc/passwd', 'LineAsString')"):
        status, body = endpoint.sql(statement)
        assert status >= 400 and b"root:" not in body, (statement, body)
        assert refused(status, body, 446), (statement, body)


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1 that records every connection made to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    received.append(conn.recv(65536) or b"<connected>")
                except OSError:
                    received.append(b"<connected>")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


def test_query_results_cannot_be_sent_to_another_listener(endpoint, listener):
    port, received = listener
    url = f"http://127.0.0.1:{port}/collect"
    for statement in (f"SELECT * FROM url('{url}', 'CSV', 'a String')",
                      f"INSERT INTO FUNCTION url('{url}', 'CSV', 'a String') SELECT run_id FROM runs",
                      f"SELECT count() FROM runs WHERE run_id IN url('{url}', 'CSV', 'a String')",
                      f"SELECT * FROM urlCluster('default', '{url}', 'CSV', 'a String')",
                      f"SELECT * FROM s3('http://127.0.0.1:{port}/bucket/x.csv', 'CSV', 'a String')",
                      f"SELECT * FROM remote('127.0.0.1:{port}', system.one)",
                      f"SELECT * FROM mysql('127.0.0.1:{port}', 'db', 't', 'u', 'p')",
                      f"SELECT * FROM postgresql('127.0.0.1:{port}', 'db', 't', 'u', 'p')"):
        status, body = endpoint.sql(statement)
        assert status >= 400, (statement, body)
    assert received == []
    # control: the listener does record a connection made to it
    with socket.create_connection(("127.0.0.1", port)) as probe:
        probe.sendall(b"hello")
    from tests.helpers import wait_for
    wait_for(lambda: list(received), lambda seen: seen == [b"hello"], timeout=10, what="the control connection")


def test_processes_and_python_objects_are_out_of_reach(endpoint):
    for statement in ("SELECT * FROM executable('id', 'TSV', 'a String')",
                      "SELECT * FROM python(globals)",
                      "SELECT * FROM Python(credentials)",
                      "SELECT * FROM merge('system', '.*')",
                      "SELECT * FROM view(SELECT * FROM system.processes)",
                      "SELECT * FROM dictionary('x')",
                      "SELECT joinGet('system.t', 'a', 1)",
                      "SELECT dictGet('system.d', 'a', toUInt64(1))",
                      "SELECT hasColumnInTable('system', 'processes', 'query')"):
        status, body = endpoint.sql(statement)
        assert refused(status, body, 446), (statement, body)


# --------------------------------------------------------------------------- other databases


def test_only_runlens_database_and_harmless_system_tables_are_readable(endpoint):
    db = endpoint.database
    for statement in ("SELECT * FROM system.processes", "SELECT query FROM system.query_log",
                      "SELECT name FROM system.tables", "SELECT name FROM system.databases",
                      "SELECT * FROM system.columns WHERE database = currentDatabase()",
                      "SELECT * FROM INFORMATION_SCHEMA.TABLES", "SELECT * FROM information_schema.columns",
                      "SELECT * FROM default.runs", f"SELECT count() FROM {db}.runs AS r JOIN system.users AS u ON 1",
                      "SELECT (SELECT count() FROM system.processes)",
                      "WITH q AS (SELECT query FROM system.query_log) SELECT * FROM q",
                      "SELECT count() FROM runs WHERE run_id IN system.processes",
                      "DESCRIBE TABLE system.processes", "SHOW CREATE TABLE system.processes",
                      "EXPLAIN SELECT * FROM system.query_log"):
        status, body = endpoint.sql(statement)
        assert refused(status, body, 497), (statement, body)
    for statement in ("SHOW DATABASES", "SHOW PROCESSLIST", "SHOW TABLES FROM system", "SHOW USERS",
                      "SHOW GRANTS", "EXISTS TABLE system.processes"):
        status, body = endpoint.sql(statement)
        assert status == 403 and (refused(status, body, 164) or refused(status, body, 497)), (statement, body)
    # the parameter that names a table is checked after substitution
    status, body = endpoint.sql("SELECT * FROM {t:Identifier}", t="system.processes")
    assert refused(status, body, 497), body
    status, _, body = endpoint.request("POST", {"database": "system"}, b"SELECT * FROM processes", endpoint.basic())
    assert refused(status, body, 291), body
    # controls: runlens' own tables, qualified or not, and what clickhouse-connect reads on connect
    assert endpoint.sql(f"SELECT count() >= 0 FROM {db}.runs") == (200, b"1\n")
    assert endpoint.sql("SHOW TABLES LIKE 'runs'") == (200, b"runs\n")
    status, body = endpoint.sql("SELECT name, value, readonly FROM system.settings WHERE name = 'readonly'")
    assert (status, body) == (200, b"readonly\t1\t1\n")


# --------------------------------------------------------------------------- statements


@pytest.mark.parametrize("statement", [
    "DROP TABLE runs", "DROP DATABASE {db}", "TRUNCATE TABLE runs", "ALTER TABLE runs DELETE WHERE 1",
    "ALTER TABLE runs ADD COLUMN hacked UInt8", "OPTIMIZE TABLE runs FINAL", "SYSTEM STOP MERGES",
    "SYSTEM FLUSH LOGS", "SYSTEM DROP MARK CACHE", "INSERT INTO runs (run_id) VALUES ('hacked')",
    "INSERT INTO runs (run_id) SELECT 'hacked'", "CREATE TABLE hacked (a UInt8) ENGINE = Memory",
    "CREATE TEMPORARY TABLE runs (a UInt8)", "RENAME TABLE runs TO hacked", "KILL QUERY WHERE 1",
    "GRANT ALL ON *.* TO default", "CREATE USER hacker", "SET max_result_rows = 1", "USE system",
    "SELECT 1; DROP TABLE runs", "SELECT 1; SELECT 2",
])
def test_only_one_read_statement_runs_and_nothing_changes(endpoint, statement):
    before = endpoint.sql("DESCRIBE TABLE runs"), endpoint.sql("SELECT count() FROM runs")
    status, body = endpoint.sql(statement.replace("{db}", endpoint.database))
    assert status in (400, 403), body
    assert refused(status, body, 164) or refused(status, body, 62), body
    assert (endpoint.sql("DESCRIBE TABLE runs"), endpoint.sql("SELECT count() FROM runs")) == before
    assert endpoint.sql("SHOW TABLES LIKE 'runs'") == (200, b"runs\n")


def test_a_query_posted_as_curl_sends_it_runs_and_a_write_posted_so_is_refused(endpoint):
    """curl's ``--data-binary 'SELECT ...'`` labels the SQL as a url-encoded form: like ClickHouse,
    the body is the query (not an empty form), and it meets the same read-path rules."""
    curl = {**endpoint.basic(), "Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = endpoint.request("POST", body=b"SELECT 'a=b&c', 40 + 2", headers=curl)
    assert (status, body) == (200, b"a=b&c\t42\n"), body
    before = endpoint.sql("SELECT count() FROM runs")
    for statement in (b"DROP TABLE runs", b"INSERT INTO runs (run_id) VALUES ('hacked')",
                      b"SELECT * FROM file('/etc/passwd', 'LineAsString')"):
        status, _, body = endpoint.request("POST", body=statement, headers=curl)
        assert status in (400, 403) and body.startswith(b"Code: "), body
        assert b"root:" not in body
    assert endpoint.sql("SELECT count() FROM runs") == before
    # control: a form that names the query is read as a form, as clickhouse-connect sends one
    form = urlencode({"query": "SELECT {p:String}", "param_p": "x y"}).encode()
    status, _, body = endpoint.request("POST", body=form, headers=curl)
    assert (status, body) == (200, b"x y\n"), body


@pytest.mark.parametrize("clause", ["max_execution_time = 100000", "max_memory_usage = 0", "readonly = 0",
                                    "max_result_rows = 0", "result_overflow_mode = 'break'",
                                    "join_use_nulls = 1, max_result_bytes = 0"])
def test_a_client_cannot_raise_the_limits(endpoint, clause):
    status, body = endpoint.sql(f"SELECT number FROM numbers(3) SETTINGS {clause}")
    assert refused(status, body, 164) and b"readonly mode" in body, body


def test_harmless_settings_apply_to_that_query_only(endpoint):
    status, body = endpoint.sql("SELECT getSetting('join_use_nulls'), getSetting('date_time_output_format') "
                                "SETTINGS join_use_nulls = 1, date_time_output_format = 'iso'")
    assert (status, body) == (200, b"true\tiso\n")
    assert endpoint.sql("SELECT getSetting('join_use_nulls'), getSetting('date_time_output_format')") \
        == (200, b"false\tsimple\n")


def test_nothing_one_client_sends_reaches_the_next(endpoint):
    """SET, USE, temporary tables and URL settings of one request are not seen by the next one."""
    before = endpoint.sql("DESCRIBE TABLE runs")
    for statement in ("CREATE TEMPORARY TABLE runs (hijacked UInt8)", "SET limit = 1", "USE system",
                      "SET max_result_rows = 1"):
        endpoint.sql(statement)
        endpoint.request("POST", {"limit": "1", "max_result_rows": "1", "readonly": "0"},
                         b"SELECT 1", endpoint.basic())
        assert endpoint.sql("DESCRIBE TABLE runs") == before
        assert endpoint.sql("SELECT currentDatabase()") == (200, f"{endpoint.database}\n".encode())
        assert endpoint.sql("SELECT number FROM numbers(3)") == (200, b"0\n1\n2\n")


def test_parameters_of_parallel_queries_do_not_mix(endpoint):
    errors: list[str] = []

    def client(tag: str) -> None:
        for i in range(40):
            value = f"{tag}-{i}"
            status, body = endpoint.sql("SELECT {v:String}, count() FROM numbers(1000)", v=value)
            if status == 503:    # all slots busy: clickhouse-connect would retry
                continue
            if (status, body) != (200, f"{value}\t1000\n".encode()):
                errors.append(f"{value}: {status} {body[:100]!r}")

    threads = [threading.Thread(target=client, args=(tag,)) for tag in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


# --------------------------------------------------------------------------- limits


def test_a_result_over_the_row_limit_is_an_error_not_a_cut(endpoint, stack_settings):
    limit = stack_settings.read_max_result_rows
    status, body = endpoint.sql(f"SELECT number FROM numbers({limit + 1}) FORMAT Null")
    assert refused(status, body, 396), body
    assert endpoint.sql(f"SELECT count() FROM numbers({limit + 1})") == (200, f"{limit + 1}\n".encode())   # control


def test_a_huge_or_chunked_body_is_refused_unread(endpoint, stack_settings):
    limit = stack_settings.read_max_request_bytes
    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=60)
    try:
        conn.putrequest("POST", "/")
        for name, value in {**endpoint.basic(), "Content-Length": str(limit + 1)}.items():
            conn.putheader(name, value)
        conn.endheaders()   # the body is never sent: the endpoint must answer without waiting for it
        response = conn.getresponse()
        assert response.status == 413 and response.read().startswith(b"Code: 229.")
    finally:
        conn.close()
    status, _, body = endpoint.request("POST", body=b"SELECT 1", headers={**endpoint.basic(),
                                                                          "Transfer-Encoding": "chunked"})
    assert status == 411, body
    # control: a body just under the limit (a large bound parameter, as clickhouse-connect sends one)
    form = urlencode({"query": "SELECT length({p:String})", "param_p": "x" * (limit - 200)}).encode()
    status, _, body = endpoint.request("POST", body=form, headers={
        **endpoint.basic(), "Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (200, f"{limit - 200}\n".encode())


# --------------------------------------------------------------------------- the CLI


def test_runlens_query_cannot_drop_a_table(endpoint, stack_settings):
    result = run_cli(stack_settings, "query", "DROP TABLE runs")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runlens: error: query failed:"), lines
    assert "readonly" in lines[0]
    assert endpoint.sql("SHOW TABLES LIKE 'runs'") == (200, b"runs\n")
    ok = run_cli(stack_settings, "query", "SELECT count() >= 0 FROM runs", "-f", "csv")
    assert ok.returncode == 0, ok.stderr


def test_runlens_query_with_a_wrong_password_is_refused_in_one_line(embedded_stack, stack_settings):
    url = f"http://runlens_reader:not-the-password@127.0.0.1:{embedded_stack.warehouse_port}"
    result = run_cli(stack_settings, "query", "SELECT 1", RUNLENS_QUERY_URL=url)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "516" in lines[0] and "not-the-password" not in lines[0], lines
