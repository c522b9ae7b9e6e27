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
