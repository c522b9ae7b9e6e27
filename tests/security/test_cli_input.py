"""Hostile arguments to every command of the real CLI: huge, negative and non-finite numbers,
non-ASCII digits, empty, blank and very long strings, NUL and escape bytes, SQL injection text,
far dates. Each ends in exactly one line on stderr starting with ``runlens: error:``, exit code 2
when the argument itself is wrong and 1 when only running finds the problem (here: the
warehouse does not answer), no traceback, and nothing on stdout.

The battery is generated from the command tree itself, so a new command or option is attacked
as soon as it exists; the kinds below say what each free-text option accepts, so the exit code
is checked exactly for every command runlens' CLI owns (others': one line, code 1 or 2).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import pytest
import typer

from runlens.cli import app
from runlens.settings import Settings
from tests.helpers import run_cli

pytestmark = pytest.mark.security

SECRET = "S3cr3t-hunter2"
DSN = f"http://runlens:{SECRET}@127.0.0.1:9"     # a closed port: every query fails at once
SQLI = "acme' OR '1'='1' --"
HUGE = "9" * 40
ARABIC, FULLWIDTH = "\u0661\u0662", "\uff15"      # ١٢ and ５: digits, not ASCII ones
LONG_VALUE = "v" * 600                           # over the 512-character value limit
LONG_ARGUMENT = "w" * 70_000                     # over the 65,536-character argument limit

# Refused whatever the option: checked before any option reads them.
EVERY = [("", 2), ("\x00", 2), ("\x1b[2J", 2), ("\x07bell", 2), (LONG_ARGUMENT, 2)]

KINDS: dict[str, list[tuple[str, int | None]]] = {
    "int": [("-1", 2), (HUGE, 2), ("nan", 2), ("inf", 2), (ARABIC, 2), (FULLWIDTH, 2), ("1e3", 2), ("2.5", 2),
            (SQLI, 2)],
    "float": [("-1", 2), (HUGE, 2), ("nan", 2), ("inf", 2), ("-inf", 2), (ARABIC, 2), (FULLWIDTH, 2), (SQLI, 2)],
    "duration": [("1000000d", 2), (HUGE + "w", 2), (ARABIC + "h", 2), (FULLWIDTH + "m", 2), ("nan", 2),
                 ("inf", 2), ("-5m", 2), ("1e3s", 2), ("99999-01-01", 2), (SQLI, 2), (LONG_VALUE, 2)],
    "time": [("1000000d", 2), (HUGE + "s", 2), (ARABIC + "h", 2), ("99999-01-01", 2), ("0001-01-01", 2),
             ("9999-12-31T23:59:59Z", 2), ("nan", 2), ("-5m", 2), ("2026-13-45", 2), (SQLI, 2), (LONG_VALUE, 2)],
    "text": [(SQLI, 1), ("%", 1), ("\u202eacme", 1), ("   ", 2), (LONG_VALUE, 2)],
    "source": [(SQLI, 1), ("file:" + "d/" * 300, 1), ("   ", 2), ("s" * 5000, 2)],
    "choice": [(SQLI, 2), (ARABIC, 2), ("   ", 2), (LONG_VALUE, 2)],
    "version": [("-1", 2), (HUGE, 2), ("4294967296", 2), (ARABIC, 2), (FULLWIDTH, 2), ("nan", 2), (SQLI, 2),
                (LONG_VALUE, 2)],
    "path": [("p" * 300, 1), ("a/" * 2100, 2), ("   ", 2)],
    "spike": [("workflow=x,at=+1000000000d,rate=0.5", 2), ("workflow=x,at=+99999999d,rate=0.5", 2),
              ("workflow=x,at=+" + ARABIC + "m,rate=0.5", 2), ("workflow=x,at=+5m,rate=nan", 2),
              ("workflow=x,at=+5m,rate=inf", 2), ("workflow=x,at=+5m,rate=0.5,minutes=1e400", 2),
              ("workflow=x,at=99999-01-01,rate=0.5", 2), (SQLI, 2), (LONG_VALUE, 2)],
    "backlog": [("at=+1000000000d,minutes=5", 2), ("at=+99999999d,minutes=5", 2), ("at=+5m,minutes=nan", 2),
                ("at=+5m,minutes=5,capacity=inf", 2), ("at=+" + ARABIC + "m,minutes=5", 2), (SQLI, 2),
                (LONG_VALUE, 2)],
    "silence": [("workflow=x,at=-1000000000d", 2), ("workflow=x,at=99999-01-01", 2),
                ("workflow=x,at=-5m,minutes=nan", 2),
                ("workflow=x,at=-" + ARABIC + "m", 2), ("workflow=nope,at=-5m", 2), ("workflow=wf-welcome", 2),
                (SQLI, 2), (LONG_VALUE, 2)],
    "count": [("-5", 2), (HUGE, 2), ("9999999999m", 2), (ARABIC + "k", 2), ("1e5", 2), ("nan", 2), (SQLI, 2)],
    "rates": [("0", 2), ("101", 2), ("-5", 2), ("nan", 2), ("inf", 2), (ARABIC, 2), ("25,,50", 2), (SQLI, 2)],
    "param": [("since=1000000d", 2), ("since=99999-01-01", 2), ("since=" + ARABIC + "h", 2), ("nope=1", 2),
              ("=x", 2), ("since", 2), ("since=" + LONG_VALUE, 2), ("workflow=" + SQLI, 1)],
    "plan_or_days": [(HUGE, 2), ("36501", 2), (ARABIC, 2), (FULLWIDTH, 2), (SQLI, 2), ("custom", 2),
                     (LONG_VALUE, 2), ("forever", 1), ("gold", 1)],
    "plan": [(SQLI, 2), (ARABIC, 2), ("custom", 2), (LONG_VALUE, 2), ("gold", 1)],
    "sql": [(SQLI, 1), ("SELECT 1", 1)],
    "override": [(SQLI, 2), ("status=success", 2), ("workflow_version=" + ARABIC, 2), ("workflow_version=" + HUGE, 2),
                 ("contact_id", 2), ("=c-1", 2), ("   ", 2), (LONG_VALUE, 2)],
    "command_id": [(SQLI, 2), ("%", 2), ("\u202eacme", 2), ("   ", 2), (LONG_VALUE, 2), ("x" * 129, 2),
                   ("cmd-1", 1)],
    # options of commands other modules own: only the invariants (one line, 1 or 2, no traceback)
    "any": [(SQLI, None), (LONG_VALUE, None), ("1000000d", None), (ARABIC, None), ("99999-01-01", None),
            ("nan", None), ("-1", None)],
}

# What each free-text parameter accepts: (command, parameter) -> kind. Numbers, enums and flags
# are recognised from their types.
TEXT_KINDS = {
    ("publish", "file"): "path",
    ("simulate", "--duration"): "duration", ("simulate", "--backfill"): "duration",
    ("simulate", "--spike"): "spike", ("simulate", "--backlog"): "backlog", ("simulate", "--silence"): "silence",
    ("simulate", "--out"): "path", ("simulate", "--now"): "time",
    ("demo", "--duration"): "duration", ("demo", "--backfill"): "duration",
    ("query", "sql"): "sql",
    ("reconcile", "--since"): "time",
    ("schema export", "--out"): "path",
    ("bench", "--out"): "path", ("bench", "--events"): "count", ("bench", "--history"): "count",
    ("bench", "--rates"): "rates", ("bench", "--latency-duration"): "duration", ("bench", "--soak"): "duration",
    ("bench", "--producer"): "choice",
    ("sql", "name"): "choice", ("sql", "--account"): "text", ("sql", "--param"): "param",
    ("runs show", "run_id"): "text", ("runs compare", "original_id"): "text", ("runs compare", "replay_id"): "text",
    ("retention set", "account"): "text", ("retention set", "plan_or_days"): "plan_or_days",
    ("retention plan", "plan"): "plan",
    ("dlq list", "--source"): "source", ("dlq list", "--reason-contains"): "text",
    ("dlq replay", "--source"): "source", ("dlq replay", "--reason-contains"): "text",
}
for _cmd in ("stats success", "stats durations", "stats bottlenecks", "stats queue", "stats peaks", "stats alerts"):
    TEXT_KINDS.update({(_cmd, "--by"): "choice", (_cmd, "--since"): "time", (_cmd, "--until"): "time",
                       (_cmd, "--account"): "text", (_cmd, "--workflow"): "text", (_cmd, "--site"): "text",
                       (_cmd, "--card"): "text", (_cmd, "--type"): "choice", (_cmd, "--trigger"): "choice"})
for _cmd in ("runs list", "runs show", "runs compare", "runs replays", "export"):
    TEXT_KINDS.update({(_cmd, "--account"): "text", (_cmd, "--since"): "time", (_cmd, "--until"): "time",
                       (_cmd, "--workflow"): "text", (_cmd, "--site"): "text", (_cmd, "--card"): "text",
                       (_cmd, "--contact"): "text", (_cmd, "--error-code"): "text", (_cmd, "--version"): "version",
                       (_cmd, "--status"): "choice", (_cmd, "--type"): "choice", (_cmd, "--trigger"): "choice",
                       (_cmd, "--error-class"): "choice", (_cmd, "--replays"): "choice", (_cmd, "--sort"): "choice"})
TEXT_KINDS[("export", "--out")] = "path"
TEXT_KINDS.update({("attention", "--account"): "text", ("attention", "--since"): "time",
                   ("attention", "--until"): "time"})
TEXT_KINDS[("runs show", "--html")] = "path"
TEXT_KINDS.update({("runs replay", "run_id"): "text", ("runs replay", "--account"): "text",
                   ("runs replay", "--set"): "override", ("runs replay", "--command-id"): "command_id",
                   ("runs stop", "run_id"): "text", ("runs stop", "--account"): "text",
                   ("runs stop", "--command-id"): "command_id",
                   ("runs commands", "--account"): "text", ("runs commands", "--run"): "text"})

# Commands whose options other modules own (grafana_cmd, the query command): invariants only.
OTHERS = ("grafana", "report", "query")

# Required arguments and options, so the one under attack is the only thing wrong.
REQUIRED = {
    "publish": {"file": "-"}, "query": {"sql": "SELECT 1"},
    "export": {"kind": "runs", "--account": "acme"},
    "runs list": {"--account": "acme"}, "runs replays": {"--account": "acme"}, "attention": {"--account": "acme"},
    "runs show": {"run_id": "r1", "--account": "acme"},
    "runs compare": {"original_id": "r1", "replay_id": "r2", "--account": "acme"},
    "runs replay": {"run_id": "r1", "--account": "acme"}, "runs stop": {"run_id": "r1", "--account": "acme"},
    "runs commands": {"--account": "acme"},
    "sql": {"name": "mttr_by_workflow", "--account": "acme"},
    "retention set": {"account": "acme", "plan_or_days": "pro"},
    "retention plan": {"plan": "gold", "days": "30"},
    "grafana push": {"--url": "http://127.0.0.1:9"}, "grafana provision": {"--tenant": "acme"},
}


@dataclass(frozen=True)
class Case:
    command: str
    param: str
    value: str
    code: int | None      # None: another module's command, 0 (a valid value), 1 or 2

    @property
    def argv(self) -> list[str]:
        """The command line: required arguments and options, the one under attack among them."""
        given = {**REQUIRED.get(self.command, {}), self.param: self.value}
        params = _command(self.command).params
        argv = self.command.split()
        argv += [given[p.name] for p in params if p.param_type_name == "argument" and p.name in given]
        for p in params:
            key = p.opts[0] if p.param_type_name == "option" else None
            if key in given:
                argv += [f"{key}={given[key]}"] if getattr(p, "is_flag", False) else [key, given[key]]
        if not any(self.param in (p.name, *getattr(p, "opts", ())) for p in params):
            argv.append(self.param)       # an option the command does not have
        return argv


@functools.cache
def _command(path: str):
    command = typer.main.get_command(app)
    for name in path.split():
        command = command.commands[name]
    return command


def _leaves(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield " ".join(path), command


def _kind(command: str, param) -> str:
    name = param.opts[0] if param.param_type_name == "option" else param.name
    if (command, name) in TEXT_KINDS:
        return TEXT_KINDS[(command, name)]
    bare = param.bare_type()
    if getattr(param, "is_flag", False):
        return "flag"
    if bare in ("int", "float"):
        return bare
    if bare not in ("str", "list[str]", "Path"):
        return "choice"         # an enum
    return "any"


def _battery() -> list[Case]:
    cases = []
    for command, click_command in _leaves(typer.main.get_command(app)):
        others = command.split()[0] in OTHERS
        cases.append(Case(command, "--bogus-option", "x", 2))
        for param in click_command.params:
            if param.name == "help":
                continue
            name = param.opts[0] if param.param_type_name == "option" else param.name
            kind = _kind(command, param)
            values = [("x", 2)] if kind == "flag" else EVERY + KINDS[kind]
            cases += [Case(command, name, value, None if others and kind != "flag" else code)
                      for value, code in values]
    return cases


BATTERY = _battery()


def _case_id(case: Case) -> str:
    shown = case.value if len(case.value) <= 24 else f"{case.value[:12]}...({len(case.value)})"
    return f"{case.command}|{case.param}|{shown.encode('unicode_escape').decode()}"


@pytest.fixture
def cli(run_cli, monkeypatch, tmp_path):
    """``runlens ARGV`` in this process: (exit code, stdout, stderr). No stack runs (commands that
    need one fail with code 1), the warehouse DSN points at a closed port and carries a password,
    and anything that would start a stack or a benchmark trips the test instead."""
    import embedded.stack
    import runlens.bench

    monkeypatch.chdir(tmp_path)
    for key in ("RUNLENS_ACCOUNT", "RUNLENS_BROKERS", "RUNLENS_QUERY_URL", "RUNLENS_GRAFANA_TOKEN", "GRAFANA_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RUNLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RUNLENS_WAREHOUSE_DSN", DSN)

    def tripwire(*args, **kwargs):
        raise AssertionError("a hostile argument was accepted: this would have started a stack or a benchmark")

    monkeypatch.setattr(embedded.stack.EmbeddedStack, "__enter__", tripwire)
    monkeypatch.setattr(runlens.bench.Bench, "run", tripwire)

    def run(argv: list[str]) -> tuple[int, str, str]:
        return run_cli(*argv)

    return run


def assert_one_error_line(code: int, out: str, err: str, expected: int | None) -> None:
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    if expected is None and code == 0:   # the value suits that command: it did its work
        return
    assert code in ((1, 2) if expected is None else (expected,)), err
    assert out == ""
    lines = err.splitlines()
    if expected is None:   # another module's command may warn first (e.g. a deprecated option)
        lines = [line for line in lines if not line.startswith("runlens: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("runlens: error: "), err
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", lines[0]), repr(lines[0])


@pytest.mark.parametrize("case", BATTERY, ids=_case_id)
def test_hostile_argument_is_one_error_line(cli, case):
    assert_one_error_line(*cli(case.argv), case.code)


def test_the_battery_reaches_every_command_and_knows_every_text_option():
    """Every command is attacked, and each free-text parameter of runlens' own commands has a
    declared kind (so its exit codes are checked exactly, not just kept to 1 or 2)."""
    commands = dict(_leaves(typer.main.get_command(app)))
    attacked = {case.command for case in BATTERY}
    assert attacked == set(commands) and {"up", "worker", "demo", "bench", "runs list", "dlq replay"} <= attacked
    undeclared = [(command, param.name) for command, click_command in commands.items()
                  if command.split()[0] not in OTHERS for param in click_command.params
                  if param.name != "help" and _kind(command, param) == "any"]
    assert undeclared == []
    assert len(BATTERY) > 1000


@pytest.mark.parametrize("argv, message", [
    (["stats", "success", "--since", "1000000d"], "--since: duration '1000000d' is longer than 36,500 days"),
    (["stats", "success", "--since", "\u0661\u0662h"], "--since: invalid time '\u0661\u0662h'"),
    (["runs", "list", "-a", "acme", "--until", "99999-01-01"], "--until: invalid time '99999-01-01'"),
    (["reconcile", "--since", "0001-01-01"], "is outside 1900-01-01 .. 2299-12-31"),
    (["simulate", "--rate", "\uff15"], "Invalid value for '--rate'"),
    (["simulate", "--spike", "workflow=x,at=+1000000000d,rate=0.5"], "spike"),
    (["runs", "list", "-a", "x" * 513], "--account: at most 512 characters, not 513"),
    (["runs", "list", "-a", "acme", "--workflow", "a\x00b"], "--workflow: contains the control character U+0000"),
    (["query", "y" * 65_537], "argument 2: longer than 65,536 characters"),
    (["dlq", "list", "--source", ""], "--source: empty value"),
    (["stats", "success", "--account="], "--account: empty value"),
    (["bogus\x1b[31m"], "argument 1: contains the control character U+001B"),
    (["simulate", "--backlog", "at=+5m,minutes=5,capacity=inf"], "--backlog: bad capacity"),
    (["simulate", "--silence", "workflow=nope,at=-5m"], "--silence: workflow 'nope' matches no workflow"),
    (["simulate", "--spike", "workflow=nope,at=-5m,rate=0.5"], "--spike: workflow 'nope' matches no workflow"),
])
def test_messages_name_the_problem(cli, argv, message):
    code, out, err = cli(argv)
    assert_one_error_line(code, out, err, 2)
    assert message in err


def test_a_usage_error_echoing_the_argument_prints_it_inert(cli):
    """Click quotes the unknown command back; bidi overrides and markup in it reach the terminal
    as plain text (no reordering, no styles)."""
    code, out, err = cli(["bo\u202egus[bold]x[/bold]"])
    assert_one_error_line(code, out, err, 2)      # also: no U+202E in the line
    assert "No such command 'bo" in err and "gus[bold]x[/bold]'" in err


def test_the_error_line_never_shows_a_password(cli, monkeypatch):
    """URLs in a message are redacted, and the settings' passwords are scrubbed wherever they appear."""
    code, out, err = cli(["publish", f"http://user:{SECRET}@example.com/events.ndjson"])
    assert_one_error_line(code, out, err, 1)
    assert "no such file: http://user:***@example.com/events.ndjson" in err
    monkeypatch.setenv("RUNLENS_WAREHOUSE_PASSWORD", "pw-Override-77")
    code, out, err = cli(["publish", "pw-Override-77.ndjson"])
    assert err.strip() == "runlens: error: no such file: ***.ndjson"


@pytest.mark.parametrize("argv, code", [
    (["runs", "list", "-a", SQLI], 1),                    # the warehouse does not answer
    (["stats", "success", "--since", "1000000d"], 2),
    (["export", "runs", "-a", "acme", "--out", "p" * 300], 1),
    (["dlq", "replay", "--source", "\u202etopic"], 1),
])
def test_a_real_process_prints_one_line_too(tmp_path, argv, code):
    """As a user runs it (a child process): no library log line next to the error, no traceback."""
    result = run_cli(Settings(data_dir=tmp_path, warehouse_dsn=DSN), *argv, timeout=60)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert_one_error_line(result.returncode, out, err, code)
