"""The event models: every kind of bad line is rejected with its field and reason; valid
events round-trip through the models and validate against the exported JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft202012Validator

from schemas import Rejection, RunFinished, StepFinished, event_json_schema, parse_event
from schemas.events import JSON_INT_MAX, JSON_INT_MIN, MAX_JSON_DEPTH, ErrorClass, RunStatus
from schemas.validation import decode_event


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


# -- the bounds runlens adds so that whatever validates can be stored ----------------------------

def _nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth - 1):
        value = {"a": value}
    return {"a": value} if depth else leaf


def _step_finished(sample_events_path) -> dict:
    doc = orjson.loads(_lines(sample_events_path)[3])
    assert doc["type"] == "step.finished"
    return doc


@pytest.mark.parametrize(("value", "ok"), [
    (_nested(MAX_JSON_DEPTH), True),
    (_nested(MAX_JSON_DEPTH + 1), False),
    ({"list": [[[[1]]]]}, True),
    ({"x": JSON_INT_MAX, "y": JSON_INT_MIN}, True),
    ({"x": JSON_INT_MAX + 1}, False),
    ({"x": [0, JSON_INT_MIN - 1]}, False),
    ({"x": 1.5e308, "y": -0.0}, True),
])
def test_input_and_output_are_bounded_in_depth_and_integers(sample_events_path, value, ok):
    for name in ("input", "output"):
        doc = _step_finished(sample_events_path)
        doc[name] = value
        result = parse_event(json.dumps(doc).encode())   # orjson cannot write the big integers
        assert isinstance(result, StepFinished) == ok, result
        if not ok:
            assert result.field == name and ("nested deeper than 32 levels" in result.reason
                                             or "64-bit range" in result.reason)


def test_a_big_integer_is_rejected_with_its_path_not_rounded(sample_events_path):
    line = orjson.dumps(_step_finished(sample_events_path)).replace(
        b'"input":{', b'"input":{"n":[1,123456789012345678901234567890],', 1)
    result = parse_event(line)
    assert isinstance(result, Rejection) and result.field == "input"
    assert result.reason == "integer outside the 64-bit range (-2**63 .. 2**64-1) at ['n'][1]"


@pytest.mark.parametrize("depth", [40, 600, 1000, 5000, 100_000])
def test_any_nesting_is_a_rejection_never_an_exception(sample_events_path, depth):
    base = orjson.dumps(_step_finished(sample_events_path))
    for opener, closer in ((b'{"a":', b"}"), (b"[", b"]")):
        nested = opener * depth + b"1" + closer * depth
        in_input = base.replace(b'"input":', b'"input":{"deep":' + nested + b'},"_":', 1)
        in_unknown_field = base.replace(b'"input":', b'"unknown_field":' + nested + b',"input":', 1)
        for line, accepted in ((in_input, False), (in_unknown_field, depth <= 600), (nested, False)):
            result = parse_event(line, max_bytes=2**24)
            assert isinstance(result, Rejection) != accepted, (depth, result)
            assert isinstance(decode_event(line, max_bytes=2**24), Rejection) != accepted
            if isinstance(result, Rejection) and line is not nested:
                assert result.reason == "JSON nested too deeply" or (
                    result.field == "input" and result.reason.startswith("nested deeper than 32 levels"))


@pytest.mark.parametrize(("ts", "reason_part"), [
    ("1999-12-31T23:59:59.999Z", "before 2000-01-01"),
    ("1970-01-01T00:00:00Z", "before 2000-01-01"),
    ("0001-01-01T00:00:00+01:00", "before 2000-01-01"),      # converting it to UTC would overflow
    ("9999-12-31T23:59:59-01:00", "after 2299-12-31"),
    ("2300-01-01T00:00:00Z", "after 2299-12-31"),
])
def test_absurd_times_are_rejected_not_raised(sample_events_path, ts, reason_part):
    for field in ("ts", "started_at"):
        doc = _valid_doc(sample_events_path)
        doc[field] = ts
        result = parse_event(orjson.dumps(doc))
        assert isinstance(result, Rejection) and result.field == field and reason_part in result.reason


def test_started_at_after_ts_is_rejected(sample_events_path):
    for doc in (_valid_doc(sample_events_path), _step_finished(sample_events_path)):
        doc["started_at"] = "2026-11-20T10:00:30.301Z"
        doc["ts"] = "2026-11-20T10:00:30.300Z"
        result = parse_event(orjson.dumps(doc))
        assert isinstance(result, Rejection) and "started_at is later than ts" in result.reason
        doc["started_at"] = doc["ts"]
        assert not isinstance(parse_event(orjson.dumps(doc)), Rejection)


def test_times_that_happened_may_not_be_ahead_of_the_receiving_clock(sample_events_path):
    not_after = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    doc = _step_finished(sample_events_path)
    doc.update(ts="2026-11-20T10:05:00Z", started_at="2026-11-20T10:04:00Z")
    assert isinstance(parse_event(orjson.dumps(doc), not_after=not_after), StepFinished)
    doc["scheduled_resume_at"] = "2027-06-01T00:00:00Z"    # a plan may be in the future
    assert isinstance(parse_event(orjson.dumps(doc), not_after=not_after), StepFinished)
    for field, value in (("ts", "2026-11-20T10:05:00.001Z"), ("resumed_at", "2026-11-20T10:06:00Z")):
        late = dict(doc, **{field: value})
        for decode in (parse_event, decode_event):
            result = decode(orjson.dumps(late), not_after=not_after)
            assert isinstance(result, Rejection) and result.field == field
            assert result.reason == "later than the receiver's clock plus the tolerated skew"
        assert not isinstance(parse_event(orjson.dumps(late)), Rejection)   # no clock, no future bound


def test_text_with_lone_surrogates_is_rejected():
    assert isinstance(parse_event('{"event_id": "\ud800"}'), Rejection)
    assert isinstance(parse_event(b'{"event_id": "\\ud800"}'), Rejection)
