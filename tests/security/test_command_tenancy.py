"""Commands are tenant-scoped, attacked for real on the embedded stack: asking to replay or stop
a run of another account through the CLI is refused in one line and publishes nothing; a forged
command sent straight to the topic is refused by the engine and acts on nothing; and neither
account's command list shows the other's commands."""

from __future__ import annotations

import json

import pytest

from producers.commands import make_command, send_command
from schemas.commands import CommandAction
from schemas.events import ReplayMode
from tests.command_world import CommandWorld, command_world_fixture  # noqa: F401 - the session fixture
from tests.helpers import wait_for

pytestmark = pytest.mark.security


def _globex_failed_run(world: CommandWorld) -> str:
    return world.rows("SELECT run_id FROM runs WHERE account_id = 'globex' AND status = 'failed' "
                      "ORDER BY run_id LIMIT 1")[0][0]


@pytest.mark.parametrize("verb", ["replay", "stop"])
def test_a_run_of_another_account_is_refused_in_one_line_and_nothing_is_published(
        command_world: CommandWorld, run_cli, verb: str) -> None:
    world = command_world
    victim = _globex_failed_run(world)
    before, handled = world.commands_end(), world.server.handled
    result = run_cli("runs", verb, victim, "--account", "acme", env=dict(world.settings.to_env()))
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == f"runlens: error: run '{victim}' not found in account 'acme'\n"
    assert world.commands_end() == before and world.server.handled == handled
    assert world.rows("SELECT count() FROM run_commands WHERE run_id = {r:String}", r=victim) == [(0,)]


def test_a_forged_command_for_another_accounts_run_is_refused_by_the_engine(command_world: CommandWorld,
                                                                            run_cli) -> None:
    world = command_world
    victim = _globex_failed_run(world)
    forged = make_command("acme", victim, CommandAction.REPLAY, mode=ReplayMode.EXACT, command_id="forged-1",
                          requested_by="mallory")
    send_command(world.producer, world.settings.commands_topic, forged)
    outcome, new_run_id, reason, _ = world.outcome("acme", "forged-1")
    assert (outcome, new_run_id) == ("refused", None)
    assert "globex" not in reason   # the owner of the run is not disclosed
    assert world.rows("SELECT count() FROM runs WHERE replay_of = {r:String}", r=victim) == [(0,)]
    # the forged command is acme's own record: globex's list does not show it, acme's does
    env = dict(world.settings.to_env())
    theirs = run_cli("runs", "commands", "--account", "globex", "--format", "json", env=env)
    assert theirs.code == 0 and "forged-1" not in theirs.stdout
    mine = run_cli("runs", "commands", "--account", "acme", "--run", victim, "--format", "json", env=env)
    assert [json.loads(line)["outcome"] for line in mine.stdout.splitlines()] == ["refused"]
    wait_for(lambda: world.server.handled, lambda n: n >= 1, timeout=10, what="the engine answered")
