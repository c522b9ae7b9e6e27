"""Pydantic v2 models of the event contract (``shared/event-contract.md``, v1).

Pure: no I/O. Every event carries the full run context so that it is self-contained.
Unknown extra fields are ignored (a newer minor schema may add optional fields);
an unknown ``schema_version`` is rejected.

Bounds runlens adds to the contract, so that whatever passes validation can also be stored
(the compiled decoder in ``schemas.fast`` enforces the same ones; ``schemas.validation`` adds
the line size and the clock bound, ``streams.batch`` the record bounds):

- ``input`` / ``output``: JSON nested at most ``MAX_JSON_DEPTH`` (32) levels, the object
  itself being level 1; integers within ``JSON_INT_MIN``..``JSON_INT_MAX`` (signed 64-bit
  minimum to unsigned 64-bit maximum, what the column's JSON text can round-trip); floats
  finite. A larger integer is rejected with its path, not rounded or kept as text.
- every time: ``MIN_EVENT_TIME`` (2000-01-01T00:00:00Z) .. ``MAX_EVENT_TIME``
  (2299-12-31T23:59:59.999Z, the end of ClickHouse's DateTime64);
- ``started_at`` no later than ``ts`` (``run.finished``, ``step.finished``).

On bad input the models raise ``ValidationError`` only: the walk over ``input``/``output``
stops at ``MAX_JSON_DEPTH``, so deep input cannot exhaust the stack here (decoding it is
``schemas.validation``'s business).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

SUPPORTED_SCHEMA_VERSIONS = (1, 2)
CURRENT_SCHEMA_VERSION = 2
"""v2 adds the optional ``tags`` (string labels an engine attaches to a run); v1 events stay valid."""


class WorkflowType(StrEnum):
    CARD = "card"
    SITE = "site"
    CONTACT = "contact"
    SURVEY = "survey"
    INTEGRATION = "integration"


class Trigger(StrEnum):
    MANUAL = "manual"
    AUTOMATIC = "automatic"
    API = "api"
    SCHEDULED = "scheduled"


class RunStatus(StrEnum):
    """Final status carried by ``run.finished``."""

    SUCCESS = "success"
    FAILED = "failed"
    STOPPED = "stopped"


class StepStatus(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepType(StrEnum):
    TRIGGER = "trigger"
    ACTION = "action"
    CONDITION = "condition"
    DELAY = "delay"


class ErrorClass(StrEnum):
    CONFIG = "config"
    DATA = "data"
    EXTERNAL_SERVICE = "external_service"
    LOGIC = "logic"
    INTERNAL = "internal"


class ReplayMode(StrEnum):
    EXACT = "exact"
    MODIFIED = "modified"


class EventType(StrEnum):
    RUN_QUEUED = "run.queued"
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    STEP_STARTED = "step.started"
    STEP_FINISHED = "step.finished"


_NO_OFFSET = timedelta(0)

MIN_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Earliest time an event may carry: an earlier one is a zeroed or garbled clock, not history."""
MAX_EVENT_TIME = datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
"""Latest time the warehouse can store (ClickHouse DateTime64 ends in 2299). Times that
happened (``ts``, ``started_at``, ``resumed_at``) are also bounded by the receiver's clock,
see ``schemas.validation``; ``scheduled_resume_at`` (a plan) only by this."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of the free-form ``input``/``output`` objects (the object itself is level 1)."""
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1
"""Integers ``input``/``output`` may hold: signed 64-bit minimum to unsigned 64-bit maximum."""


def _time_problem(value: datetime) -> str | None:
    if value < MIN_EVENT_TIME:
        return "time before 2000-01-01T00:00:00Z"
    if value > MAX_EVENT_TIME:
        return "time after 2299-12-31T23:59:59.999Z (beyond what the warehouse stores)"
    return None


def _to_utc(value: datetime) -> datetime:
    # Bounds first: converting year 1 or 9999 to UTC could overflow (an OverflowError, not a
    # ValueError, would escape validation). Comparing aware times across offsets cannot.
    problem = _time_problem(value)
    if problem is not None:
        raise ValueError(problem)
    # Most times arrive as UTC already ("Z"): keep them; convert only other offsets.
    return value if value.utcoffset() == _NO_OFFSET else value.astimezone(UTC)


_INT_RANGE = "integer outside the 64-bit range (-2**63 .. 2**64-1)"


def json_problem(value: Any, depth: int = 1) -> str | None:
    """What makes the JSON object or array ``value`` (at nesting level ``depth``) unfit to store,
    with where it is, or ``None``: nesting deeper than ``MAX_JSON_DEPTH``, an integer outside
    ``JSON_INT_MIN``..``JSON_INT_MAX``, a float that is not finite. Never raises on any value
    JSON can decode to; the recursion stops at ``MAX_JSON_DEPTH``."""
    found = _walk(value, depth)
    if found is None:
        return None
    path, problem = found
    where = "".join(reversed(path))
    return f"{problem} at {where[:200]}" if where else problem


def _walk(value: Any, depth: int) -> tuple[list[str], str] | None:
    if depth > MAX_JSON_DEPTH:
        return [], f"nested deeper than {MAX_JSON_DEPTH} levels"
    is_dict = isinstance(value, dict)
    for key, item in (value.items() if is_dict else enumerate(value)):
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if JSON_INT_MIN <= item <= JSON_INT_MAX:
                continue
            found: tuple[list[str], str] | None = ([], _INT_RANGE)
        elif kind is float:
            if item - item == 0.0:   # false for inf and nan
                continue
            found = ([], "number is not finite")
        elif kind is dict or kind is list:
            found = _walk(item, depth + 1)
        else:   # subclasses and tuples, from Python callers (the emitter); JSON has none
            found = _walk_other(item, depth)
        if found is not None:
            found[0].append(f"[{key!r}]" if is_dict else f"[{key}]")
            return found
    return None


def _walk_other(item: Any, depth: int) -> tuple[list[str], str] | None:
    if isinstance(item, bool) or isinstance(item, str):
        return None
    if isinstance(item, int):
        return None if JSON_INT_MIN <= item <= JSON_INT_MAX else ([], _INT_RANGE)
    if isinstance(item, float):
        return None if item - item == 0.0 else ([], "number is not finite")
    if isinstance(item, (dict, list, tuple)):
        return _walk(item, depth + 1)
    return None   # other Python objects: the serializer's business, JSON never yields them


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    problem = json_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_bounded_json)]
"""A free-form JSON object within ``MAX_JSON_DEPTH`` and the 64-bit integer range."""

STARTED_AFTER_TS = "started_at is later than ts (an event cannot finish before it started)"


UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An RFC 3339 time with an explicit offset, normalised to UTC. Naive times are rejected."""

NonEmpty = Annotated[str, Field(min_length=1, max_length=512)]

UINT32_MAX, UINT16_MAX = 2**32 - 1, 2**16 - 1
"""Upper bounds of the warehouse columns: a larger number is rejected here, not at insert."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)


class ErrorInfo(_Model):
    code: NonEmpty
    message: str
    class_: ErrorClass = Field(alias="class")
    stack_trace: str | None = None
    suggested_fix: str | None = None

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class RunContext(_Model):
    """Fields every event carries."""

    event_id: NonEmpty
    schema_version: Annotated[int, Field(json_schema_extra={"enum": list(SUPPORTED_SCHEMA_VERSIONS)})]
    ts: UtcTime
    account_id: NonEmpty
    run_id: NonEmpty
    workflow_id: NonEmpty
    workflow_name: str
    workflow_version: Annotated[int, Field(ge=0, le=UINT32_MAX)]
    workflow_version_name: str | None = None
    workflow_type: WorkflowType
    trigger: Trigger
    site_id: str | None = None
    site_name: str | None = None
    card_id: str | None = None
    card_name: str | None = None
    contact_id: str | None = None
    replay_of: str | None = None
    replay_mode: ReplayMode | None = None
    tags: dict[str, str] | None = None   # since v2

    @field_validator("schema_version")
    @classmethod
    def _known_schema_version(cls, version: int) -> int:
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(
                f"version {version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})"
            )
        return version


class RunQueued(RunContext):
    type: Literal["run.queued"]


class RunStarted(RunContext):
    type: Literal["run.started"]


class RunFinished(RunContext):
    type: Literal["run.finished"]
    status: RunStatus
    started_at: UtcTime
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _failed_has_error(self) -> RunFinished:
        if self.status is RunStatus.FAILED and self.error is None:
            raise ValueError("error is required when status is 'failed'")
        if self.started_at > self.ts:
            raise ValueError(STARTED_AFTER_TS)
        return self


class StepContext(RunContext):
    step_id: NonEmpty
    step_index: Annotated[int, Field(ge=0, le=UINT16_MAX)]
    step_name: str
    step_type: StepType
    attempt: Annotated[int, Field(ge=1, le=UINT16_MAX)]


class StepStarted(StepContext):
    type: Literal["step.started"]


class StepFinished(StepContext):
    type: Literal["step.finished"]
    status: StepStatus
    started_at: UtcTime
    input: JsonObject | None = None
    output: JsonObject | None = None
    error: ErrorInfo | None = None
    condition_result: bool | None = None
    branch: str | None = None
    action_kind: str | None = None
    target: str | None = None
    scheduled_resume_at: UtcTime | None = None
    resumed_at: UtcTime | None = None

    @model_validator(mode="after")
    def _failed_has_error(self) -> StepFinished:
        if self.status is StepStatus.FAILED and self.error is None:
            raise ValueError("error is required when status is 'failed'")
        if self.started_at > self.ts:
            raise ValueError(STARTED_AFTER_TS)
        return self


Event = Annotated[
    RunQueued | RunStarted | RunFinished | StepStarted | StepFinished,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- stored form
# The ``events`` table stores one column per field of the models above, in the order derived
# here: ``sinks.rows.EVENT_VALUE_COLUMNS`` is this tuple. The forms that must be written out
# (the msgspec structs in ``schemas.fast``, the DDL in ``sinks/migrations/001_events.sql``) are
# compared with the models by ``tests/unit/schemas/test_event_fields.py``.

NOT_STORED_FIELDS = frozenset({"tags"})
"""Contract fields on the wire but not in the ``events`` table (``tags``: v2 run labels)."""

ERROR_COLUMN_ORDER = ("code", "class_", "message", "stack_trace", "suggested_fix")
"""``ErrorInfo``'s fields in the order of their ``error_*`` columns (stored as ``error_<alias>``)."""


def _own_fields(model: type[BaseModel], *bases: type[BaseModel]) -> list[str]:
    inherited = {name for base in bases for name in base.model_fields}
    return [name for name in model.model_fields
            if name not in inherited and name != "type" and name not in NOT_STORED_FIELDS]


def _stored_event_fields() -> tuple[tuple[str, str], ...]:
    """(column, attribute path) of every stored event field: the run context (with ``type``
    after ``schema_version``), what ``run.finished`` adds (its ``error`` flattened), what steps
    add, then what ``step.finished`` adds beyond those."""
    context = _own_fields(RunContext)
    context.insert(context.index("schema_version") + 1, "type")
    run_end = _own_fields(RunFinished, RunContext)
    step = _own_fields(StepContext, RunContext)
    step_end = [name for name in _own_fields(StepFinished, StepContext) if name not in run_end]
    found: list[tuple[str, str]] = []
    for name in context + run_end + step + step_end:
        if name == "error":
            for part in ERROR_COLUMN_ORDER:
                alias = ErrorInfo.model_fields[part].alias or part
                found.append((f"error_{alias}", f"error.{part}"))
        else:
            found.append((name, name))
    return tuple(found)


STORED_EVENT_FIELDS = _stored_event_fields()
"""(``events`` column, event attribute path) for every column whose value comes from the event alone."""
EVENT_VALUE_COLUMNS = tuple(column for column, _ in STORED_EVENT_FIELDS)
"""The ``events`` columns whose values come from the event alone, in ``sinks.rows.event_values`` order."""
