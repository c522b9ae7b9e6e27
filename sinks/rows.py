"""Map validated events to the column layout of the ``events`` table. Pure, no I/O.

``event_values`` maps one event and is what the worker calls on its per-line path
(``streams.batch.split_batch``): a line whose values cannot be mapped or serialized becomes a
dead letter there, before the ledger or the insert ever see it. The worker carries each valid
event as a ``SourcedEvent`` (the event, where it came from, its values); ``event_columns``
then only transposes values already mapped, so it does not fail on a line's content.
``dead_letter_columns`` clamps positions to the columns' integer types and never raises on
any ``DeadLetter``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import chain
from typing import Any, NamedTuple

import orjson

from schemas.dead_letter import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, UINT32_MAX, DeadLetter
from schemas.events import (
    EVENT_VALUE_COLUMNS,  # the columns whose values come from the event alone, in event_values order
    ErrorClass,
    ErrorInfo,
    Event,
    ReplayMode,
    RunStatus,
    StepStatus,
    StepType,
    Trigger,
    WorkflowType,
)
from schemas.fast import FastError, FastEvent
from sinks.ledger_state import Annotation

_NEW = Annotation(is_new=True)

EVENT_COLUMNS = EVENT_VALUE_COLUMNS + (
    "source_partition", "source_offset", "source_index", "is_new", "queue_wait_ms", "queue_wait_at",
)

_NO_ERROR = (None, None, None, None, None)

# Enum member -> its text: a dict lookup is ~5x cheaper than ``member.value`` (a Python descriptor).
_TEXT: dict[Any, str | None] = {member: member.value for enum in (
    WorkflowType, Trigger, RunStatus, StepStatus, StepType, ErrorClass, ReplayMode) for member in enum}
_TEXT[None] = None


def _json_or_none(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def event_values(event: Event | FastEvent) -> tuple[Any, ...]:
    """The values of ``EVENT_VALUE_COLUMNS`` for one event (a contract model or a hot-path
    struct: same attributes). Raises if the event cannot be serialized for its columns
    (``orjson.JSONEncodeError`` for ``input``/``output``); the per-line path turns that into
    a dead letter."""
    text = _TEXT
    head = (
        event.event_id, event.schema_version, event.type, event.ts, event.account_id, event.run_id,
        event.workflow_id, event.workflow_name, event.workflow_version, event.workflow_version_name,
        text[event.workflow_type], text[event.trigger], event.site_id, event.site_name, event.card_id,
        event.card_name, event.contact_id, event.replay_of, text[event.replay_mode],
    )
    # ``type`` is a Literal on both kinds (a class attribute on the structs: a read, no call),
    # so each comparison below narrows ``event`` to the classes of that type for the checker
    if event.type == "step.finished":
        error = event.error
        return head + (
            text[event.status], event.started_at,
            *(_NO_ERROR if error is None else _error_values(error)),
            event.step_id, event.step_index, event.step_name, text[event.step_type], event.attempt,
            _json_or_none(event.input), _json_or_none(event.output), event.condition_result, event.branch,
            event.action_kind, event.target, event.scheduled_resume_at, event.resumed_at,
        )
    if event.type == "step.started":
        return head + (None, None, *_NO_ERROR, event.step_id, event.step_index, event.step_name,
                       text[event.step_type], event.attempt) + _NO_STEP_RESULT
    if event.type == "run.finished":
        error = event.error
        return head + (text[event.status], event.started_at,
                       *(_NO_ERROR if error is None else _error_values(error))) + _NO_STEP
    return head + _NO_RUN_END


def _error_values(error: ErrorInfo | FastError) -> tuple[Any, ...]:
    return error.code, _TEXT[error.class_], error.message, error.stack_trace, error.suggested_fix


_NO_STEP_RESULT = (None,) * 8           # input .. resumed_at
_NO_STEP = (None,) * 5 + _NO_STEP_RESULT   # step_id .. resumed_at
_NO_RUN_END = (None,) * 7 + _NO_STEP      # status .. resumed_at


class SourcedEvent(NamedTuple):
    """A valid event on its way to the ``events`` table: the event, where it sits (Kafka
    partition and offset, and its line in a multi-event record) and its ``event_values``,
    mapped once on the per-line path. One per event: build it with ``sourced`` (or, on the
    hot path, ``tuple.__new__(SourcedEvent, ...)`` with the values already mapped)."""

    event: Event | FastEvent
    partition: int
    offset: int
    line: int
    values: tuple[Any, ...]


def event_keys(items: Iterable[SourcedEvent]) -> list[str]:
    """The key of each event in its batch's dedup token (``sinks.clickhouse.batch_token_of_texts``):
    the ``repr`` of (partition, offset, line, event id), written without building the tuple."""
    return [f"({partition}, {offset}, {line}, {event.event_id!r})" for event, partition, offset, line, _ in items]


def sourced(event: Event | FastEvent, partition: int, offset: int, line: int = 0) -> SourcedEvent:
    """``event`` at (``partition``, ``offset``, ``line``), its column values mapped now."""
    return SourcedEvent(event, partition, offset, line, event_values(event))


def event_columns(items: Iterable[SourcedEvent],
                  annotations: Iterable[Annotation] | None = None) -> dict[str, list[Any]]:
    """Columns of the ``events`` table for sourced events and the ledger's annotation of each
    (every event new when omitted). Their values, mapped on the per-line path, are reused."""
    items = list(items)
    notes = list(annotations) if annotations is not None else [_NEW] * len(items)
    if len(notes) != len(items):
        raise ValueError(f"{len(items)} events but {len(notes)} annotations")
    if not items:
        return {name: [] for name in EVENT_COLUMNS}
    # transposed through one flat list and a slice per column: ``zip(*rows)`` would hold an
    # iterator per row (tens of thousands at once, which the garbage collector walks again and again)
    rows = [item.values for item in items]
    width = len(EVENT_VALUE_COLUMNS)
    if set(map(len, rows)) != {width}:
        raise ValueError(f"every event maps to {width} values")
    flat = list(chain.from_iterable(rows))
    cols = {name: flat[column::width] for column, name in enumerate(EVENT_VALUE_COLUMNS)}
    cols["source_partition"] = [item.partition for item in items]
    cols["source_offset"] = [item.offset for item in items]
    cols["source_index"] = [item.line for item in items]
    cols["is_new"] = [1 if note.is_new else 0 for note in notes]
    cols["queue_wait_ms"] = [note.queue_wait_ms for note in notes]
    cols["queue_wait_at"] = [note.queue_wait_at for note in notes]
    return cols


def _clamp(value: int, low: int, high: int, default: int) -> int:
    return value if type(value) is int and low <= value <= high else default


def dead_letter_columns(items: list[tuple[DeadLetter, int, int]],
                        received_at: datetime) -> dict[str, list[Any]]:
    """Columns of the ``dead_letters`` table for (dead letter, dlq partition, dlq offset). Text is
    decoded with replacement characters; a position outside its column's type is stored as -1
    (0 for the index). Never raises on a ``DeadLetter``'s content."""
    cols: dict[str, list[Any]] = {name: [] for name in (
        "received_at", "source", "source_partition", "source_offset", "source_index", "reason", "field", "key",
        "raw", "dlq_partition", "dlq_offset")}
    for letter, partition, offset in items:
        cols["received_at"].append(received_at)
        cols["source"].append(_text(letter.source))
        cols["source_partition"].append(_clamp(letter.source_partition, INT32_MIN, INT32_MAX, -1))
        cols["source_offset"].append(_clamp(letter.source_offset, INT64_MIN, INT64_MAX, -1))
        cols["source_index"].append(_clamp(letter.source_index, 0, UINT32_MAX, 0))
        cols["reason"].append(_text(letter.reason))
        cols["field"].append(None if letter.field is None else _text(letter.field))
        cols["key"].append(None if letter.key is None else letter.key.decode(errors="replace"))
        cols["raw"].append(letter.raw.decode(errors="replace"))
        cols["dlq_partition"].append(_clamp(partition, INT32_MIN, INT32_MAX, -1))
        cols["dlq_offset"].append(_clamp(offset, INT64_MIN, INT64_MAX, -1))
    return cols


def _text(value: str) -> str:
    """``value`` as text ClickHouse can take: lone surrogates replaced."""
    try:
        value.encode()
        return value
    except UnicodeEncodeError:
        return value.encode(errors="replace").decode()
