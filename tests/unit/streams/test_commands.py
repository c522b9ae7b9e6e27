"""The worker's step for the command topics (streams.commands): valid records become rows of
run_commands / run_command_outcomes, invalid ones dead letters with reason and position, and a
redelivered batch carries the same deduplication token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from producers.commands import make_command
from schemas.commands import CommandAction, CommandOutcome, Outcome, to_json
from schemas.dead_letter import DeadLetter
from schemas.events import ReplayMode
from streams.batch import RawRecord
from streams.commands import CommandStore, command_rows

AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


def _records(values: list[bytes], topic: str = "p.commands") -> list[RawRecord]:
    return [RawRecord(b"run_1", value, topic, 0, offset) for offset, value in enumerate(values, start=10)]


def test_commands_become_rows_and_bad_records_dead_letters() -> None:
    replay = make_command("acme", "run_1", CommandAction.REPLAY, mode=ReplayMode.MODIFIED,
                          overrides={"contact_id": "c-9"}, command_id="cmd-1", requested_at=AT)
    stop = make_command("globex", "run_2", CommandAction.STOP, command_id="cmd-2", requested_at=AT)
    found = command_rows(_records([to_json(replay), b"{not json", to_json(stop), b'{"command_id": "x"}']),
                         outcomes=False, received=AT)
    assert found.table == "run_commands"
    assert found.columns["command_id"] == ["cmd-1", "cmd-2"]
    assert found.columns["account_id"] == ["acme", "globex"]
    assert found.columns["mode"] == ["modified", None]
    assert found.columns["overrides"] == [{"contact_id": "c-9"}, {}]
    assert found.columns["requested_at"] == [AT.replace(tzinfo=None)] * 2
    assert found.positions == [(0, 10), (0, 12)]
    assert [(d.source, d.source_offset) for d in found.dead_letters] == [("p.commands", 11), ("p.commands", 13)]
    assert found.dead_letters[0].reason.startswith("invalid command: invalid JSON")
    assert found.dead_letters[1].field == "account_id" and found.dead_letters[1].raw == b'{"command_id": "x"}'


def test_outcomes_become_rows() -> None:
    outcome = Outcome(command_id="cmd-1", account_id="acme", run_id="run_1", action=CommandAction.REPLAY,
                      outcome=CommandOutcome.REPLAYED, new_run_id="run_9", reason="exact replay", decided_at=AT)
    found = command_rows(_records([to_json(outcome)], "p.command-outcomes"), outcomes=True, received=AT)
    assert found.table == "run_command_outcomes"
    assert found.columns["outcome"] == ["replayed"] and found.columns["new_run_id"] == ["run_9"]
    assert command_rows(_records([to_json(outcome)]), outcomes=False, received=AT).dead_letters   # not a command


def test_a_redelivered_batch_is_written_with_the_same_token() -> None:
    writes: list[tuple[str, dict[str, list[Any]], str]] = []
    letters: list[DeadLetter] = []

    async def write(table: str, columns: dict[str, list[Any]], token: str, what: str) -> None:
        writes.append((table, columns, token))

    async def send(found: list[DeadLetter]) -> None:
        letters.extend(found)

    command = make_command("acme", "run_1", CommandAction.STOP, command_id="cmd-1", requested_at=AT)
    events = [SimpleNamespace(message=SimpleNamespace(key=b"run_1", value=value, topic="p.commands", partition=0,
                                                      offset=offset))
              for offset, value in enumerate([to_json(command), b"\xff"])]
    store = CommandStore(write, send)
    asyncio.run(store.store_commands(events))   # type: ignore[arg-type]  # the message fields the step reads
    asyncio.run(store.store_commands(events))   # type: ignore[arg-type]
    assert len(writes) == 2 and writes[0][2] == writes[1][2] and writes[0][0] == "run_commands"
    assert len(letters) == 2 and store.stored == 2 and store.dead_lettered == 2
