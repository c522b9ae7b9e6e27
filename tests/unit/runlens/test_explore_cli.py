"""Bad input to `runlens runs`, `export`, `sql` and `retention` is one line on stderr and exit
code 2, before anything runs: there is no stack here, so a command that got as far as querying
would fail with "no running stack" (code 1) instead of the message expected."""

from __future__ import annotations

import pytest


@pytest.fixture
def run(run_cli, tmp_path):
    """``run_cli`` with no stack (an empty data directory) and no account from the environment."""
    return lambda *argv: run_cli(*argv, env={"RUNLENS_DATA_DIR": str(tmp_path), "RUNLENS_ACCOUNT": None})


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["runs", "list"], 2, "Missing option '--account'"),
        (["runs", "list", "-a", "acme", "--status", "done"], 2, "--status: unknown status 'done'"),
        (["runs", "list", "-a", "acme", "--status", "failed,paused"], 2, "unknown status 'paused'"),
        (["runs", "list", "-a", "acme", "--type", "blog"], 2, "--type: unknown type 'blog'"),
        (["runs", "list", "-a", "acme", "--trigger", "cron"], 2, "unknown trigger 'cron'"),
        (["runs", "list", "-a", "acme", "--since", "last tuesday"], 2, "--since: invalid time 'last tuesday'"),
        (["runs", "list", "-a", "acme", "--until", "2026-13-45"], 2, "--until: invalid time '2026-13-45'"),
        (["runs", "list", "-a", "acme", "--since", "1h", "--until", "2h"], 2, "date range is empty"),
        (["runs", "list", "-a", "acme", "--sort", "colour"], 2, "--sort: cannot sort by 'colour'"),
        (["runs", "list", "-a", "acme", "--sort", "duration:up"], 2, "--sort: direction 'up'"),
        (["runs", "list", "-a", "acme", "--limit", "0"], 2, "--limit: 0"),
        (["runs", "list", "-a", "acme", "--page", "0"], 2, "--page: 0"),
        (["runs", "list", "-a", "acme", "--version", "latest"], 2, "--version: 'latest' is not a version number"),
        (["runs", "list", "-a", "acme", "--format", "xml"], 2, "'xml' is not one of"),
        (["runs", "show"], 2, "Missing argument 'run_id'"),
        (["runs", "compare", "run_1"], 2, "Missing argument 'REPLAY'"),
        (["export", "events", "-a", "acme"], 2, "'events' is not one of 'runs', 'steps', 'failures'"),
        (["export", "runs", "-a", "acme", "--error-class", "network"], 2, "unknown error-class 'network'"),
        (["export", "runs", "-a", "acme", "--out", "/no/such/dir/x.csv"], 1, "--out: no such directory"),
        (["export", "runs", "-a", "acme", "--limit", "0"], 2, "--limit: 0"),
        (["sql", "nope", "-a", "acme"], 2, "no SQL library query named 'nope'"),
        (["sql", "error_signatures"], 2, "Missing option '--account'"),
        (["sql", "error_signatures", "-a", "acme", "-p", "colour=red"], 2, "unknown parameter 'colour'"),
        (["sql", "error_signatures", "-a", "acme", "-p", "limit"], 2, "--param: 'limit' is not NAME=VALUE"),
        (["sql", "error_signatures", "-a", "acme", "-p", "limit=ten"], 2, "'ten' is not a whole number"),
        (["sql", "mttr_by_workflow", "-a", "acme", "-p", "since=soon"], 2, "invalid time 'soon'"),
        (["sql", "run_steps", "-a", "acme"], 2, "missing --param run_id"),
        (["sql", "error_signatures", "-a", "acme", "-p", "account=globex"], 2, "give the account with --account"),
        (["runs", "list", "-a", "acme"], 1, "no running stack"),
    ],
)
def test_bad_input_is_one_line_and_nothing_runs(run, argv, code, message):
    exit_code, out, err = run(*argv)
    assert exit_code == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in err and out == ""


def test_account_comes_from_the_environment(run_cli, tmp_path):
    result = run_cli("runs", "list", "--status", "nope",
                     env={"RUNLENS_DATA_DIR": str(tmp_path), "RUNLENS_ACCOUNT": "acme"})
    assert result.code == 2
    assert "unknown status 'nope'" in result.stderr


def test_sql_without_a_name_lists_the_library(run):
    exit_code, out, err = run("sql", "-f", "csv")
    assert exit_code == 0, err
    assert "error_signatures," in out and "mttr_by_workflow," in out and "since=1970-01-01" in out


def test_sql_print_shows_the_statement_and_bound_values_without_running(run):
    exit_code, out, err = run("sql", "mttr_by_workflow", "-a", "acme", "-p", "workflow=wf-welcome", "--print")
    assert exit_code == 0, err
    assert "{account:String}" in out and "-- account = 'acme'" in out and "-- workflow = 'wf-welcome'" in out
