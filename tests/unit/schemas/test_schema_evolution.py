"""Schema evolution: v1 and v2 events mix without rejections, and a breaking change to the
contract is caught against the committed v1 schema."""

from __future__ import annotations

import copy
import json

import orjson

from schemas import Rejection, event_json_schema, parse_event
from schemas.compat import breaking_changes
from streams.batch import RawRecord, split_batch
from tests.conftest import FIXTURES

V1_SCHEMA = json.loads((FIXTURES / "event-schema-v1.json").read_text())


def _sample(sample_events_path):
    return [ln for ln in sample_events_path.read_bytes().splitlines() if ln.strip()][:9]


def test_v1_and_v2_events_mixed_are_all_accepted(sample_events_path):
    records = []
    for offset, line in enumerate(_sample(sample_events_path)):
        doc = orjson.loads(line)
        if offset % 2:
            doc["schema_version"] = 2
            doc["tags"] = {"region": "eu-west", "plan": "pro"}
        records.append(RawRecord(doc["run_id"].encode(), orjson.dumps(doc), "events", 0, offset))
    split = split_batch(records, max_event_bytes=100_000)
    assert split.dead_letters == []
    assert len(split.events) == 9
    assert {e.schema_version for e, *_ in split.events} == {1, 2}


def test_unknown_schema_version_is_still_rejected(sample_events_path):
    doc = orjson.loads(_sample(sample_events_path)[0])
    doc["schema_version"] = 3
    result = parse_event(orjson.dumps(doc))
    assert isinstance(result, Rejection) and result.field == "schema_version"


def test_current_schema_is_backward_compatible_with_v1():
    assert breaking_changes(V1_SCHEMA, event_json_schema()) == []


def test_a_breaking_change_is_caught():
    broken = copy.deepcopy(event_json_schema())
    defs = broken["$defs"]
    defs["RunQueued"]["required"].append("tags")
    defs["WorkflowType"]["enum"].remove("survey")
    defs["RunFinished"]["properties"]["workflow_version"]["minimum"] = 1
    problems = breaking_changes(V1_SCHEMA, broken)
    assert "run.queued: field 'tags' became required" in problems
    assert any("workflow_type" in p and "enum:survey" in p for p in problems)
    assert "run.finished: field 'workflow_version' has a tighter minimum" in problems
