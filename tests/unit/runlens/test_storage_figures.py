"""``runlens.bench.storage.per_million``: the arithmetic behind docs/sizing.md's storage table."""

from __future__ import annotations

import pytest

from runlens.bench.storage import per_million

MIB = 2**20


def test_figures_are_scaled_to_a_million_events_and_totalled():
    result = {"events_stored": 500_000, "merged": [
        {"table": "events", "rows": 500_000, "compressed": 20 * MIB, "uncompressed": 200 * MIB, "parts": 1},
        {"table": "run_state", "rows": 40_000, "compressed": 3 * MIB, "uncompressed": 9 * MIB, "parts": 2},
        {"table": "schema_migrations", "rows": 10, "compressed": 1 * MIB, "uncompressed": 1 * MIB, "parts": 1},
        {"table": "dead_letters", "rows": 0, "compressed": 0, "uncompressed": 0, "parts": 0},
    ]}
    rows = per_million(result, "merged")
    assert [row[0] for row in rows] == ["events", "run_state", "total"]   # bookkeeping and empty tables left out
    events, run_state, total = rows
    assert events[1] == 1_000_000 and events[2] == pytest.approx(40.0) and events[3] == pytest.approx(400.0)
    assert run_state[1] == 80_000 and run_state[2] == pytest.approx(6.0) and run_state[4] == pytest.approx(3.0)
    assert total[1] == 1_080_000 and total[2] == pytest.approx(46.0) and total[3] == pytest.approx(418.0)
    assert total[4] == pytest.approx(418.0 / 46.0)
