"""How the worker's batches are delivered, retried and acknowledged.

A batch is acknowledged only when its rows are stored and what it produced (dead letters,
detector packets) is acknowledged by the broker. A warehouse write is retried forever with
backoff (the agent consumes nothing more meanwhile: back-pressure); a batch stopped midway is
held back so that it is delivered again; any other error exits the worker, whose supervisor
restarts it from the last committed offset.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import faust
from faust.types import TP, EventT
from faust.types.tuples import ack_lock

from producers.kafka import BrokerUnavailable, TopicRecord, read_range
from schemas.dead_letter import DeadLetter
from sinks.clickhouse import InsertAbandoned, WarehouseRefused, WarehouseUnavailable
from streams.continuity import HOLE_READ_SECONDS, REREAD_ATTEMPTS
from streams.figures import WorkerStats

log = logging.getLogger(__name__)

RETRY_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
T = TypeVar("T")


def hold_back(events: Sequence[EventT]) -> None:
    """Keep a batch from being committed: ``take_until_idle`` acks in a ``finally`` even when the
    body fails or is cancelled; a message already marked acked is skipped by the consumer's
    commit bookkeeping, so its offset is never committed and it is delivered again."""
    for event in events:
        event.message.acked = True


def die(exc: BaseException) -> None:
    """An unexpected error inside a batch: exit so the supervisor restarts the worker from the
    last committed offset. Continuing would leave the agent dead and the partition stuck."""
    log.critical("worker stopping on an unexpected error; the batch will be delivered again", exc_info=exc)
    logging.shutdown()
    os._exit(70)


async def write_with_retry(write: Callable[[], None], stats: WorkerStats, what: str, *,
                           proceed: Callable[[], bool] | None = None) -> None:
    """Run a blocking warehouse write off the event loop, retrying transient failures forever,
    or until ``proceed`` says no (checked before each retry: ``InsertAbandoned``)."""
    attempt = 0
    loop = asyncio.get_running_loop()
    error: WarehouseUnavailable | WarehouseRefused
    while True:
        if attempt and proceed is not None and not proceed():
            raise InsertAbandoned(f"writing {what} given up after {attempt} attempts: its batch is no longer "
                                  "this worker's")
        try:
            await loop.run_in_executor(None, write)
            if not stats.warehouse_healthy:
                log.warning("warehouse is back after %d retries", attempt)
            stats.warehouse_healthy = True
            return
        except WarehouseUnavailable as exc:
            error, delay = exc, RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)]
        except WarehouseRefused as exc:  # a refusal we cannot fix by waiting; do not lose the batch
            error, delay = exc, RETRY_BACKOFF[-1] * 2
            log.error("warehouse refused %s (will retry, worker is stalled): %s", what, exc)
        stats.warehouse_healthy = False
        stats.warehouse_retries += 1
        attempt += 1
        if attempt == 1 or attempt % 10 == 0:
            log.warning("writing %s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay, error)
        await asyncio.sleep(delay)


async def read_with_retry(read: Callable[[], Awaitable[T]], what: str, *, attempts: int | None = None) -> T:
    """Read records the consumer skipped from the broker, retrying ``BrokerUnavailable`` with
    backoff (forever, or ``attempts`` times, then it is raised): they must be read before going
    on, and a broker slow to answer (just restarted, or on a busy object store) stalls this agent
    meanwhile instead of stopping the worker, whose restart would ask the same again."""
    attempt = 0
    while True:
        try:
            return await read()
        except BrokerUnavailable as exc:
            attempt += 1
            if attempts is not None and attempt >= attempts:
                raise
            delay = RETRY_BACKOFF[min(attempt - 1, len(RETRY_BACKOFF) - 1)]
            if attempt == 1 or attempt % 10 == 0:
                log.warning("reading %s failed (attempt %d), retrying in %.1fs: %s", what, attempt, delay, exc)
            await asyncio.sleep(delay)


async def read_again(brokers: str, topic: str, partition: int, first: int, end: int, beyond: int,
                     stats: WorkerStats) -> list[TopicRecord]:
    """Offsets ``first`` .. ``end - 1`` of ``topic``/``partition``, which the consumer skipped,
    read from the topic (``read_with_retry``, ``REREAD_ATTEMPTS`` reads at a time). ``beyond`` is an
    offset after them that the consumer was given, so the log holds it: when the broker serves
    that one but neither these nor the first of them, the log does not hold them (a durable Tansu
    can lose records it acknowledged), and the worker goes on without them, logged and counted
    (``offsets_unreadable``). While the broker serves nothing, or serves the first of them (a
    slow read of many), it keeps reading."""

    loop = asyncio.get_running_loop()

    def reader(start: int, stop: int) -> Callable[[], Awaitable[list[TopicRecord]]]:
        return partial(loop.run_in_executor, None,
                       partial(read_range, brokers, topic, partition, start, stop, timeout=HOLE_READ_SECONDS))

    what = f"offsets {first}..{end - 1} of {topic}[{partition}]"
    while True:
        try:
            return await read_with_retry(reader(first, end), what, attempts=REREAD_ATTEMPTS)
        except BrokerUnavailable as exc:
            if not await _served(reader(beyond, beyond + 1)) or await _served(reader(first, first + 1)):
                continue   # the broker serves nothing, or the first of them: slow, not a sign they are gone
            log.error("%s could not be read, nor its first, but offset %d can: the log does not hold them, going "
                      "on without them (%s)", what, beyond, exc)
            stats.offsets_unreadable += end - first
            return []


async def _served(read: Callable[[], Awaitable[list[TopicRecord]]]) -> bool:
    try:
        await read()
    except BrokerUnavailable:
        return False
    return True


def owned_by_this_worker(app: faust.App, events: Sequence[EventT] = ()) -> Callable[[], bool]:
    """Whether a batch of ``events`` (read in the consumer generation of its first, or in the
    current one) may still be stored: no rebalance started since and the worker is not stopping.

    A batch held up (by a migration fence, a warehouse away) can outlast Faust's wait for the
    batches in flight when its partitions are revoked; they move on, and the new owner stores the
    records again, cut into other batches (other dedup tokens): stored by both, counted twice. So
    such a batch is given up (``InsertAbandoned``, held back) instead. A batch given up while its
    partitions stay here is read again after the rebalance (Faust seeks to the committed offsets)."""
    generation = events[0].message.generation_id if events else app.consumer_generation_id
    started = app.rebalancing_count

    def owned() -> bool:
        return (app.rebalancing_count == started and not app.should_stop
                and app.consumer_generation_id == generation)

    return owned


async def guarded(step: Callable[[Sequence[EventT]], Awaitable[None]], events: Sequence[EventT]) -> None:
    """Run an agent's step on one batch. Stopped mid-batch, or given up (``InsertAbandoned``): the
    batch is held back (delivered again) and the cancellation goes on; any other error: held
    back, and the worker exits."""
    try:
        await step(events)
    except asyncio.CancelledError:
        hold_back(events)
        raise
    except InsertAbandoned as exc:
        hold_back(events)
        log.warning("batch of %d records held back, to be read again: %s", len(events), exc)
    except BaseException as exc:
        hold_back(events)
        die(exc)


def not_known_done(app: faust.App, topic: str, partition: int, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of offsets ``start`` .. ``end - 1`` of ``topic``/``partition`` that the consumer
    neither committed nor acknowledged nor knows the log does not hold (the offsets it jumped over
    when reading, such as records a restarted broker lost): what it may have read and dropped."""
    consumer: Any = app.consumer
    tp = TP(topic, partition)
    committed = consumer._committed_offset.get(tp)
    done = set(consumer._acked.get(tp, ())) | set(consumer._acked_index.get(tp, ()))
    gaps = consumer._gap.get(tp)
    parts: list[tuple[int, int]] = []
    for offset in range(max(start, committed or 0), end):
        if offset in done or (gaps is not None and gaps.overlaps(offset)):
            continue
        if parts and parts[-1][1] == offset:
            parts[-1] = (parts[-1][0], offset + 1)
        else:
            parts.append((offset, offset + 1))
    return parts


class FaultDrops:
    """Test hook (``fault_drop_batch_every``): drops every Nth batch or packet of a topic as Faust
    can, neither handled nor acknowledged (held back), for ``streams.continuity`` to find."""

    def __init__(self, every: int):
        self.every = every
        self.counts: dict[str, int] = {}

    def drops(self, events: Sequence[EventT]) -> bool:
        if not self.every:
            return False
        topic = events[0].message.topic
        self.counts[topic] = count = self.counts.get(topic, 0) + 1
        if count % self.every:
            return False
        hold_back(events)
        log.warning("fault hook: dropped %d records of %s unhandled", len(events), topic)
        return True


def mark_done(app: faust.App, topic: str, partition: int, start: int, end: int) -> None:
    """Acknowledge offsets ``start`` .. ``end - 1`` of ``topic``/``partition`` that the consumer did
    not deliver but the worker handled (``streams.continuity``), with the bookkeeping of Faust's own
    ``Consumer.ack`` (its commits move on from the contiguous acknowledged offsets); an offset
    acknowledged already, or below the committed one, is left as it is."""
    consumer: Any = app.consumer
    tp = TP(topic, partition)
    with ack_lock:
        committed = consumer._committed_offset.get(tp)
        index, acked = consumer._acked_index[tp], consumer._acked[tp]
        for offset in range(start, end):
            if (committed is None or offset >= committed) and offset not in index:
                index.add(offset)
                acked.append(offset)
                consumer._n_acked += 1


class PartitionEnds:
    """Whether the owned events partitions hold records beyond what was handled (``lagging``).

    The consumer's high water comes from its last fetch response, which may be old: a worker that
    was stopped, or slow, handles a response from before the newest records. So a partition that
    fetch shows read to its end is asked of the broker (ListOffsets, at most once per
    ``max_age`` seconds) before it is said to be so, and counts as lagging while the broker
    cannot say. Reading only; a failed question is asked again next time."""

    def __init__(self, *, max_age: float = 1.0, timeout: float = 5.0):
        self.max_age, self.timeout = max_age, timeout
        self.ends: dict[TP, int] = {}
        self.asked_at = -math.inf

    async def lagging(self, consumer: Any, done: dict[TP, int | None]) -> dict[int, bool]:
        """``{partition: lagging}`` for the partitions of ``done`` (partition -> offset handled last)."""
        status = {tp: _beyond(consumer.highwater(tp), handled) for tp, handled in done.items()}
        caught_up = [tp for tp, lags in status.items() if not lags]
        now = time.monotonic()
        if caught_up and (now - self.asked_at > self.max_age or any(tp not in self.ends for tp in caught_up)):
            self.ends = {}
            try:
                self.ends = dict(await asyncio.wait_for(consumer.highwaters(*caught_up), self.timeout))
                self.asked_at = now
            except Exception as exc:  # noqa: BLE001 - the broker is away: nothing says the partitions are read
                log.debug("could not ask the broker where the partitions end: %r", exc)
        for tp in caught_up:
            status[tp] = tp not in self.ends or _beyond(self.ends[tp], done[tp])
        return {tp.partition: lags for tp, lags in status.items()}


def _beyond(end: int | None, handled: int | None) -> bool:
    """A partition ending before ``end`` holds records after offset ``handled`` (None: none handled)."""
    return end is not None and end > (handled + 1 if handled is not None else 0)


async def send_packets(topic: faust.TopicT, routed: list[tuple[int, bytes]]) -> None:
    """Produce ``(partition, packet)`` pairs to the detector topic, in order, and wait until the
    broker acknowledged every one."""
    futures = [await topic.send(value=value, partition=partition) for partition, value in routed]
    await asyncio.gather(*futures)


async def send_dead_letters(topic: faust.TopicT, letters: list[DeadLetter]) -> None:
    """Produce dead letters and wait until the broker acknowledged every one. Each is cut to
    ``DeadLetter.bounded()`` first, so no content can make a dead letter too large to produce."""
    futures = []
    for letter in letters:
        letter = letter.bounded()
        futures.append(await topic.send(key=letter.key, value=letter.raw, headers=letter.headers()))
    await asyncio.gather(*futures)
