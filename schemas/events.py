"""Pydantic v2 models of the event contract (``shared/event-contract.md``, v1).

Pure: no I/O. Every event carries the full run context so that it is self-contained.
Unknown extra fields are ignored (a newer minor schema may add optional fields);
an unknown ``schema_version`` is rejected.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

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


def _to_utc(value: datetime) -> datetime:
    # Most times arrive as UTC already ("Z"): keep them; convert only other offsets.
    return value if value.utcoffset() == _NO_OFFSET else value.astimezone(timezone.utc)


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
    def _failed_has_error(self) -> "RunFinished":
        if self.status is RunStatus.FAILED and self.error is None:
            raise ValueError("error is required when status is 'failed'")
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
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    condition_result: bool | None = None
    branch: str | None = None
    action_kind: str | None = None
    target: str | None = None
    scheduled_resume_at: UtcTime | None = None
    resumed_at: UtcTime | None = None

    @model_validator(mode="after")
    def _failed_has_error(self) -> "StepFinished":
        if self.status is StepStatus.FAILED and self.error is None:
            raise ValueError("error is required when status is 'failed'")
        return self


Event = Annotated[
    Union[RunQueued, RunStarted, RunFinished, StepStarted, StepFinished],
    Field(discriminator="type"),
]
