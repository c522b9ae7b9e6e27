"""The worker's steps for the command topics (docs/commands.md): every record of
``<prefix>.commands`` is stored in ``run_commands``, every record of
``<prefix>.command-outcomes`` in ``run_command_outcomes``.

Delivery: at-least-once, like the events. A batch is acknowledged only after its rows were
inserted and its invalid records reached the dead-letter topic; a redelivered batch inserts
the same rows again with the same deduplication token (dropped whole), and even without it
the tables keep one row per (``account_id``, ``command_id``) (ReplacingMergeTree), so a
command delivered twice is one row. A record that is not a valid command or outcome (bad
JSON, a missing or unknown field, a bad override) is dead-lettered with its reason and
position and never stops the rest. Pure except ``CommandStore.store``, which goes through
the callables it is given (the worker's retrying write and dead-letter send).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faust.types import EventT

from schemas.commands import Command, CommandRejected, Outcome, parse_command, parse_outcome
from schemas.dead_letter import DeadLetter
from sinks.clickhouse import batch_token
from streams.batch import RawRecord

COMMANDS_TABLE = "run_commands"
OUTCOMES_TABLE = "run_command_outcomes"


@dataclass
class CommandRows:
    """One batch of a command topic: the columns to insert and the records to dead-letter."""

    table: str
    columns: dict[str, list[Any]] = field(default_factory=dict)
    positions: list[tuple[int, int]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def command_row(command: Command) -> dict[str, Any]:
    return {"account_id": command.account_id, "command_id": command.command_id, "run_id": command.run_id,
            "action": command.action.value, "mode": command.mode.value if command.mode else None,
            "overrides": dict(command.overrides), "requested_by": command.requested_by,
            "requested_at": _naive(command.requested_at)}


def outcome_row(outcome: Outcome) -> dict[str, Any]:
    return {"account_id": outcome.account_id, "command_id": outcome.command_id, "run_id": outcome.run_id,
            "action": outcome.action.value, "outcome": outcome.outcome.value, "new_run_id": outcome.new_run_id,
            "reason": outcome.reason, "decided_at": _naive(outcome.decided_at)}


def command_rows(records: Sequence[RawRecord], *, outcomes: bool, received: datetime) -> CommandRows:
    """Parse one batch of the commands topic (``outcomes`` False) or of the outcomes topic into
    rows and dead letters. Never raises on content."""
    table = OUTCOMES_TABLE if outcomes else COMMANDS_TABLE
    parse: Callable[[bytes], Command | Outcome] = parse_outcome if outcomes else parse_command
    to_row: Callable[[Any], dict[str, Any]] = outcome_row if outcomes else command_row
    found = CommandRows(table)
    rows: list[dict[str, Any]] = []
    for record in records:
        raw = record.value or b""
        try:
            row = to_row(parse(raw))
        except CommandRejected as exc:
            kind = "command outcome" if outcomes else "command"
            found.dead_letters.append(DeadLetter(raw=raw, reason=f"invalid {kind}: {exc.reason}", source=record.topic,
                                                 source_partition=record.partition, source_offset=record.offset,
                                                 field=exc.field, key=record.key))
            continue
        row.update(received_at=_naive(received), source_partition=record.partition, source_offset=record.offset)
        rows.append(row)
        found.positions.append((record.partition, record.offset))
    if rows:
        found.columns = {name: [row[name] for row in rows] for name in rows[0]}
    return found


def raw_records(events: Sequence[EventT]) -> list[RawRecord]:
    return [RawRecord(e.message.key, e.message.value, e.message.topic, e.message.partition, e.message.offset)
            for e in events]


Write = Callable[[str, dict[str, list[Any]], str, str], Awaitable[None]]
"""(table, columns, deduplication token, what) -> stored, retrying until the warehouse took it."""
SendDeadLetters = Callable[[list[DeadLetter]], Awaitable[None]]
"""Dead letters -> acknowledged by the broker."""


class CommandStore:
    """The agent steps of both command topics, over the worker's write and dead-letter paths."""

    def __init__(self, write: Write, send_dead_letters: SendDeadLetters):
        self.write, self.send_dead_letters = write, send_dead_letters
        self.stored = 0
        self.dead_lettered = 0

    async def store_commands(self, events: Sequence[EventT]) -> None:
        await self._store(events, outcomes=False)

    async def store_outcomes(self, events: Sequence[EventT]) -> None:
        await self._store(events, outcomes=True)

    async def _store(self, events: Sequence[EventT], *, outcomes: bool) -> None:
        found = command_rows(raw_records(events), outcomes=outcomes, received=datetime.now(UTC))
        if found.dead_letters:
            await self.send_dead_letters(found.dead_letters)
            self.dead_lettered += len(found.dead_letters)
        if found.positions:
            token = batch_token(found.table, found.positions)
            await self.write(found.table, found.columns, token, f"{len(found.positions)} rows of {found.table}")
            self.stored += len(found.positions)
