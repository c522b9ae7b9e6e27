"""Batches from a Faust stream that close as soon as the input goes quiet.

Faust's ``Stream.take_events(max_, within)`` yields every ``within`` seconds (or when ``max_``
events are buffered), so at low and medium rates every event waits for the rest of that window
although nothing more is coming. ``take_until_idle`` closes a batch when ``max_`` events are
buffered, when ``within`` seconds passed since its first event, or when no event arrived for
``idle`` seconds: the records one fetch brought are in, the partitions have nothing more ready.
Under load the input never goes quiet and batches fill up as before; when it trickles, an event
waits ``idle`` instead of up to ``within``.

Delivery is the same as ``take_events``': the stream's acks are disabled while taking, and a
batch's events are acknowledged only after the consumer of the generator is done with it (the
code after ``yield`` runs when the ``async for`` body finished, also when it raised), or, when
the body took the acknowledgement over (``TakenBatch.defer_acks``), when the body's caller says
so: the next batch is taken meanwhile. A batch the caller must not commit is held back by the
caller (``streams.delivery.hold_back``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.futures import notify

IDLE_SECONDS = 0.02
"""How long a batch waits for one more event before it closes: longer than the gaps between the
records of one fetch (microseconds), much shorter than the gap between fetches (the broker
answers a fetch at most every ``FETCH_MAX_WAIT_MS``)."""


class TakenBatch(list[EventT]):
    """A batch of ``take_until_idle``: its events, acknowledged when the loop body is done with them
    unless the body took that over (``defer_acks``)."""

    def __init__(self, events: Sequence[EventT], stream: faust.Stream[Any]):
        super().__init__(events)
        self.stream = stream
        self.deferred = False

    def defer_acks(self) -> Callable[[], Awaitable[None]]:
        """The caller acknowledges the batch, later, by awaiting what this returns (once its rows
        are stored); until then its offsets are not committed."""
        self.deferred = True
        return self.ack

    async def ack(self) -> None:
        for event in self:
            await self.stream.ack(event)


async def take_until_idle(stream: faust.Stream[Any], max_: int, within: float,
                          idle: float = IDLE_SECONDS) -> AsyncIterator[TakenBatch]:
    """Yield lists of at most ``max_`` events; see the module docstring for when a list closes."""
    if max_ < 1 or within <= 0 or idle <= 0:
        raise ValueError(f"take_until_idle needs max_ >= 1, within > 0 and idle > 0 "
                         f"(got {max_}, {within}, {idle})")
    events: list[EventT] = []
    arrived = asyncio.Event()     # set by every event added (and so when the buffer fills)
    consumed = asyncio.Event()    # set when a yielded batch was handed back
    consuming: asyncio.Future[None] | None = None
    loop = asyncio.get_running_loop()

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:     # a batch is out with the caller: wait until it comes back
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_until_idle found no current event")
        events.append(event)
        arrived.set()
        if len(events) >= max_:       # never more than max_: wait for the batch to be consumed
            consumed.clear()
            await stream.wait(consumed)  # type: ignore[arg-type]  # mode types it as its own Event
        return value

    stream.enable_acks = False        # acknowledged below, once the caller is done with a batch
    stream.add_processor(add_to_buffer)
    stream._enable_passive(cast(ChannelT, stream.channel.__aiter__()))   # as take_events does
    while not stream.should_stop:
        await stream.wait_for_stopped(arrived, timeout=within)  # type: ignore[arg-type]  # as above
        if not events:
            arrived.clear()
            continue
        first = loop.time()
        while len(events) < max_:
            arrived.clear()
            left = within - (loop.time() - first)
            if left <= 0:
                break
            await stream.wait_for_stopped(arrived, timeout=min(idle, left))  # type: ignore[arg-type]
            if not arrived.is_set():  # quiet for ``idle``: nothing more is ready
                break
        consuming = loop.create_future()
        batch = TakenBatch(events, stream)
        try:
            yield batch
        finally:
            events.clear()
            if not batch.deferred:
                await batch.ack()
            arrived.clear()
            notify(consuming)
            consumed.set()
