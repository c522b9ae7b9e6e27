"""runlens' side of the command contract (docs/commands.md): build a command and publish it on
``<prefix>.commands``, keyed by run id.

Promises: ``send_command`` returns only after the broker acknowledged the record
(``DeliveryFailed`` otherwise); sending the same command again is harmless, because engines act
on a ``command_id`` once and the warehouse keeps one row per (account, command id).
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from datetime import UTC, datetime

from producers.kafka import CheckedProducer
from schemas.commands import Command, CommandAction, to_json
from schemas.events import ReplayMode


def new_command_id() -> str:
    """A fresh command id: ``cmd_`` and 24 random hex digits."""
    return f"cmd_{secrets.token_hex(12)}"


def requester() -> str:
    """Who asks: ``user@host`` of this process (the contract's ``requested_by``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:512]


def make_command(account_id: str, run_id: str, action: CommandAction, *, mode: ReplayMode | None = None,
                 overrides: dict[str, str] | None = None, command_id: str | None = None,
                 requested_by: str | None = None, requested_at: datetime | None = None) -> Command:
    """A validated command (pydantic ``ValidationError`` naming the field otherwise)."""
    return Command(command_id=command_id or new_command_id(), account_id=account_id, run_id=run_id, action=action,
                   mode=mode, overrides=dict(overrides or {}), requested_by=requested_by or requester(),
                   requested_at=requested_at or datetime.now(UTC))


def send_command(producer: CheckedProducer, topic: str, command: Command) -> None:
    """Publish ``command`` keyed by its run id and wait for the broker's acknowledgement.
    ``BrokerUnavailable`` at once when the topic does not exist (a stack from before commands)."""
    producer.partition_count(topic)
    producer.send(topic, to_json(command), key=command.run_id.encode())
    producer.flush()
