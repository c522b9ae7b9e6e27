"""One warehouse insert in flight while the worker prepares the next group.

A group's work is CPU in the worker (decode, contract checks, ledger, detector signals) and then
an insert that costs the warehouse process about as much again (``events`` and its materialized
views). One after the other, each process waits for the other; ``InsertLane`` lets the worker
take and prepare the next group while the last one is inserted, and no more: at most one insert
runs, and at most one prepared group waits for it.

Promises:
- inserts run one at a time, in the order they were handed over, so each partition's stored
  events stay a prefix of its log (the ledger's high-water position stays exact);
- what ``then`` hands over (a batch's acknowledgement and figures) runs after every insert handed
  over before it finished: an offset is committed only once its events are stored;
- an insert given up (``InsertAbandoned``: its batch is no longer this worker's) runs its
  ``give_up`` (hold the batch back, forget the ledgers) and moves ``generation``: whatever was
  prepared before that (annotated by a ledger that counted the given-up group as stored) is
  given up too, and its caller gets ``InsertAbandoned``;
- any other failure of an insert exits the worker (``streams.delivery.die``), as an error in a
  batch does, and its batch is held back first;
- ``cancel`` (the agent stops) cancels what is in flight: its batch is held back and delivered
  again after the restart (an insert already sent may still complete: the ledger and the
  high-water position skip its events then).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from sinks.clickhouse import InsertAbandoned
from streams.delivery import die

log = logging.getLogger(__name__)


class InsertLane:
    """The worker's inserts of the events topic's groups, one in flight at a time (module docstring)."""

    def __init__(self) -> None:
        self.generation = 0   # moves each time an insert is given up
        self._running: asyncio.Task[None] | None = None

    async def wait(self, prepared_in: int) -> None:
        """Until nothing handed over is in flight; raises ``InsertAbandoned`` when an insert was
        given up after generation ``prepared_in`` (what the caller prepared is stale)."""
        while (running := self._running) is not None:
            await running   # never raises but for cancellation: ``_insert`` and ``_then`` keep their errors
            if self._running is running:
                self._running = None
        if prepared_in != self.generation:
            raise InsertAbandoned("an insert before this group was given up: the ledger that annotated it "
                                  "counted that one as stored")

    async def insert(self, write: Callable[[], Awaitable[None]], prepared_in: int,
                     give_up: Callable[[], None]) -> None:
        """Start ``write`` in the background once the insert before it finished (``wait``)."""
        await self.wait(prepared_in)
        self._running = asyncio.create_task(self._insert(write, give_up))

    def then(self, finish: Callable[[], Awaitable[None]], prepared_in: int, give_up: Callable[[], None]) -> None:
        """Run ``finish`` in the background after what is in flight, unless an insert was given up
        after generation ``prepared_in`` (then ``give_up``)."""
        self._running = asyncio.create_task(self._then(self._running, finish, prepared_in, give_up))

    def cancel(self) -> None:
        if self._running is not None:
            self._running.cancel()
            self._running = None

    async def _insert(self, write: Callable[[], Awaitable[None]], give_up: Callable[[], None]) -> None:
        with _held_back_on_failure(give_up):
            try:
                await write()
            except InsertAbandoned as exc:
                self.generation += 1
                give_up()
                log.warning("batch held back, to be read again: %s", exc)

    async def _then(self, before: asyncio.Task[None] | None, finish: Callable[[], Awaitable[None]],
                    prepared_in: int, give_up: Callable[[], None]) -> None:
        with _held_back_on_failure(give_up):
            if before is not None:
                await before
            if prepared_in != self.generation:
                give_up()
                return
            await finish()


@contextmanager
def _held_back_on_failure(give_up: Callable[[], None]) -> Iterator[None]:
    """Cancelled: ``give_up`` and go on being cancelled; any other error: ``give_up`` and exit."""
    try:
        yield
    except asyncio.CancelledError:
        give_up()
        raise
    except BaseException as exc:
        give_up()
        die(exc)
