"""SIGUSR2's heap lines: the code holding the most memory, only when tracemalloc traces."""

import tracemalloc

from streams.diagnostics import heap_lines


def _hold() -> list[bytes]:
    return [bytes(1000) + bytes([i % 256]) for i in range(20_000)]   # ~20 MB from one line


def test_nothing_without_tracing():
    assert not tracemalloc.is_tracing()
    assert heap_lines() == []


def test_the_line_holding_most_comes_first():
    tracemalloc.start()
    try:
        held = _hold()
        lines = heap_lines(limit=3)
    finally:
        tracemalloc.stop()
    assert len(held) == 20_000
    assert lines[0].startswith("traced 19.") and 2 <= len(lines) <= 4, lines
    assert "MiB" in lines[1] and "test_heap_lines.py:9" in lines[1] and " 20,00" in lines[1], lines
