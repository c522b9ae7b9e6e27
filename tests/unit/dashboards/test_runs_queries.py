"""The run explorer's SQL builders and the SQL library, without a warehouse: every value a user
types is a bound parameter, every query reads one account, bad input is refused before any SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dashboards import runs as rq
from dashboards import sqllib

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EVIL = "x' OR 1=1 --"
SQL_DIR = Path(rq.__file__).parent / "sql"


def _all_filters(value: str = EVIL) -> rq.RunFilters:
    return rq.RunFilters(account=value, since=NOW - timedelta(days=1), until=NOW, statuses=("failed", "running"),
                         types=("contact",), workflows=(value,), versions=(3, 4), sites=(value,), cards=(value,),
                         triggers=("api",), contacts=(value,), error_codes=(value,), error_classes=("data",),
                         replays="only")


def _placeholders(sql: str) -> set[str]:
    return set(re.findall(r"\{(\w+):[^{}]+\}", sql))


# --------------------------------------------------------------------------- filters


def test_every_filter_is_a_bound_parameter():
    """User values appear only in params, never in the SQL text, and each placeholder is bound."""
    filters = _all_filters()
    where, params = filters.where()
    assert EVIL not in where and "OR 1=1" not in where
    assert params["account"] == EVIL
    for name in ("f_workflow", "f_site", "f_card", "f_contact", "f_error_code"):
        assert params[name] == [EVIL]
    assert params["f_status"] == ["failed", "running"] and params["f_version"] == [3, 4]
    assert _placeholders(where) == set(params)
    assert "replay_of IS NOT NULL" in where


def test_workflow_site_and_card_match_an_id_or_a_name():
    where, _ = rq.RunFilters(account="acme", workflows=("Welcome email",), sites=("s1",), cards=("c",)).where()
    assert "workflow_id IN {f_workflow:Array(String)} OR workflow_name IN {f_workflow:Array(String)}" in where
    assert "site_name IN {f_site:Array(String)}" in where and "card_name IN {f_card:Array(String)}" in where


def test_an_account_is_always_required_and_always_filtered():
    with pytest.raises(rq.QueryError, match="account is required"):
        rq.RunFilters(account="  ")
    where, params = rq.RunFilters(account="acme").where()
    assert where == "account_id = {account:String}" and params == {"account": "acme"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"statuses": ("done",)}, "unknown status 'done'"),
        ({"types": ("blog",)}, "unknown type 'blog'"),
        ({"triggers": ("cron",)}, "unknown trigger 'cron'"),
        ({"error_classes": ("network",)}, "unknown error-class 'network'"),
        ({"versions": (-1,)}, "--version"),
        ({"replays": "sometimes"}, "--replays"),
        ({"since": NOW, "until": NOW - timedelta(hours=1)}, "date range is empty"),
    ],
)
def test_unknown_filter_values_are_refused(changes, message):
    with pytest.raises(rq.QueryError, match=re.escape(message)):
        rq.RunFilters(account="acme", **changes)


# --------------------------------------------------------------------------- list, sort, paging


def test_run_list_binds_paging_and_orders_by_an_allowed_column_only():
    query = rq.run_list(_all_filters(), sort="duration:asc", limit=20, page=3)
    assert "ORDER BY duration_ms ASC NULLS LAST, run_id ASC" in query.sql
    assert "LIMIT {limit:UInt32} OFFSET {offset:UInt64}" in query.sql
    assert query.params["limit"] == 20 and query.params["offset"] == 40
    assert EVIL not in query.sql
    assert _placeholders(query.sql) == set(query.params)
    assert query.columns == rq.RUN_COLUMNS


@pytest.mark.parametrize(
    ("text", "expected"),
    [("-started_at", ("started_at", "DESC")), ("started_at", ("started_at", "DESC")),
     ("workflow", ("workflow", "ASC")), ("+duration", ("duration", "ASC")), ("queue:DESC", ("queue", "DESC"))],
)
def test_sort_forms(text, expected):
    assert rq.parse_sort(text) == expected


@pytest.mark.parametrize("text", ["colour", "duration_ms; DROP TABLE runs", "started_at:sideways", ""])
def test_bad_sort_is_refused(text):
    with pytest.raises(rq.QueryError, match="--sort"):
        rq.run_list(rq.RunFilters(account="acme"), sort=text)


@pytest.mark.parametrize(("limit", "page"), [(0, 1), (rq.MAX_PAGE_SIZE + 1, 1), (10, 0)])
def test_bad_paging_is_refused(limit, page):
    with pytest.raises(rq.QueryError):
        rq.run_list(rq.RunFilters(account="acme"), limit=limit, page=page)


def test_one_run_queries_are_scoped_to_the_account():
    for query in (rq.run_detail("acme", EVIL), rq.run_steps("acme", EVIL), rq.run_replays("acme", EVIL),
                  rq.run_links("acme", [EVIL])):
        assert "account_id = {account:String}" in query.sql
        assert EVIL not in query.sql
        assert query.params["account"] == "acme"
    with pytest.raises(rq.QueryError):
        rq.run_detail("", "run_1")


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("kind", rq.EXPORT_KINDS)
def test_export_queries_are_scoped_bound_and_stream_friendly(kind):
    query = rq.export(kind, _all_filters(), limit=5)
    assert EVIL not in query.sql
    assert _placeholders(query.sql) == set(query.params)
    assert query.sql.count("account_id = {account:String}") >= 1
    assert query.sql.endswith(rq.EXPORT_SETTINGS)
    assert "date_time_output_format = 'iso'" in query.sql and "output_format_csv_crlf_end_of_line = 1" in query.sql
    aliases = re.findall(r" AS (\w+)(?=,|$)", query.sql.split(" FROM steps AS s")[0]) if kind != "runs" \
        else list(rq.RUN_COLUMNS)
    assert tuple(aliases) == query.columns
    count = rq.export_count(kind, _all_filters())
    assert count.sql.startswith("SELECT count() FROM (") and EVIL not in count.sql


def test_unknown_export_kind_is_refused():
    with pytest.raises(rq.QueryError, match="cannot export 'events'"):
        rq.export("events", rq.RunFilters(account="acme"))


# --------------------------------------------------------------------------- normalisation


def _normalise(message: str) -> str:
    for pattern, replacement in rq.NORMALIZATION_RULES:
        message = re.sub(pattern, replacement, message, flags=re.ASCII)
    return message.strip()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Email provider SendGrid returned HTTP 503 Service Unavailable (request id 714a6c81-83c9)",
         "Email provider SendGrid returned HTTP <n> Service Unavailable (request id <id>)"),
        ("Email provider SendGrid returned HTTP 503 Service Unavailable (request id 71454694-91b9)",
         "Email provider SendGrid returned HTTP <n> Service Unavailable (request id <id>)"),
        ("Value of 'contact.email' is null at step 3 ('Send') in run run_0bdb605d0a0541d1",
         "Value of 'contact.email' is null at step <n> ('Send') in run <id>"),
        ("Webhook POST https://hooks.acme.com/v2/x?y=1 failed with HTTP 502 after 1234 ms",
         "Webhook POST <url> failed with HTTP <n> after <n> ms"),
        ("Invalid email address 'jane.smith4@@gmail.com' for contact c-1234",
         "Invalid email address '<email>' for contact <id>"),
        ("job 123e4567-e89b-12d3-a456-426614174000 lost  its\nlease", "job <uuid> lost its lease"),
        ("upstream error id 1c84ee81, took 1.5 s", "upstream error id <id>, took <n> s"),
    ],
)
def test_normalisation_rules(message, expected):
    assert _normalise(message) == expected


def test_normalisation_sql_carries_every_rule_in_order():
    sql = rq.normalize_sql("s.error_message")
    positions = [sql.index(rq._sql_string(pattern)) for pattern, _ in rq.NORMALIZATION_RULES]
    assert positions == sorted(positions)  # the first rule is the innermost call
    assert sql.startswith("trimBoth(") and "ifNull(s.error_message, '')" in sql


# --------------------------------------------------------------------------- the SQL library


LIBRARY = sqllib.library()


def test_the_library_has_the_analysts_queries():
    assert {"error_signatures", "failures_by_class", "failures_by_code", "top_failing_steps",
            "failure_rate_by_hour_of_week", "mttr_by_workflow", "retry_adjusted_success", "flaky_steps",
            "replay_outcomes", "replay_pairs", "run_steps"} <= set(LIBRARY)


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_file_is_documented_scoped_and_typed(name):
    query = LIBRARY[name]
    assert query.summary and query.columns, "header needs a summary and a Columns section"
    assert query.param("account").type == "String"
    for param in query.params:
        assert param.type in sqllib.SUPPORTED_TYPES, f"{param.name}: {param.type}"
        if param.default is not None:
            sqllib.convert(param, sqllib._unquote(param.default), NOW)  # defaults are valid values
    text = " ".join(query.sql.split())
    for view in ("runs", "steps"):
        for match in re.finditer(rf"FROM {view}\b(?: AS (\w+))?", text):
            tail = text[match.end():match.end() + 400]
            alias = f"{match.group(1)}." if match.group(1) else ""
            assert f"{alias}account_id = {{account:String}}" in tail, f"unscoped read of {view}: {tail[:120]}"
    if "replaceRegexpAll" in query.sql:
        expressions = [rq.normalize_sql(col) for col in ("s.error_message", "s.input")]
        assert any(expr in query.sql for expr in expressions), "normalisation differs from dashboards.runs"
    assert name in (SQL_DIR / "README.md").read_text()


def test_readme_documents_every_normalisation_rule():
    readme = (SQL_DIR / "README.md").read_text()
    for pattern, replacement in rq.NORMALIZATION_RULES[:-1]:
        assert f"`{pattern.replace('|', chr(92) + '|')}`" in readme
        assert replacement in readme


def test_bind_applies_defaults_converts_and_keeps_the_account_apart():
    query = sqllib.load("error_signatures")
    bound = sqllib.bind(query, "acme", {"since": "7d", "limit": "5", "workflow": EVIL}, NOW)
    assert bound.params["account"] == "acme" and bound.params["limit"] == 5
    assert bound.params["since"] == NOW - timedelta(days=7)
    assert bound.params["until"] == datetime(2100, 1, 1, tzinfo=UTC)
    assert bound.params["workflow"] == EVIL and EVIL not in bound.sql
    assert set(bound.params) == _placeholders(bound.sql)


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("nope", {}, "no SQL library query named 'nope'"),
        ("error_signatures", {"colour": "red"}, "unknown parameter 'colour'"),
        ("error_signatures", {"account": "globex"}, "give the account with --account"),
        ("error_signatures", {"limit": "ten"}, "'ten' is not a whole number"),
        ("error_signatures", {"limit": "-1"}, "out of range for UInt32"),
        ("error_signatures", {"since": "last tuesday"}, "invalid time 'last tuesday'"),
        ("run_steps", {}, "missing --param run_id"),
    ],
)
def test_bad_library_input_is_refused(name, given, message):
    with pytest.raises(sqllib.QueryError, match=re.escape(message)):
        sqllib.bind(sqllib.load(name), "acme", given, NOW)


@pytest.mark.parametrize("pairs", [["since"], ["=3"], ["a=1", "a=2"]])
def test_param_assignments_must_be_name_value(pairs):
    with pytest.raises(sqllib.QueryError):
        sqllib.parse_assignments(pairs)


def test_a_library_file_without_the_account_is_rejected():
    with pytest.raises(ValueError, match="account"):
        sqllib._parse("bad", "-- bad: no account.\n--\n-- Parameters:\n--   x   UInt32   x\n"
                             "-- Columns:\n--   n   n\nSELECT {x:UInt32} AS n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("now", NOW), ("24h", NOW - timedelta(hours=24)), ("7d", NOW - timedelta(days=7)),
     ("today", datetime(2026, 11, 20, tzinfo=UTC)), ("yesterday", datetime(2026, 11, 19, tzinfo=UTC)),
     ("2026-11-16", datetime(2026, 11, 16, tzinfo=UTC)),
     ("2026-11-16T10:00:00+02:00", datetime(2026, 11, 16, 8, tzinfo=UTC))],
)
def test_time_forms(text, expected):
    assert sqllib.parse_time(text, NOW) == expected


# --------------------------------------------------------------------------- replay comparison


def _step(step_id, index, attempt, status, code=None, ms=10):
    return {"step_id": step_id, "step_index": index, "step_name": step_id.upper(), "attempt": attempt,
            "status": status, "duration_ms": ms, "error_code": code, "error_message": code and f"{code}!"}


def test_compare_aligns_steps_and_takes_the_last_attempt():
    original = [_step("st1", 0, 1, "success"), _step("st2", 1, 1, "failed", "API_TIMEOUT"),
                _step("st2", 1, 2, "failed", "API_TIMEOUT", ms=30)]
    replay = [_step("st1", 0, 1, "success"), _step("st2", 1, 1, "success"), _step("st3", 2, 1, "success")]
    rows = rq.compare_steps(original, replay)
    assert [r["step_id"] for r in rows] == ["st1", "st2", "st3"]
    assert rows[1]["original_attempts"] == 2 and rows[1]["original_duration_ms"] == 30
    assert rows[1]["change"] == "fixed" and rows[2]["original_status"] == "not run"
    assert rq.verdict({"status": "failed", "error_code": "X"}, {"status": "success", "error_code": None}) == "fixed"
    assert rq.verdict({"status": "failed", "error_code": "X"}, {"status": "failed", "error_code": "X"}) \
        == "still failing (same error)"
    assert rq.verdict({"status": "failed", "error_code": "X"}, {"status": "running", "error_code": None}) \
        == "replay in progress"
    assert rq.verdict({"status": "success", "error_code": None}, {"status": "failed", "error_code": "Y"}) \
        == "regressed"


# --------------------------------------------------------------------------- CSV record counting


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_csv_records_are_counted_across_chunks_and_quoted_newlines(size):
    import csv
    import io

    from runlens.cli.export import _Records

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    rows = [["a,b", 'say "hi"', "line1\nline2\r\nline3", 1], ["", "\"\n\"", "x", 2], ["plain", "", "", 3]]
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    counter = _Records()
    for start in range(0, len(data), size):
        counter.feed(data[start:start + size])
    assert counter.rows == len(rows)
