"""The run explorer and failure analysis as SQL. Pure: builders return a ``Query`` (sql, params).

Every query is scoped to one account: the account is a required bound parameter
(``{account:String}``) and every scan of a view or table carries ``account_id = {account:String}``.
Every value a user types is a bound parameter; only names from the fixed tables below (columns,
sort keys) are placed in SQL text, so a filter value can never change the statement.

Error messages are grouped into signatures by a normalisation done in SQL (``normalize_sql``),
so the CLI, the SQL library (``dashboards/sql``) and an analyst in a SQL console get the same
groups. The rules, applied in this order (RE2 syntax, ASCII word boundaries):

1. uuids                          ``8-4-4-4-12`` hex digits           -> ``<uuid>``
2. URLs                           ``scheme://`` up to a space, quote, ``<>()`` -> ``<url>``
3. e-mail addresses               ``local@domain`` (also malformed domains such as
                                  ``a@@b.com``, ``a@b,com``, ``a@``) -> ``<email>``
4. prefixed ids                   a word, ``_`` or ``-``, then letters/digits with at least
                                  one digit (``run_3fa9``, ``c-1234``, ``tag_57461``) -> ``<id>``
5. hyphenated hex ids             groups of 4+ hex digits joined by ``-`` (``714a6c81-83c9``,
                                  ``71454694-91b9``)                  -> ``<id>``
6. hex ids                        a whole word of hex digits with at least one digit and one
                                  letter (``1c84ee81``, ``e664``)     -> ``<id>``
7. numbers                        ``123``, ``1.5``                    -> ``<n>``
8. white space                    runs collapsed to one space, trimmed.

A signature is (error code, step name, normalised message); its id is
``lower(hex(cityHash64(error_code, step_name, normalised)))``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.errors import InputError

RUN_STATUSES = ("pending", "running", "success", "failed", "stopped")
WORKFLOW_TYPES = ("card", "site", "contact", "survey", "integration")
TRIGGERS = ("manual", "automatic", "api", "scheduled")
ERROR_CLASSES = ("config", "data", "external_service", "logic", "internal")
REPLAY_MODES = ("exact", "modified")

# (pattern, replacement) in the order applied. Patterns are RE2 and Python ``re`` compatible.
NORMALIZATION_RULES: tuple[tuple[str, str], ...] = (
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    (r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>()]+""", "<url>"),
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.,@_-]*", "<email>"),
    (r"\b[A-Za-z]+[_-][A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*", "<id>"),
    (r"\b[0-9a-fA-F]{4,}(?:-[0-9a-fA-F]{4,})+\b", "<id>"),
    (r"\b[0-9a-fA-F]*(?:[0-9][0-9a-fA-F]*[a-fA-F]|[a-fA-F][0-9a-fA-F]*[0-9])[0-9a-fA-F]*\b", "<id>"),
    (r"[0-9]+(?:\.[0-9]+)?", "<n>"),
    (r"\s+", " "),
)


def _sql_string(text: str) -> str:
    """A ClickHouse string literal of a constant from this module (never user input)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def normalize_sql(expression: str) -> str:
    """SQL that normalises the message ``expression`` (a column name or expression)."""
    sql = f"ifNull({expression}, '')"
    for pattern, replacement in NORMALIZATION_RULES:
        sql = f"replaceRegexpAll({sql}, {_sql_string(pattern)}, {_sql_string(replacement)})"
    return f"trimBoth({sql})"


def signature_sql(code: str, step: str, normalized: str) -> str:
    return f"lower(hex(cityHash64(ifNull({code}, ''), ifNull({step}, ''), {normalized})))"


class QueryError(InputError):
    """A request that cannot be answered as asked (unknown status, bad sort...). Nothing ran."""

    code = "query"


@dataclass
class Query:
    """A read-only query with every value bound (``params``); ``columns``: its result's names
    when the caller needs them before it runs."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()


def window_clauses(column: str, since: datetime | None, until: datetime | None) -> tuple[list[str], dict[str, Any]]:
    """The conditions of ``since <= column < until`` (a bound left out when None) and their
    parameters (``since``, ``until``)."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if since is not None:
        clauses.append(f"{column} >= {{since:DateTime64(3, 'UTC')}}")
        params["since"] = since
    if until is not None:
        clauses.append(f"{column} < {{until:DateTime64(3, 'UTC')}}")
        params["until"] = until
    return clauses, params


# --------------------------------------------------------------------------- filters


def _check_values(name: str, values: Iterable[str], allowed: Collection[str]) -> None:
    for value in values:
        if value not in allowed:
            raise QueryError(f"--{name}: unknown {name} {value!r} (choose from: {', '.join(allowed)})")


@dataclass(frozen=True)
class RunFilters:
    """The Workflow Runs page's filters for one account; lists are "any of" (multiple selection).

    ``since``/``until`` bound the run's start time (for a pending run, its queue time) to
    ``[since, until)``. ``workflows``, ``sites`` and ``cards`` match an id or a name.
    """

    account: str
    since: datetime | None = None
    until: datetime | None = None
    statuses: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    sites: tuple[str, ...] = ()
    cards: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    contacts: tuple[str, ...] = ()
    error_codes: tuple[str, ...] = ()
    error_classes: tuple[str, ...] = ()
    replays: str | None = None  # None: all runs; "only": replays only; "exclude": originals only

    def __post_init__(self) -> None:
        if not isinstance(self.account, str) or not self.account.strip():
            raise QueryError("--account: an account is required (every query reads one account)")
        _check_values("status", self.statuses, RUN_STATUSES)
        _check_values("type", self.types, WORKFLOW_TYPES)
        _check_values("trigger", self.triggers, TRIGGERS)
        _check_values("error-class", self.error_classes, ERROR_CLASSES)
        for version in self.versions:
            if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**32:
                raise QueryError(f"--version: {version!r} is not a version number")
        if self.replays not in (None, "only", "exclude"):
            raise QueryError(f"--replays: {self.replays!r} (choose from: only, exclude)")
        if self.since and self.until and self.since >= self.until:
            raise QueryError("the date range is empty: --since must be before --until")

    def where(self, alias: str = "") -> tuple[str, dict[str, Any]]:
        """The WHERE clause over the ``runs`` view (columns prefixed by ``alias.``) and its params."""
        p = f"{alias}." if alias else ""
        window, params = window_clauses(f"coalesce({p}started_at, {p}queued_at, {p}finished_at)",
                                        self.since, self.until)
        clauses = [f"{p}account_id = {{account:String}}", *window]
        params = {"account": self.account, **params}
        lists = (
            ("statuses", "f_status", [f"{p}status"], "String"),
            ("types", "f_type", [f"{p}workflow_type"], "String"),
            ("workflows", "f_workflow", [f"{p}workflow_id", f"{p}workflow_name"], "String"),
            ("versions", "f_version", [f"{p}workflow_version"], "UInt32"),
            ("sites", "f_site", [f"{p}site_id", f"{p}site_name"], "String"),
            ("cards", "f_card", [f"{p}card_id", f"{p}card_name"], "String"),
            ("triggers", "f_trigger", [f"{p}trigger"], "String"),
            ("contacts", "f_contact", [f"{p}contact_id"], "String"),
            ("error_codes", "f_error_code", [f"{p}error_code"], "String"),
            ("error_classes", "f_error_class", [f"{p}error_class"], "String"),
        )
        for attr, name, columns, ch_type in lists:
            values = getattr(self, attr)
            if not values:
                continue
            tests = [f"{column} IN {{{name}:Array({ch_type})}}" for column in columns]
            clauses.append(tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")")
            params[name] = list(values)
        if self.replays == "only":
            clauses.append(f"{p}replay_of IS NOT NULL")
        elif self.replays == "exclude":
            clauses.append(f"{p}replay_of IS NULL")
        return " AND ".join(clauses), params


# --------------------------------------------------------------------------- run list

RUN_COLUMNS = (
    "account_id", "run_id", "workflow_id", "workflow_name", "workflow_version", "workflow_version_name",
    "workflow_type", "status", "trigger", "site_id", "site_name", "card_id", "card_name", "contact_id",
    "queued_at", "started_at", "finished_at", "queue_ms", "duration_ms", "error_code", "error_class",
    "error_message", "replay_of", "replay_mode",
)
# The compact list a terminal table shows (CSV and JSON carry RUN_COLUMNS).
RUN_TABLE_COLUMNS = ("run_id", "workflow_name", "workflow_version", "status", "started_at", "duration_ms",
                     "trigger", "site_name", "card_name", "error_code")

SORT_KEYS = {
    "started_at": "coalesce(started_at, queued_at)",
    "queued_at": "queued_at",
    "finished_at": "finished_at",
    "duration": "duration_ms",
    "duration_ms": "duration_ms",
    "queue": "queue_ms",
    "queue_ms": "queue_ms",
    "workflow": "workflow_name",
    "workflow_name": "workflow_name",
    "version": "workflow_version",
    "status": "status",
    "trigger": "trigger",
    "site": "site_name",
    "card": "card_name",
    "run_id": "run_id",
}
MAX_PAGE_SIZE = 10_000


def parse_sort(text: str) -> tuple[str, str]:
    """``started_at`` / ``-duration`` / ``duration:asc`` -> (sort key, 'ASC'|'DESC')."""
    text = (text or "").strip()
    direction = None
    if text.startswith("-"):
        text, direction = text[1:], "DESC"
    elif text.startswith("+"):
        text, direction = text[1:], "ASC"
    if ":" in text:
        text, _, word = text.partition(":")
        word = word.strip().lower()
        if word not in ("asc", "desc"):
            raise QueryError(f"--sort: direction {word!r} (use asc or desc)")
        direction = word.upper()
    key = text.strip().lower()
    if key not in SORT_KEYS:
        raise QueryError(f"--sort: cannot sort by {key!r} (choose from: {', '.join(sorted(SORT_KEYS))})")
    if direction is None:
        direction = "ASC" if key in ("workflow", "workflow_name", "run_id", "status", "trigger", "site",
                                     "card") else "DESC"
    return key, direction


def _order(sort: str) -> str:
    key, direction = parse_sort(sort)
    return f"{SORT_KEYS[key]} {direction} NULLS LAST, run_id ASC"


def run_list(filters: RunFilters, sort: str = "-started_at", limit: int = 50, page: int = 1) -> Query:
    """One page of runs matching the filters."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise QueryError(f"--limit: {limit} (use 1..{MAX_PAGE_SIZE})")
    if page < 1:
        raise QueryError(f"--page: {page} (pages start at 1)")
    where, params = filters.where()
    params.update(limit=limit, offset=(page - 1) * limit)
    sql = (f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE {where} ORDER BY {_order(sort)} "
           "LIMIT {limit:UInt32} OFFSET {offset:UInt64}")
    return Query(sql, params, RUN_COLUMNS)


def run_count(filters: RunFilters) -> Query:
    where, params = filters.where()
    return Query(f"SELECT count() AS runs FROM runs WHERE {where}", params, ("runs",))


# --------------------------------------------------------------------------- one run

STEP_COLUMNS = (
    "step_index", "step_id", "step_name", "step_type", "attempt", "status", "started_at", "finished_at",
    "duration_ms", "error_code", "error_class", "error_message", "error_stack_trace", "error_suggested_fix",
    "input", "output", "condition_result", "branch", "action_kind", "target", "scheduled_resume_at",
    "resumed_at",
)


def _one_run_params(account: str, run_id: str) -> dict[str, Any]:
    if not account or not account.strip():
        raise QueryError("--account: an account is required (every query reads one account)")
    if not run_id or not run_id.strip():
        raise QueryError("a run id is required")
    return {"account": account, "run_id": run_id}


def run_detail(account: str, run_id: str) -> Query:
    params = _one_run_params(account, run_id)
    sql = (f"SELECT {', '.join(RUN_COLUMNS)} FROM runs "
           "WHERE account_id = {account:String} AND run_id = {run_id:String}")
    return Query(sql, params, RUN_COLUMNS)


def run_steps(account: str, run_id: str) -> Query:
    params = _one_run_params(account, run_id)
    columns = (*STEP_COLUMNS, "resume_late_ms")
    sql = (f"SELECT {', '.join(STEP_COLUMNS)}, "
           "dateDiff('millisecond', scheduled_resume_at, resumed_at) AS resume_late_ms "
           "FROM steps WHERE account_id = {account:String} AND run_id = {run_id:String} "
           "ORDER BY step_index, attempt, started_at")
    return Query(sql, params, columns)


REPLAY_LINK_COLUMNS = ("run_id", "replay_of", "replay_mode", "status", "workflow_version", "started_at",
                       "finished_at", "error_code")


# The runs of the account whose events name one of ``{originals}`` as replay_of: read from
# ``events`` (its replay_of bloom filter, migration 011), so that the ``runs`` fold below reads
# those runs by key instead of folding every run of the account to learn its replay_of.
_REPLAYS_OF = ("run_id IN (SELECT run_id FROM events WHERE account_id = {{account:String}} "
               "AND replay_of IN {originals})")


def run_replays(account: str, run_id: str) -> Query:
    """Replays of the run (newest last)."""
    params = _one_run_params(account, run_id)
    sql = (f"SELECT {', '.join(REPLAY_LINK_COLUMNS)} FROM runs "
           f"WHERE account_id = {{account:String}} AND {_REPLAYS_OF.format(originals='({run_id:String})')} "
           "AND replay_of = {run_id:String} "
           "ORDER BY coalesce(started_at, queued_at), run_id")
    return Query(sql, params, REPLAY_LINK_COLUMNS)


def run_links(account: str, run_ids: list[str]) -> Query:
    """Summary rows of some runs of the account (the original of a replay)."""
    if not account or not account.strip():
        raise QueryError("--account: an account is required (every query reads one account)")
    sql = (f"SELECT {', '.join(REPLAY_LINK_COLUMNS)} FROM runs "
           "WHERE account_id = {account:String} AND run_id IN {run_ids:Array(String)}")
    return Query(sql, {"account": account, "run_ids": list(run_ids)}, REPLAY_LINK_COLUMNS)


def _some_runs_params(account: str, run_ids: list[str]) -> dict[str, Any]:
    if not account or not account.strip():
        raise QueryError("--account: an account is required (every query reads one account)")
    return {"account": account, "run_ids": list(run_ids)}


def runs_steps(account: str, run_ids: list[str]) -> Query:
    """``run_steps`` of several runs of the account at once (``run_id`` first)."""
    params = _some_runs_params(account, run_ids)
    columns = ("run_id", *STEP_COLUMNS, "resume_late_ms")
    sql = (f"SELECT run_id, {', '.join(STEP_COLUMNS)}, "
           "dateDiff('millisecond', scheduled_resume_at, resumed_at) AS resume_late_ms "
           "FROM steps WHERE account_id = {account:String} AND run_id IN {run_ids:Array(String)} "
           "ORDER BY run_id, step_index, attempt, started_at")
    return Query(sql, params, columns)


def runs_replays(account: str, run_ids: list[str]) -> Query:
    """``run_replays`` of several runs of the account at once (``replay_of`` names the run)."""
    params = _some_runs_params(account, run_ids)
    sql = (f"SELECT {', '.join(REPLAY_LINK_COLUMNS)} FROM runs "
           f"WHERE account_id = {{account:String}} AND {_REPLAYS_OF.format(originals='{run_ids:Array(String)}')} "
           "AND replay_of IN {run_ids:Array(String)} "
           "ORDER BY coalesce(started_at, queued_at), run_id")
    return Query(sql, params, REPLAY_LINK_COLUMNS)


# --------------------------------------------------------------------------- replay comparison


def final_attempts(steps: list[dict]) -> dict[str, dict]:
    """step_id -> the step's last attempt, with ``attempts`` and ``total_ms`` over all attempts."""
    by_step: dict[str, dict] = {}
    for row in steps:
        current = by_step.get(row["step_id"])
        total = (current["total_ms"] if current else 0) + (row["duration_ms"] or 0)
        attempts = max(current["attempts"] if current else 0, row["attempt"])
        if current is None or row["attempt"] >= current["attempt"]:
            current = dict(row)
        current["total_ms"], current["attempts"] = total, attempts
        by_step[row["step_id"]] = current
    return by_step


COMPARE_COLUMNS = (
    "step_index", "step_id", "step_name",
    "original_status", "original_attempts", "original_duration_ms", "original_error_code", "original_error_message",
    "replay_status", "replay_attempts", "replay_duration_ms", "replay_error_code", "replay_error_message",
    "change",
)


def failing_step(steps: dict[str, dict]) -> dict | None:
    """The step whose last attempt failed (the first such by position)."""
    failed = [s for s in steps.values() if s["status"] == "failed"]
    return min(failed, key=lambda s: (s["step_index"], s["step_id"])) if failed else None


def verdict(original: dict, replay: dict) -> str:
    """How the replay ended compared with the original run."""
    o, r = original["status"], replay["status"]
    if r in ("pending", "running"):
        return "replay in progress"
    if o == "failed" and r == "success":
        return "fixed"
    if o == "failed" and r == "failed":
        return "still failing (same error)" if original.get("error_code") == replay.get("error_code") \
            else "still failing (different error)"
    if o != "failed" and r == "failed":
        return "regressed"
    if r == "stopped":
        return "replay stopped"
    return "no failure to fix"


def compare_steps(original_steps: list[dict], replay_steps: list[dict]) -> list[dict]:
    """Step by step (aligned on step id): last attempt's status, duration and error of both runs."""
    a, b = final_attempts(original_steps), final_attempts(replay_steps)
    rows = []
    for step_id in sorted(set(a) | set(b), key=lambda s: ((a.get(s) or b[s])["step_index"], s)):
        x, y = a.get(step_id), b.get(step_id)
        any_ = x or y
        assert any_ is not None   # step_id comes from a or b
        row = {"step_index": any_["step_index"], "step_id": step_id, "step_name": any_["step_name"]}
        for prefix, side in (("original", x), ("replay", y)):
            row[f"{prefix}_status"] = side["status"] if side else "not run"
            row[f"{prefix}_attempts"] = side["attempts"] if side else 0
            row[f"{prefix}_duration_ms"] = side["duration_ms"] if side else None
            row[f"{prefix}_error_code"] = side["error_code"] if side else None
            row[f"{prefix}_error_message"] = side["error_message"] if side else None
        xs, ys = row["original_status"], row["replay_status"]
        if xs == "failed" and ys == "success":
            row["change"] = "fixed"
        elif xs != "failed" and ys == "failed":
            row["change"] = "now fails"
        elif xs == "failed" and ys == "failed":
            row["change"] = "still fails"
        elif xs != ys:
            row["change"] = f"{xs} -> {ys}"
        else:
            row["change"] = ""
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- export

EXPORT_KINDS = ("runs", "steps", "failures")

EXPORT_STEP_COLUMNS = (
    "account_id", "run_id", "workflow_id", "workflow_name", "workflow_version", "run_status",
    "step_index", "step_id", "step_name", "step_type", "attempt", "status", "started_at", "finished_at",
    "duration_ms", "error_code", "error_class", "error_message", "error_stack_trace", "error_suggested_fix",
    "input", "output", "condition_result", "branch", "action_kind", "target", "scheduled_resume_at",
    "resumed_at",
)
EXPORT_FAILURE_COLUMNS = (
    "account_id", "run_id", "workflow_id", "workflow_name", "workflow_version", "trigger", "site_id",
    "site_name", "card_id", "card_name", "run_status", "step_index", "step_id", "step_name", "step_type",
    "attempt", "finished_at", "error_code", "error_class", "error_message", "message_normalized",
    "signature", "error_stack_trace", "error_suggested_fix", "input",
)
# ClickHouse output settings of an export: RFC 3339 UTC times, NULL as an empty field, CRLF
# record ends (RFC 4180; newlines inside quoted fields stay as written). In the
# statement (not per-request settings) so they hold through the embedded read endpoint and
# chDB's streaming path alike.
EXPORT_SETTINGS = ("SETTINGS date_time_output_format = 'iso', format_csv_null_representation = '', "
                   "output_format_csv_crlf_end_of_line = 1")


def _export_parts(kind: str, filters: RunFilters, sort: str) -> tuple[str, str, dict[str, Any], tuple[str, ...]]:
    """(SELECT ... FROM ... WHERE ..., ORDER BY ..., params, columns) of an export."""
    if kind not in EXPORT_KINDS:
        raise QueryError(f"cannot export {kind!r} (choose from: {', '.join(EXPORT_KINDS)})")
    if kind == "runs":
        where, params = filters.where()
        return (f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE {where}", _order(sort), params, RUN_COLUMNS)
    where, params = filters.where("r")
    run_cols = ("run_id", "workflow_id", "workflow_name", "workflow_version", "trigger", "site_id", "site_name",
                "card_id", "card_name", "status", "started_at", "queued_at")
    runs = f"SELECT {', '.join(run_cols)} FROM runs AS r WHERE {where}"
    from_runs = {"run_status": "r.status"}
    columns: tuple[str, ...]
    if kind == "steps":
        columns = EXPORT_STEP_COLUMNS
        from_runs.update({c: f"r.{c}" for c in ("workflow_name", "workflow_version")})
        extra_where, order = "", "coalesce(r.started_at, r.queued_at), s.run_id, s.step_index, s.attempt"
    else:
        columns = EXPORT_FAILURE_COLUMNS
        normalized = normalize_sql("s.error_message")
        from_runs.update({c: f"r.{c}" for c in ("workflow_name", "workflow_version", "trigger", "site_id",
                                                 "site_name", "card_id", "card_name")})
        from_runs["message_normalized"] = normalized
        from_runs["signature"] = signature_sql("s.error_code", "s.step_name", normalized)
        extra_where, order = " AND s.status = 'failed'", "s.finished_at, s.run_id, s.step_index, s.attempt"
    select = ", ".join(f"{from_runs.get(c, 's.' + c)} AS {c}" for c in columns)
    sql = (f"SELECT {select} FROM steps AS s INNER JOIN ({runs}) AS r ON r.run_id = s.run_id "
           f"WHERE s.account_id = {{account:String}}{extra_where}")
    return sql, order, params, columns


def export(kind: str, filters: RunFilters, sort: str = "started_at:asc", limit: int | None = None) -> Query:
    """Every row of ``kind`` for the runs matching the filters, in a stable order, for streaming as
    CSV: ``runs`` (one row per run), ``steps`` (every attempt) or ``failures`` (failed attempts, with
    the normalised message and signature). ``sort`` orders runs (steps follow their run's start,
    failures their finish time)."""
    if limit is not None and limit < 1:
        raise QueryError(f"--limit: {limit} (use a positive number)")
    sql, order, params, columns = _export_parts(kind, filters, sort)
    tail = ""
    if limit is not None:
        tail = " LIMIT {limit:UInt64}"
        params["limit"] = limit
    return Query(f"{sql} ORDER BY {order}{tail} {EXPORT_SETTINGS}", params, columns)


def export_count(kind: str, filters: RunFilters, limit: int | None = None) -> Query:
    """How many rows ``export`` would write (for a progress bar)."""
    sql, _, params, _ = _export_parts(kind, filters, "started_at")
    count = "count()" if limit is None else "least(count(), {limit:UInt64})"
    if limit is not None:
        params["limit"] = limit
    return Query(f"SELECT {count} FROM ({sql})", params, ("rows",))
