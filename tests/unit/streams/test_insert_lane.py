"""The worker's insert lane (``streams.lane``): one insert in flight while the next group is
prepared, in order, acknowledgements after the inserts before them, and a given-up insert giving
up what was prepared against it."""

import asyncio

import pytest

import streams.lane
from sinks.clickhouse import InsertAbandoned
from streams.lane import InsertLane


def _writer(log: list[str], name: str, gate: asyncio.Event | None = None, error: BaseException | None = None):
    async def write() -> None:
        log.append(f"{name} started")
        if gate is not None:
            await gate.wait()
        if error is not None:
            raise error
        log.append(f"{name} stored")
    return write


def test_the_caller_goes_on_while_one_insert_runs_and_inserts_keep_their_order():
    async def scenario() -> list[str]:
        lane, log, gate = InsertLane(), [], asyncio.Event()
        await lane.insert(_writer(log, "a", gate), 0, lambda: log.append("gave up"))
        log.append("prepared b")   # the caller runs while a's insert waits
        second = asyncio.create_task(lane.insert(_writer(log, "b"), 0, lambda: log.append("gave up")))
        await asyncio.sleep(0.01)
        log.append("b waits" if not second.done() else "b did not wait")
        gate.set()
        await second
        await lane.wait(0)
        return log

    assert asyncio.run(scenario()) == ["prepared b", "a started", "b waits", "a stored", "b started", "b stored"]


def test_a_batch_is_finished_only_after_the_inserts_handed_over_before_it():
    async def scenario() -> list[str]:
        lane, log, gate = InsertLane(), [], asyncio.Event()
        await lane.insert(_writer(log, "a", gate), 0, lambda: log.append("gave up"))

        async def acknowledge() -> None:
            log.append("acknowledged")

        lane.then(acknowledge, 0, lambda: log.append("gave up"))
        await asyncio.sleep(0.01)
        log.append("still unacknowledged" if "acknowledged" not in log else "acknowledged too early")
        gate.set()
        await lane.wait(0)
        return log

    assert asyncio.run(scenario()) == ["a started", "still unacknowledged", "a stored", "acknowledged"]


def test_a_given_up_insert_gives_up_what_was_prepared_against_it_but_not_what_came_after():
    async def scenario() -> tuple[list[str], int]:
        lane, log = InsertLane(), []
        prepared_in = lane.generation
        await lane.insert(_writer(log, "a", error=InsertAbandoned("no longer ours")), prepared_in,
                          lambda: log.append("a given up"))
        lane.then(_writer(log, "ack a"), prepared_in, lambda: log.append("batch a held back"))
        with pytest.raises(InsertAbandoned):   # b was annotated by a ledger that counted a as stored
            await lane.insert(_writer(log, "b"), prepared_in, lambda: log.append("b given up"))
        await lane.insert(_writer(log, "c"), lane.generation, lambda: log.append("c given up"))
        await lane.wait(lane.generation)
        return log, lane.generation

    log, generation = asyncio.run(scenario())
    assert log == ["a started", "a given up", "batch a held back", "c started", "c stored"]
    assert generation == 1


def test_any_other_failure_of_an_insert_holds_its_batch_back_and_exits(monkeypatch):
    exits: list[BaseException] = []
    monkeypatch.setattr(streams.lane, "die", exits.append)

    async def scenario() -> list[str]:
        lane, log = InsertLane(), []
        await lane.insert(_writer(log, "a", error=RuntimeError("bug")), 0, lambda: log.append("a held back"))
        await lane.wait(0)
        return log

    assert asyncio.run(scenario()) == ["a started", "a held back"]
    assert [str(e) for e in exits] == ["bug"]


def test_cancel_ends_the_insert_in_flight_and_holds_its_batch_back():
    async def scenario() -> list[str]:
        lane, log = InsertLane(), []
        await lane.insert(_writer(log, "a", asyncio.Event()), 0, lambda: log.append("a held back"))
        lane.then(_writer(log, "ack a"), 0, lambda: log.append("batch held back"))
        await asyncio.sleep(0.01)
        lane.cancel()
        await asyncio.sleep(0.01)
        await lane.wait(0)   # nothing in flight any more
        return log

    assert asyncio.run(scenario()) == ["a started", "a held back", "batch held back"]
