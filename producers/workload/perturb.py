"""Delivery faults on top of a workload: ``perturb`` (duplicates, reordering, late delivery,
bad lines) and ``corrupt`` (one bad line of each kind the contract rejects)."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson

from producers.workload.spec import _MS, _to_ms

_REQUIRED = ("event_id", "schema_version", "type", "ts", "account_id", "run_id", "workflow_id", "workflow_name",
             "workflow_version", "workflow_type", "trigger")
_BAD_ENUMS = (("workflow_type", ("newsletter", "Contact", "cards")), ("trigger", ("webhook", "cron", "Manual")),
              ("type", ("run.exploded", "step.retried", "run.paused")), ("step_type", ("loop", "Action")),
              ("status", ("crashed", "done", "cancelled")), ("replay_mode", ("partial", "fuzzy")))
_BAD_TIMES = ("2026-13-45T25:61:00Z", "yesterday", "20/11/2026 10:00:00", "2026-11-20T10:00:00", "2026-02-30T10:00:00Z",
              "")
_BAD_KINDS = ("not_json", "missing_field", "bad_enum", "bad_time", "bad_version", "array")


def _bad_line(r: random.Random, ev: dict[str, Any], line: bytes, k: int) -> bytes:
    kind = _BAD_KINDS[k % len(_BAD_KINDS)]
    if kind == "not_json":
        return r.choice((line[: max(1, len(line) // 2)], b"not json at all", line.replace(b'"', b"'", 6),
                         line[:-1] + b",}", b"{event_id: " + line[:20]))
    if kind == "array":
        return r.choice((orjson.dumps([ev]), b"[]", orjson.dumps([ev.get("event_id"), ev.get("type")])))
    doc = dict(ev)
    doc["event_id"] = f"{ev.get('event_id', 'x')}-bad{k}"
    if kind == "missing_field":
        del doc[r.choice([f for f in _REQUIRED if f in doc] or ["event_id"])]
    elif kind == "bad_enum":
        field, values = r.choice([(f, v) for f, v in _BAD_ENUMS if doc.get(f) is not None])
        doc[field] = r.choice(values)
    elif kind == "bad_time":
        field = "started_at" if ("started_at" in doc and r.random() < 0.3) else "ts"
        doc[field] = r.choice(_BAD_TIMES)
    else:
        doc["schema_version"] = r.choice((0, 3, 7, 99))
    return orjson.dumps(doc)


def corrupt(event: dict[str, Any], k: int, rng: random.Random) -> bytes:
    """A bad line made from ``event``: the k-th of the kinds the contract rejects (not JSON,
    missing field, bad enum, bad time, unknown schema version, array), in rotation."""
    return _bad_line(rng, event, orjson.dumps(event), k)


_MINUTE_MS: dict[str, int] = {}


def _ts_ms(value: object) -> int | None:
    """Event time in ms; fast path for this module's own format, fromisoformat otherwise."""
    if not isinstance(value, str):
        return None
    if len(value) == 24 and value[19] == "." and value[23] == "Z" and value[16] == ":":
        minute = _MINUTE_MS.get(value[:16])
        if minute is None:
            if len(_MINUTE_MS) > 50_000:
                _MINUTE_MS.clear()
            try:
                minute = _to_ms(datetime.fromisoformat(value[:16] + "+00:00"))
            except ValueError:
                return None
            _MINUTE_MS[value[:16]] = minute
        try:
            return minute + int(value[17:19]) * 1000 + int(value[20:23])
        except ValueError:
            return None
    try:
        return _to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def perturb(events: Iterable[dict[str, Any]], *, seed: int, duplicate_rate: float = 0.0, reorder_rate: float = 0.0,
            late_rate: float = 0.0, late_by: timedelta = timedelta(minutes=5),
            bad_line_rate: float = 0.0) -> Iterator[bytes]:
    """Encode events as NDJSON lines (orjson, no trailing newline in each item) with delivery faults:
    exact duplicates (same event_id, same bytes), local reordering (swap within a small window),
    late delivery (an event emitted up to `late_by` of event time after its position), and bad lines
    of every kind the contract rejects (not JSON, missing required field, value outside its enum,
    unparseable time, unknown schema_version, a JSON array instead of an object). Deterministic.

    Rates are per input event: a duplicate follows within 8 positions; a reordered event is held
    back 1-4 positions; a late event is released once the stream's event time passes its own
    ts plus up to ``late_by``; a bad line is an extra line (kinds in rotation, so every kind
    appears once six bad lines were written). Every line that is not a bad line is the exact
    orjson encoding of an input event."""
    for name, rate in (("duplicate_rate", duplicate_rate), ("reorder_rate", reorder_rate),
                       ("late_rate", late_rate), ("bad_line_rate", bad_line_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in 0..1, got {rate!r}")
    if late_rate + reorder_rate > 1.0:
        raise ValueError("late_rate + reorder_rate must be <= 1")
    return _perturb(events, seed, duplicate_rate, reorder_rate, late_rate, max(1, late_by // _MS), bad_line_rate)


def _perturb(events: Iterable[dict[str, Any]], seed: int, duplicate_rate: float, reorder_rate: float,
             late_rate: float, late_ms: int, bad_line_rate: float) -> Iterator[bytes]:
    r = random.Random(f"perturb:{seed}")
    rnd, dumps = r.random, orjson.dumps
    heappush, heappop = heapq.heappush, heapq.heappop
    by_pos: list[tuple[int, int, bytes]] = []  # (release position, order, line)
    by_time: list[tuple[int, int, bytes]] = []  # (release event time ms, order, line)
    order = itertools.count(1).__next__  # ties release in the order lines were held
    pos = bad = 0
    hold = late_rate + reorder_rate
    last_ts, last_ms = None, None
    for ev in events:
        line = dumps(ev)
        now = None
        if late_rate or by_time:
            ts = ev.get("ts")
            if ts != last_ts:
                last_ts, last_ms = ts, _ts_ms(ts)
            now = last_ms
            if now is not None:
                while by_time and by_time[0][0] <= now:
                    yield heappop(by_time)[2]
        x = rnd() if hold else 1.0
        if x < late_rate and now is not None:
            heappush(by_time, (now + 1 + int(rnd() * late_ms), order(), line))
        elif late_rate <= x < hold:
            heappush(by_pos, (pos + 1 + int(rnd() * 4), order(), line))
        else:
            yield line
        if duplicate_rate and rnd() < duplicate_rate:
            heappush(by_pos, (pos + int(rnd() * 9), order(), line))
        if bad_line_rate and rnd() < bad_line_rate:
            yield _bad_line(r, ev, line, bad)
            bad += 1
        pos += 1
        while by_pos and by_pos[0][0] <= pos:
            yield heappop(by_pos)[2]
    for held in (by_pos, by_time):  # the end: what is still held, reordered lines first
        while held:
            yield heappop(held)[2]
