"""The few places runlens writes a value into SQL text itself, because ClickHouse takes no query
parameters there (TTL expressions in ``ALTER TABLE``, access-management DDL, constants of the
message normalisation): each quoting function, fed hostile text, must give a literal that
ClickHouse (chDB, in process) reads back as exactly that text and nothing more."""

from __future__ import annotations

import pytest

from dashboards.runs import _sql_string
from sinks import retention, tenancy

pytestmark = [pytest.mark.security]

HOSTILE = ("x\\') OR 1=1 --", "'", "\\", "\\\\'", "' OR '1'='1", "a'b\\'c\\\\", "x\n') OR 1=1 --", "\x00'",
           "\u2019", "%27", "$$ OR 1=1 $$", "{x:String}", "\\x27", "\\N", "a\tb")
QUOTERS = {"retention": retention._literal, "tenancy": tenancy._literal, "runs": _sql_string}


@pytest.fixture(scope="module")
def chdb_session():
    from chdb import session

    s = session.Session()
    yield s
    s.close()


def _misread(session, quote) -> list[str]:
    """The hostile texts whose literal ClickHouse does not read back as exactly that text."""
    wrong = []
    for text in HOSTILE:
        try:
            got = session.query(f"SELECT hex({quote(text)}) AS h, 1 AS one", "TabSeparatedRaw").bytes().decode()
        except Exception as exc:  # noqa: BLE001 - a literal that breaks the statement is wrong too
            got = str(exc).splitlines()[0]
        if got.rstrip("\n") != f"{text.encode().hex().upper()}\t1":
            wrong.append(f"{text!r} -> {got[:120]!r}")
    return wrong


@pytest.mark.parametrize("quoter", sorted(QUOTERS))
def test_quoted_text_reads_back_as_itself(chdb_session, quoter):
    assert _misread(chdb_session, QUOTERS[quoter]) == []


def test_control_doubling_quotes_is_not_enough(chdb_session):
    """SQL-standard quoting (Grafana's :sqlstring) ignores ClickHouse's backslash escapes."""
    assert _misread(chdb_session, lambda text: "'" + text.replace("'", "''") + "'")


def test_a_retention_ttl_for_hostile_accounts_maps_each_literally(chdb_session):
    """The TTL's account mapping, evaluated by ClickHouse: each hostile account id gets its own
    days and an unknown account the default."""
    days = {text: n + 1 for n, text in enumerate(HOSTILE)}
    clause = retention.ttl_clause("toDateTime(0)", days, 0)
    mapping = clause.split("toIntervalDay(", 1)[1].split(") WHERE", 1)[0]
    for text, expected in [*days.items(), ("no-such-account", 0)]:
        sql = f"SELECT {mapping} FROM (SELECT {tenancy._literal(text)} AS account_id)"
        got = chdb_session.query(sql, "TabSeparatedRaw").bytes().decode().strip()
        assert got == str(expected), f"{text!r}: {got}"
