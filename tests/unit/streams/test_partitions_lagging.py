"""Where the owned events partitions stand (streams.delivery.PartitionEnds): a partition the
consumer's last fetch shows read to its end is asked of the broker before it is said to be so."""

import asyncio

from faust.types import TP

from streams.delivery import PartitionEnds

P0, P1, P2 = TP("events", 0), TP("events", 1), TP("events", 2)


class Consumer:
    """The two calls partitions_lagging makes: the last fetch's high water, and the broker's answer."""

    def __init__(self, fetched, broker=None, fails=False):
        self.fetched, self.broker, self.fails, self.asked = fetched, broker or {}, fails, []

    def highwater(self, tp):
        return self.fetched.get(tp)

    async def highwaters(self, *tps):
        self.asked.append(tps)
        if self.fails:
            raise ConnectionError("broker unreachable")
        return {tp: self.broker[tp] for tp in tps}


def test_the_broker_is_asked_only_about_partitions_the_last_fetch_shows_read_to_their_end():
    consumer = Consumer({P0: 50, P1: 10}, broker={P1: 10})
    assert asyncio.run(PartitionEnds().lagging(consumer, {P0: 20, P1: 9})) == {0: True, 1: False}
    assert consumer.asked == [(P1,)]


def test_records_produced_after_the_last_fetch_make_a_partition_lag():
    # a worker resumed after a stop handles a fetch response from before the newest records
    consumer = Consumer({P0: 10, P1: None}, broker={P0: 4000, P1: 3000})
    assert asyncio.run(PartitionEnds().lagging(consumer, {P0: 9, P1: None})) == {0: True, 1: True}


def test_nothing_beyond_what_was_handled_is_read_to_the_end():
    consumer = Consumer({P0: 10, P1: None, P2: 0}, broker={P0: 10, P1: 0, P2: 0})
    assert asyncio.run(PartitionEnds().lagging(consumer, {P0: 9, P1: None, P2: None})) == {0: False, 1: False, 2: False}


def test_a_broker_that_cannot_answer_leaves_the_partitions_lagging():
    consumer = Consumer({P0: 10}, fails=True)
    assert asyncio.run(PartitionEnds().lagging(consumer, {P0: 9})) == {0: True}


def test_the_broker_is_asked_at_most_once_per_max_age_and_again_after_it():
    ends = PartitionEnds(max_age=3600)
    consumer = Consumer({P0: 10}, broker={P0: 10})
    for _ in range(3):
        assert asyncio.run(ends.lagging(consumer, {P0: 9})) == {0: False}
    assert consumer.asked == [(P0,)]
    consumer.broker[P0] = 500                   # newer records, not fetched yet
    ends.max_age = 0                            # the answer is too old now
    assert asyncio.run(ends.lagging(consumer, {P0: 9})) == {0: True}
    assert len(consumer.asked) == 2


def test_a_failed_question_is_asked_again_next_time():
    ends = PartitionEnds(max_age=3600)
    consumer = Consumer({P0: 10}, broker={P0: 10}, fails=True)
    assert asyncio.run(ends.lagging(consumer, {P0: 9})) == {0: True}
    consumer.fails = False
    assert asyncio.run(ends.lagging(consumer, {P0: 9})) == {0: False}
    assert len(consumer.asked) == 2
