"""Who may read a chDB warehouse over HTTP, and what a read may do: the read path's policy.

Independent of the worker and of HTTP framing, so any process that owns a chDB data directory
(today the worker's read endpoint; later a separate warehouse process) applies the same rules.

Promises, each enforced by ClickHouse itself where it has a mechanism, by a statement check
(ClickHouse's own parser, never a regex over raw SQL) only where it has none:

- Authentication: one reader user with a password generated per stack; wrong, missing or
  mixed credentials are refused with ClickHouse's ``Code: 516 AUTHENTICATION_FAILED`` before
  anything runs; compared in constant time (``hmac.compare_digest``).
- Isolation: every request runs on a fresh chDB connection, opened with ``readonly=1`` and the
  limits and USE-d into runlens' database by this module, closed afterwards. Nothing a client
  sends (SET, USE, temporary tables, URL settings) outlives its request or reaches another one.
- ClickHouse enforces (``readonly=1`` on that connection): no INSERT/DDL/ALTER, no SET or
  ``SETTINGS`` changes (so the limits cannot be raised), no temporary tables, no table functions
  that reach files, URLs, other servers, processes or Python objects (chDB's ``python()``).
- Limits (connection settings, so ClickHouse enforces them and readonly=1 freezes them):
  ``max_execution_time``, ``max_memory_usage``, ``max_result_rows``/``max_result_bytes`` with
  ``result_overflow_mode=throw``; plus request size and concurrent queries here.
- The statement check, for what chDB's readonly=1 still lets through (measured: ``INTO OUTFILE``
  writes files, scalar ``file('/etc/passwd')`` reads them, ``KILL QUERY`` and ``SYSTEM STOP
  MERGES`` run, ``USE`` switches database) and for "runlens' database only" (chDB runs every
  connection as the one ``default`` user, so grants cannot tell readers from the writer):
  exactly one statement (``formatQuerySingleLine`` refuses multi-statements) of kind SELECT,
  SHOW TABLES, SHOW CREATE TABLE/VIEW, DESCRIBE or EXPLAIN <select>, read from ``EXPLAIN AST``
  (parses, never executes); no ``INTO OUTFILE``; tables only in runlens' database or the
  ``SYSTEM_TABLES``; table functions only from ``TABLE_FUNCTIONS``; none of the scalar
  functions that read files, configuration or other databases' objects (``file``, ``dict*``,
  ``joinGet``...).
- A statement's own ``SETTINGS`` clause may set the harmless ``QUERY_SETTINGS`` (join and output
  shape): they are applied to its connection before readonly=1, so ClickHouse sees no change;
  any other setting it names is refused by ClickHouse.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import chdb

from embedded.access import READER_USER, EngineError, Refused

# Tables of the system database a reader may query: engine metadata that says nothing about
# other databases, tables, users or queries. clickhouse-connect reads system.settings when it
# connects; system.merges lists running merges of the warehouse's own tables (the embedded
# warehouse holds runlens' database only) and the bench waits on it.
SYSTEM_TABLES = frozenset({
    "one", "numbers", "numbers_mt", "zeros", "zeros_mt", "settings", "functions", "formats",
    "data_type_families", "table_functions", "aggregate_function_combinators", "time_zones",
    "collations", "merges",
})
# Table functions that generate data and reach nothing outside the query.
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                             "generateSeries", "values"})
# Scalar functions that read files, configuration or other databases' objects by name.
_DENIED_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "filesystemAvailable", "filesystemCapacity", "filesystemUnreserved", "joinGet",
    "joinGetOrNull", "hasColumnInTable", "getMaxTableNameLengthForDatabase", "getMacro",
    "getServerSetting", "getMergeTreeSetting", "globalVariable", "evalMLMethod",
))
_DENIED_PREFIXES = ("dict", "naivebayes", "__")   # dictGet*/dictHas/dictIsIn, model files, internals
# in, notIn, nullIn, notNullIn, their global* forms and *IgnoreSet variants (lower case): the
# right-hand side may name a table.
_IN_FUNCTIONS = frozenset(f"{prefix}{name}{suffix}".lower() for name in ("in", "notIn", "nullIn", "notNullIn")
                          for prefix in ("", "global") for suffix in ("", "IgnoreSet"))
_QUERY_NODES = frozenset({"SelectWithUnionQuery", "Explain", "DescribeQuery", "ShowTables",
                          "ShowCreateTableQuery", "ShowCreateViewQuery", "ShowColumns",
                          "ShowProcesslistQuery", "SelectIntersectExceptQuery"})
_TABLE_NAME = re.compile(r"^(?:(?P<db>\w+)\.)?(?P<table>\w+)$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STRING_LITERAL = r"'(?:[^'\\]|\\.)*'"
_SHOW_TABLES = re.compile(r"^SHOW (?:FULL )?TABLES(?: FROM (?P<db>\w+))?(?: (?:NOT )?I?LIKE "
                          + _STRING_LITERAL + r")?(?: LIMIT \d+)?(?: FORMAT (?P<fmt>\w+))?$")
_SHOW_CREATE = re.compile(r"^SHOW CREATE (?:TABLE|VIEW) (?:(?P<db>\w+)\.)?(?P<table>\w+)"
                          r"(?: FORMAT (?P<fmt>\w+))?$")
_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_SETTINGS = re.compile(r"\bSETTINGS\b", re.IGNORECASE)
_QUOTED = re.compile(_STRING_LITERAL + r"|`(?:[^`\\]|\\.)*`")
_ERROR_CODE = re.compile(r"Code: (\d+)\.")


# --------------------------------------------------------------------------- limits


class ReadLimitSettings(Protocol):
    """Settings that carry the read limits (``RUNLENS_READ_MAX_*``; the application's settings)."""

    @property
    def read_max_execution_seconds(self) -> float: ...
    @property
    def read_max_memory_bytes(self) -> int: ...
    @property
    def read_max_result_rows(self) -> int: ...
    @property
    def read_max_result_bytes(self) -> int: ...
    @property
    def read_max_request_bytes(self) -> int: ...
    @property
    def read_max_concurrent_queries(self) -> int: ...


@dataclass(frozen=True)
class ReadLimits:
    """Per-query limits (enforced by ClickHouse on the request's connection) and per-endpoint ones."""

    max_execution_seconds: float = 60.0
    max_memory_bytes: int = 2 * 2**30
    max_result_rows: int = 10_000_000
    max_result_bytes: int = 2 * 2**30
    max_request_bytes: int = 2**20
    max_concurrent_queries: int = 4

    @classmethod
    def from_settings(cls, settings: ReadLimitSettings) -> ReadLimits:
        return cls(max_execution_seconds=settings.read_max_execution_seconds,
                   max_memory_bytes=settings.read_max_memory_bytes,
                   max_result_rows=settings.read_max_result_rows,
                   max_result_bytes=settings.read_max_result_bytes,
                   max_request_bytes=settings.read_max_request_bytes,
                   max_concurrent_queries=settings.read_max_concurrent_queries)

    def connection_settings(self) -> dict[str, str]:
        """ClickHouse settings of every request's connection; readonly=1 makes them unchangeable."""
        return {
            "readonly": "1",
            "max_execution_time": f"{self.max_execution_seconds:g}",
            "timeout_overflow_mode": "throw",
            "max_memory_usage": str(self.max_memory_bytes),
            "max_result_rows": str(self.max_result_rows),
            "max_result_bytes": str(self.max_result_bytes),
            "result_overflow_mode": "throw",
        }


# --------------------------------------------------------------------------- the statement check


@dataclass
class Node:
    """One node of ``EXPLAIN AST`` output: its kind, the rest of its line, its children."""

    kind: str
    text: str
    children: list[Node] = field(default_factory=list)
    parent: Node | None = field(default=None, repr=False)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


_CHILDREN = re.compile(r"\s*\(children \d+\)$")
_ALIAS = re.compile(r"\s*\(alias .*\)$")


def parse_ast(text: str) -> list[Node]:
    """The root nodes of ``EXPLAIN AST`` output in TabSeparated (one node a line, indented by
    depth; values are escaped, so a literal cannot span or forge lines)."""
    roots: list[Node] = []
    stack: list[tuple[int, Node]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        kind, _, rest = line.strip().partition(" ")
        node = Node(kind, _CHILDREN.sub("", rest))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            node.parent = stack[-1][1]
            node.parent.children.append(node)
        elif depth == 0:
            roots.append(node)
        else:
            raise Refused(62, "SYNTAX_ERROR", "unexpected EXPLAIN AST output")
        stack.append((depth, node))
    return roots


@dataclass(frozen=True)
class Statement:
    """A statement the check let through: its kind and its FORMAT clause, if any."""

    kind: str
    format: str | None


def _refuse_table(database: str, name: str) -> Refused:
    return Refused(497, "ACCESS_DENIED", f"{READER_USER}: Not enough privileges: the read endpoint reads database "
                   f"`{database}` (and a few system tables) only, not `{name}`")


def _check_table(name: str, database: str) -> None:
    match = _TABLE_NAME.match(_ALIAS.sub("", name))
    if match is None:
        raise _refuse_table(database, name)
    db, table = match.group("db"), match.group("table")
    if db is None or db == database or (db == "system" and table in SYSTEM_TABLES):
        return
    raise _refuse_table(database, f"{db}.{table}")


def _check_select_tree(root: Node, database: str, table_functions: frozenset[str]) -> None:
    for node in root.walk():
        if node.kind == "Literal" and node.parent is not None and node.parent.kind in _QUERY_NODES:
            raise Refused(358, "INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed")
        if node.kind == "TableIdentifier":
            _check_table(node.text, database)
        elif node.kind == "Function":
            name = _ALIAS.sub("", node.text)
            lowered = name.lower()
            if node.parent is not None and node.parent.kind == "TableExpression":
                if name not in TABLE_FUNCTIONS:
                    raise Refused(446, "FUNCTION_NOT_ALLOWED", f"Table function {name} is not allowed on the "
                                  f"read endpoint (allowed: {', '.join(sorted(TABLE_FUNCTIONS))})")
            elif lowered in _DENIED_FUNCTIONS or lowered.startswith(_DENIED_PREFIXES):
                raise Refused(446, "FUNCTION_NOT_ALLOWED", f"Function {name} is not allowed on the read endpoint")
            if lowered in _IN_FUNCTIONS and node.children and len(node.children[0].children) == 2:
                right = node.children[0].children[1]
                if right.kind == "Identifier":
                    _check_table(right.text, database)
                elif right.kind == "Function":
                    inner = _ALIAS.sub("", right.text)
                    if inner in table_functions and inner not in TABLE_FUNCTIONS:
                        raise Refused(446, "FUNCTION_NOT_ALLOWED",
                                      f"Table function {inner} is not allowed on the read endpoint")


def _format_of(root: Node) -> str | None:
    found = [c.text for c in root.children if c.kind == "Identifier"]
    return found[-1] if found else None


def check_statement(ast_text: str, formatted: str, database: str,
                    table_functions: frozenset[str] = frozenset()) -> Statement:
    """Check one statement from its ``EXPLAIN AST`` output and its ``formatQuerySingleLine`` text
    (both produced by ClickHouse's parser); raise ``Refused`` or return what it is."""
    roots = parse_ast(ast_text)
    if len(roots) != 1:
        raise Refused(62, "SYNTAX_ERROR", "Multi-statements are not allowed")
    root = roots[0]
    if _OUTFILE.search(_QUOTED.sub("''", formatted)):
        raise Refused(358, "INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed")
    if root.kind == "SelectWithUnionQuery" or root.kind == "DescribeQuery":
        _check_select_tree(root, database, table_functions)
        return Statement(root.kind, _format_of(root))
    if root.kind == "Explain":
        explained = [c for c in root.children if c.kind in _QUERY_NODES]
        if len(explained) != 1 or explained[0].kind != "SelectWithUnionQuery":
            raise Refused(164, "READONLY", "Cannot execute query in readonly mode: the read endpoint explains "
                          "SELECT queries only")
        _check_select_tree(root, database, table_functions)
        return Statement(root.kind, _format_of(root))
    if root.kind == "ShowTables" and (match := _SHOW_TABLES.match(formatted)):
        if match.group("db") not in (None, database):
            raise _refuse_table(database, match.group("db"))
        return Statement(root.kind, match.group("fmt"))
    if root.kind in ("ShowCreateTableQuery", "ShowCreateViewQuery") and (match := _SHOW_CREATE.match(formatted)):
        _check_table(f"{match.group('db')}.{match.group('table')}" if match.group("db") else match.group("table"),
                     database)
        return Statement(root.kind, match.group("fmt"))
    raise Refused(164, "READONLY", f"Cannot execute query in readonly mode: the read endpoint runs one SELECT, "
                  f"SHOW TABLES, SHOW CREATE TABLE, DESCRIBE or EXPLAIN statement (got {root.kind})")


# Settings a statement's own SETTINGS clause may change: how results are shaped and joined, never
# resources, limits, access, files, caches or logs. readonly=1 refuses every other change.
QUERY_SETTINGS = frozenset({
    "join_use_nulls", "join_default_strictness", "any_join_distinct_right_table_keys",
    "joined_subquery_requires_alias", "transform_null_in", "aggregate_functions_null_for_empty",
    "cast_keep_nullable", "union_default_mode", "prefer_column_name_to_alias", "enable_positional_arguments",
    "final", "extremes", "session_timezone", "date_time_output_format", "date_time_input_format",
    "format_csv_null_representation", "format_csv_delimiter", "format_tsv_null_representation",
    "output_format_csv_crlf_end_of_line", "output_format_tsv_crlf_end_of_line",
    "output_format_decimal_trailing_zeros", "output_format_json_quote_64bit_integers",
    "output_format_json_quote_64bit_floats", "output_format_json_quote_decimals",
    "output_format_json_quote_denormals", "output_format_json_named_tuples_as_objects",
})


def query_settings(parsed_json: str) -> dict[str, str]:
    """The allowed settings (``QUERY_SETTINGS``) of every SETTINGS clause in ``parseQueryToJSON``
    output, as SQL literals; a setting given two different values is left out."""
    import json

    found: dict[str, str | None] = {}

    def visit(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "SetQuery":
                for change in node.get("changes") or []:
                    name, value = change.get("name"), (change.get("value") or {})
                    literal = _setting_literal(value.get("field_type"), value.get("value"))
                    if name in QUERY_SETTINGS and literal is not None:
                        found[name] = literal if found.get(name, literal) == literal else None
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(json.loads(parsed_json))
    return {name: literal for name, literal in found.items() if literal is not None}


def _setting_literal(field_type: str | None, value: object) -> str | None:
    if field_type == "String" and isinstance(value, str):
        return string_literal(value)
    if field_type in ("UInt64", "Int64", "Bool") and isinstance(value, (int, bool)):
        return str(int(value))
    if field_type == "Float64" and isinstance(value, (int, float)):
        return repr(float(value))
    return None


def string_literal(text: str) -> str:
    """``text`` as a ClickHouse string literal (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------- running reads


@dataclass(frozen=True)
class Result:
    data: bytes
    format: str


class Connection(Protocol):
    """The part of a chDB connection (``chdb.connect``) used here."""

    def query(self, sql: str, format: str = ..., params: Mapping[str, str] | None = ...) -> Any: ...

    def close(self) -> None: ...


class ReadPolicy:
    """Runs read statements from untrusted clients against one chDB data directory owned by this
    process: a fresh ``readonly=1`` connection with the limits per statement, the statement check
    first, at most ``limits.max_concurrent_queries`` at a time. Thread-safe."""

    def __init__(self, warehouse_path: str, database: str, limits: ReadLimits | None = None):
        if not _IDENTIFIER.match(database):
            raise ValueError(f"invalid database name {database!r}")
        if "?" in warehouse_path or "&" in warehouse_path:
            raise ValueError(f"the warehouse path may not contain ? or &: {warehouse_path!r}")
        self.database = database
        self.limits = limits or ReadLimits()
        settings = "&".join(f"{k}={v}" for k, v in self.limits.connection_settings().items())
        self._dsn = f"{warehouse_path}?{settings}"
        limits_only = "&".join(f"{k}={v}" for k, v in self.limits.connection_settings().items() if k != "readonly")
        self._dsn_writable_settings = f"{warehouse_path}?{limits_only}"
        # Keeps chDB's engine up between requests (it stops when its last connection closes);
        # never runs a client's statement.
        self._anchor = chdb.connect(warehouse_path)
        self._slots = threading.BoundedSemaphore(self.limits.max_concurrent_queries)
        self._lock = threading.Lock()
        self._in_flight = 0
        with self.connection() as conn:
            names = conn.query("SELECT name FROM system.table_functions", "TabSeparated").bytes().decode()
        self.table_functions = frozenset(names.split())

    @property
    def in_flight(self) -> int:
        """Statements running now."""
        return self._in_flight

    def close(self) -> None:
        self._anchor.close()

    def connection(self) -> AbstractContextManager[Connection]:
        """A fresh chDB connection as each request gets one (readonly=1 and the limits), closed after."""
        return self._open(self._dsn)

    @contextmanager
    def _open(self, dsn: str) -> Iterator[Connection]:
        conn: Connection = chdb.connect(dsn)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """A slot among ``max_concurrent_queries``, or ``Refused`` (503) at once when none is free."""
        if not self._slots.acquire(blocking=False):
            raise Refused(202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many simultaneous queries. Maximum: "
                          f"{self.limits.max_concurrent_queries}")
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def run(self, sql: str, default_format: str = "TabSeparated", params: Mapping[str, str] | None = None) -> Result:
        """Check ``sql`` and run it; raises ``Refused`` (the policy said no) or ``EngineError``."""
        params = dict(params or {})
        with self.admitted():
            try:
                return self._run(sql, default_format, params)
            except (Refused, EngineError):
                raise
            except Exception as exc:  # noqa: BLE001 - chDB failed outside the statement (USE, connect)
                raise EngineError(str(exc)) from None

    def _run(self, sql: str, default_format: str, params: dict[str, str]) -> Result:
        with self.connection() as conn:
            conn.query(f"USE {self.database}")
            try:
                formatted = conn.query(f"SELECT formatQuerySingleLine({string_literal(sql)})",
                                       "TabSeparatedRaw").bytes().decode().rstrip("\n")
            except Exception as exc:  # noqa: BLE001 - a parse error, reported as the client's
                raise EngineError(_IN_SCOPE.sub(".", str(exc))) from None
            changes = self._allowed_settings(conn, sql) if _SETTINGS.search(_QUOTED.sub("''", formatted)) else {}
            if not changes:
                return self._check_and_execute(conn, sql, formatted, default_format, params)
        # A statement with allowed SETTINGS gets them on a fresh connection before readonly=1, so
        # its own SETTINGS clause changes nothing; any other setting it names is still refused.
        with self._open(self._dsn_writable_settings) as conn:
            conn.query(f"USE {self.database}")
            for name, literal in changes.items():
                conn.query(f"SET {name} = {literal}")
            conn.query("SET readonly = 1")
            return self._check_and_execute(conn, sql, formatted, default_format, params)

    def _check_and_execute(self, conn: Connection, sql: str, formatted: str, default_format: str,
                           params: dict[str, str]) -> Result:
        try:
            ast_text = conn.query(f"EXPLAIN AST {sql}", "TabSeparated", params=params).bytes().decode()
        except Exception as exc:  # noqa: BLE001
            raise EngineError(str(exc)) from None
        statement = check_statement(ast_text, formatted, self.database, self.table_functions)
        fmt = statement.format or default_format
        return Result(_execute(conn, sql, fmt, params), fmt)

    def _allowed_settings(self, conn: Connection, sql: str) -> dict[str, str]:
        try:
            parsed = conn.query(f"SELECT parseQueryToJSON({string_literal(sql)})", "TabSeparatedRaw")
        except Exception:  # noqa: BLE001 - a kind parseQueryToJSON cannot show: nothing is pre-applied
            return {}
        return query_settings(parsed.bytes().decode())


def _execute(conn: Connection, sql: str, fmt: str, params: dict[str, str]) -> bytes:
    try:
        return conn.query(sql, fmt, params=params).bytes()
    except Exception as exc:  # noqa: BLE001 - ClickHouse's error, for the client
        raise EngineError(str(exc)) from None


_IN_SCOPE = re.compile(r"[:.]?\s*In scope SELECT formatQuerySingleLine\(.*\)\.", re.DOTALL)
