"""The bench's pre-encoded events take their own size in memory, not an encoder's buffer each."""

import tracemalloc
from datetime import UTC, datetime

import orjson

from runlens.bench.common import encoded, held_json, live_events


def test_held_events_take_about_their_encoded_size():
    events = [e for _, e in zip(range(2000), live_events(7, datetime(2026, 1, 5, tzinfo=UTC)), strict=False)]
    tracemalloc.start()
    try:
        held = [held_json(e) for e in events]
        taken, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = sum(map(len, held))
    assert held == [orjson.dumps(e) for e in events]
    assert taken < 1.5 * size + 64 * len(held), f"{taken:,} bytes held for {size:,} bytes of JSON"


def test_encoded_keys_are_run_ids_in_order():
    keys, values = encoded(live_events(7, datetime(2026, 1, 5, tzinfo=UTC)), 50)
    assert len(keys) == len(values) == 50
    assert keys == [orjson.loads(v)["run_id"] for v in values]
