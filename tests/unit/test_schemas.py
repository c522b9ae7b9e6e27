"""The event models: every kind of bad line is rejected with its field and reason; valid
events round-trip through the models and validate against the exported JSON Schema."""

from __future__ import annotations

import orjson
import pytest
from jsonschema import Draft202012Validator

from schemas import Rejection, RunFinished, StepFinished, event_json_schema, parse_event
from schemas.events import ErrorClass, RunStatus


def _lines(path):
    return [ln for ln in path.read_bytes().splitlines() if ln.strip()]


def _valid_doc(path) -> dict:
    return orjson.loads(_lines(path)[6])  # e7: run.finished, failed, with error


def test_sample_file_has_nine_valid_events_and_two_rejections(sample_events_path):
    results = [parse_event(ln) for ln in _lines(sample_events_path)]
    rejected = [(i + 1, r) for i, r in enumerate(results) if isinstance(r, Rejection)]
    assert [n for n, _ in rejected] == [10, 11]
    assert "not valid JSON" in rejected[0][1].reason
    assert rejected[1][1].field == "type"
    assert "unknown event type 'run.exploded'" in rejected[1][1].reason


def test_sample_run_finished_is_fully_typed(sample_events_path):
    event = parse_event(_lines(sample_events_path)[6])
    assert isinstance(event, RunFinished)
    assert event.status is RunStatus.FAILED
    assert event.error.code == "CRM_TIMEOUT" and event.error.class_ is ErrorClass.EXTERNAL_SERVICE
    assert (event.ts - event.started_at).total_seconds() == pytest.approx(30.05)
    assert event.ts.tzinfo is not None and event.ts.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("mutate", "field", "reason_part"),
    [
        (lambda d: d.pop("event_id"), "event_id", "missing required field"),
        (lambda d: d.pop("type"), "type", "missing required field"),
        (lambda d: d.update(status="weird"), "status", "'success', 'failed' or 'stopped'"),
        (lambda d: d.update(workflow_type="blog"), "workflow_type", "'card', 'site'"),
        (lambda d: d.update(trigger="telepathy"), "trigger", "'manual'"),
        (lambda d: d.update(ts="yesterday"), "ts", "valid datetime"),
        (lambda d: d.update(ts="2026-11-20T10:00:00"), "ts", "timezone"),
        (lambda d: d.update(schema_version=9), "schema_version", "not supported"),
        (lambda d: d.update(workflow_version="three"), "workflow_version", "integer"),
        (lambda d: d.pop("error"), None, "error is required when status is 'failed'"),
        (lambda d: d["error"].update({"class": "cosmic"}), "error.class", "'config'"),
        (lambda d: d.pop("started_at"), "started_at", "missing required field"),
    ],
)
def test_bad_fields_are_rejected_with_field_and_reason(sample_events_path, mutate, field, reason_part):
    doc = _valid_doc(sample_events_path)
    mutate(doc)
    result = parse_event(orjson.dumps(doc))
    assert isinstance(result, Rejection), result
    assert result.field == field
    assert reason_part in result.reason


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (b"not json at all", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'"just a string"', "expected a JSON object, got str"),
        (b"", "not valid JSON"),
    ],
)
def test_non_objects_are_rejected(raw, reason_part):
    result = parse_event(raw)
    assert isinstance(result, Rejection) and reason_part in result.reason


def test_oversize_event_is_rejected_before_parsing(sample_events_path):
    doc = _valid_doc(sample_events_path)
    doc["error"]["stack_trace"] = "x" * 5000
    result = parse_event(orjson.dumps(doc), max_bytes=4096)
    assert isinstance(result, Rejection) and "over the 4096-byte limit" in result.reason


def test_unknown_extra_fields_are_ignored(sample_events_path):
    doc = _valid_doc(sample_events_path)
    doc["added_in_a_later_minor_version"] = {"x": 1}
    assert isinstance(parse_event(orjson.dumps(doc)), RunFinished)


def test_times_with_offsets_are_normalised_to_utc(sample_events_path):
    doc = _valid_doc(sample_events_path)
    doc["ts"] = "2026-11-20T11:00:30.300+01:00"
    event = parse_event(orjson.dumps(doc))
    assert event.ts.isoformat() == "2026-11-20T10:00:30.300000+00:00"


def test_valid_events_round_trip_through_models_and_json_schema(sample_events_path):
    validator = Draft202012Validator(event_json_schema())
    valid = [ln for ln in _lines(sample_events_path) if not isinstance(parse_event(ln), Rejection)]
    assert len(valid) == 9
    for line in valid:
        event = parse_event(line)
        assert list(validator.iter_errors(orjson.loads(line))) == []
        dumped = event.model_dump_json(by_alias=True, exclude_none=True)
        assert parse_event(dumped) == event
        assert list(validator.iter_errors(orjson.loads(dumped))) == []


def test_json_schema_rejects_what_the_models_reject(sample_events_path):
    validator = Draft202012Validator(event_json_schema())
    doc = _valid_doc(sample_events_path)
    doc["type"] = "run.exploded"
    assert list(validator.iter_errors(doc))


def test_step_finished_failed_requires_error(sample_events_path):
    doc = orjson.loads(_lines(sample_events_path)[5])
    assert isinstance(parse_event(orjson.dumps(doc)), StepFinished)
    doc.pop("error")
    result = parse_event(orjson.dumps(doc))
    assert isinstance(result, Rejection) and "error is required" in result.reason
