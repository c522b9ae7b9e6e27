"""The warehouse process's HTTP front: enough of ClickHouse's HTTP interface for writes and reads.

A chDB data directory is locked by one process. The warehouse process owns it and serves it
to every other process — the workers (the writer), ``runlens query``, clickhouse-connect
clients, Grafana-style readers, the bench — as if it were a ClickHouse server, so they all run
the client code and DSN form they would use against one.

Promises (the rules themselves live in ``embedded.read_policy`` and ``embedded.write_path``):
- binds to loopback only; answers ``/ping`` to anyone and nothing else without a user's
  credentials (ClickHouse's ``Code: 516 AUTHENTICATION_FAILED``, HTTP 401/403);
- two users: the writer (``runlens_writer``) may run any statement and insert data; the reader
  (``runlens_reader``) only what ``ReadPolicy`` allows;
- refuses browser requests: any ``Origin`` header, or a ``Host`` that is not a loopback name
  (DNS rebinding), gets 403 before credentials are even looked at;
- a body above the user's limit gets 413 unread (the reader's ``max_request_bytes``; the
  writer's ``max_insert_bytes``); credentials sent in a form body get the reader's limit;
  chunked bodies 411;
- each read statement runs under ``ReadPolicy``: checked, on its own fresh readonly=1
  connection with the limits, at most ``max_concurrent_queries`` at once (503 beyond), so it
  never blocks on, or changes, the writer's connection or another reader's; client-supplied
  ClickHouse settings in the URL are ignored for readers; a ``database`` other than runlens'
  own is refused.
"""

from __future__ import annotations

import email.policy
import json
import logging
import threading
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from embedded.access import Credentials, EngineError, Refused, authenticate
from embedded.read_policy import ReadLimits, ReadPolicy
from embedded.write_path import WritePath

log = logging.getLogger(__name__)

SERVER_VERSION = "runlens-chdb"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


MAX_INSERT_BYTES = 1 << 30


class WarehouseServer:
    """Serves a chDB data directory owned by this process over HTTP: the writer's statements and
    inserts, and the reader's checked read statements. ``writer=None``: reads only."""

    def __init__(self, warehouse_path: str, *, database: str, reader: Credentials,
                 writer: Credentials | None = None, limits: ReadLimits | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_insert_bytes: int = MAX_INSERT_BYTES):
        if host not in _LOOPBACK_HOSTS:
            raise ValueError("the warehouse binds to loopback only")
        if writer is not None and writer.user == reader.user:
            raise ValueError("the reader and the writer must be different users")
        self.reader = reader
        self.writer = writer
        self.max_insert_bytes = max_insert_bytes
        self.policy = ReadPolicy(warehouse_path, database, limits)
        self.write_path = WritePath(warehouse_path) if writer is not None else None
        endpoint = self

        class Handler(_Handler):
            owner = endpoint

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="warehouse-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)   # an AF_INET server's address: (host, port)
        return f"http://{host}:{port}"

    @property
    def dsn(self) -> str:
        """The URL with the reader's credentials, as clickhouse-connect takes it."""
        return self.reader.dsn(self.url)

    @property
    def writer_dsn(self) -> str:
        """The URL with the writer's credentials (never print it)."""
        if self.writer is None:
            raise ValueError("this warehouse serves reads only")
        return self.writer.dsn(self.url)

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.policy.close()
        if self.write_path is not None:
            self.write_path.close()

    @property
    def users(self) -> tuple[Credentials, ...]:
        return (self.reader,) if self.writer is None else (self.reader, self.writer)


def _url_form(body: bytes) -> dict[str, str] | None:
    """The fields of a url-encoded form body (clickhouse-connect sends large parameters so), or
    None when the body is not such a form but the query itself: curl sends ``--data-binary
    'SELECT 1'`` with this content type too, and ClickHouse reads that body as the query."""
    try:
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None
    if "query" in fields or any(name.startswith("param_") for name in fields):
        return fields
    return None


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Fields of a multipart/form-data body (clickhouse-connect sends large bind parameters so)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name:   # an RFC 2231 (tuple) name never matched a field
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)   # a part of a multipart body, decoded
            fields[name] = payload.decode()
    return fields


def _host_name(host_header: str) -> str:
    """The host of a Host header without its port ('[::1]:8123' -> '::1')."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


class _Handler(BaseHTTPRequestHandler):
    owner: WarehouseServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # otherwise Nagle + delayed ACK add ~44 ms to every reply
    timeout = 120                    # an idle or stalled connection is dropped, not kept forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("warehouse http: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        if url.path == "/ping" or (url.path == "/" and not url.query):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        else:
            self._serve(b"", None)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._serve(None, None)

    def _serve(self, body: bytes | None, form: dict[str, str] | None) -> None:
        try:
            self._check_browser()
            if urlsplit(self.path).path != "/":
                raise Refused(48, "NOT_IMPLEMENTED", f"No handler for {urlsplit(self.path).path}", status=404)
            args = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            try:
                user: Credentials | None = authenticate(self.headers, args, *self.owner.users)
            except Refused as refused:
                if refused.status != 401:
                    raise
                user = None    # no credentials in headers or URL: perhaps in a form body (readers)
            writer = user is not None and user is self.owner.writer
            if body is None:
                limit = self.owner.max_insert_bytes if writer else self.owner.policy.limits.max_request_bytes
                body, form = self._read_body(limit, chunked=writer)
            if form:
                args.update(form)
            if user is None or (form and ("user" in form or "password" in form)):
                user = authenticate(self.headers, args, *self.owner.users)
            if user is self.owner.writer:
                self._handle_write(body, args)
            else:
                self._handle_query(body, args)
        except (Refused, EngineError) as exc:
            if body is None:
                self.close_connection = True   # a body may follow that was never read
            code = exc.server_code if exc.server_code is not None else 1000   # the instance's ``code``
            self._error(exc.status, code, exc.text)
        except Exception:  # noqa: BLE001 - a bug here must not kill the connection silently
            log.exception("warehouse http: request failed")
            self.close_connection = True
            self._error(500, 1000,
                        "Code: 1000. DB::Exception: internal error of the warehouse process. (UNKNOWN_EXCEPTION)")

    def _check_browser(self) -> None:
        """Refuse what only a browser sends: an Origin header (cross-origin or a form post from a
        page), or a Host that is not loopback (a DNS-rebound name)."""
        if self.headers.get("Origin") is not None:
            raise Refused(497, "ACCESS_DENIED", "Requests from web pages (with an Origin header) are refused")
        if _host_name(self.headers.get("Host") or "127.0.0.1") not in _LOOPBACK_HOSTS:
            raise Refused(497, "ACCESS_DENIED", "Host must be a loopback address")

    def _read_body(self, limit: int, *, chunked: bool = False) -> tuple[bytes, dict[str, str] | None]:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            if not chunked or encoding.strip().lower() != "chunked":
                self.close_connection = True
                raise Refused(381, "HTTP_LENGTH_REQUIRED", "Chunked request bodies are not supported; send "
                              "Content-Length")
            return self._read_chunks(limit), None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise Refused(36, "BAD_ARGUMENTS", "Invalid Content-Length") from None
        if length < 0 or length > limit:
            self.close_connection = True   # the body stays unread
            raise Refused(229, "QUERY_IS_TOO_LARGE", f"Request body of {length} bytes exceeds the "
                          f"limit of {limit} bytes")
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            try:
                return b"", _form_fields(content_type, body)
            except (UnicodeDecodeError, ValueError):
                raise Refused(36, "BAD_ARGUMENTS", "Malformed form body") from None
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = _url_form(body)
            if form is not None:
                return b"", form
        return body, None

    def _handle_query(self, body: bytes, args: dict[str, str]) -> None:
        policy = self.owner.policy
        database = args.get("database")
        if database not in (None, "", policy.database):
            raise Refused(291, "DATABASE_ACCESS_DENIED", f"{self.owner.reader.user}: Not enough privileges: "
                          f"the reader may read database `{policy.database}` only")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise Refused(36, "BAD_ARGUMENTS", "The query is not valid UTF-8") from None
        sql = args.get("query", "")
        if text:
            sql = f"{sql}\n{text}" if sql else text
        sql = sql.strip()
        if not sql:
            raise Refused(211, "EMPTY_QUERY", "Empty query")
        params = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_")}
        result = policy.run(sql, args.get("default_format") or "TabSeparated", params)
        self._answer(result.data, result.format, '{"read_rows":"0","read_bytes":"0","written_rows":"0"}')

    def _read_chunks(self, limit: int) -> bytes:
        """A chunked body (clickhouse-connect streams inserts so), refused once it passes ``limit``."""
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise Refused(36, "BAD_ARGUMENTS", "Malformed chunked body") from None
            if length == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass   # trailers
                return b"".join(parts)
            size += length
            if length < 0 or size > limit:
                self.close_connection = True
                raise Refused(229, "QUERY_IS_TOO_LARGE", f"Request body exceeds the limit of {limit} bytes")
            parts.append(self.rfile.read(length))
            self.rfile.readline(1024)   # the CRLF after the chunk

    def _handle_write(self, body: bytes, args: dict[str, str]) -> None:
        write_path = self.owner.write_path
        assert write_path is not None   # the writer exists only with a write path
        result = write_path.run(args.get("query", ""), body, args)
        self._answer(result.data, result.format, json.dumps(result.summary))

    def _answer(self, data: bytes, fmt: str, summary: str) -> None:
        """A statement's result, with the headers a ClickHouse server sends."""
        self._reply(200, data, {
            "Content-Type": "application/octet-stream",
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": SERVER_VERSION,
            "X-ClickHouse-Summary": summary,
        })

    def _error(self, status: int, code: int, text: str) -> None:
        self._reply(status, text.encode() + b"\n", {
            "Content-Type": "text/plain; charset=UTF-8",
            "X-ClickHouse-Exception-Code": str(code),
        })

    def _reply(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
