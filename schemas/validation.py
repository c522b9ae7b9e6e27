"""Turn raw bytes into a validated event, or a rejection that says which field and why.

Pure: no I/O, no clock: the receiver passes the latest event time it accepts (``not_after``:
its clock when the batch arrived plus ``MAX_CLOCK_SKEW_SECONDS``). ``parse_event`` and
``decode_event`` never raise, whatever the bytes; they return a ``Rejection``.

Bounds checked here on top of the models' (``schemas.events``):

- a line is at most ``max_bytes`` long (``RUNLENS_MAX_EVENT_BYTES``, 256 KiB by default);
- JSON nested beyond what the decoder can walk (about 1,000 levels, anywhere in the line)
  is rejected as nested too deeply; ``input``/``output`` are held to ``MAX_JSON_DEPTH`` by
  the models;
- integers are decoded exactly (msgspec, not orjson, which would round those beyond 64 bits
  to floats), so the models can reject the ones out of range instead of storing them rounded;
- ``ts`` and ``resumed_at`` (times that happened; ``started_at`` is at most ``ts``) must not
  be later than ``not_after``. ``scheduled_resume_at`` is a plan and may be in the future.

Replay: the future bound is judged when a line is received. A line rejected as too far in
the future stays in the dead-letter store (``runlens dlq replay`` re-publishes it once time has
caught up). A batch redelivered after a crash is judged again against a later clock, so a
line that was just past the bound may be stored then, next to its earlier dead letter; a
line that was valid stays valid (the clock only moves forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, final

import msgspec
import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.events import Event
from schemas.fast import FastEvent, decode_fast

MAX_EVENT_BYTES = 256 * 1024
"""Default upper bound for one encoded event; larger payloads are rejected as oversize."""

MAX_CLOCK_SKEW_SECONDS = 300.0
"""Default of how far ahead of the receiver's clock an event time may be (5 minutes:
engines' clocks drift; an event further ahead is a bad clock or a forgery)."""

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
_JSON = msgspec.json.Decoder()

NESTED_TOO_DEEPLY = "JSON nested too deeply"
IN_THE_FUTURE = "later than the receiver's clock plus the tolerated skew"


@final   # no subclasses: ``type(result) is Rejection`` tells it apart on the hot path
@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw line was not accepted. ``field`` is a dotted path or ``None`` for the whole line."""

    reason: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


def describe_validation_error(exc: ValidationError) -> Rejection:
    """The first problem of a pydantic error as (field, reason), in words a user can act on."""
    err = exc.errors(include_url=False)[0]
    # Drop the discriminator tag from the location: ("run.finished", "status") -> "status".
    loc = [str(p) for p in err["loc"] if str(p) not in _EVENT_TYPES]
    field = ".".join(loc) or None
    etype, msg = err["type"], err["msg"]
    if etype == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return Rejection(f"unknown event type {tag!r} (expected one of {', '.join(sorted(_EVENT_TYPES))})", "type")
    if etype == "union_tag_not_found":
        return Rejection("missing required field", "type")
    if etype == "missing":
        return Rejection("missing required field", field)
    if etype == "value_error":
        msg = msg.removeprefix("Value error, ")
    return Rejection(msg, field)


_EVENT_TYPES = {"run.queued", "run.started", "run.finished", "step.started", "step.finished"}


def _not_json(raw: bytes, exc: msgspec.DecodeError) -> Rejection:
    # msgspec decides; orjson usually words the same problem better (line and column).
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as friendly:
        return Rejection(f"not valid JSON ({friendly.args[0]})")
    except RecursionError:
        return Rejection(NESTED_TOO_DEEPLY)
    return Rejection(f"not valid JSON ({exc})")


def too_far_ahead(event: Event | FastEvent, not_after: datetime) -> Rejection | None:
    """A rejection when a time that happened is later than ``not_after``, else ``None``."""
    if event.ts > not_after:
        return Rejection(IN_THE_FUTURE, "ts")
    resumed = getattr(event, "resumed_at", None)
    if resumed is not None and resumed > not_after:
        return Rejection(IN_THE_FUTURE, "resumed_at")
    return None


def parse_event(raw: bytes | str, *, max_bytes: int = MAX_EVENT_BYTES,
                not_after: datetime | None = None) -> Event | Rejection:
    """Validate one encoded event against the contract. Returns the model, or a ``Rejection``
    with the reason. ``not_after``: the latest ``ts``/``resumed_at`` accepted (``None``: no
    future bound, for callers that have no receiving clock)."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError:
            return Rejection("not valid JSON (text is not valid Unicode: lone surrogates)")
    if len(raw) > max_bytes:
        return Rejection(f"event is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        doc: Any = _JSON.decode(raw)
    except msgspec.DecodeError as exc:
        return _not_json(raw, exc)
    except RecursionError:
        return Rejection(NESTED_TOO_DEEPLY)
    if not isinstance(doc, dict):
        return Rejection(f"expected a JSON object, got {type(doc).__name__}")
    try:
        event = _EVENT_ADAPTER.validate_python(doc)
    except ValidationError as exc:
        return describe_validation_error(exc)
    except RecursionError:
        return Rejection(NESTED_TOO_DEEPLY)
    if not_after is not None:
        return too_far_ahead(event, not_after) or event
    return event


def decode_event(raw: bytes, *, max_bytes: int = MAX_EVENT_BYTES,
                 not_after: datetime | None = None) -> Event | FastEvent | Rejection:
    """``parse_event`` for the worker's hot path: the compiled decoder (``schemas.fast``) takes
    the common well-formed event ~4x faster; whatever it refuses, the contract decides. Same
    acceptance, same values, same rejection reasons; the event may be a struct, not a model.
    Never raises: anything the fast decoder raises hands the line to the contract."""
    if len(raw) <= max_bytes:
        try:
            event = decode_fast(raw)
        except Exception:   # noqa: BLE001 - DecodeError by design; anything else: the contract decides
            pass
        else:
            if not_after is not None:
                return too_far_ahead(event, not_after) or event
            return event
    return parse_event(raw, max_bytes=max_bytes, not_after=not_after)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one event, as pydantic generates it."""
    schema = _EVENT_ADAPTER.json_schema(by_alias=True)
    schema["title"] = "runlens workflow event"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
