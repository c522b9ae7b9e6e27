"""The compiled hot-path decoder never accepts what the contract rejects, and when it accepts
it yields the same values as the contract's models."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime
from itertools import islice

import orjson
import pytest

from producers.workload import WorkloadConfig, corrupt, generate
from schemas.events import RunContext, RunFinished, StepFinished
from schemas.fast import (
    DecodeError,
    FastRunFinished,
    FastRunQueued,
    FastRunStarted,
    FastStepFinished,
    FastStepStarted,
    decode_fast,
)
from schemas.validation import Rejection, decode_event, parse_event

START = datetime(2026, 11, 16, tzinfo=UTC)
FIELDS = sorted(set(RunFinished.model_fields) | set(StepFinished.model_fields))


def _values(event) -> dict:
    out = {}
    for name in FIELDS:
        value = getattr(event, name, None)
        if name == "error" and value is not None:
            value = (value.code, value.message, value.class_, value.stack_trace, value.suggested_fix)
        out[name] = value
    out["type"] = event.type
    return out


def _agree(line: bytes) -> str:
    """'fast' when the fast decoder took the line, 'contract' when it deferred; fails on disagreement."""
    strict = parse_event(line)
    try:
        fast = decode_fast(line)
    except DecodeError:
        assert decode_event(line) == strict
        return "contract"
    assert not isinstance(strict, Rejection), f"fast decoder accepted what the contract rejects ({strict}): {line!r}"
    assert _values(fast) == _values(strict), line
    return "fast"


@pytest.fixture(scope="module")
def workload() -> list[dict]:
    config = WorkloadConfig(seed=11, backfill_runs_per_hour=400)
    return list(islice(generate(config, START, START.replace(hour=12)), 20_000))


def test_every_generated_event_takes_the_fast_path_with_the_contracts_values(workload):
    paths = {_agree(orjson.dumps(event)) for event in workload}
    assert paths == {"fast"}


def test_corrupted_lines_are_never_accepted_by_the_fast_path(workload):
    rng = random.Random(3)
    for k, event in enumerate(workload[:3000]):
        line = corrupt(event, k, rng)
        assert _agree(line) == "contract"
        assert isinstance(decode_event(line), Rejection)


def _variants(event: dict) -> list[dict]:
    """Edge cases around each constraint the contract states."""
    out = []

    def variant(**changes) -> None:
        doc = copy.deepcopy(event)
        for key, value in changes.items():
            if value is ...:
                doc.pop(key, None)
            else:
                doc[key] = value
        out.append(doc)

    for name in ("event_id", "account_id", "run_id", "workflow_id"):
        variant(**{name: ""})
        variant(**{name: "x" * 512})
        variant(**{name: "x" * 513})
        variant(**{name: 5})
        variant(**{name: ...})
    for ts in ("2026-11-16T10:00:00Z", "2026-11-16T10:00:00+00:00", "2026-11-16T12:00:00+02:00",
               "2026-11-16T10:00:00", "2026-11-16 10:00:00Z", "2026-11-16T10:00:00.123456Z",
               "2026-11-16T10:00:00.123456789Z", "2026-11-16", "1763287200", 1763287200, "yesterday",
               "2026-02-30T10:00:00Z", "2026-11-16T24:00:00Z", "2026-11-16T10:00:60Z", "2026-11-16t10:00:00z"):
        variant(ts=ts)
    for version in (0, 1, 2, 3, "1", 1.0, True, None):
        variant(schema_version=version)
    for wv in (-1, 0, 7, "7", 7.0, 7.5, True, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1):
        variant(workflow_version=wv)
    for wt in ("card", "CARD", "Card", "unknown", None, 1):
        variant(workflow_type=wt)
    variant(tags={"a": "b"})
    variant(tags={"a": 1})
    variant(tags=["a"])
    variant(site_id=None)
    variant(site_id=7)
    variant(replay_mode="exact")
    variant(replay_mode="bogus")
    variant(extra_field={"nested": [1, 2]})
    if event["type"] in ("step.started", "step.finished"):
        for idx in (-1, 0, "3", 3.0, None, 65535, 65536):
            variant(step_index=idx)
        for attempt in (0, 1, "2", None, 65535, 65536):
            variant(attempt=attempt)
        variant(step_type="Action")
    if event["type"] in ("run.finished", "step.finished"):
        variant(status="failed", error=None)
        variant(status="failed", error={"code": "X", "message": "m", "class": "data"})
        variant(error={"code": "", "message": "m", "class": "data"})
        variant(error={"code": "X", "message": "m", "class": "nope"})
        variant(error={"code": "X", "message": "m", "class_": "data"})
        variant(error={"code": "X", "class": "data"})
        variant(started_at="2026-11-16T09:00:00+01:00")
        variant(started_at=None)
        variant(status="Success")
    if event["type"] == "step.finished":
        variant(condition_result="true")
        variant(condition_result=1)
        variant(condition_result=True)
        variant(input={"a": [1, 2.5, None, {"b": "c"}]})
        variant(input=[1])
        variant(output="text")
        variant(scheduled_resume_at="2026-11-16T10:00:00+05:00", resumed_at="2026-11-16T05:00:01Z")
    for ts in ("2000-01-01T00:00:00Z", "1999-12-31T23:59:59.999Z", "2299-12-31T23:59:59.999Z",
               "2300-01-01T00:00:00Z", "0001-01-01T00:00:00Z"):
        variant(ts=ts)
    if event["type"] in ("run.finished", "step.finished"):
        variant(started_at=event["ts"])
        variant(started_at="2299-12-31T23:59:59Z")          # after ts
        variant(started_at="1999-12-31T23:59:59Z")
    if event["type"] == "step.finished":
        deep = 1
        for level in range(1, 40):
            deep = {"a": deep}
            if level in (31, 32, 33):
                variant(input=deep)
        variant(output={"n": [2**64 - 1, -(2**63)]})
        variant(output={"n": [2**64]})
        variant(input={"n": -(2**63) - 1})
        variant(input={"n": 10**40})
        variant(scheduled_resume_at="2299-12-31T23:59:59.999Z", resumed_at="2300-01-01T00:00:00Z")
        variant(resumed_at="1999-01-01T00:00:00Z")
    variant(type="run.unknown")
    variant(type=...)
    return out


def test_edge_cases_agree_with_the_contract(workload):
    seen_types: set[str] = set()
    paths = {"fast": 0, "contract": 0}
    for event in workload:
        if event["type"] in seen_types:
            continue
        seen_types.add(event["type"])
        for doc in _variants(event):
            paths[_agree(json.dumps(doc).encode())] += 1   # orjson cannot write integers past 64 bits
    assert seen_types == {"run.queued", "run.started", "run.finished", "step.started", "step.finished"}
    assert paths["fast"] > 0 and paths["contract"] > 0


def test_other_offsets_are_normalised_by_the_contract_path():
    event = {"event_id": "e1", "schema_version": 2, "type": "run.queued", "ts": "2026-11-16T12:00:00+02:00",
             "account_id": "a", "run_id": "r", "workflow_id": "w", "workflow_name": "W",
             "workflow_version": 1, "workflow_type": "card", "trigger": "manual"}
    parsed = decode_event(orjson.dumps(event))
    assert isinstance(parsed, RunContext)
    assert parsed.ts == datetime(2026, 11, 16, 10, tzinfo=UTC) and parsed.ts.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("depth", [33, 900, 1000, 5000, 50_000])
def test_deep_nesting_makes_the_fast_decoder_defer_never_raise_anything_else(depth):
    line = b'{"type":"step.finished","input":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    with pytest.raises(DecodeError):
        decode_fast(line)
    assert _agree(line) == "contract"


def test_each_struct_names_its_type_as_its_tag():
    """``type`` is a class attribute (cheap to read on the hot path, a Literal for the checker):
    it must be the tag msgspec decodes by, and not a field."""
    for cls in (FastRunQueued, FastRunStarted, FastRunFinished, FastStepStarted, FastStepFinished):
        assert cls.type == cls.__struct_config__.tag and "type" not in cls.__struct_fields__
