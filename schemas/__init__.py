"""Event contract: pydantic v2 models and validation. Pure, no I/O."""

from schemas.events import (
    CURRENT_SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ErrorClass,
    ErrorInfo,
    Event,
    EventType,
    ReplayMode,
    RunFinished,
    RunQueued,
    RunStarted,
    RunStatus,
    StepFinished,
    StepStarted,
    StepStatus,
    StepType,
    Trigger,
    WorkflowType,
)
from schemas.validation import MAX_EVENT_BYTES, Rejection, event_json_schema, parse_event

__all__ = [
    "CURRENT_SCHEMA_VERSION", "SUPPORTED_SCHEMA_VERSIONS", "ErrorClass", "ErrorInfo", "Event",
    "EventType", "ReplayMode", "RunFinished", "RunQueued", "RunStarted", "RunStatus",
    "StepFinished", "StepStarted", "StepStatus", "StepType", "Trigger", "WorkflowType",
    "MAX_EVENT_BYTES", "Rejection", "event_json_schema", "parse_event",
]
