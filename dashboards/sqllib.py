"""The SQL library: the failure analyst's queries as ``dashboards/sql/*.sql`` files. Pure.

Each file is plain ClickHouse SQL with bound parameters (``{name:Type}``) and starts with a
comment block::

    -- name_of_file: one line on what it answers.
    --
    -- Longer purpose...
    --
    -- Parameters:
    --   account    String                 the tenant (runlens sql: --account)
    --   since      DateTime64(3, 'UTC')   window start, inclusive    [default: 1970-01-01]
    -- Columns:
    --   column     meaning

The parameter names and types are those of the statement itself; the header documents them
and gives defaults (``[default: VALUE]``, written as on the command line). Every file must
read ``{account:String}``: ``runlens sql`` passes ``--account`` there and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from dashboards.runs import Query, QueryError
from schemas import times

_PARAM = re.compile(r"\{(\w+):([^{}]+)\}")
_ENTRY = re.compile(r"^\s+(\w+)\s+(.*)$")
_DEFAULT = re.compile(r"\[default:\s*(.*?)\]\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_INT_RANGES = {"UInt8": (0, 2**8 - 1), "UInt16": (0, 2**16 - 1), "UInt32": (0, 2**32 - 1),
               "UInt64": (0, 2**64 - 1), "Int32": (-(2**31), 2**31 - 1), "Int64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    doc: str
    default: str | None  # as typed on the command line; None = required


@dataclass(frozen=True)
class LibraryQuery:
    name: str
    summary: str
    header: str
    sql: str
    params: tuple[Param, ...]
    columns: tuple[tuple[str, str], ...]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def _parse(name: str, text: str) -> LibraryQuery:
    lines = text.splitlines()
    header = []
    for line in lines:
        if not line.startswith("--"):
            break
        header.append(line)
    first = header[0][2:].strip() if header else ""
    if not first.startswith(f"{name}:"):
        raise ValueError(f"{name}.sql: the header must start with '-- {name}: <summary>'")
    summary = first.split(":", 1)[1].strip()
    section: str | None = None
    docs: dict[str, str] = {}
    columns: list[tuple[str, str]] = []
    for line in header[1:]:
        content = line[2:]
        stripped = content.strip()
        if stripped in ("Parameters:", "Columns:"):
            section = stripped
            continue
        if not stripped:
            continue
        indent = len(content) - len(content.lstrip())
        if indent < 2:
            section = None  # unindented text ends a section
            continue
        if section is None:
            continue
        match = _ENTRY.match(content)
        if indent > 4 or not match:  # deeper indentation continues the entry above
            if section == "Parameters:" and docs:
                last = next(reversed(docs))
                docs[last] = f"{docs[last]} {stripped}"
            elif section == "Columns:" and columns:
                columns[-1] = (columns[-1][0], f"{columns[-1][1]} {stripped}")
            continue
        if section == "Parameters:":
            docs[match.group(1)] = match.group(2).strip()
        else:
            columns.append((match.group(1), match.group(2).strip()))
    body = "\n".join(lines[len(header):]).strip()
    types: dict[str, str] = {}
    for pname, ptype in _PARAM.findall(body):
        if types.setdefault(pname, ptype.strip()) != ptype.strip():
            raise ValueError(f"{name}.sql: parameter {pname} has two types")
    params = []
    for pname, ptype in types.items():
        doc = docs.get(pname)
        if doc is None:
            raise ValueError(f"{name}.sql: parameter {pname} is not documented in the header")
        default = _DEFAULT.search(doc)
        params.append(Param(pname, ptype, doc, default.group(1).strip() if default else None))
    if types.get("account") != "String":
        raise ValueError(f"{name}.sql: every library query must read {{account:String}}")
    return LibraryQuery(name, summary, "\n".join(header), body, tuple(params), tuple(columns))


def library() -> dict[str, LibraryQuery]:
    """Every query of the library by name."""
    found = {}
    for entry in sorted(resources.files("dashboards").joinpath("sql").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            name = entry.name[:-4]
            if not _NAME.match(name):
                raise ValueError(f"library file {entry.name}: use lower-case letters, digits and _")
            found[name] = _parse(name, entry.read_text())
    return found


def load(name: str) -> LibraryQuery:
    queries = library()
    if name not in queries:
        raise QueryError(f"no SQL library query named {name!r} (known: {', '.join(queries)})")
    return queries[name]


# --------------------------------------------------------------------------- values


def parse_time(text: str, now: datetime, what: str = "time") -> datetime:
    """``now``, ``today``, ``yesterday``, a duration ago (``24h``, ``7d``), an RFC 3339 time or a
    date (``2026-11-16``, midnight UTC) read by ``schemas.times.parse_time``. Naive times are
    UTC. QueryError naming ``what`` otherwise."""
    try:
        return times.parse_time(text or "", now)
    except ValueError as exc:
        raise QueryError(f"{what}: {exc}") from None


def convert(param: Param, text: str, now: datetime) -> Any:
    """A command-line value as the Python value bound to ``param`` (QueryError when malformed)."""
    what = f"--param {param.name}"
    ptype = param.type
    if ptype == "String":
        return text
    if ptype in _INT_RANGES:
        low, high = _INT_RANGES[ptype]
        try:
            value = int(text)
        except ValueError:
            raise QueryError(f"{what}: {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise QueryError(f"{what}: {value} is out of range for {ptype}")
        return value
    if ptype in ("Float32", "Float64"):
        try:
            number = float(text)
        except ValueError:
            raise QueryError(f"{what}: {text!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise QueryError(f"{what}: {text!r} is not a finite number")
        return number
    if ptype.startswith(("DateTime64", "DateTime")):
        return parse_time(text, now, what)
    if ptype == "Array(String)":
        return [part.strip() for part in text.split(",") if part.strip()]
    if ptype == "Bool":
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise QueryError(f"{what}: {text!r} is not true or false")
        return lowered in ("true", "1")
    raise QueryError(f"{what}: parameters of type {ptype} are not supported")


SUPPORTED_TYPES = ("String", *_INT_RANGES, "Float32", "Float64", "DateTime64(3, 'UTC')", "DateTime",
                   "Array(String)", "Bool")


def bind(query: LibraryQuery, account: str, given: dict[str, str], now: datetime) -> Query:
    """The statement with every parameter bound: ``account`` from ``--account``, the others from
    ``given`` or their defaults. QueryError for an unknown, missing or malformed parameter."""
    if not account or not account.strip():
        raise QueryError("--account: an account is required (every query reads one account)")
    if "account" in given:
        raise QueryError("--param account: give the account with --account (or RUNLENS_ACCOUNT)")
    known = {p.name for p in query.params}
    for name in given:
        if name not in known:
            others = ", ".join(sorted(known - {"account"})) or "none"
            raise QueryError(f"{query.name}: unknown parameter {name!r} (parameters: {others})")
    params: dict[str, Any] = {"account": account}
    for param in query.params:
        if param.name == "account":
            continue
        if param.name in given:
            params[param.name] = convert(param, given[param.name], now)
        elif param.default is not None:
            params[param.name] = convert(param, _unquote(param.default), now)
        else:
            raise QueryError(f"{query.name}: missing --param {param.name}=... ({param.type})")
    return Query(query.sql, params)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["since=7d", "workflow=wf-welcome"]`` -> dict; QueryError for anything else."""
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not re.match(r"^\w+$", name):
            raise QueryError(f"--param: {pair!r} is not NAME=VALUE")
        if name in given:
            raise QueryError(f"--param: {name} given twice")
        given[name] = value
    return given
