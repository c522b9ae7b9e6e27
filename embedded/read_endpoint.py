"""A loopback HTTP endpoint that speaks enough of ClickHouse's HTTP interface for reads.

A chDB data directory is locked by one process. The process that owns it (the worker)
runs this endpoint so that every other process — ``runlens query``, clickhouse-connect
clients, tests — reads the embedded warehouse as if it were a ClickHouse server.

Promises (the rules themselves live in ``embedded.read_policy``):
- binds to loopback only; answers ``/ping`` to anyone and nothing else without the reader's
  credentials (ClickHouse's ``Code: 516 AUTHENTICATION_FAILED``, HTTP 401/403);
- refuses browser requests: any ``Origin`` header, or a ``Host`` that is not a loopback name
  (DNS rebinding), gets 403 before credentials are even looked at;
- bodies above ``max_request_bytes`` get 413 unread; chunked bodies 411;
- each statement runs under ``ReadPolicy``: checked, on its own fresh readonly=1 connection
  with the limits, at most ``max_concurrent_queries`` at once (503 beyond), so it never blocks
  on, or changes, the writer's connection or another reader's;
- client-supplied ClickHouse settings in the URL are ignored; a ``database`` other than
  runlens' own is refused.
"""

from __future__ import annotations

import email.policy
import logging
import threading
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from embedded.read_policy import Credentials, EngineError, ReadLimits, ReadPolicy, Refused, authenticate

log = logging.getLogger(__name__)

SERVER_VERSION = "runlens-chdb"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ReadEndpoint:
    """Serves read-only SQL over HTTP from a chDB data directory owned by this process."""

    def __init__(self, warehouse_path: str, *, database: str, credentials: Credentials,
                 limits: ReadLimits | None = None, host: str = "127.0.0.1", port: int = 0):
        if host not in _LOOPBACK_HOSTS:
            raise ValueError("the read endpoint binds to loopback only")
        self.credentials = credentials
        self.policy = ReadPolicy(warehouse_path, database, limits)
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

    @property
    def dsn(self) -> str:
        """The URL with the reader's credentials, as clickhouse-connect takes it."""
        return self.credentials.dsn(self.url)

    def start(self) -> str:
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.policy.close()


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


def _host_name(host_header: str) -> str:
    """The host of a Host header without its port ('[::1]:8123' -> '::1')."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


class _Handler(BaseHTTPRequestHandler):
    owner: ReadEndpoint
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # otherwise Nagle + delayed ACK add ~44 ms to every reply
    timeout = 120                    # an idle or stalled connection is dropped, not kept forever

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("read endpoint: " + format, *args)

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
            if body is None:
                body, form = self._read_body()
            args = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            args.update(form or {})
            authenticate(self.headers, args, self.owner.credentials)
            self._handle_query(body, args)
        except (Refused, EngineError) as exc:
            if body is None:
                self.close_connection = True   # a body may follow that was never read
            self._error(exc.status, exc.code, exc.text)
        except Exception:  # noqa: BLE001 - a bug here must not kill the connection silently
            log.exception("read endpoint: request failed")
            self.close_connection = True
            self._error(500, 1000,
                        "Code: 1000. DB::Exception: internal error of the read endpoint. (UNKNOWN_EXCEPTION)")

    def _check_browser(self) -> None:
        """Refuse what only a browser sends: an Origin header (cross-origin or a form post from a
        page), or a Host that is not loopback (a DNS-rebound name)."""
        if self.headers.get("Origin") is not None:
            raise Refused(497, "ACCESS_DENIED", "Requests from web pages (with an Origin header) are refused")
        if _host_name(self.headers.get("Host") or "127.0.0.1") not in _LOOPBACK_HOSTS:
            raise Refused(497, "ACCESS_DENIED", "Host must be a loopback address")

    def _read_body(self) -> tuple[bytes, dict[str, str] | None]:
        limit = self.owner.policy.limits.max_request_bytes
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise Refused(381, "HTTP_LENGTH_REQUIRED", "Chunked request bodies are not supported; send "
                          "Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise Refused(36, "BAD_ARGUMENTS", "Invalid Content-Length") from None
        if length < 0 or length > limit:
            self.close_connection = True   # the body stays unread
            raise Refused(229, "QUERY_IS_TOO_LARGE", f"Request body of {length} bytes exceeds the read "
                          f"endpoint's limit of {limit} bytes")
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        try:
            if content_type.startswith("multipart/form-data"):
                return b"", _form_fields(content_type, body)
            if content_type.startswith("application/x-www-form-urlencoded"):
                return b"", dict(parse_qsl(body.decode(), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            raise Refused(36, "BAD_ARGUMENTS", "Malformed form body") from None
        return body, None

    def _handle_query(self, body: bytes, args: dict[str, str]) -> None:
        policy = self.owner.policy
        database = args.get("database")
        if database not in (None, "", policy.database):
            raise Refused(291, "DATABASE_ACCESS_DENIED", f"{self.owner.credentials.user}: Not enough privileges: "
                          f"the read endpoint serves database `{policy.database}` only")
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
        self._reply(200, result.data, {
            "Content-Type": "application/octet-stream",
            "X-ClickHouse-Format": result.format,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": SERVER_VERSION,
            "X-ClickHouse-Summary": '{"read_rows":"0","read_bytes":"0","written_rows":"0"}',
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
