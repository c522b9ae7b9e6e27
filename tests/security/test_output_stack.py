"""Hostile event text through the real pipeline and the real CLI: published with escape
sequences, bidi overrides, rich markup and spreadsheet formulas in its names, errors and inputs,
it prints inert in every table (`runs show`, `runs list`, `query`, `dlq list`, `publish`'s
rejected lines) and exports to CSV with the formulas neutralised (text only; `--raw-csv` writes
what was stored). `runlens up` with a server DSN does not print its password."""

from __future__ import annotations

import csv
import io
import re
import secrets
import signal
import subprocess
import sys
import time

import orjson
import pytest

from runlens.settings import Settings
from tests.helpers import cli_env, run_cli, wait_caught_up

pytestmark = [pytest.mark.security, pytest.mark.integration]

UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
NAME = "\x1b[31mRED\x1b[0m [bold]bold[/bold] \u202eevil\u202c"
STEP = "[red]step[/red]\x1b[2J\x07"
FORMULA = '=HYPERLINK("http://evil.example","click")'
DAY = "2026-01-05"


def _events(account: str) -> list[bytes]:
    run = {"schema_version": 1, "account_id": account, "run_id": "r-evil", "workflow_id": "wf-evil",
           "workflow_name": NAME, "workflow_version": 1, "workflow_type": "contact", "trigger": "api",
           "site_id": "s1", "site_name": "-2+3", "card_id": None, "card_name": None, "contact_id": "@SUM(1+1)",
           "replay_of": None, "replay_mode": None}
    step = {"step_id": "st1", "step_index": 0, "step_name": STEP, "step_type": "action", "attempt": 1}
    error = {"code": "+CMD", "message": FORMULA + "\x1b]0;owned\x07", "class": "external_service",
             "stack_trace": "line 1\n\x1b[2Kline 2 \u2066hidden\u2069", "suggested_fix": "\u202eyrter"}
    events = [
        {**run, "event_id": "ev1", "type": "run.queued", "ts": f"{DAY}T10:00:00.000Z"},
        {**run, "event_id": "ev2", "type": "run.started", "ts": f"{DAY}T10:00:00.250Z"},
        {**run, **step, "event_id": "ev3", "type": "step.started", "ts": f"{DAY}T10:00:00.300Z"},
        {**run, **step, "event_id": "ev4", "type": "step.finished", "ts": f"{DAY}T10:00:01.300Z", "status": "failed",
         "started_at": f"{DAY}T10:00:00.300Z", "input": {"q": "[bold]in[/bold]\x1b[5m"}, "error": error},
        {**run, "event_id": "ev5", "type": "run.finished", "ts": f"{DAY}T10:00:01.400Z", "status": "failed",
         "started_at": f"{DAY}T10:00:00.250Z",
         "error": {"code": "+CMD", "message": "=1+1", "class": "external_service"}},
    ]
    lines = [orjson.dumps(e) for e in events]
    lines.append(orjson.dumps({**events[0], "event_id": "ev6", "type": "\x1b[2J[bold]nope[/bold]\u202e"}))
    lines.append(b"\x1b[2J[bold]not json\x07")
    return lines


@pytest.fixture(scope="module")
def evil(embedded_stack, stack_settings, tmp_path_factory):
    """A fresh account's hostile run, published with `runlens publish` (its two bad lines
    dead-lettered); yields (account, the publish result, the file's dead-letter source)."""
    account = f"evil{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("evil") / "evil.ndjson"
    path.write_bytes(b"\n".join(_events(account)) + b"\n")
    published = run_cli(stack_settings, "publish", str(path))
    wait_caught_up(embedded_stack)
    return account, published, f"file:{path}"


def _inert(text: str) -> str:
    assert not UNSAFE.search(text), repr(UNSAFE.search(text).group())
    return text


def test_publish_reports_rejected_lines_inert(evil):
    _, published, _ = evil
    assert published.returncode == 0, published.stderr
    err = _inert(published.stderr.decode())
    rejected = [line for line in err.splitlines() if "rejected" in line]
    assert len(rejected) == 2 and "[bold]nope[/bold]" in rejected[0]   # markup shown, not applied


def test_runs_show_prints_event_text_inert(evil, stack_settings):
    account, _, _ = evil
    shown = run_cli(stack_settings, "runs", "show", "r-evil", "-a", account, COLUMNS="200")
    assert shown.returncode == 0, shown.stderr
    out = _inert(shown.stdout.decode())
    for literal in ("[bold]bold[/bold]", "[red]step[/red]", "[bold]in[/bold]", "=HYPERLINK", "RED", "evil",
                    "yrter", "line 2 hidden"):
        assert literal in out, literal


@pytest.mark.parametrize("argv", [
    ["runs", "list", "--since", f"{DAY}T00:00:00Z", "--until", f"{DAY}T23:00:00Z"],
    ["runs", "replays", "--pairs"],
])
def test_run_tables_print_event_text_inert(evil, stack_settings, argv):
    account, _, _ = evil
    result = run_cli(stack_settings, *argv, "-a", account, COLUMNS="300")
    assert result.returncode == 0, result.stderr
    _inert(result.stdout.decode() + result.stderr.decode())


def test_query_and_dlq_tables_print_event_text_inert(evil, stack_settings):
    account, _, source = evil
    query = run_cli(stack_settings, "query", f"SELECT workflow_name, error_message FROM runs "
                                              f"WHERE account_id = '{account}'", COLUMNS="300")
    assert query.returncode == 0, query.stderr
    assert "[bold]bold[/bold]" in _inert(query.stdout.decode())
    dlq = run_cli(stack_settings, "dlq", "list", "--source", source, COLUMNS="300")
    assert dlq.returncode == 0, dlq.stderr
    assert "not json" in _inert(dlq.stdout.decode())


def _rows(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout.decode(), newline="")))


def test_export_neutralises_formulas_in_text_cells_only(evil, stack_settings, tmp_path):
    account, _, _ = evil
    window = ("--since", f"{DAY}T00:00:00Z", "--until", f"{DAY}T23:00:00Z")
    [run] = _rows(run_cli(stack_settings, "export", "runs", "-a", account, *window))
    assert (run["contact_id"], run["site_name"], run["error_code"], run["error_message"]) == \
        ("'@SUM(1+1)", "'-2+3", "'+CMD", "'=1+1")
    assert run["duration_ms"] == "1150" and run["run_id"] == "r-evil"       # numbers and plain text as stored
    [raw] = _rows(run_cli(stack_settings, "export", "runs", "-a", account, *window, "--raw-csv"))
    assert (raw["contact_id"], raw["error_message"]) == ("@SUM(1+1)", "=1+1")
    out = tmp_path / "failures.csv"
    written = run_cli(stack_settings, "export", "failures", "-a", account, *window, "--out", str(out))
    assert written.returncode == 0, written.stderr
    [failure] = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert failure["error_message"].startswith("'=HYPERLINK(") and failure["error_code"] == "'+CMD"


def test_table_commands_write_guarded_csv_too(evil, stack_settings):
    account, _, _ = evil
    listed = _rows(run_cli(stack_settings, "runs", "list", "-a", account, "-f", "csv"))
    assert listed[0]["contact_id"] == "'@SUM(1+1)"
    numbers = _rows(run_cli(stack_settings, "query", "SELECT -5 AS n, '-5' AS t, '=1+1' AS f", "-f", "csv"))
    assert numbers == [{"n": "-5", "t": "'-5", "f": "'=1+1"}]
    raw = _rows(run_cli(stack_settings, "stats", "peaks", "--account", account, "--since", "36500d", "-f", "csv",
                        "--raw-csv"))
    assert raw and all(not v.startswith("'") for row in raw for v in row.values())


# --------------------------------------------------------------------------- runlens up


@pytest.fixture(scope="module")
def up_with_a_server_dsn(tmp_path_factory):
    """`runlens up` whose warehouse is a ClickHouse server (here unreachable) given with a
    password; yields (its first output line, the stack file's text), then stops it."""
    data = tmp_path_factory.mktemp("up-dsn")
    password = f"Pw{secrets.token_hex(8)}"
    settings = Settings(data_dir=data, warehouse_dsn=f"http://runlens:{password}@127.0.0.1:9")
    proc = subprocess.Popen([sys.executable, "-m", "runlens", "up"], env=cli_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = proc.stdout.readline().decode()
        stack_file = data / "stack.json"
        deadline = time.monotonic() + 30
        while not stack_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield password, first, stack_file.read_text() if stack_file.exists() else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_up_prints_no_password(up_with_a_server_dsn):
    password, first, _ = up_with_a_server_dsn
    assert first.startswith("runlens is up.") and "http://runlens:***@127.0.0.1:9" in first, first
    assert password not in first


def test_the_stack_file_holds_no_password(up_with_a_server_dsn):
    password, _, stack_file = up_with_a_server_dsn
    assert stack_file and password not in stack_file

