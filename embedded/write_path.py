"""What the writer may do on a chDB warehouse over HTTP: the write path of the warehouse process.

The workers (and ``runlens migrate``) are the writer: they run migrations, inserts and the
ledger's reads with clickhouse-connect's ordinary HTTP client, exactly as against a ClickHouse
server. This module turns one such request into chDB calls; it knows nothing of HTTP framing.

Promises:
- ClickHouse's HTTP rule for statements: the URL's ``query`` followed by the body; an
  ``INSERT ... FORMAT <name>`` line ends the statement and the rest of the body is its data, in
  that format (clickhouse-connect sends ``Native``).
- The data is handed to chDB as ``INSERT ... FROM INFILE`` on a spool file in memory-backed
  storage (``/dev/shm`` when present), removed afterwards whatever happens; chDB cannot take
  binary data inline (a NUL byte ends its statement text).
- Each request runs on its own chDB connection opened with the request's ClickHouse settings
  (``insert_deduplication_token``, ``async_insert``...), so a setting never leaks into another
  request and a retried insert carries the same token: ClickHouse drops the repeat.
- Statements with query parameters run one at a time (chDB does not isolate parameters between
  connections running in parallel); everything else runs in parallel, chDB releasing the GIL
  while a query executes.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import chdb

from embedded.access import EngineError, Refused
from embedded.read_policy import string_literal
from sinks.clickhouse import check_identifier

_INSERT_WITH_DATA = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<format>[A-Za-z0-9_]+)\s*$", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
# Arguments of ClickHouse's HTTP interface that are not settings of the statement.
_NOT_SETTINGS = frozenset({
    "query", "database", "user", "password", "query_id", "session_id", "session_timeout", "session_check",
    "default_format", "compress", "decompress", "quota_key", "buffer_size", "wait_end_of_query",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close", "enable_http_compression", "http_zlib_compression_level", "role",
})
_FIRST_LINE_LIMIT = 1 << 16


@dataclass(frozen=True)
class Statement:
    """One writer request: the statement's text and, for an INSERT with data, the data's bytes."""

    sql: str
    data: bytes | None = None
    target: str = ""
    format: str = ""


def split_statement(query: str, body: bytes) -> Statement:
    """The statement and its data from the URL's ``query`` and the body (ClickHouse's HTTP rule)."""
    if query:
        match = _INSERT_WITH_DATA.match(query)
        if match:
            return Statement(query, body, match["target"], match["format"])
    else:
        newline = body.find(b"\n", 0, _FIRST_LINE_LIMIT)
        head = body if newline < 0 else body[:newline]
        match = _INSERT_WITH_DATA.match(_text(head))
        if match:
            return Statement(_text(head), body[newline + 1:] if newline >= 0 else b"", match["target"],
                             match["format"])
    text = _text(body)
    sql = f"{query}\n{text}" if query and text else (query or text)
    return Statement(sql.strip())


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise Refused(36, "BAD_ARGUMENTS", "The statement is not valid UTF-8") from None


@dataclass(frozen=True)
class WriteResult:
    data: bytes
    format: str
    summary: dict[str, str]


class WritePath:
    """Runs the writer's statements against one chDB data directory owned by this process.
    Thread-safe; owns an anchor connection that keeps chDB's engine up between requests."""

    def __init__(self, warehouse_path: str, *, spool_dir: str | None = None):
        if "?" in warehouse_path or "&" in warehouse_path:
            raise ValueError(f"the warehouse path may not contain ? or &: {warehouse_path!r}")
        self._path = warehouse_path
        self._anchor = chdb.connect(warehouse_path)
        names = self._anchor.query("SELECT name FROM system.settings", "TabSeparated").bytes().decode()
        self._settings = frozenset(names.split())
        shm = Path("/dev/shm")
        self._spool = spool_dir or (str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None)
        self._params_lock = threading.Lock()

    def close(self) -> None:
        self._anchor.close()

    def settings_of(self, args: Mapping[str, str]) -> dict[str, str]:
        """The request's ClickHouse settings: the URL arguments that name one."""
        return {name: value for name, value in args.items()
                if name in self._settings and name not in _NOT_SETTINGS}

    @contextmanager
    def _connection(self, settings: Mapping[str, str], database: str | None) -> Iterator[Any]:
        dsn = self._path
        if settings:
            dsn += "?" + "&".join(f"{quote(k, safe='')}={quote(str(v), safe='')}" for k, v in settings.items())
        conn = chdb.connect(dsn)
        try:
            if database:
                conn.query(f"USE {_identifier(database)}")
            yield conn
        finally:
            conn.close()

    def run(self, query: str, body: bytes, args: Mapping[str, str]) -> WriteResult:
        """Run one request; raises ``EngineError`` with ClickHouse's error, ``Refused`` on a bad request."""
        statement = split_statement(query, body)
        if not statement.sql:
            raise Refused(211, "EMPTY_QUERY", "Empty query")
        params = {k[len("param_"):]: v for k, v in args.items() if k.startswith("param_")}
        try:
            with self._connection(self.settings_of(args), args.get("database") or None) as conn:
                if statement.data is not None:
                    return self._insert(conn, statement)
                match = _TRAILING_FORMAT.search(statement.sql)
                fmt = match.group(1) if match else (args.get("default_format") or "TabSeparated")
                if params:
                    with self._params_lock:
                        result = conn.query(statement.sql, fmt, params=params)
                else:
                    result = conn.query(statement.sql, fmt)
                return WriteResult(result.bytes(), fmt, _summary(result, written=False))
        except (Refused, EngineError):
            raise
        except Exception as exc:  # noqa: BLE001 - ClickHouse's error, for the client
            raise EngineError(str(exc)) from None

    def _insert(self, conn: Any, statement: Statement) -> WriteResult:
        spool = tempfile.NamedTemporaryFile(dir=self._spool, prefix="runlens-insert-", suffix=".data",  # noqa: SIM115
                                            delete=False)
        try:
            with spool:
                spool.write(statement.data or b"")
            result = conn.query(f"INSERT INTO {statement.target} FROM INFILE {string_literal(spool.name)} "
                                f"FORMAT {statement.format}", "TabSeparated")
            return WriteResult(b"", "TabSeparated", _summary(result, written=True))
        finally:
            os.unlink(spool.name)


def _identifier(name: str) -> str:
    """``name`` if ``sinks.clickhouse.check_identifier`` accepts it as a database name, else the
    client's error."""
    try:
        return check_identifier(name)
    except ValueError as exc:
        raise Refused(36, "BAD_ARGUMENTS", str(exc)) from None


def _summary(result: Any, *, written: bool) -> dict[str, str]:
    """ClickHouse's ``X-ClickHouse-Summary`` fields from a chDB result (an INFILE insert reads exactly
    the rows it writes)."""
    try:
        rows, size = str(result.rows_read()), str(result.bytes_read())
    except Exception:  # noqa: BLE001 - a result without statistics
        rows, size = "0", "0"
    if written:
        return {"read_rows": "0", "read_bytes": "0", "written_rows": rows, "written_bytes": size}
    return {"read_rows": rows, "read_bytes": size, "written_rows": "0", "written_bytes": "0"}
