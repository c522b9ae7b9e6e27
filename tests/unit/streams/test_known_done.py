"""Which offsets of a hole the consumer may really have dropped (streams.delivery.not_known_done):
not those it committed, acknowledged, or jumped over because the log does not hold them."""

from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP
from intervaltree import IntervalTree

from streams.delivery import not_known_done


def _app(committed=None, acked=(), gaps=()):
    tp = TP("t", 0)
    tree = IntervalTree()
    for start, end in gaps:
        tree.addi(start, end)
    consumer = SimpleNamespace(_committed_offset={tp: committed}, _acked=defaultdict(list, {tp: list(acked)}),
                               _acked_index=defaultdict(set, {tp: set(acked)}),
                               _gap=defaultdict(IntervalTree, {tp: tree}))
    return SimpleNamespace(consumer=consumer)


def test_a_hole_nothing_explains_is_kept_whole():
    assert not_known_done(_app(committed=60), "t", 0, 60, 89) == [(60, 89)]


def test_committed_acknowledged_and_jumped_over_offsets_are_left_out():
    app = _app(committed=62, acked=[70, 71], gaps=[(80, 85)])
    assert not_known_done(app, "t", 0, 60, 89) == [(62, 70), (72, 80), (85, 89)]


def test_a_hole_the_log_does_not_hold_is_empty():
    assert not_known_done(_app(committed=10, gaps=[(11, 16)]), "t", 0, 11, 16) == []
