"""Map validated events to the column layout of the ``events`` table. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from schemas.dead_letter import DeadLetter
from schemas.events import Event
from streams.ledger import Annotation

_NEW = Annotation(is_new=True)

EVENT_COLUMNS = (
    "event_id", "schema_version", "type", "ts", "account_id", "run_id", "workflow_id",
    "workflow_name", "workflow_version", "workflow_version_name", "workflow_type", "trigger",
    "site_id", "site_name", "card_id", "card_name", "contact_id", "replay_of", "replay_mode",
    "status", "started_at", "error_code", "error_class", "error_message", "error_stack_trace",
    "error_suggested_fix", "step_id", "step_index", "step_name", "step_type", "attempt", "input",
    "output", "condition_result", "branch", "action_kind", "target", "scheduled_resume_at",
    "resumed_at", "source_partition", "source_offset", "source_index", "is_new", "queue_wait_ms",
    "queue_wait_at",
)

_ERROR_FIELDS = ("error_code", "error_class", "error_message", "error_stack_trace", "error_suggested_fix")
_DIRECT = (
    "event_id", "schema_version", "ts", "account_id", "run_id", "workflow_id", "workflow_name",
    "workflow_version", "workflow_version_name", "site_id", "site_name", "card_id", "card_name",
    "contact_id", "replay_of",
)
_OPTIONAL = (
    "started_at", "step_id", "step_index", "step_name", "attempt", "condition_result", "branch",
    "action_kind", "target", "scheduled_resume_at", "resumed_at",
)
_OPTIONAL_ENUMS = ("status", "step_type", "replay_mode")


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def event_columns(items: Iterable[tuple[Event, int, int] | tuple[Event, int, int, int]],
                  annotations: Iterable[Annotation] | None = None) -> dict[str, list[Any]]:
    """Columns of the ``events`` table for (event, source partition, source offset[, index in
    the record]) tuples and the ledger's annotation of each (every event new when omitted).
    Events may be the contract's models or the hot-path decoder's structs: same attributes."""
    cols: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    items = list(items)
    notes = list(annotations) if annotations is not None else [_NEW] * len(items)
    direct = [(cols[name].append, name) for name in _DIRECT + _OPTIONAL]
    enums = [(cols[name].append, name) for name in _OPTIONAL_ENUMS]
    errors = [cols[name].append for name in _ERROR_FIELDS]
    add_type, add_wtype, add_trigger = cols["type"].append, cols["workflow_type"].append, cols["trigger"].append
    add_input, add_output = cols["input"].append, cols["output"].append
    add_part, add_offset, add_index = (cols["source_partition"].append, cols["source_offset"].append,
                                       cols["source_index"].append)
    add_new, add_wait, add_wait_at = cols["is_new"].append, cols["queue_wait_ms"].append, cols["queue_wait_at"].append
    for item, note in zip(items, notes, strict=True):
        event = item[0]
        for add, name in direct:
            add(getattr(event, name, None))
        add_type(event.type)
        add_wtype(event.workflow_type.value)
        add_trigger(event.trigger.value)
        for add, name in enums:
            value = getattr(event, name, None)
            add(None if value is None else value.value)
        error = getattr(event, "error", None)
        if error is None:
            for add in errors:
                add(None)
        else:
            errors[0](error.code)
            errors[1](error.class_.value)
            errors[2](error.message)
            errors[3](error.stack_trace)
            errors[4](error.suggested_fix)
        add_input(_json_or_none(getattr(event, "input", None)))
        add_output(_json_or_none(getattr(event, "output", None)))
        add_part(item[1])
        add_offset(item[2])
        add_index(item[3] if len(item) > 3 else 0)
        add_new(1 if note.is_new else 0)
        add_wait(note.queue_wait_ms)
        add_wait_at(note.queue_wait_at)
    return cols


def dead_letter_columns(items: list[tuple[DeadLetter, int, int]], received_at: datetime) -> dict[str, list]:
    """Columns of the ``dead_letters`` table for (dead letter, dlq partition, dlq offset)."""
    cols: dict[str, list] = {name: [] for name in (
        "received_at", "source", "source_partition", "source_offset", "source_index", "reason", "field", "key",
        "raw", "dlq_partition", "dlq_offset")}
    for letter, partition, offset in items:
        cols["received_at"].append(received_at)
        cols["source"].append(letter.source)
        cols["source_partition"].append(letter.source_partition)
        cols["source_offset"].append(letter.source_offset)
        cols["source_index"].append(letter.source_index)
        cols["reason"].append(letter.reason)
        cols["field"].append(letter.field)
        cols["key"].append(None if letter.key is None else letter.key.decode(errors="replace"))
        cols["raw"].append(letter.raw.decode(errors="replace"))
        cols["dlq_partition"].append(partition)
        cols["dlq_offset"].append(offset)
    return cols
