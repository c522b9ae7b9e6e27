"""The command contract (``docs/commands.md``): what runlens asks a workflow engine to do with a
run (replay it, stop it) on ``<prefix>.commands``, and what the engine reports back on
``<prefix>.command-outcomes``. Pure: no I/O.

Strict models (unknown fields are refused, types are not coerced) with the event contract's
bounds: ids and names at most 512 characters, times within what the warehouse stores. A
command is idempotent by ``command_id`` within its account: an engine acts on the same
``command_id`` once and answers a repeat with the same outcome; the warehouse keeps one row
per (``account_id``, ``command_id``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.events import NonEmpty, ReplayMode, UtcTime

COMMAND_SCHEMA_VERSION = 1
MAX_OVERRIDES = 16
"""Most fields one modified replay may override."""
MAX_REASON_CHARS = 2048
MAX_RECORD_BYTES = 64 * 1024
"""Largest command or outcome record accepted (a command is a few hundred bytes)."""

OVERRIDABLE_FIELDS = ("contact_id", "workflow_version")
"""Run fields a modified replay may set (``overrides``): the contact it runs for, and the
workflow version it runs (a decimal number 0..4294967295)."""

Text512 = Annotated[str, Field(max_length=512)]


class CommandAction(StrEnum):
    REPLAY = "replay"
    STOP = "stop"


class CommandOutcome(StrEnum):
    REPLAYED = "replayed"            # a new run was queued: new_run_id
    STOPPED = "stopped"              # the run was running and now ended as stopped
    ALREADY_FINISHED = "already_finished"   # stop of a run that had finished
    UNKNOWN_RUN = "unknown_run"      # the engine knows no such run in this account
    REFUSED = "refused"              # not allowed (a run of another account, a bad override, ...)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def override_problem(name: str, value: str) -> str | None:
    """Why ``name=value`` cannot be an override, or None."""
    if name not in OVERRIDABLE_FIELDS:
        return f"{name!r} cannot be overridden (overridable: {', '.join(OVERRIDABLE_FIELDS)})"
    if name == "workflow_version" and not (value.isascii() and value.isdigit() and len(value) <= 10
                                           and int(value) <= 2**32 - 1):
        return f"workflow_version {value[:40]!r} is not a version number (0..4294967295)"
    if name == "contact_id" and not value.strip():
        return "contact_id is empty"
    return None


class Command(_Strict):
    """One command: replay or stop one run of one account."""

    command_id: NonEmpty
    account_id: NonEmpty
    run_id: NonEmpty
    action: CommandAction
    mode: ReplayMode | None = None
    overrides: dict[Text512, Text512] = Field(default_factory=dict, max_length=MAX_OVERRIDES)
    requested_by: NonEmpty
    requested_at: UtcTime
    schema_version: int = COMMAND_SCHEMA_VERSION

    @model_validator(mode="after")
    def _consistent(self) -> Command:
        if self.schema_version != COMMAND_SCHEMA_VERSION:
            raise ValueError(f"command schema_version {self.schema_version} is not supported (supported: 1)")
        if self.action is CommandAction.REPLAY:
            if self.mode is None:
                raise ValueError("a replay needs a mode (exact or modified)")
            if self.mode is ReplayMode.EXACT and self.overrides:
                raise ValueError("an exact replay takes no overrides (use mode modified)")
        elif self.mode is not None or self.overrides:
            raise ValueError("a stop takes no mode and no overrides")
        for name, value in self.overrides.items():
            problem = override_problem(name, value)
            if problem is not None:
                raise ValueError(problem)
        return self


class Outcome(_Strict):
    """What the engine did with one command."""

    command_id: NonEmpty
    account_id: NonEmpty
    run_id: NonEmpty
    action: CommandAction
    outcome: CommandOutcome
    new_run_id: Text512 | None = None
    reason: Annotated[str, Field(max_length=MAX_REASON_CHARS)] = ""
    decided_at: UtcTime
    schema_version: int = COMMAND_SCHEMA_VERSION

    @model_validator(mode="after")
    def _consistent(self) -> Outcome:
        if self.schema_version != COMMAND_SCHEMA_VERSION:
            raise ValueError(f"outcome schema_version {self.schema_version} is not supported (supported: 1)")
        if (self.outcome is CommandOutcome.REPLAYED) != bool(self.new_run_id):
            raise ValueError("new_run_id is set exactly when the outcome is replayed")
        return self


class CommandRejected(ValueError):
    """A record that is not a valid command or outcome; ``reason`` says why, ``field`` where."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


def _parse(model: type[_Strict], raw: bytes) -> Any:
    if len(raw) > MAX_RECORD_BYTES:
        raise CommandRejected(f"record of {len(raw):,} bytes is larger than {MAX_RECORD_BYTES:,}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandRejected(f"invalid JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise CommandRejected("not a JSON object")
    try:
        # strict mode refuses strings for times; JSON has no time type, so those fields are
        # validated in JSON mode (RFC 3339 text) and everything else strictly
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise CommandRejected(f"{where}: {message}" if where else message, where) from None


def parse_command(raw: bytes) -> Command:
    """A command from the bytes of one record of the commands topic; CommandRejected otherwise.
    Never raises anything else, whatever the bytes."""
    try:
        parsed: Command = _parse(Command, raw)
    except CommandRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - the promise above: any content is a rejection
        raise CommandRejected(f"internal error while validating: {exc.__class__.__name__}") from None
    return parsed


def parse_outcome(raw: bytes) -> Outcome:
    """An outcome from the bytes of one record of the outcomes topic; CommandRejected otherwise."""
    try:
        parsed: Outcome = _parse(Outcome, raw)
    except CommandRejected:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CommandRejected(f"internal error while validating: {exc.__class__.__name__}") from None
    return parsed


def to_json(record: Command | Outcome) -> bytes:
    """The record as the topic carries it (times RFC 3339 UTC with milliseconds and Z)."""
    document = record.model_dump(mode="json")
    for key in ("requested_at", "decided_at"):
        if key in document:
            value = getattr(record, key)
            document[key] = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return orjson.dumps(document)
