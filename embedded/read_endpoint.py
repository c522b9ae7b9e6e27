"""A loopback HTTP endpoint that speaks enough of ClickHouse's HTTP interface for reads.

A chDB data directory is locked by one process. The process that owns it (the worker)
runs this endpoint so that every other process — ``runlens query``, clickhouse-connect
clients, tests — reads the embedded warehouse as if it were a ClickHouse server.

Promises: read-only (the session runs with ``readonly=2``: SELECT/SHOW/DESCRIBE and
setting changes, no writes or DDL); binds to loopback only; one query at a time on its
own chDB connection, so it never blocks on, or corrupts, the writer's connection.
"""

from __future__ import annotations

import email.policy
import logging
import re
import threading
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import chdb

log = logging.getLogger(__name__)

_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_DATABASE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
SERVER_VERSION = "runlens-chdb"


class ReadEndpoint:
    """Serves read-only SQL over HTTP from a chDB data directory owned by this process."""

    def __init__(self, warehouse_path: str, host: str = "127.0.0.1", port: int = 0):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the read endpoint binds to loopback only")
        self._conn = chdb.connect(warehouse_path)
        self._conn.query("SET readonly = 2")
        self._lock = threading.Lock()
        endpoint = self

        class Handler(_Handler):
            owner = endpoint

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="read-endpoint", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._conn.close()

    def execute(self, sql: str, fmt: str, database: str | None, params: dict[str, str]) -> bytes:
        """Run one statement and return its output bytes; raises chdb's error on failure."""
        with self._lock:
            if database:
                self._conn.query(f"USE {database}")
            result = self._conn.query(sql, fmt, params=params or None)
            return result.bytes() if hasattr(result, "bytes") else bytes(result)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Fields of a multipart/form-data body (clickhouse-connect sends large bind parameters so)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True).decode()
    return fields


class _Handler(BaseHTTPRequestHandler):
    owner: ReadEndpoint
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # otherwise Nagle + delayed ACK add ~44 ms to every reply

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("read endpoint: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = urlsplit(self.path).path
        if path in ("/ping", "/"):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        else:
            self._handle_query(b"")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            self._handle_query(b"", _form_fields(content_type, body))
        elif content_type.startswith("application/x-www-form-urlencoded"):
            self._handle_query(b"", dict(parse_qsl(body.decode(), keep_blank_values=True)))
        else:
            self._handle_query(body)

    def _handle_query(self, body: bytes, form: dict[str, str] | None = None) -> None:
        args = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        args.update(form or {})
        sql = args.get("query", "")
        if body:
            sql = f"{sql}\n{body.decode()}" if sql else body.decode()
        sql = sql.strip()
        if not sql:
            self._error(400, 62, "Empty query")
            return
        database = args.get("database") or None
        if database and not _DATABASE.match(database):
            self._error(400, 81, f"Invalid database name {database!r}")
            return
        params = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_")}
        match = _FORMAT_CLAUSE.search(sql)
        fmt = match.group(1) if match else args.get("default_format", "TabSeparated")
        try:
            data = self.owner.execute(sql, fmt, database, params)
        except Exception as exc:  # noqa: BLE001 - every engine error goes back to the client
            text = str(exc)
            code = _ERROR_CODE.search(text)
            self._error(500, int(code.group(1)) if code else 1000, text)
            return
        self._reply(200, data, {
            "Content-Type": "application/octet-stream",
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": SERVER_VERSION,
            "X-ClickHouse-Summary": '{"read_rows":"0","read_bytes":"0","written_rows":"0"}',
        })

    def _error(self, status: int, code: int, message: str) -> None:
        text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
        self._reply(status, text.encode() + b"\n", {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(code),
        })

    def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
