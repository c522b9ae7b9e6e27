"""``take_until_idle`` on a real Faust stream over an in-memory channel: batches close when the
input goes quiet (long before ``within``) and never exceed ``max_``."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from streams.take import take_until_idle

WAIT = 30.0   # how long a test waits for a batch; far longer than any idle period used here


def _stream(name: str) -> faust.Stream[Any]:
    """A stream over an in-memory channel (the app is never started: the broker URL is not used)."""
    app = faust.App(name, broker="kafka://127.0.0.1:9", store="memory://")
    app.flow_control.resume()
    stream = app.channel().stream()
    assert isinstance(stream, faust.Stream)
    return stream


async def _batches(groups: list[list[int]], max_: int, within: float, idle: float) -> list[list[Any]]:
    """Send each group of values, waiting for all of its batches before sending the next."""
    stream = _stream("take-test")
    got = asyncio.Queue[list[Any]]()
    taken: list[list[Any]] = []

    async def consume() -> None:
        async for events in take_until_idle(stream, max_, within, idle):
            await got.put([event.value for event in events])

    task = asyncio.ensure_future(consume())
    try:
        sent = 0
        for group in groups:
            for value in group:
                await stream.channel.send(value=value)
            sent += len(group)
            while sum(map(len, taken)) < sent:
                taken.append(await asyncio.wait_for(got.get(), WAIT))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return taken


def test_a_burst_closes_when_the_input_goes_quiet_not_at_within() -> None:
    # within is far longer than the test may wait: the batches can only have closed on idleness
    taken = asyncio.run(_batches([[1, 2, 3, 4, 5], [6, 7]], max_=100, within=3600, idle=0.05))
    assert taken == [[1, 2, 3, 4, 5], [6, 7]]


def test_batches_never_exceed_max() -> None:
    taken = asyncio.run(_batches([list(range(12))], max_=5, within=3600, idle=0.05))
    assert [len(batch) for batch in taken] == [5, 5, 2]
    assert [value for batch in taken for value in batch] == list(range(12))


@pytest.mark.parametrize("args", [(0, 1.0, 0.1), (5, 0.0, 0.1), (5, 1.0, 0.0)])
def test_bad_bounds_are_refused(args: tuple[int, float, float]) -> None:
    async def first() -> None:
        async for _ in take_until_idle(_stream("take-test-bounds"), *args):
            break

    with pytest.raises(ValueError, match="take_until_idle needs"):
        asyncio.run(first())


def test_a_batch_whose_acknowledgement_is_taken_over_is_acknowledged_when_asked_not_when_the_body_ends() -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        stream = _stream("take-test-defer")
        acked: list[Any] = []
        real_ack = stream.ack

        async def recording_ack(event: Any) -> bool:
            acked.append(event.value)
            return await real_ack(event)

        stream.ack = recording_ack  # type: ignore[method-assign]  # records what the take acknowledges
        handed_over: list[Any] = []

        async def consume() -> None:
            async for events in take_until_idle(stream, 100, 3600, 0.05):
                handed_over.append(events.defer_acks())

        async def until(n: int) -> None:
            while len(handed_over) < n:
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(consume())
        try:
            for value in (1, 2):
                await stream.channel.send(value=value)
            await asyncio.wait_for(until(1), WAIT)
            await stream.channel.send(value=3)
            await asyncio.wait_for(until(2), WAIT)
            before = list(acked)        # two batches taken, neither acknowledged yet
            await handed_over[0]()
            first = list(acked)
            await handed_over[1]()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return before, first, acked

    before, first, after = asyncio.run(scenario())
    assert (before, first, after) == ([], [1, 2], [1, 2, 3])
