"""Bad input to `runlens runs`, `export`, `sql` and `retention` is one line on stderr and a
non-zero exit, before anything runs: there is no stack here, so a command that got as far as
querying would fail with "no running stack" instead of the message expected."""

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
        (["runs", "list", "-a", "acme", "--status", "done"], 1, "--status: unknown status 'done'"),
        (["runs", "list", "-a", "acme", "--status", "failed,paused"], 1, "unknown status 'paused'"),
        (["runs", "list", "-a", "acme", "--type", "blog"], 1, "--type: unknown type 'blog'"),
        (["runs", "list", "-a", "acme", "--trigger", "cron"], 1, "unknown trigger 'cron'"),
        (["runs", "list", "-a", "acme", "--since", "last tuesday"], 1, "--since: invalid time 'last tuesday'"),
        (["runs", "list", "-a", "acme", "--until", "2026-13-45"], 1, "--until: invalid time '2026-13-45'"),
        (["runs", "list", "-a", "acme", "--since", "1h", "--until", "2h"], 1, "date range is empty"),
        (["runs", "list", "-a", "acme", "--sort", "colour"], 1, "--sort: cannot sort by 'colour'"),
        (["runs", "list", "-a", "acme", "--sort", "duration:up"], 1, "--sort: direction 'up'"),
        (["runs", "list", "-a", "acme", "--limit", "0"], 1, "--limit: 0"),
        (["runs", "list", "-a", "acme", "--page", "0"], 1, "--page: 0"),
        (["runs", "list", "-a", "acme", "--version", "latest"], 1, "--version: 'latest' is not a version number"),
        (["runs", "list", "-a", "acme", "--format", "xml"], 2, "'xml' is not one of"),
        (["runs", "show"], 2, "Missing argument 'run_id'"),
        (["runs", "compare", "run_1"], 2, "Missing argument 'REPLAY'"),
        (["export", "events", "-a", "acme"], 2, "'events' is not one of 'runs', 'steps', 'failures'"),
        (["export", "runs", "-a", "acme", "--error-class", "network"], 1, "unknown error-class 'network'"),
        (["export", "runs", "-a", "acme", "--out", "/no/such/dir/x.csv"], 1, "--out: no such directory"),
        (["export", "runs", "-a", "acme", "--limit", "0"], 1, "--limit: 0"),
        (["sql", "nope", "-a", "acme"], 1, "no SQL library query named 'nope'"),
        (["sql", "error_signatures"], 2, "Missing option '--account'"),
        (["sql", "error_signatures", "-a", "acme", "-p", "colour=red"], 1, "unknown parameter 'colour'"),
        (["sql", "error_signatures", "-a", "acme", "-p", "limit"], 1, "--param: 'limit' is not NAME=VALUE"),
        (["sql", "error_signatures", "-a", "acme", "-p", "limit=ten"], 1, "'ten' is not a whole number"),
        (["sql", "mttr_by_workflow", "-a", "acme", "-p", "since=soon"], 1, "invalid time 'soon'"),
        (["sql", "run_steps", "-a", "acme"], 1, "missing --param run_id"),
        (["sql", "error_signatures", "-a", "acme", "-p", "account=globex"], 1, "give the account with --account"),
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
        assert exc.code == 1
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
