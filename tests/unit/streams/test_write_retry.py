"""``streams.delivery.write_with_retry``: the worker's retry loop around a blocking warehouse write.
Transient failures are retried with growing, capped backoff; a refusal is retried too (the
batch must not be lost) after the longest wait; anything else is not the loop's to handle; a
batch no longer the worker's (``owned_by_this_worker``) is given up and held back.
The write here is a fake that fails a given number of times; sleeps are recorded, not slept."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from producers.kafka import BrokerUnavailable, TopicRecord
from sinks.clickhouse import InsertAbandoned, WarehouseRefused, WarehouseUnavailable
from streams import delivery
from streams.delivery import RETRY_BACKOFF, guarded, owned_by_this_worker, read_with_retry, write_with_retry
from streams.figures import WorkerStats


class FlakyWrite:
    """Raises ``failures`` times, then succeeds; notes the worker's health seen at each call."""

    def __init__(self, stats: WorkerStats, failures: int, error: Exception):
        self.stats, self.failures, self.error = stats, failures, error
        self.calls = 0
        self.healthy_at_call: list[bool] = []

    def __call__(self) -> None:
        self.calls += 1
        self.healthy_at_call.append(self.stats.warehouse_healthy)
        if self.calls <= self.failures:
            raise self.error


@pytest.fixture
def sleeps(monkeypatch):
    slept: list[float] = []

    async def no_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    return slept


def _run(write: FlakyWrite, stats: WorkerStats) -> None:
    asyncio.run(write_with_retry(write, stats, "a batch"))


def test_a_write_that_succeeds_is_not_retried(sleeps):
    stats = WorkerStats()
    write = FlakyWrite(stats, 0, WarehouseUnavailable("down"))
    _run(write, stats)
    assert (write.calls, sleeps, stats.warehouse_retries, stats.warehouse_healthy) == (1, [], 0, True)


def test_transient_failures_are_retried_with_growing_backoff_until_the_write_succeeds(sleeps, caplog):
    stats = WorkerStats()
    write = FlakyWrite(stats, 3, WarehouseUnavailable("down"))
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        _run(write, stats)
    assert write.calls == 4 and sleeps == list(RETRY_BACKOFF[:3])
    assert stats.warehouse_retries == 3 and stats.warehouse_healthy
    assert write.healthy_at_call == [True, False, False, False]   # unhealthy while it fails
    assert "warehouse is back after 3 retries" in caplog.text


def test_the_backoff_stops_growing_at_its_last_step(sleeps):
    stats = WorkerStats()
    failures = len(RETRY_BACKOFF) + 3
    _run(FlakyWrite(stats, failures, WarehouseUnavailable("down")), stats)
    assert sleeps == list(RETRY_BACKOFF) + [RETRY_BACKOFF[-1]] * 3
    assert stats.warehouse_retries == failures


def test_a_refusal_is_retried_after_the_longest_wait_and_logged_as_an_error(sleeps, caplog):
    """Retrying a refused write will not help, but dropping it would lose the batch: the worker
    stalls on it (and says so) rather than skip it."""
    stats = WorkerStats()
    write = FlakyWrite(stats, 2, WarehouseRefused("Code: 60. Unknown table"))
    with caplog.at_level(logging.ERROR, logger="streams.app"):
        _run(write, stats)
    assert write.calls == 3 and sleeps == [RETRY_BACKOFF[-1] * 2] * 2
    assert stats.warehouse_retries == 2 and stats.warehouse_healthy
    assert sum("warehouse refused a batch" in r.getMessage() for r in caplog.records) == 2


def test_a_transient_failure_after_a_refusal_starts_from_the_next_backoff_step(sleeps):
    """The backoff counts attempts of this write, whatever failed: a refusal then an outage
    waits the longest, then the second step."""
    stats = WorkerStats()
    errors = iter([WarehouseRefused("refused"), WarehouseUnavailable("down")])

    def write() -> None:
        error = next(errors, None)
        if error is not None:
            raise error

    asyncio.run(write_with_retry(write, stats, "a batch"))
    assert sleeps == [RETRY_BACKOFF[-1] * 2, RETRY_BACKOFF[1]]


def test_an_error_that_is_not_the_warehouses_is_raised_at_once(sleeps):
    stats = WorkerStats()
    write = FlakyWrite(stats, 5, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        _run(write, stats)
    assert write.calls == 1 and sleeps == [] and stats.warehouse_retries == 0


def test_a_read_of_skipped_records_is_retried_while_the_broker_cannot_answer(sleeps):
    """``read_with_retry``: a broker that times out is asked again (the worker must not stop on it:
    its restart would ask the same); the records come back once it answers."""
    calls = 0

    async def read() -> list[int]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise BrokerUnavailable("reading detector-signals partitions [0] timed out after 10s")
        return [7, 8]

    assert asyncio.run(read_with_retry(read, "packets 7..8")) == [7, 8]
    assert calls == 4
    assert sleeps == list(RETRY_BACKOFF[:3])


def test_a_read_failing_otherwise_is_not_retried(sleeps):
    async def read() -> list[int]:
        raise ValueError("not a broker problem")

    with pytest.raises(ValueError):
        asyncio.run(read_with_retry(read, "packets"))
    assert sleeps == []


def test_a_read_with_a_number_of_attempts_raises_after_the_last(sleeps):
    calls = 0

    async def read() -> list[int]:
        nonlocal calls
        calls += 1
        raise BrokerUnavailable("timed out")

    with pytest.raises(BrokerUnavailable):
        asyncio.run(read_with_retry(read, "packets", attempts=3))
    assert calls == 3
    assert sleeps == list(RETRY_BACKOFF[:2])


class Broker:
    """``read_range`` of a broker that lost ``lost`` offsets, serves nothing for its first
    ``down_for`` reads, and times out on reads of more than one offset for its first ``slow_for``."""

    def __init__(self, lost: set[int], down_for: int = 0, slow_for: int = 0):
        self.lost, self.down_for, self.slow_for, self.calls = lost, down_for, slow_for, []

    def __call__(self, brokers, topic, partition, start, end, timeout):
        self.calls.append((start, end))
        if self.down_for:
            self.down_for -= 1
            raise BrokerUnavailable("broker unreachable")
        if end - start > 1 and self.slow_for:
            self.slow_for -= 1
            raise BrokerUnavailable("timed out: a busy broker")
        if any(o in self.lost for o in range(start, end)):
            raise BrokerUnavailable(f"reading {topic} partitions [{partition}] timed out after {timeout:.0f}s")
        return [TopicRecord(partition, o, b"{}", None, None) for o in range(start, end)]


def test_offsets_the_log_does_not_hold_are_passed_over_counted(sleeps, monkeypatch):
    broker = Broker(lost={1579})
    monkeypatch.setattr(delivery, "read_range", broker)
    stats = WorkerStats()
    assert asyncio.run(delivery.read_again("b", "events", 2, 1579, 1580, 1580, stats)) == []
    assert stats.offsets_unreadable == 1
    assert (1580, 1581) in broker.calls         # the record after them was read: the broker serves
    assert broker.calls.count((1579, 1580)) == delivery.REREAD_ATTEMPTS + 1   # and the first of them was not


def test_a_broker_that_serves_nothing_is_waited_for(sleeps, monkeypatch):
    broker = Broker(lost=set(), down_for=delivery.REREAD_ATTEMPTS + 3)
    monkeypatch.setattr(delivery, "read_range", broker)
    stats = WorkerStats()
    found = asyncio.run(delivery.read_again("b", "events", 0, 10, 12, 12, stats))
    assert [r.offset for r in found] == [10, 11]
    assert stats.offsets_unreadable == 0


def test_a_slow_read_of_many_is_not_taken_for_a_loss(sleeps, monkeypatch):
    broker = Broker(lost=set(), slow_for=delivery.REREAD_ATTEMPTS + 2)
    monkeypatch.setattr(delivery, "read_range", broker)
    stats = WorkerStats()
    found = asyncio.run(delivery.read_again("b", "events", 0, 10, 20, 20, stats))
    assert [r.offset for r in found] == list(range(10, 20))
    assert stats.offsets_unreadable == 0


def test_a_write_given_up_between_attempts_is_not_tried_again(sleeps):
    """``proceed`` (the batch is still this worker's) is asked before each retry, not before the
    first attempt: a batch whose partitions moved while it waited raises ``InsertAbandoned``."""
    stats = WorkerStats()
    write = FlakyWrite(stats, 10, WarehouseUnavailable("paused"))
    answers = iter([True, True, False])
    with pytest.raises(InsertAbandoned, match="given up after 3 attempts"):
        asyncio.run(write_with_retry(write, stats, "a batch", proceed=lambda: next(answers)))
    assert write.calls == 3 and len(sleeps) == 3


def _app(**state):
    defaults = {"rebalancing_count": 4, "should_stop": False, "consumer_generation_id": 9}
    return SimpleNamespace(**{**defaults, **state})


def _events(generation: int):
    return [SimpleNamespace(message=SimpleNamespace(generation_id=generation))]


@pytest.mark.parametrize("change,owned", [
    ({}, True),
    ({"rebalancing_count": 5}, False),                                 # a rebalance started since
    ({"consumer_generation_id": 10}, False),                           # the group moved on
    ({"should_stop": True}, False),                                    # the worker is stopping
])
def test_a_batch_is_owned_until_a_rebalance_starts_or_the_worker_stops(change, owned):
    app = _app()
    still = owned_by_this_worker(app, _events(9))
    assert still()
    app.__dict__.update(change)
    assert still() is owned


def test_a_batch_read_in_an_older_generation_is_not_owned():
    """Records fetched before the last rebalance: their partitions were sought back since."""
    assert not owned_by_this_worker(_app(), _events(8))()
    assert owned_by_this_worker(_app())()   # no records (a hole read from the topic): the current generation


def test_a_batch_given_up_is_held_back_and_the_worker_goes_on():
    events = [SimpleNamespace(message=SimpleNamespace(acked=False)) for _ in range(3)]

    async def step(batch) -> None:
        raise InsertAbandoned("moved")

    asyncio.run(guarded(step, events))   # no exit (``die`` would end the test process)
    assert all(e.message.acked for e in events)   # never committed: delivered again
