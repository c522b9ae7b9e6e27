"""Replay and stop closed as a loop on the real embedded stack: `runlens runs replay|stop`
publish commands, the stand-in engine (producers.engine, as `runlens simulate` runs it) acts on
them, the worker stores commands and outcomes, and the replay run arrives in `runs` with its
lineage. Every wait is on a condition with a timeout."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from producers.commands import make_command, send_command
from schemas.commands import CommandAction
from tests.command_world import CommandWorld, command_world_fixture  # noqa: F401 - the session fixture
from tests.helpers import cli_env, own_stack, wait_for

pytestmark = pytest.mark.integration


def _env(world: CommandWorld) -> dict[str, str | None]:
    return dict(world.settings.to_env())


def _failed_run(world: CommandWorld, account: str = "acme", skip: int = 0) -> str:
    return world.rows("SELECT run_id FROM runs WHERE account_id = {a:String} AND status = 'failed' "
                      "AND replay_of IS NULL ORDER BY finished_at DESC, run_id LIMIT 1 OFFSET {n:UInt32}",
                      a=account, n=skip)[0][0]


def test_a_failed_run_is_replayed_through_the_command_path(command_world: CommandWorld, run_cli) -> None:
    world = command_world
    original = _failed_run(world)
    result = run_cli("runs", "replay", original, "--account", "acme", env=_env(world))
    assert result.code == 0, result.stderr
    command_id = result.stdout.strip()
    assert command_id.startswith("cmd_") and "\n" not in command_id
    outcome, new_run_id, reason, run_id = world.outcome("acme", command_id)
    assert (outcome, run_id) == ("replayed", original) and new_run_id, reason
    replay = wait_for(lambda: world.rows("SELECT replay_of, replay_mode, status FROM runs WHERE account_id = 'acme' "
                                         "AND run_id = {r:String}", r=new_run_id),
                      lambda rows: bool(rows), timeout=90, what="the replay run in runs")
    assert replay[0][:2] == (original, "exact")
    listed = run_cli("runs", "commands", "--account", "acme", "--run", original, "--format", "json", env=_env(world))
    assert listed.code == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["command_id"], r["action"], r["mode"], r["outcome"], r["new_run_id"]) for r in rows] == [
        (command_id, "replay", "exact", "replayed", new_run_id)]
    # the loop's last step: runs compare reads both
    compared = run_cli("runs", "compare", original, new_run_id, "--account", "acme", "--format", "json",
                       env=_env(world))
    assert compared.code == 0 and json.loads(compared.stdout)["linked"] is True


def test_the_same_command_id_twice_acts_once(command_world: CommandWorld, run_cli) -> None:
    world = command_world
    original = _failed_run(world, skip=1)
    handled, acted = world.server.handled, world.server.acted
    for _ in range(2):
        result = run_cli("runs", "replay", original, "--account", "acme", "--command-id", "twice-1",
                         env=_env(world))
        assert result.code == 0 and result.stdout.strip() == "twice-1", result.stderr
    wait_for(lambda: world.server.handled, lambda n: n >= handled + 2, timeout=60, what="both deliveries handled")
    assert world.server.acted == acted + 1
    outcome, new_run_id, _, _ = world.outcome("acme", "twice-1")
    assert outcome == "replayed"
    assert world.rows("SELECT count() FROM commands WHERE account_id = 'acme' AND command_id = 'twice-1'") == [(1,)]
    # both answers are on the outcomes topic, the same outcome
    answers = _topic_values(world, world.settings.command_outcomes_topic)
    mine = [json.loads(v) for v in answers if json.loads(v)["command_id"] == "twice-1"]
    assert len(mine) == 2 and mine[0] == mine[1] and mine[0]["new_run_id"] == new_run_id
    wait_for(lambda: world.rows("SELECT count() FROM runs WHERE account_id = 'acme' AND replay_of = {r:String}",
                                r=original), lambda rows: rows == [(1,)], timeout=90, what="one replay run")


def test_stop_of_a_finished_run(command_world: CommandWorld, run_cli) -> None:
    world = command_world
    finished = world.rows("SELECT run_id FROM runs WHERE account_id = 'globex' AND status = 'success' "
                          "ORDER BY run_id LIMIT 1")[0][0]
    before = world.commands_end()
    refused = run_cli("runs", "stop", finished, "--account", "globex", env=_env(world))
    assert refused.code == 1 and refused.stdout == ""
    assert refused.stderr.strip() == f"runlens: error: run '{finished}' already finished (success): nothing to stop"
    assert world.commands_end() == before   # the CLI published nothing
    # another client publishes the stop anyway: the engine answers already_finished
    send_command(world.producer, world.settings.commands_topic,
                 make_command("globex", finished, CommandAction.STOP, command_id="stop-finished"))
    assert world.outcome("globex", "stop-finished")[0] == "already_finished"


def test_stop_of_a_running_run_keeps_its_finished_steps(command_world: CommandWorld, run_cli) -> None:
    world = command_world
    running = [key for key, run in world.book.runs.items() if run.state == "running" and key[0] == "acme"
               and run.open_step is not None]
    assert running, "the workload leaves runs in flight at its end"
    run_id = running[0][1]
    done_before = world.rows("SELECT step_index, attempt, status FROM steps WHERE account_id = 'acme' "
                             "AND run_id = {r:String} AND status != 'running' ORDER BY step_index, attempt", r=run_id)
    result = run_cli("runs", "stop", run_id, "--account", "acme", env=_env(world))
    assert result.code == 0, result.stderr
    assert world.outcome("acme", result.stdout.strip())[0] == "stopped"
    wait_for(lambda: world.rows("SELECT status FROM runs WHERE account_id = 'acme' AND run_id = {r:String}",
                                r=run_id), lambda rows: rows == [("stopped",)], timeout=90, what="the run stopped")
    after = world.rows("SELECT step_index, attempt, status FROM steps WHERE account_id = 'acme' "
                       "AND run_id = {r:String} ORDER BY step_index, attempt", r=run_id)
    assert set(done_before) <= set(after)                      # finished steps stay as they were
    assert after[-1][2] == "skipped" and all(s != "running" for _, _, s in after)


def _topic_values(world: CommandWorld, topic: str) -> list[bytes]:
    from producers.engine import read_outcomes
    from schemas.commands import to_json

    return [to_json(o) for o in read_outcomes(world.stack.brokers, topic)]


def test_runlens_simulate_answers_a_replay_as_the_engine(tmp_path_factory, run_prefix, run_cli) -> None:
    """The command line end to end, on a stack of its own: `runlens simulate --serve-commands` sends
    a workload and keeps answering; `runlens runs replay` of one of its failed runs comes back as a
    new run with replay_of set, and the simulator reports the one command it acted on."""
    with own_stack(tmp_path_factory, run_prefix, "cs") as (stack, reader):
        settings = stack.settings
        simulator = subprocess.Popen(
            [sys.executable, "-m", "runlens", "simulate", "--backfill", "1h", "--duration", "0", "--accounts", "1",
             "--seed", "31", "--backfill-rate", "600", "--serve-commands",
             # failed runs at any hour (without it, one or none at some hours: a fresh-clone run failed)
             "--spike", "workflow=wf-welcome,at=-55m,rate=0.8,minutes=40"],
            env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            failed = wait_for(lambda: [r[0] for r in reader.query(
                "SELECT run_id FROM runs WHERE account_id = 'acme' AND status = 'failed' ORDER BY run_id LIMIT 1"
            ).result_rows], bool, timeout=120, what="a failed run of the simulated workload")[0]
            result = run_cli("runs", "replay", failed, "--account", "acme", env=dict(settings.to_env()))
            assert result.code == 0, result.stderr
            command_id = result.stdout.strip()
            replay = wait_for(lambda: reader.query(
                "SELECT c.outcome, r.run_id, r.replay_of, r.replay_mode FROM commands AS c INNER JOIN runs AS r "
                "ON r.account_id = c.account_id AND r.run_id = c.new_run_id WHERE c.account_id = 'acme' "
                "AND c.command_id = {c:String}", parameters={"c": command_id}).result_rows,
                bool, timeout=120, what="the replay run in runs")
            assert [tuple(r) for r in replay] == [("replayed", replay[0][1], failed, "exact")]
        finally:
            simulator.send_signal(signal.SIGINT)
            stdout, stderr = simulator.communicate(timeout=120)
        assert simulator.returncode == 0, stderr[-2000:]
        assert "answered 1 commands (1 acted on)" in stdout
