"""One definition of the event's fields: the pydantic models in ``schemas.events``.

Derived from them: ``schemas.events.STORED_EVENT_FIELDS`` / ``EVENT_VALUE_COLUMNS`` (which
``sinks.rows`` uses) and the exported JSON schema (pydantic). Written out by hand, and compared
with the models here: the msgspec structs of ``schemas.fast``, the ``events`` table's DDL in
``sinks/migrations/001_events.sql``, and the value order of ``sinks.rows.event_values``. A field
added to the models and not to one of those (or the other way round) fails here.
"""

from __future__ import annotations

import re
import types
import typing
from datetime import datetime
from enum import Enum
from importlib import resources

import msgspec
import orjson
import pydantic
import pytest

from schemas import event_json_schema, fast
from schemas import events as ev
from sinks import rows

MODELS = {
    ev.RunQueued: fast.FastRunQueued,
    ev.RunStarted: fast.FastRunStarted,
    ev.RunFinished: fast.FastRunFinished,
    ev.StepStarted: fast.FastStepStarted,
    ev.StepFinished: fast.FastStepFinished,
    ev.ErrorInfo: fast.FastError,
}


def coarse(annotation) -> tuple[str, bool]:
    """(kind, optional) of a pydantic or msgspec annotation: metadata, constraints and the
    exact integer or string flavour do not matter; str, int, bool, time, JSON object, enum do."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            assert len(args) == 1, annotation
            annotation = args[0]
        elif origin is typing.Literal:
            annotation = type(typing.get_args(annotation)[0])
        else:
            break
    if typing.get_origin(annotation) is dict or annotation is dict:
        return "json", optional
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return f"enum:{annotation.__name__}", optional
    if annotation is pydantic.AwareDatetime or annotation is datetime:
        return "time", optional
    if isinstance(annotation, type) and issubclass(annotation, (pydantic.BaseModel, msgspec.Struct)):
        return "error", optional
    return annotation.__name__, optional


def model_fields(model) -> dict[str, tuple[str, str, bool]]:
    """name -> (wire name, kind, optional); ``type`` is the discriminator, a tag in msgspec."""
    found = {}
    for name, field in model.model_fields.items():
        if name == "type":
            continue
        kind, optional = coarse(field.annotation)
        found[name] = (field.alias or name, kind, optional or not field.is_required())
    return found


def struct_fields(struct) -> dict[str, tuple[str, str, bool]]:
    found = {}
    for field in msgspec.structs.fields(struct):
        kind, optional = coarse(field.type)
        found[field.name] = (field.encode_name, kind, optional or not field.required)
    return found


@pytest.mark.parametrize("model,struct", MODELS.items(), ids=lambda c: c.__name__)
def test_msgspec_structs_match_the_models(model, struct):
    assert struct_fields(struct) == model_fields(model)


def test_msgspec_tags_match_the_discriminators():
    for model, struct in MODELS.items():
        if "type" in model.model_fields:
            assert typing.get_args(model.model_fields["type"].annotation) == (struct.__struct_config__.tag,)


def _all_event_fields() -> dict[str, tuple[str, bool]]:
    """Every field of any event model -> (kind, nullable when stored): a field not every event
    type carries is NULL for the others."""
    everywhere = set(ev.RunContext.model_fields)
    found: dict[str, tuple[str, bool]] = {}
    for model in list(MODELS)[:-1]:
        for name, (_, kind, optional) in model_fields(model).items():
            found[name] = (kind, optional or name not in everywhere)
    return found


def test_stored_fields_cover_the_models():
    fields = _all_event_fields()
    stored = {path.split(".")[0] for _, path in ev.STORED_EVENT_FIELDS} - {"type"}
    assert stored == set(fields) - ev.NOT_STORED_FIELDS
    errors = {path.split(".")[1] for _, path in ev.STORED_EVENT_FIELDS if path.startswith("error.")}
    assert errors == set(ev.ErrorInfo.model_fields) == set(ev.ERROR_COLUMN_ORDER)
    assert rows.EVENT_VALUE_COLUMNS == ev.EVENT_VALUE_COLUMNS
    assert len(set(ev.EVENT_VALUE_COLUMNS)) == len(ev.EVENT_VALUE_COLUMNS)


def _events_table() -> list[tuple[str, str]]:
    sql = resources.files("sinks.migrations").joinpath("001_events.sql").read_text()
    body = re.search(r"CREATE TABLE IF NOT EXISTS \{db\}\.events\s*\((.*?)\n\)\s*ENGINE", sql, re.S).group(1)
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^\s+(\w+)\s+(.+?),?\s*$", body, re.M)]


_SQL_KIND = [("DateTime64", "time"), ("Bool", "bool"), ("Int", "int"), ("String", "str")]


def _sql_kind(sql_type: str) -> tuple[str, bool]:
    return next(kind for token, kind in _SQL_KIND if token in sql_type), "Nullable(" in sql_type


def test_events_table_ddl_matches_the_models():
    table = _events_table()
    assert [name for name, _ in table] == list(rows.EVENT_COLUMNS) + ["ingested_at"]
    fields = _all_event_fields()
    error_fields = model_fields(ev.ErrorInfo)
    columns = dict(table)
    for column, path in ev.STORED_EVENT_FIELDS:
        if column == "type":
            expected = ("str", False)
        elif path.startswith("error."):
            _, kind, _ = error_fields[path.split(".")[1]]
            expected = (kind, True)                      # the whole error is optional
        else:
            expected = fields[path]
        kind, nullable = expected
        stored_as = "str" if kind.startswith("enum:") or kind == "json" else kind
        assert _sql_kind(columns[column]) == (stored_as, nullable), column


def _full(model, **extra):
    base = dict(event_id="e1", schema_version=2, ts="2026-01-02T03:04:05.678Z", account_id="acct",
                run_id="r1", workflow_id="wf", workflow_name="Welcome", workflow_version=3,
                workflow_version_name="v3", workflow_type="card", trigger="api", site_id="s",
                site_name="S", card_id="c", card_name="C", contact_id="p", replay_of="r0",
                replay_mode="exact", tags={"a": "b"})
    return model.model_validate({**base, **extra})


STEP = dict(step_id="st", step_index=2, step_name="Send", step_type="action", attempt=1)
END = dict(status="failed", started_at="2026-01-02T03:04:00Z",
           error={"code": "E", "message": "m", "class": "data", "stack_trace": "t", "suggested_fix": "f"})


@pytest.mark.parametrize("event", [
    _full(ev.RunQueued, type="run.queued"),
    _full(ev.RunFinished, type="run.finished", **END),
    _full(ev.StepStarted, type="step.started", **STEP),
    _full(ev.StepFinished, type="step.finished", **STEP, **END, input={"x": 1}, output={"y": [2]},
          condition_result=True, branch="yes", action_kind="email", target="t",
          scheduled_resume_at="2026-01-02T05:00:00Z", resumed_at="2026-01-02T03:04:05Z"),
], ids=lambda e: e.type)
def test_event_values_follow_the_stored_fields(event):
    """``sinks.rows.event_values`` is written out for speed: each value lands in its column."""
    values = dict(zip(ev.EVENT_VALUE_COLUMNS, rows.event_values(event), strict=True))
    for column, path in ev.STORED_EVENT_FIELDS:
        value = event
        for part in path.split("."):
            value = getattr(value, part, None)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, dict):
            value = orjson.dumps(value).decode()
        assert values[column] == value, column
    # the same through the hot-path decoder
    raw = event.model_dump_json(by_alias=True, exclude_none=True).encode()
    assert rows.event_values(fast.decode_fast(raw)) == rows.event_values(event)


def test_json_schema_is_derived_from_the_models():
    """Exported by pydantic from the models (``runlens schema``): nothing to keep in step by hand."""
    schema = orjson.dumps(event_json_schema()).decode()
    for name in _all_event_fields():
        assert f'"{name}"' in schema
