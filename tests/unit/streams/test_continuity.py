"""Holes the consumer leaves in a partition (streams.continuity): found before and between the
records of a batch and in a partition that stopped being delivered."""

from streams.continuity import HOLE_MAX_RECORDS, STALL_SECONDS, Continuity


def test_a_partition_starts_at_its_committed_offset():
    c = Continuity()
    c.start(3, 79, now=0.0)
    assert c.holes(3, [109, 110, 111]) == [(79, 109)]      # faust-streaming issue 596's shape
    assert c.holes(3, [79, 80]) == []


def test_a_single_skipped_record_at_the_head_is_a_hole():
    c = Continuity()
    c.start(0, 2585, now=0.0)
    assert c.holes(0, [2586, 2587]) == [(2585, 2586)]       # what Faust would commit past (issue 606)


def test_holes_between_records_of_one_batch():
    c = Continuity()
    c.start(1, 10, now=0.0)
    assert c.holes(1, [10, 11, 15, 16, 20]) == [(12, 15), (17, 20)]


def test_redelivered_records_are_not_holes():
    c = Continuity()
    c.start(1, 10, now=0.0)
    c.handled(1, 30, now=1.0)
    assert c.holes(1, [12, 13, 31]) == []
    assert c.next_offset[1] == 31


def test_an_unknown_start_finds_nothing_until_a_batch_was_handled():
    c = Continuity()
    c.start(2, None, now=0.0)
    assert c.holes(2, [500]) == []
    c.handled(2, 500, now=1.0)
    assert c.holes(2, [503]) == [(501, 503)]


def test_handled_never_moves_back():
    c = Continuity()
    c.handled(0, 40, now=0.0)
    c.handled(0, 12, now=1.0)
    assert c.next_offset[0] == 41


def test_start_does_not_override_a_partition_already_tracked():
    c = Continuity()
    c.handled(0, 40, now=0.0)
    c.start(0, 5, now=1.0)
    assert c.next_offset[0] == 41


def test_a_partition_is_stalled_only_when_read_records_wait_undelivered_for_long():
    c = Continuity()
    for partition in range(4):
        c.start(partition, 100, now=0.0)
    read_to = {0: 129, 1: 99, 2: 129, 3: None, 4: 50}   # 1 not read that far yet, 3 nothing read, 4 not tracked
    assert c.stalled(read_to, in_flight=set(), now=STALL_SECONDS - 1) == []
    assert c.stalled(read_to, in_flight={2}, now=STALL_SECONDS) == [(0, (100, 130))]
    c.handled(0, 110, now=STALL_SECONDS)
    assert c.stalled(read_to, in_flight=set(), now=STALL_SECONDS + 1) == [(2, (100, 130))]


def test_a_slow_consumer_is_not_a_hole():
    """A restarting broker: the log end runs ahead, but the consumer has read nothing further."""
    c = Continuity()
    c.start(0, 919, now=0.0)
    assert c.stalled({0: 918}, in_flight=set(), now=10 * STALL_SECONDS) == []


def test_a_stalled_hole_is_read_in_bounded_pieces():
    c = Continuity()
    c.start(0, 0, now=0.0)
    assert c.stalled({0: 10 * HOLE_MAX_RECORDS}, in_flight=set(), now=STALL_SECONDS) == [(0, (0, HOLE_MAX_RECORDS))]


def test_forget_stops_tracking():
    c = Continuity()
    c.start(0, 0, now=0.0)
    c.forget(0)
    assert c.holes(0, [5]) == []
    assert c.stalled({0: 10}, in_flight=set(), now=STALL_SECONDS) == []
