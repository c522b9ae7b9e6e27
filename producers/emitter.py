"""The emitter a workflow engine embeds: one call per lifecycle moment of a run or step.

Each call validates the event against the contract (a ``ValueError`` naming the field if the
engine passes something invalid), then produces it on the partition of its ``run_id`` so a
run's events stay in order. Events of one partition travel together as multi-event records
(NDJSON lines, at most ``linger`` seconds late, 500 per record): the worker's cost per Kafka
record is paid once per record instead of once per event (``one_record_per_event=True`` sends
each event as its own record, keyed by run id). Delivery is idempotent with ``acks=all``;
``flush()`` (also on ``close()`` / leaving the ``with`` block) blocks until the broker
acknowledged every event and raises ``DeliveryFailed`` otherwise; events not yet flushed when
the process dies may be lost, as with any Kafka producer. An unreachable broker raises
``BrokerUnavailable`` at open.

    with RunEmitter("localhost:9092") as emit:
        run = RunContext(account_id="acme", run_id="r1", workflow_id="wf-1", ...)
        emit.run_queued(run)
        emit.run_started(run)
        ...
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from producers.kafka import CheckedProducer, EventBatcher
from schemas.events import CURRENT_SCHEMA_VERSION, Event
from schemas.validation import describe_validation_error

_EVENT = TypeAdapter(Event)


@dataclass(frozen=True)
class RunContext:
    """What every event of one run carries."""

    account_id: str
    run_id: str
    workflow_id: str
    workflow_name: str
    workflow_version: int
    workflow_type: str
    trigger: str
    workflow_version_name: str | None = None
    site_id: str | None = None
    site_name: str | None = None
    card_id: str | None = None
    card_name: str | None = None
    contact_id: str | None = None
    replay_of: str | None = None
    replay_mode: str | None = None


@dataclass(frozen=True)
class StepRef:
    """Identifies one step of a workflow."""

    step_id: str
    step_index: int
    step_name: str
    step_type: str


def _now() -> datetime:
    return datetime.now(UTC)


LINGER_SECONDS = 0.02
"""How long the emitter may hold an event to pack it with others of its partition."""


class RunEmitter:
    def __init__(self, brokers: str, topic: str = "runlens.events", *,
                 clock: Callable[[], datetime] = _now, linger: float = LINGER_SECONDS,
                 one_record_per_event: bool = False, **producer_overrides: object):
        self.topic = topic
        self._clock = clock
        self._producer = CheckedProducer(brokers, **producer_overrides)
        self._batcher = None if one_record_per_event else EventBatcher(self._producer, topic, linger=linger)

    # -- lifecycle calls --------------------------------------------------------------

    def run_queued(self, run: RunContext, *, ts: datetime | None = None) -> str:
        return self._emit("run.queued", run, ts)

    def run_started(self, run: RunContext, *, ts: datetime | None = None) -> str:
        return self._emit("run.started", run, ts)

    def run_finished(self, run: RunContext, status: str, *, started_at: datetime,
                     error: dict[str, Any] | None = None, ts: datetime | None = None) -> str:
        return self._emit("run.finished", run, ts, status=status, started_at=started_at, error=error)

    def step_started(self, run: RunContext, step: StepRef, *, attempt: int = 1,
                     ts: datetime | None = None) -> str:
        return self._emit("step.started", run, ts, **asdict(step), attempt=attempt)

    def step_finished(self, run: RunContext, step: StepRef, status: str, *, started_at: datetime,
                      attempt: int = 1, ts: datetime | None = None, **details: Any) -> str:
        """``details``: input, output, error, condition_result, branch, action_kind, target,
        scheduled_resume_at, resumed_at — as the contract names them."""
        return self._emit("step.finished", run, ts, **asdict(step), attempt=attempt, status=status,
                          started_at=started_at, **details)

    # -- delivery ---------------------------------------------------------------------

    def flush(self, timeout: float = 60.0) -> int:
        """Send what is buffered and wait for the broker's acknowledgement of every event."""
        if self._batcher is not None:
            self._batcher.push()
        return self._producer.flush(timeout)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self.flush()

    def __enter__(self) -> RunEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, type_: str, run: RunContext, ts: datetime | None, **fields: Any) -> str:
        doc = {"event_id": uuid.uuid4().hex, "schema_version": CURRENT_SCHEMA_VERSION, "type": type_,
               "ts": ts or self._clock(), **asdict(run), **fields}
        try:
            event = _EVENT.validate_python(doc)
        except ValidationError as exc:
            raise ValueError(f"invalid {type_} event: {describe_validation_error(exc)}") from None
        payload = _EVENT.dump_json(event, by_alias=True, exclude_none=True)
        if self._batcher is not None:
            self._batcher.send(run.run_id, payload)
        else:
            self._producer.send(self.topic, payload, key=run.run_id)
            self._producer.poll()
        return event.event_id
