"""The warehouse process's write path attacked in its real form: raw HTTP against a
``WarehouseServer`` on its own chDB directory, with clickhouse-connect as the positive control.

The writer's powers (any statement, inserts with data, chunked bodies up to ``max_insert_bytes``)
must reach only the writer: the reader, a wrong password, a borrowed user name and anonymous
clients get ClickHouse's refusals and change nothing.
"""

from __future__ import annotations

import base64
import http.client
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from embedded.access import READER_USER, WRITER_USER, Credentials
from embedded.warehouse_server import WarehouseServer
from sinks.clickhouse import connect, migrate

pytestmark = [pytest.mark.security]

DB = "attacked"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseServer]:
    path = str(tmp_path_factory.mktemp("warehouse"))
    client = connect(f"chdb://{path}")
    migrate(client, DB)
    client.close()
    served = WarehouseServer(path, database=DB, reader=Credentials.generate(READER_USER),
                             writer=Credentials.generate(WRITER_USER), max_insert_bytes=1 << 20)
    served.start()
    yield served
    served.stop()


def _post(server: WarehouseServer, body: bytes, user: str, password: str, *, query: str = "",
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        target = "/?" + urlencode({"query": query}) if query else "/"
        conn.request("POST", target, body=body, headers={"Authorization": f"Basic {token}", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _count(server: WarehouseServer, table: str) -> int:
    reader = connect(server.dsn, database=DB, readonly=True)
    try:
        return int(reader.query(f"SELECT count() FROM {table}").result_rows[0][0])
    finally:
        reader.close()


def test_the_writer_inserts_with_clickhouse_connect_and_a_retry_is_dropped(server: WarehouseServer) -> None:
    """The positive control: the workers' client, unchanged, creates a table and inserts through the
    server; the same deduplication token twice stores the rows once."""
    writer = connect(server.writer_dsn)
    writer.command(f"CREATE TABLE IF NOT EXISTS {DB}.probe (x UInt64, at DateTime64(3, 'UTC')) ENGINE = MergeTree "
                   "ORDER BY x SETTINGS non_replicated_deduplication_window = 100")
    columns = [[1, 2, 3], [datetime.now(UTC)] * 3]
    for _ in range(2):
        writer.insert(f"{DB}.probe", columns, column_names=["x", "at"], column_oriented=True,
                      settings={"insert_deduplication_token": "same-batch"})
    writer.close()
    assert _count(server, "probe") == 3


@pytest.mark.parametrize("statement", [
    "INSERT INTO pipeline_metrics (worker, metric, value) VALUES ('x', 'y', 1)",
    "DROP TABLE pipeline_metrics",
    "CREATE TABLE evil (x UInt8) ENGINE = Memory",
    "ALTER TABLE pipeline_metrics DELETE WHERE 1",
])
def test_the_reader_cannot_write(server: WarehouseServer, statement: str) -> None:
    before = _count(server, "pipeline_metrics")
    status, body = _post(server, statement.encode(), server.reader.user, server.reader.password,
                         headers={"X-ClickHouse-Database": DB})
    assert status in (400, 403) and b"Code:" in body, body
    assert _count(server, "pipeline_metrics") == before


def test_the_reader_cannot_send_insert_data(server: WarehouseServer) -> None:
    """An INSERT ... FORMAT line followed by data, as the writer sends it, from the reader."""
    before = _count(server, "pipeline_metrics")
    body = f"INSERT INTO {DB}.pipeline_metrics (worker, metric, value) FORMAT TSV\nx\ty\t1\n".encode()
    status, answer = _post(server, body, server.reader.user, server.reader.password)
    assert status in (400, 403) and b"Code:" in answer, answer
    assert _count(server, "pipeline_metrics") == before


@pytest.mark.parametrize("who", ["wrong password", "reader's password", "no such user"])
def test_only_the_writers_password_opens_the_write_path(server: WarehouseServer, who: str) -> None:
    user, password = {"wrong password": (WRITER_USER, "guess"),
                      "reader's password": (WRITER_USER, server.reader.password),
                      "no such user": ("default", "")}[who]
    status, body = _post(server, f"DROP TABLE {DB}.pipeline_metrics".encode(), user, password)
    assert status == 403 and b"Code: 516" in body, body
    assert _count(server, "pipeline_metrics") >= 0   # still there


def _chunked(server: WarehouseServer, credentials: Credentials, statement: bytes) -> bytes:
    """A chunked POST written on the socket whole, and the server's status line."""
    host, port = server.url.removeprefix("http://").split(":")
    token = base64.b64encode(f"{credentials.user}:{credentials.password}".encode()).decode()
    request = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n").encode()
    request += b"%x\r\n%s\r\n0\r\n\r\n" % (len(statement), statement)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)
        status = b""
        while b"\r\n" not in status and (chunk := sock.recv(65536)):
            status += chunk
        return status.split(b"\r\n", 1)[0]


def test_a_chunked_body_is_refused_unless_the_writer_sends_it(server: WarehouseServer) -> None:
    assert server.writer is not None
    assert _chunked(server, server.reader, b"SELECT 1").startswith(b"HTTP/1.1 411")
    assert _chunked(server, server.writer, b"SELECT 1").startswith(b"HTTP/1.1 200")


def test_the_writers_body_has_a_limit_too(server: WarehouseServer) -> None:
    """Over ``max_insert_bytes`` (1 MiB here): 413 before a byte of the body is read."""
    assert server.writer is not None
    host, port = server.url.removeprefix("http://").split(":")
    token = base64.b64encode(f"{server.writer.user}:{server.writer.password}".encode()).decode()
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
            f"Content-Length: {2 << 20}\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head + b"SELECT 1")
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"QUERY_IS_TOO_LARGE" in answer, answer


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection (it does, after a refusal)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
