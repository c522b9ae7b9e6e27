"""The worker's side of the migration fence (``sinks.fence``): a thread that watches the fence and
opens or closes the worker's ``WriteGate``.

About every ``POLL_SECONDS`` it reads the fence, and every ``HEARTBEAT_SECONDS`` it writes the
worker's presence row. While no fence is raised it keeps the gate open for ``SELF_LEASE_SECONDS``
past each successful check. When one is raised it closes the gate, waits until no insert that
passed the gate is still running, and only then acknowledges the fence (with the worker's Kafka
group member id, once it has one). When the fence is released it checks, as the worker does at
start (``wait_for_schema``), that the schema has the version this code needs, and opens the gate.

A thread, not a task of Faust's event loop: the loop stays free for heartbeats and rebalances,
and the inserts it waits for run in executor threads anyway. Inserts waiting at the closed gate
give up after ``GATE_WAIT_SECONDS`` and are retried by the worker's retry loop; the batch they
belong to stays unacknowledged, so a rebalance during a fence waits for the fence to end (Faust
waits for the batches in flight), but nothing waits for the rebalance: the acknowledgement comes
from this thread, which needs no partition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import latest_version, schema_version
from sinks.fence import (
    HEARTBEAT_SECONDS,
    POLL_SECONDS,
    SELF_LEASE_SECONDS,
    WriteGate,
    acknowledge,
    announce,
    current_fence,
)

log = logging.getLogger(__name__)

PAUSED_REMINDER_SECONDS = 60.0
"""How often a worker paused for a fence says so again in its log."""


class FenceWatcher:
    """Watches the migration fence of ``database`` for the worker named ``worker`` (``host:pid``)
    and opens or closes ``gate``; ``member`` tells the worker's Kafka group member id ('' until it
    joined). ``client`` is its own (clickhouse-connect clients are used from one thread at a time
    here). ``step`` runs one round (the thread calls it; tests call it directly)."""

    def __init__(self, client: Client, database: str, gate: WriteGate, *, worker: str,
                 member: Callable[[], str] = lambda: "", needed_version: int | None = None,
                 poll: float = POLL_SECONDS, heartbeat: float = HEARTBEAT_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.client, self.database, self.gate = client, database, gate
        self.worker, self.member = worker, member
        self.needed = latest_version() if needed_version is None else needed_version
        self.poll, self.heartbeat, self.clock = poll, heartbeat, clock
        self.acked: set[tuple[str, str]] = set()      # (fence id, member id) acknowledged
        self.paused_for = ""                          # the fence id the gate is closed for
        self.paused_at = 0.0
        self.said_at = 0.0
        self.announced_at: float | None = None       # start of the last presence row written
        self.failing = ""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FenceWatcher:
        self._thread = threading.Thread(target=self._run, name="runlens-fence-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and write the worker's presence as stopped (best effort): a migration
        started later does not wait for it."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            announce(self.client, self.database, self.worker, self._member(), alive=False)
        except Exception as exc:  # noqa: BLE001 - the presence row expires anyway
            log.info("could not record this worker as stopped: %s", _first_line(exc))

    def _run(self) -> None:
        while not self._stopped.is_set():
            started = self.clock()
            self.step()
            self._stopped.wait(max(0.0, self.poll - (self.clock() - started)))

    def _member(self) -> str:
        try:
            return self.member()
        except Exception:  # noqa: BLE001 - not joined yet, or a consumer being replaced
            return ""

    def step(self) -> None:
        """One round: the presence row when due, the fence, and what follows for the gate."""
        started = self.clock()
        member = self._member()
        try:
            if self.announced_at is None or started - self.announced_at >= self.heartbeat:
                announce(self.client, self.database, self.worker, member)
                self.announced_at = started
            fence = current_fence(self.client, self.database)
            if fence is not None and not fence.released:
                self._pause(fence.fence_id, fence.target_version, member)
            elif self.paused_for and not self._schema_ready():
                return
            else:
                if self.paused_for:
                    log.warning("migration fence %s released after %.1fs: writing again", self.paused_for,
                                self.clock() - self.paused_at)
                    self.paused_for = ""
                # open as long as both the presence row and this read are recent
                self.gate.open_until(min(started, self.announced_at) + SELF_LEASE_SECONDS)
            if self.failing:
                log.warning("the migration fence can be checked again")
                self.failing = ""
        except Exception as exc:  # noqa: BLE001 - the warehouse may be briefly unreachable; the lease runs out
            problem = _first_line(exc)
            if problem != self.failing:
                log.warning("cannot check the migration fence (inserts wait once the last check is %.0fs old): %s",
                            SELF_LEASE_SECONDS, problem)
                self.failing = problem

    def _pause(self, fence_id: str, target: int, member: str) -> None:
        now = self.clock()
        if self.paused_for != fence_id:
            self.gate.close(f"a migration to schema version {target} is running (fence {fence_id})")
            self.paused_for, self.paused_at, self.said_at = fence_id, now, now
            log.warning("migration fence %s raised (schema version %d): pausing inserts", fence_id, target)
        elif now - self.said_at >= PAUSED_REMINDER_SECONDS:
            self.said_at = now
            log.warning("still paused for migration fence %s after %.0fs: if no `runlens migrate` is running, run it "
                        "again to finish the migration and release the fence", fence_id, now - self.paused_at)
        if (fence_id, member) in self.acked:
            return
        # the acknowledgement promises that no insert runs: wait for those that passed the gate
        if self.gate.drained(timeout=self.poll):
            acknowledge(self.client, self.database, fence_id, self.worker, member)
            self.acked.add((fence_id, member))
            log.info("acknowledged migration fence %s (member %s)", fence_id, member or "-")

    def _schema_ready(self) -> bool:
        found = schema_version(self.client, self.database)
        if found >= self.needed:
            return True
        now = self.clock()
        if now - self.said_at >= PAUSED_REMINDER_SECONDS:
            self.said_at = now
            log.warning("migration fence %s released but the schema has version %d, this worker needs %d: "
                        "inserts wait until `runlens migrate` applies it", self.paused_for, found, self.needed)
        return False


def group_member_id(app: Any) -> str:
    """The Kafka group member id of a Faust app's consumer ('' until it joined the group). Read
    from aiokafka's group coordinator (Faust has no public accessor); never creates a consumer."""
    consumer = getattr(app, "_consumer", None)
    thread = getattr(consumer, "_thread", None)
    kafka_consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(kafka_consumer, "_coordinator", None)
    member = getattr(coordinator, "member_id", "")
    return member if isinstance(member, str) else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
