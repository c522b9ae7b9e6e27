"""Expand a panel's SQL the way Grafana and the ClickHouse plugin do before ClickHouse sees it.

Pure: a string in, a string out. Used by the tests that run every panel and alert query
against a warehouse as Grafana would send it (``expand``), and by the HTML report, which runs
the same SQL with the variables bound as server-side parameters instead (``expand_bound``).

The three stages, in the order the plugin applies them
------------------------------------------------------

1. ``$__conditionalAll(condition, $var)`` (plugin frontend, ``applyConditionalAll``). The
   second argument names a variable as ``$var`` or ``${var}``. When that variable's current
   value is *All* (``$__all``) or empty, the whole macro becomes ``1=1``; otherwise it becomes
   ``condition`` unchanged (its variables are replaced in stage 2). A variable the dashboard
   does not define leaves ``condition`` in place. Arguments are split at top-level commas; the
   text is replaced with JavaScript's ``String.replace`` semantics, so ``$$`` in a condition
   collapses to ``$`` (don't write one).

2. Template variables (Grafana's ``templateSrv.replace`` with the plugin's format function).
   Forms: ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``, ``[[var:format]]``.
   * No format: a single value is inserted raw; several values become ``'a','b'`` (the
     plugin's own formatter: quoted, joined with ``,``, *not* escaped).
   * ``:singlequote`` ``'a','b'`` with ``'`` escaped as ``\\'``; ``:doublequote`` likewise
     with ``"``; ``:sqlstring`` ``'a','b'`` with ``'`` doubled and ``"`` escaped as ``\\"``;
     ``:csv`` / ``:raw`` ``a,b``; ``:pipe`` ``a|b``; ``:text`` the values as they are, joined
     with ``+``.
   * ``:percentencode`` (``encodeURIComponentStrict`` in Grafana's format registry, the same in
     the legacy template service and in Scenes): one value is percent-encoded; several values
     are joined as ``{a,b}`` and the whole text is percent-encoded (``%7Ba%2Cb%7D``). The
     encoding is JavaScript's ``encodeURIComponent`` (UTF-8, upper-case hex) with ``!'()*``
     encoded too, so the result holds only ``A-Z a-z 0-9 - _ . ~`` and ``%XX``: nothing that
     can end or escape a ClickHouse string literal. A value JavaScript cannot encode (a lone
     surrogate) makes Grafana throw ``URIError``; here it raises ``MacroError``.
   * The dashboards use ``:percentencode`` only, inside a quoted literal that ClickHouse
     decodes (``panels.values_of``); ``singlequote`` / ``sqlstring`` / ``doublequote`` do not
     escape ``\\``, which ClickHouse reads as an escape, so a value ending in ``\\`` breaks
     out of their literals.
   * *All* (``$__all``): the variable's custom all value when it has one, inserted raw and
     unformatted (Grafana formats a custom all value only for ``:percentencode`` and
     ``:text``); otherwise every option of the variable (``all_values``), formatted as a
     multi-value selection.
   * Built-ins: ``$__from`` / ``$__to`` (epoch ms), ``$__interval`` (``30s``, ``1m``, ``2h``),
     ``$__interval_ms``, ``$__range_s``, ``$__range_ms``. Other names starting with ``__``
     (the plugin's macros, ``${__data...}`` in links) are left alone, as Grafana does.

3. Backend macros (the plugin's Go ``macros`` package, run by sqlds): ``$__name`` followed by
   a word boundary, optionally with a parenthesised argument list (nested parentheses
   allowed; arguments split at top-level commas and trimmed). For a time range
   ``[from, to]`` (whole seconds, UTC) and an interval of ``i`` seconds (at least 1):

   ===========================  =====================================================
   ``$__timeFilter(c)``         ``c >= toDateTime(FROM) AND c <= toDateTime(TO)``
   ``$__timeFilter_ms(c)``      same with ``fromUnixTimestamp64Milli(ms)``
   ``$__dateFilter(c)``         ``c >= toDate('YYYY-MM-DD') AND c <= toDate('...')``
   ``$__dateTimeFilter(d, t)``  both of the above, in parentheses; also ``$__dt``
   ``$__fromTime``              ``toDateTime(FROM)``; ``$__toTime`` ``toDateTime(TO)``
   ``$__fromTime_ms``           ``fromUnixTimestamp64Milli(FROM_MS)``; ``$__toTime_ms``
   ``$__timeInterval(c)``       ``toStartOfInterval(toDateTime(c), INTERVAL i second)``
   ``$__timeInterval_ms(c)``    ``toStartOfInterval(toDateTime64(c, 3), INTERVAL i_ms millisecond)``
   ``$__interval_s``            ``i``
   ===========================  =====================================================

Strict by default: an unknown variable or an unknown ``$__macro`` raises ``MacroError``
instead of being passed through to fail later in ClickHouse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from schemas.errors import InputError

ALL = "$__all"

VariableValue = str | Sequence[str]


class MacroError(InputError):
    """A query that the plugin could not expand (unknown variable or macro, bad arguments)."""

    code = "macro"


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range and the query interval (what Grafana sends with a query)."""

    start: datetime
    end: datetime
    interval_s: float = 60.0

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is None:
                raise MacroError(f"time range needs timezone-aware datetimes, got {moment!r}")
        if self.end < self.start:
            raise MacroError("time range ends before it starts")

    @property
    def from_ms(self) -> int:
        return _epoch_ms(self.start)

    @property
    def to_ms(self) -> int:
        return _epoch_ms(self.end)


@dataclass(frozen=True)
class Variable:
    """What the expander needs to know about one dashboard variable."""

    name: str
    all_values: tuple[str, ...] = ()     # the options *All* stands for (no custom all value)
    custom_all: str | None = None        # the variable's allValue, if it has one


@dataclass
class Context:
    time: TimeRange
    values: Mapping[str, VariableValue] = field(default_factory=dict)
    variables: Mapping[str, Variable] = field(default_factory=dict)
    strict: bool = True


def _epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _is_all(value: VariableValue | None) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value == ALL
    return len(value) > 0 and value[0] == ALL


def _js_to_string(value: VariableValue | None) -> str | None:
    """JavaScript's ``String(value)`` for a string or an array of strings."""
    if value is None:
        return None
    return value if isinstance(value, str) else ",".join(value)


# --------------------------------------------------------------------------- stage 1


def macro_args(text: str, open_index: int) -> list[str] | None:
    """Arguments of the parenthesised list opening at ``text[open_index] == '('``, split at
    top-level commas and *not* trimmed (the frontend's ``getMacroArgs``); None if unclosed."""
    depth, args, start = 0, [], open_index + 1
    for i in range(open_index, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i])
                return args
        elif ch == "," and depth == 1:
            args.append(text[start:i])
            start = i + 1
    return None


def _js_replacement(pattern: str, replacement: str) -> str:
    """What ``String.prototype.replace(pattern, replacement)`` inserts for a string pattern."""
    out, i = [], 0
    while i < len(replacement):
        ch = replacement[i]
        if ch == "$" and i + 1 < len(replacement):
            nxt = replacement[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "&":
                out.append(pattern)
                i += 2
                continue
            if nxt in "`'":
                raise MacroError("a $` or $' sequence in a $__conditionalAll condition is not supported")
        out.append(ch)
        i += 1
    return "".join(out)


_VAR_IN_ARG = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")
_CONDITIONAL_ALL = "$__conditionalAll("


def apply_conditional_all(sql: str, values: Mapping[str, VariableValue],
                          defined: set[str] | None = None) -> str:
    """Stage 1: replace every ``$__conditionalAll(condition, $var)``, last one first."""
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        args = macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if args is None or len(args) != 2:
            return sql  # the plugin gives up and leaves the query as it is
        phrase = args[0]
        name = _VAR_IN_ARG.search(args[1].strip())
        if name:
            known = name.group(0) in values or (defined is not None and name.group(0) in defined)
            if known:
                value = _js_to_string(values.get(name.group(0), ""))
                if value == "" or value == ALL:
                    phrase = "1=1"
        whole = f"{_CONDITIONAL_ALL}{args[0]},{args[1]})"
        at = sql.find(whole)
        sql = sql[:at] + _js_replacement(whole, phrase) + sql[at + len(whole):]
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


# --------------------------------------------------------------------------- stage 2

# Grafana's variableRegex: $var | [[var(:fmt)?]] | ${var(.fieldPath)?(:fmt)?}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _plugin_default_format(value: VariableValue) -> str:
    if isinstance(value, str):
        return value
    return "'" + "','".join(value) + "'"


def _format(value: VariableValue, fmt: str | None) -> str:
    if fmt is None:
        return _plugin_default_format(value)
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''").replace('"', '\\"') + "'" for v in values)
    if fmt == "percentencode":
        return percent_encode("{" + ",".join(values) + "}" if not isinstance(value, str) else value)
    if fmt in ("csv", "raw"):
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "text":
        return " + ".join(values)
    raise MacroError(f"unsupported variable format :{fmt}")


def percent_encode(text: str) -> str:
    """Grafana's ``encodeURIComponentStrict``: ``encodeURIComponent`` (UTF-8 bytes as upper-case
    ``%XX``, leaving ``A-Z a-z 0-9 - _ . ! ~ * ' ( )``), then ``!'()*`` as ``%XX`` too."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise MacroError("URIError: malformed URI sequence (a lone surrogate in a variable value)") from None
    return quote(data, safe="")


def grafana_interval(seconds: float) -> str:
    """Grafana's text for an interval (``$__interval``): 500ms, 30s, 5m, 2h, 1d."""
    ms = int(round(seconds * 1000))
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _builtin(name: str, time: TimeRange) -> str | None:
    return {
        "__from": str(time.from_ms),
        "__to": str(time.to_ms),
        "__interval": grafana_interval(time.interval_s),
        "__interval_ms": str(int(round(time.interval_s * 1000))),
        "__range_s": str((time.to_ms - time.from_ms) // 1000),
        "__range_ms": str(time.to_ms - time.from_ms),
    }.get(name)


def _value_of(name: str, ctx: Context) -> VariableValue | None:
    """The variable's value as the formatter sees it (All resolved); None if it has none."""
    if name not in ctx.values:
        if ctx.strict:
            raise MacroError(f"variable ${name} has no value (is it defined on the dashboard?)")
        return None
    value = ctx.values[name]
    if _is_all(value):
        variable = ctx.variables.get(name, Variable(name))
        if variable.custom_all is not None:
            return variable.custom_all
        if not variable.all_values:
            raise MacroError(f"${name} is All, but neither its options nor a custom all value are known")
        value = list(variable.all_values)
    return value


def replace_variables(sql: str, ctx: Context) -> str:
    """Stage 2: template variables and Grafana's built-in variables."""

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name.startswith("__"):
            builtin = _builtin(name, ctx.time)
            return match.group(0) if builtin is None else builtin
        if name in ctx.values and _is_all(ctx.values[name]):
            variable = ctx.variables.get(name, Variable(name))
            if variable.custom_all is not None and fmt not in ("percentencode", "text"):
                return variable.custom_all   # Grafana inserts a custom all value unformatted
        value = _value_of(name, ctx)
        return match.group(0) if value is None else _format(value, fmt)

    return _VARIABLE.sub(substitute, sql)


# A variable the way the dashboards compare with it: a percent-encoded value in a quoted literal.
_QUOTED_PERCENTENCODED = re.compile(r"'\$\{(\w+):percentencode\}'")


def bind_name(variable: str) -> str:
    """The server-side query parameter that carries ``variable`` in the bound form."""
    return f"var_{variable}"


def bind_variables(sql: str, ctx: Context) -> tuple[str, dict[str, str]]:
    """Stage 2 without putting any value in the SQL text, for runlens' own queries (the report).

    Each ``'${var:percentencode}'`` (the only form the dashboards use) becomes the server-side
    parameter ``{var_<name>:String}`` bound to the very text Grafana would have placed between
    the quotes, so ClickHouse decodes the same string the same way. Any other reference to a
    dashboard variable raises ``MacroError``: its value would be part of the statement.
    Built-in variables (``$__from``, ``$__interval``...) are numbers runlens computes and are
    expanded as in ``replace_variables``."""
    params: dict[str, str] = {}

    def bind(match: re.Match) -> str:
        name = match.group(1)
        value = _value_of(name, ctx)
        if value is None:
            return match.group(0)
        params[bind_name(name)] = _format(value, "percentencode")
        return "{" + bind_name(name) + ":String}"

    sql = _QUOTED_PERCENTENCODED.sub(bind, sql)
    left = used_variables(sql)
    if left:
        raise MacroError(f"variable(s) {', '.join('$' + n for n in sorted(left))} are not in the bound form "
                         "'${name:percentencode}': their values would be placed in the SQL text")
    return replace_variables(sql, ctx), params


# --------------------------------------------------------------------------- stage 3


def _date_time(seconds: int) -> str:
    return f"toDateTime({seconds})"


def _milli(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(moment: datetime) -> str:
    return f"toDate('{moment.astimezone(UTC):%Y-%m-%d}')"


def _backend_macros(time: TimeRange) -> dict[str, Callable[[list[str]], str]]:
    start_s = math.floor(time.start.timestamp())
    end_s = math.floor(time.end.timestamp())
    interval_s = int(max(time.interval_s, 1))
    interval_ms = int(max(time.interval_s * 1000, 1))

    def one(args: list[str], n: int, name: str) -> list[str]:
        if len(args) != n:
            raise MacroError(f"$__{name} expects {n} argument(s), got {len(args)}")
        return args

    return {
        "fromTime": lambda a: _date_time(start_s),
        "toTime": lambda a: _date_time(end_s),
        "fromTime_ms": lambda a: _milli(time.from_ms),
        "toTime_ms": lambda a: _milli(time.to_ms),
        "timeFilter": lambda a: "{0} >= {1} AND {0} <= {2}".format(
            one(a, 1, "timeFilter")[0], _date_time(start_s), _date_time(end_s)),
        "timeFilter_ms": lambda a: "{0} >= {1} AND {0} <= {2}".format(
            one(a, 1, "timeFilter_ms")[0], _milli(time.from_ms), _milli(time.to_ms)),
        "dateFilter": lambda a: "{0} >= {1} AND {0} <= {2}".format(
            one(a, 1, "dateFilter")[0], _date(time.start), _date(time.end)),
        "dateTimeFilter": lambda a: "({0} >= {2} AND {0} <= {3}) AND ({1} >= {4} AND {1} <= {5})".format(
            *one(a, 2, "dateTimeFilter"), _date(time.start), _date(time.end),
            _date_time(start_s), _date_time(end_s)),
        "dt": lambda a: "({0} >= {2} AND {0} <= {3}) AND ({1} >= {4} AND {1} <= {5})".format(
            *one(a, 2, "dt"), _date(time.start), _date(time.end), _date_time(start_s), _date_time(end_s)),
        "timeInterval": lambda a: "toStartOfInterval(toDateTime({}), INTERVAL {} second)".format(
            one(a, 1, "timeInterval")[0], interval_s),
        "timeInterval_ms": lambda a: "toStartOfInterval(toDateTime64({}, 3), INTERVAL {} millisecond)".format(
            one(a, 1, "timeInterval_ms")[0], interval_ms),
        "interval_s": lambda a: str(interval_s),
    }


_BACKEND_MACRO = re.compile(r"\$__(\w+)\b")


def _backend_args(text: str) -> tuple[list[str], int]:
    """sqlds' parseArgs: trimmed arguments of a list opening at ``text[0]``, and its length."""
    if not text.startswith("("):
        return [], 0
    args = macro_args(text, 0)
    if args is None:
        raise MacroError("failed to parse macro arguments (missing close bracket?)")
    length = sum(len(a) for a in args) + len(args) + 1  # commas, both brackets
    return [a.strip() for a in args], length


def apply_backend_macros(sql: str, time: TimeRange, strict: bool = True) -> str:
    """Stage 3: the plugin's Go macros, first occurrence to last."""
    macros = _backend_macros(time)
    out, pos = [], 0
    for match in _BACKEND_MACRO.finditer(sql):
        if match.start() < pos:
            continue  # inside the arguments of a macro already replaced
        name = match.group(1)
        if name not in macros:
            if strict:
                raise MacroError(f"unknown macro $__{name}")
            continue
        args, length = _backend_args(sql[match.end():])
        out.append(sql[pos:match.start()])
        out.append(macros[name](args))
        pos = match.end() + length
    out.append(sql[pos:])
    return "".join(out)


# --------------------------------------------------------------------------- all together


def expand(sql: str, time: TimeRange, values: Mapping[str, VariableValue] | None = None,
           variables: Mapping[str, Variable] | None = None, *, strict: bool = True) -> str:
    """The SQL ClickHouse receives for ``sql`` with these variable values and time range."""
    ctx = Context(time=time, values=dict(values or {}), variables=dict(variables or {}), strict=strict)
    sql = apply_conditional_all(sql, ctx.values, set(ctx.variables))
    sql = replace_variables(sql, ctx)
    return apply_backend_macros(sql, time, strict=strict)


def expand_bound(sql: str, time: TimeRange, values: Mapping[str, VariableValue] | None = None,
                 variables: Mapping[str, Variable] | None = None, *,
                 strict: bool = True) -> tuple[str, dict[str, str]]:
    """``expand`` for runlens' own queries: the SQL and the server-side parameters to send with
    it (``client.query(sql, parameters=params)``); no variable value is in the SQL text."""
    ctx = Context(time=time, values=dict(values or {}), variables=dict(variables or {}), strict=strict)
    sql = apply_conditional_all(sql, ctx.values, set(ctx.variables))
    sql, params = bind_variables(sql, ctx)
    return apply_backend_macros(sql, time, strict=strict), params


def expand_frontend(sql: str, time: TimeRange, values: Mapping[str, VariableValue] | None = None,
                    variables: Mapping[str, Variable] | None = None, *, strict: bool = True) -> str:
    """Stages 1 and 2 only: what Grafana's browser sends to the plugin's backend (which then
    expands the ``$__`` macros itself)."""
    ctx = Context(time=time, values=dict(values or {}), variables=dict(variables or {}), strict=strict)
    return replace_variables(apply_conditional_all(sql, ctx.values, set(ctx.variables)), ctx)


def used_variables(sql: str) -> set[str]:
    """Names of the dashboard variables a query refers to (built-ins and macros excluded)."""
    names = set()
    for match in _VARIABLE.finditer(sql):
        name = match.group(1) or match.group(2) or match.group(4)
        if not name.startswith("__"):
            names.add(name)
    return names


def used_macros(sql: str) -> set[str]:
    return {m.group(1) for m in _BACKEND_MACRO.finditer(sql)} - {"conditionalAll"}


BACKEND_MACROS = frozenset(_backend_macros(TimeRange(datetime(2000, 1, 1, tzinfo=UTC),
                                                     datetime(2000, 1, 1, tzinfo=UTC))))
