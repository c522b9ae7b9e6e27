"""Bad input to `runlens runs`, `export`, `sql` and `retention` is one line on stderr and exit
code 2, before anything runs: there is no stack here, so a command that got as far as querying
would fail with "no running stack" (code 1) instead of the message expected."""

from __future__ import annotations

import pytest

from runlens.cli import main


def _run(capsys, monkeypatch, tmp_path, *argv):
    monkeypatch.setenv("RUNLENS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RUNLENS_ACCOUNT", raising=False)
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


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
def test_bad_input_is_one_line_and_nothing_runs(capsys, monkeypatch, tmp_path, argv, code, message):
    exit_code, out, err = _run(capsys, monkeypatch, tmp_path, *argv)
    assert exit_code == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in err and out == ""


def test_account_comes_from_the_environment(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RUNLENS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RUNLENS_ACCOUNT", "acme")
    try:
        main(["runs", "list", "--status", "nope"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "unknown status 'nope'" in capsys.readouterr().err


def test_sql_without_a_name_lists_the_library(capsys, monkeypatch, tmp_path):
    exit_code, out, err = _run(capsys, monkeypatch, tmp_path, "sql", "-f", "csv")
    assert exit_code == 0, err
    assert "error_signatures," in out and "mttr_by_workflow," in out and "since=1970-01-01" in out


def test_sql_print_shows_the_statement_and_bound_values_without_running(capsys, monkeypatch, tmp_path):
    exit_code, out, err = _run(capsys, monkeypatch, tmp_path, "sql", "mttr_by_workflow", "-a", "acme",
                               "-p", "workflow=wf-welcome", "--print")
    assert exit_code == 0, err
    assert "{account:String}" in out and "-- account = 'acme'" in out and "-- workflow = 'wf-welcome'" in out
