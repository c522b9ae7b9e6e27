"""`runlens attention` on a workload with a known failing workflow, on a stack of its own: four
days of normal traffic for three accounts, then a day in which acme's wf-welcome fails 70 % of
its runs and globex's wf-prize-draw stops running after 6 hours. The failing workflow is ranked
first with a failure-rate reason whose numbers are the runs view's; no other workflow carries
that reason; its drill-ins run; the overview panel ranks the same way; the stopped workflow is
silent; another tenant's `--account` never shows acme's workflows."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from dashboards import panels as P
from dashboards.macros import TimeRange, expand
from dashboards.report import query_interval, variable_specs, variable_values
from producers.workload import Spike, WorkloadConfig, generate
from tests.helpers import own_stack, run_cli, wait_caught_up

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 23, tzinfo=UTC)      # after the shared workload's event times
WINDOW = START + timedelta(days=4)               # the judged day; the 4 days before are its baseline
END = WINDOW + timedelta(days=1)
FAILING = "wf-welcome"                           # acme's; initech has a healthy one of the same id
SILENT = ("globex", "wf-prize-draw")             # runs steadily, then none from the window's 6th hour
SILENT_FROM = WINDOW + timedelta(hours=6)
SINCE, UNTIL = "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"


@pytest.fixture(scope="module")
def attention_stack(tmp_path_factory, run_prefix):
    """A stack of its own: the history this module judges is the whole warehouse."""
    with own_stack(tmp_path_factory, run_prefix, "at") as stack_and_reader:
        yield stack_and_reader


@pytest.fixture(scope="module")
def settings(attention_stack):
    return attention_stack[0].settings


@pytest.fixture(scope="module")
def reader(attention_stack):
    return attention_stack[1]


@pytest.fixture(scope="module")
def workload(attention_stack, settings, tmp_path_factory):
    config = WorkloadConfig(seed=21, accounts=3, backfill_runs_per_hour=60,
                            spikes=(Spike(workflow=f"acme/{FAILING}", at=WINDOW + timedelta(hours=1), rate=0.7,
                                          minutes=22 * 60),))
    events = list(generate(config, START, END))
    # the silent workflow: no run of it begins from SILENT_FROM on (its runs never arrive)
    cutoff = SILENT_FROM.strftime("%Y-%m-%dT%H:%M:%S")
    first: dict[str, str] = {}
    for e in events:
        if (e["account_id"], e["workflow_id"]) == SILENT:
            first[e["run_id"]] = min(first.get(e["run_id"], e["ts"]), e["ts"])
    dropped = {run for run, ts in first.items() if ts >= cutoff}
    assert dropped
    events = [e for e in events if not ((e["account_id"], e["workflow_id"]) == SILENT and e["run_id"] in dropped)]
    path = tmp_path_factory.mktemp("attention") / "failing.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    result = run_cli(settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    wait_caught_up(attention_stack[0])


def attention(settings, account: str, *extra: str) -> dict:
    result = run_cli(settings, "attention", "--account", account, "--since", SINCE, "--until", UNTIL,
                     "--format", "json", *extra)
    assert result.returncode == 0, result.stderr.decode()
    return orjson.loads(result.stdout)


def reasons(workflow: dict) -> dict[str, dict]:
    return {r["reason"]: r for r in workflow["reasons"]}


def test_the_failing_workflow_is_ranked_first_for_its_failure_rate(workload, settings, reader):
    doc = attention(settings, "acme")
    top = doc["workflows"][0]
    assert top["workflow_id"] == FAILING and top["rank"] == 1
    failure = reasons(top)["failure_rate"]
    # its numbers are the runs view's: runs finished in the window, and those that failed
    (runs, failed), = reader.query(
        "SELECT countIf(status IN ('success', 'failed', 'stopped')), countIf(status = 'failed') FROM runs "
        "WHERE account_id = 'acme' AND workflow_id = {w:String} AND finished_at >= {a:DateTime64(3, 'UTC')} "
        "AND finished_at < {b:DateTime64(3, 'UTC')}", parameters={"w": FAILING, "a": WINDOW, "b": END}).result_rows
    assert (failure["numbers"]["runs"], failure["numbers"]["failed"]) == (runs, failed)
    assert failure["numbers"]["failure_pct"] >= 50 > 10 >= failure["numbers"]["baseline_pct"]
    assert top["score"] >= failure["points"] > 40
    # the healthy workflows are not listed for their failure rate
    others = [w for w in doc["workflows"][1:] if "failure_rate" in reasons(w)]
    assert others == [], others
    assert all(w["score"] <= top["score"] for w in doc["workflows"])


def test_each_drill_in_runs_and_points_at_a_dashboard(workload, settings):
    top = attention(settings, "acme")["workflows"][0]
    uids = {d.uid for d in P.DASHBOARDS}
    for reason in top["reasons"]:
        command, link = reason["drill_in"]
        argv = shlex.split(command)
        assert argv[0] == "runlens"
        result = run_cli(settings, *argv[1:])
        assert result.returncode == 0, (command, result.stderr.decode())
        assert link.split("?")[0].removeprefix("/d/") in uids, link
    failed_runs = run_cli(settings, *shlex.split(reasons(top)["failure_rate"]["drill_in"][0])[1:], "-f", "csv")
    assert failed_runs.stdout.decode().count("\n") > 10   # the failed runs, one per line


def test_the_overview_panel_ranks_like_the_command(workload, settings, reader):
    panel = P.OVERVIEW.panel(13)
    since, until = WINDOW, END
    sql = expand(panel.sql, TimeRange(since, until, query_interval(panel, since, until)),
                 variable_values({"account": "acme"}), variable_specs())
    rows = list(reader.query(sql).named_results())
    assert {r["account"] for r in rows} == {"acme"}
    panel_scores = {r["workflow_id"]: r["score"] for r in rows}
    assert next(iter(panel_scores)) == FAILING
    # the panel reads no open runs: its score is the command's without stuck runs
    command = {w["workflow_id"]: round(sum(r["points"] for r in w["reasons"] if r["reason"] != "stuck_runs"), 1)
               for w in attention(settings, "acme")["workflows"]}
    assert panel_scores == pytest.approx({k: v for k, v in command.items() if v > 0}, abs=0.15)


def test_another_tenant_never_sees_acme_s_workflows(workload, settings, reader):
    globex = {r[0] for r in reader.query("SELECT DISTINCT workflow_id FROM runs WHERE account_id = 'globex'")
              .result_rows}
    acme_only = {r[0] for r in reader.query("SELECT DISTINCT workflow_id FROM runs WHERE account_id = 'acme'")
                 .result_rows} - globex
    assert FAILING in acme_only
    listed = {w["workflow_id"] for w in attention(settings, "globex")["workflows"]}
    assert listed <= globex and not listed & acme_only
    # initech has a healthy wf-welcome of its own: never acme's failure rate
    initech = {w["workflow_id"]: w for w in attention(settings, "initech")["workflows"]}
    assert "failure_rate" not in reasons(initech.get(FAILING, {"reasons": []}))
    # an account that is not there, or one spelled to break out of the query, has nothing
    for account in ("ACME", "acme ", "acme' OR '1'='1", "acme\\", "%"):
        assert attention(settings, account)["workflows"] == [], account


def test_a_workflow_that_stopped_running_is_silent(workload, settings):
    listed = {w["workflow_id"]: w for w in attention(settings, SILENT[0])["workflows"]}
    silent = reasons(listed[SILENT[1]])["silent"]
    # its last run finished in the window's 6th hour (or shortly after, for a run begun before)
    assert 17 <= silent["numbers"]["silence_h"] <= 18.1, silent
    assert silent["numbers"]["silence_h"] >= 2 * silent["numbers"]["longest_gap_h"]
    assert all("silent" not in reasons(w) for k, w in listed.items() if k != SILENT[1])


def test_table_and_csv_name_the_workflow_its_reasons_and_drill_ins(workload, settings):
    csv = run_cli(settings, "attention", "-a", "acme", "--since", SINCE, "--until", UNTIL, "-f", "csv", "--limit", "1")
    assert csv.returncode == 0, csv.stderr.decode()
    lines = csv.stdout.decode().splitlines()
    assert lines[0].split(",")[:6] == ["rank", "account_id", "workflow_id", "workflow_name", "score", "reason"]
    assert all(line.startswith(f"1,acme,{FAILING},") for line in lines[1:]) and len(lines) >= 2
    assert any(",failure_rate," in line and "runlens runs list" in line for line in lines[1:])
    empty = run_cli(settings, "attention", "-a", "globex", "--since", "2026-11-10", "--until", "2026-11-11")
    assert empty.returncode == 0 and "no workflow of this account needs attention" in empty.stdout.decode()
    table = run_cli(settings, "attention", "-a", "acme", "--since", SINCE, "--until", UNTIL, "--limit", "1",
                    COLUMNS="300")
    assert table.returncode == 0 and FAILING in table.stdout.decode() and "failure_rate" in table.stdout.decode()
