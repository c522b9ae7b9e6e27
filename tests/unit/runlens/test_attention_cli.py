"""Bad input to `runlens attention` is one line on stderr and exit code 2, before any query runs:
there is no stack here, so a command that got as far as querying fails with "no running stack"
(code 1) instead."""

from __future__ import annotations

import pytest


@pytest.fixture
def run(run_cli, tmp_path):
    """``run_cli`` with no stack (an empty data directory) and no account from the environment."""
    return lambda *argv: run_cli(*argv, env={"RUNLENS_DATA_DIR": str(tmp_path), "RUNLENS_ACCOUNT": None})


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["attention"], 2, "Missing option '--account'"),
        (["attention", "-a", "acme", "--limit", "0"], 2, "--limit: 0 (use 1..1000)"),
        (["attention", "-a", "acme", "--limit", "1001"], 2, "--limit: 1001"),
        (["attention", "-a", "acme", "--since", "last week"], 2, "--since: invalid time 'last week'"),
        (["attention", "-a", "acme", "--until", "2026-13-45"], 2, "--until: invalid time '2026-13-45'"),
        (["attention", "-a", "acme", "--since", "1h", "--until", "2h"], 2, "the window is empty"),
        (["attention", "-a", "   "], 2, "--account"),
        (["attention", "-a", "acme", "--format", "xml"], 2, "'xml' is not one of"),
        (["attention", "-a", "acme"], 1, "no running stack"),
    ],
)
def test_bad_input_is_one_line_and_nothing_runs(run, argv, code, message):
    exit_code, out, err = run(*argv)
    assert exit_code == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in err and out == ""


def test_account_comes_from_the_environment(run_cli, tmp_path):
    result = run_cli("attention", "--limit", "0", env={"RUNLENS_DATA_DIR": str(tmp_path), "RUNLENS_ACCOUNT": "acme"})
    assert result.code == 2 and "--limit: 0" in result.stderr
