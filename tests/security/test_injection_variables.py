"""SQL injection through the dashboards' variables and the report, in its real form.

Every panel and variable query is expanded exactly as Grafana and the ClickHouse plugin expand
it (``dashboards.macros``: ``$__conditionalAll``, Grafana's formats, the backend macros) with a
hostile value in one variable (the others *All*) and run against the warehouse of the session's
embedded stack. No hostile value exists in the data, so the only correct answer is the panel's
answer for a value that matches nothing; anything else (rows of any account, a different count)
is a value that escaped its literal. A control runs the same check on the filter form the
dashboards used before (``IN (${var:singlequote})``) and must catch the break-out, so the check
can fail. The report (``runlens report --account ...``) sends the same SQL with the values bound
as server-side parameters; it is checked the same way.
"""

from __future__ import annotations

import json
import math
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from dashboards import panels as P
from dashboards import report as R
from dashboards.macros import ALL, MacroError, TimeRange, expand, used_variables
from tests.helpers import wait_caught_up

pytestmark = [pytest.mark.security, pytest.mark.integration]

# This module's own data: three accounts, a failure spike and replays, in a window of event time
# no other test uses (so it adds nothing to what other tests count).
W0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
W1 = W0 + timedelta(hours=3)
INGESTION_PANELS = {("runlens-pipeline", 1), ("runlens-pipeline", 3), ("runlens-pipeline", 5)}
# Panels this data cannot fill, so no break-out could show in them: live-event latency (the data
# is all backfill) and the detectors' alerts (raised on live traffic). Checked all the same.
BLIND = {("runlens-pipeline", 4), ("runlens-pipeline", 6), ("runlens-pipeline", 7)}

HOSTILE = (
    "x\\') OR 1=1 --",                     # the classic: \ escapes the quote singlequote added
    "'",
    "\\",
    "\\\\'",
    "' OR '1'='1",
    "x' OR account_id != '",
    "\u2019) OR 1=1 --",                    # right single quotation mark
    "\u02bc OR 1=1 --",                     # modifier letter apostrophe
    "\uff07) OR 1=1 --",                    # fullwidth apostrophe
    "x')\nOR 1=1\n--",                      # newlines end a -- comment
    "x\\')\r\nOR 1=1 --",
    "%27) OR 1=1 --",                       # already percent-encoded
    "%5C%27) OR 1=1 --",
    "$__timeFilter(bucket) OR 1=1",         # macro text in a value
    "${account}",
    "$__conditionalAll(1=1, $account)",
    "x\\') OR 1=1, ('y",                    # a comma
    "{x,y\\') OR 1=1 --}",                  # braces, as a multi-value selection is encoded
    "\x00') OR 1=1 --",
    "\U0001f600') OR 1=1 --",
)
NOTHING = f"no-such-value-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def window_data(embedded_stack, stack_settings, reader):
    from producers.kafka import CheckedProducer
    from producers.publish import publish_lines
    from producers.workload import Spike, WorkloadConfig, generate

    spikes = tuple(Spike(workflow=workflow, at=W0 + timedelta(minutes=30), rate=0.6, minutes=90)
                   for workflow in ("acme/wf-welcome", "initech/wf-lead-sync-hubspot", "globex/wf-prize-draw"))
    config = WorkloadConfig(seed=29, accounts=3, backfill_runs_per_hour=300, spikes=spikes, replay_probability=1.0)
    lines = [json.dumps(event).encode() for event in generate(config, W0, W1)]
    producer = CheckedProducer(embedded_stack.brokers)
    try:
        report = publish_lines(lines, producer, events_topic=stack_settings.events_topic,
                               dead_letter_topic=stack_settings.dead_letter_topic, source="test:injection")
        producer.flush()
    finally:
        producer.close()
    assert report.published == len(lines) and not report.rejected
    wait_caught_up(embedded_stack)
    accounts = {r[0] for r in reader.query(
        "SELECT DISTINCT account_id FROM run_stats_state WHERE bucket >= {a:DateTime} AND bucket < {b:DateTime}",
        parameters={"a": W0, "b": W1}).result_rows}
    assert len(accounts) >= 3, accounts
    start, end = reader.query("SELECT min(ingested_at), max(ingested_at) FROM events WHERE ts >= {a:DateTime64(3)} "
                              "AND ts < {b:DateTime64(3)}", parameters={"a": W0, "b": W1}).result_rows[0]
    return start.replace(tzinfo=UTC) - timedelta(minutes=1), end.replace(tzinfo=UTC) + timedelta(minutes=1)


# --------------------------------------------------------------------------- the check


def _queries() -> list[tuple[str, P.Panel]]:
    """Every panel, and every variable query as a table panel (they take values too)."""
    out = [(f"{d.uid}-{p.id}", p) for d, p in P.all_panels()]
    out += [(f"variable-{v.name}", P.Panel(0, f"variable {v.name}", "table", v.sql, (0, 0, 24, 4)))
            for v in P.VARIABLES if v.sql]
    return out


QUERIES = _queries()


def _cell(value):
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, (list, tuple)):
        return tuple(_cell(v) for v in value)
    return value


def _rows(result) -> list[tuple]:
    rows = [tuple(_cell(v) for v in row) for row in result.result_rows]
    return sorted(rows, key=repr)


def _window(key: str, ingestion) -> tuple[datetime, datetime]:
    uid, _, panel_id = key.rpartition("-")
    return ingestion if (uid, int(panel_id) if panel_id.isdigit() else 0) in INGESTION_PANELS else (W0, W1)


def _values(variable: str | None = None, value: list[str] | None = None) -> dict:
    values = R.variable_values(None)             # every variable All
    if variable is not None:
        values[variable] = value
    return values


def _run(reader, sql: str, start: datetime, end: datetime, panel: P.Panel, values: dict):
    """The panel's rows for these values as Grafana would query them; MacroError where Grafana
    itself would refuse to build the query (a value JavaScript cannot percent-encode)."""
    time = TimeRange(start, end, R.query_interval(panel, start, end))
    expanded = expand(sql, time, values, R.variable_specs())
    return _rows(reader.query(expanded))


def break_outs(reader, key: str, panel: P.Panel, sql: str, ingestion, hostile=HOSTILE) -> tuple[list[str], bool]:
    """(hostile values that changed the answer of ``sql``, whether the panel has rows to leak).
    One hostile value in one variable at a time, the other variables All."""
    start, end = _window(key, ingestion)
    everything = _run(reader, sql, start, end, panel, _values())
    found, leakable = [], False
    for variable in sorted(used_variables(sql)):
        nothing = _run(reader, sql, start, end, panel, _values(variable, [NOTHING]))
        leakable = leakable or everything != nothing
        for value in hostile:
            try:
                got = _run(reader, sql, start, end, panel, _values(variable, [value]))
            except MacroError:
                continue        # refused before anything ran (Grafana: URIError)
            except Exception as exc:  # noqa: BLE001 - a query the value broke is a break-out too
                found.append(f"${variable}={value!r}: query failed: {str(exc).splitlines()[0][:200]}")
                continue
            if got != nothing:
                found.append(f"${variable}={value!r}: {len(got)} rows instead of {len(nothing)}: {got[:3]}")
    return found, leakable


# --------------------------------------------------------------------------- Grafana


@pytest.mark.parametrize("key, panel", QUERIES, ids=[k for k, _ in QUERIES])
def test_hostile_variable_values_never_leave_their_literal(reader, window_data, key, panel):
    if not used_variables(panel.sql):
        pytest.skip("the query takes no variable")
    found, leakable = break_outs(reader, key, panel, panel.sql, window_data)
    assert not found, f"{key}: a variable value changed the query:\n" + "\n".join(found)
    uid, _, panel_id = key.rpartition("-")
    if (uid, int(panel_id) if panel_id.isdigit() else 0) not in BLIND:
        assert leakable, f"{key}: the data gives this query nothing to leak, so the check proves nothing here"


def test_lone_surrogate_is_refused_before_any_query():
    panel = P.OVERVIEW.panel(1)
    with pytest.raises(MacroError, match="URIError"):
        expand(panel.sql, TimeRange(W0, W1, 60), _values("account", ["\ud800') OR 1=1 --"]), R.variable_specs())


def test_control_the_singlequote_filter_breaks_out(reader, window_data):
    """The filter as it was (``account_id IN (${account:singlequote})``): the same check finds
    the break-out, so the tests above can fail."""
    key, panel = "runlens-overview-1", P.OVERVIEW.panel(1)
    old = panel.sql.replace(P.values_of("account"), "(${account:singlequote})")
    assert old != panel.sql
    found, leakable = break_outs(reader, key, panel, old, window_data, hostile=("x\\') OR 1=1 --",))
    assert leakable and found, "the singlequote filter was not caught breaking out"
    assert "account" in found[0]
    # and the values the old filter let through, through the new one, match only themselves
    found, _ = break_outs(reader, key, panel, panel.sql, window_data, hostile=("x\\') OR 1=1 --",))
    assert not found


def test_a_comma_inside_a_value_reads_as_two_selected_values(reader, window_data):
    """Grafana encodes several values as '{a,b}', so one value 'acme,globex' in braces cannot be
    told from the selection of acme and globex: it matches both, exactly what selecting them
    would show, and nothing that is not a literal value. (No new access: the all-accounts
    dashboards offer every account; a tenant's datasource is held to its rows by ClickHouse.)"""
    panel = P.OVERVIEW.panel(1)
    run = lambda value: _run(reader, panel.sql, W0, W1, panel, _values("account", value))  # noqa: E731
    assert run(["acme,globex"]) == run(["acme", "globex"]) != run([NOTHING])
    assert run(["acme,globex"]) != run([ALL])


# --------------------------------------------------------------------------- the report


@pytest.mark.parametrize("value", HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_report_binds_hostile_values(reader, window_data, value):
    """`runlens report --account VALUE`: every panel as for an account that does not exist, and
    the same statement text whatever the value (it is a server-side parameter)."""
    def collect(variables):
        return {(i.dashboard.uid, i.panel.id): i.result for i in R.collect(reader, W0, W1, variables)}

    nothing = collect({"account": [NOTHING], "workflow": [NOTHING]})
    hostile = collect({"account": [value], "workflow": [value]})
    for key, result in hostile.items():
        assert result.error is None, f"{key}: {result.error}"
        assert _rows_of(result) == _rows_of(nothing[key]), f"{key}: {value!r} changed the answer"
        assert result.sql == nothing[key].sql, f"{key}: the value changed the statement's text"
        if "{var_account:String}" in result.sql:
            assert unquote(result.params["var_account"]) == "{" + value + "}"


def _rows_of(result: R.Result) -> list[tuple]:
    return sorted((tuple(_cell(v) for v in row) for row in result.rows), key=repr)
