"""A compiled decoder for the worker's hot path, stricter than the contract, never looser.

The pydantic models in ``schemas.events`` are the contract: they define what is valid and
say why a line is not. Validating with them costs ~13 us per event, the largest share of the
worker's time per event. msgspec decodes and checks the same structure in ~2 us, so the worker
tries it first and falls back to pydantic for every line msgspec refuses
(``schemas.validation.decode_event`` does both). The fallback decides acceptance and writes
the rejection reason; msgspec may refuse more (e.g. lax coercions pydantic allows, offsets
other than UTC), never less. ``tests/unit/schemas/test_fast_decoder.py`` holds it to that over the
generator's workload and its corruptions.

The structs carry the contract's attribute names and enum types, so the worker reads either
kind of event the same way (``event.type``, ``event.error.class_``, ...). ``type`` is a class
attribute equal to the struct's tag (the models' ``Literal`` field), so a check like
``event.type == "run.finished"`` narrows either kind for the type checker, and costs no call.

The contract's bounds (``schemas.events``) hold here too: times within ``MIN_EVENT_TIME`` ..
``MAX_EVENT_TIME``, ``started_at`` not after ``ts``, ``input``/``output`` within
``MAX_JSON_DEPTH`` levels and the 64-bit integer range (msgspec itself refuses numbers that are
not finite). ``decode_fast`` raises ``DecodeError`` and nothing else, whatever the bytes: JSON
nested past the interpreter's recursion limit becomes one too, and the contract decides.

The structs are not tracked by the garbage collector (``gc=False``): decoded from JSON and
frozen, they cannot be part of a reference cycle, and a batch holds up to 200,000 of them,
which the collector would otherwise scan again and again (~4 us per event measured on a
100,000-event batch).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta, Struct

from schemas.events import (
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    UINT16_MAX,
    UINT32_MAX,
    ErrorClass,
    ReplayMode,
    RunStatus,
    StepStatus,
    StepType,
    Trigger,
    WorkflowType,
    json_problem,
)

_UTC = timedelta(0)

NonEmpty = Annotated[str, Meta(min_length=1, max_length=512)]
AwareTime = Annotated[datetime, Meta(tz=True)]


class FastError(Struct, frozen=True, kw_only=True, gc=False):
    code: NonEmpty
    message: str
    class_: ErrorClass = msgspec.field(name="class")
    stack_trace: str | None = None
    suggested_fix: str | None = None


class _Context(Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    event_id: NonEmpty
    schema_version: Literal[1, 2]
    ts: AwareTime
    account_id: NonEmpty
    run_id: NonEmpty
    workflow_id: NonEmpty
    workflow_name: str
    workflow_version: Annotated[int, Meta(ge=0, le=UINT32_MAX)]
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
    tags: dict[str, str] | None = None

    def __post_init__(self) -> None:
        # Times in other offsets are valid; the contract's models normalise them to UTC.
        if self.ts.utcoffset() != _UTC:
            raise ValueError("ts: not UTC")
        if not MIN_EVENT_TIME <= self.ts <= MAX_EVENT_TIME:
            raise ValueError("ts: out of range")


class FastRunQueued(_Context, tag="run.queued", frozen=True):
    type: ClassVar[Literal["run.queued"]] = "run.queued"


class FastRunStarted(_Context, tag="run.started", frozen=True):
    type: ClassVar[Literal["run.started"]] = "run.started"


class FastRunFinished(_Context, tag="run.finished", frozen=True):
    type: ClassVar[Literal["run.finished"]] = "run.finished"
    status: RunStatus
    started_at: AwareTime
    error: FastError | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.started_at.utcoffset() != _UTC:
            raise ValueError("started_at: not UTC")
        if not MIN_EVENT_TIME <= self.started_at <= self.ts:   # ts is at most MAX_EVENT_TIME
            raise ValueError("started_at: out of range or after ts")
        if self.status is RunStatus.FAILED and self.error is None:
            raise ValueError("error is required when status is 'failed'")


class _Step(_Context, frozen=True):
    step_id: NonEmpty
    step_index: Annotated[int, Meta(ge=0, le=UINT16_MAX)]
    step_name: str
    step_type: StepType
    attempt: Annotated[int, Meta(ge=1, le=UINT16_MAX)]


class FastStepStarted(_Step, tag="step.started", frozen=True):
    type: ClassVar[Literal["step.started"]] = "step.started"


class FastStepFinished(_Step, tag="step.finished", frozen=True):
    type: ClassVar[Literal["step.finished"]] = "step.finished"
    status: StepStatus
    started_at: AwareTime
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: FastError | None = None
    condition_result: bool | None = None
    branch: str | None = None
    action_kind: str | None = None
    target: str | None = None
    scheduled_resume_at: AwareTime | None = None
    resumed_at: AwareTime | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for value in (self.started_at, self.scheduled_resume_at, self.resumed_at):
            if value is not None and (value.utcoffset() != _UTC or not MIN_EVENT_TIME <= value <= MAX_EVENT_TIME):
                raise ValueError("time not in UTC or out of range")
        if self.started_at > self.ts:
            raise ValueError("started_at: after ts")
        if self.status is StepStatus.FAILED and self.error is None:
            raise ValueError("error is required when status is 'failed'")
        if (self.input is not None and json_problem(self.input) is not None) or \
                (self.output is not None and json_problem(self.output) is not None):
            raise ValueError("input/output out of bounds")


FastEvent = FastRunQueued | FastRunStarted | FastRunFinished | FastStepStarted | FastStepFinished

_DECODER = msgspec.json.Decoder(FastEvent)

DecodeError = msgspec.DecodeError   # ValidationError is a subclass: both mean "ask the contract"

# msgspec rounds fractions of a second past microseconds where the contract truncates them.
_SUB_MICROSECOND = re.compile(rb":\d\d\.\d{7}")


def decode_fast(raw: bytes) -> FastEvent:
    """Decode and check one line; raises ``DecodeError`` (and nothing else) when the contract
    must decide."""
    if _SUB_MICROSECOND.search(raw):
        raise DecodeError("sub-microsecond time: the contract decides")
    try:
        return _DECODER.decode(raw)
    except RecursionError:   # JSON nested ~1,000 deep, even in a field the structs ignore
        raise DecodeError("nested too deeply: the contract decides") from None
