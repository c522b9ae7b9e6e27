"""The migration fence: no worker inserts while a migration runs.

A migration that swaps a materialized view (DROP the old one, CREATE the new one) loses the rows
inserted between the two statements, and one that backfills a table (INSERT ... SELECT from
what is stored) counts twice the rows inserted while it runs: the view adds them and so does
the backfill. So ``migrate`` (``sinks.clickhouse.apply_migrations``) raises a fence before it
applies anything, waits until every worker has paused, applies the migrations and releases the
fence, also when they fail. Everything goes through the warehouse itself, the same way against
chDB behind the embedded warehouse process and against a ClickHouse server (or a cluster: the
table is created ``ON CLUSTER`` and replicated like ``schema_migrations``).

The table ``schema_fence`` (created with ``schema_migrations``, before any migration) holds one
row per fact, by ``kind``:

- ``fence``: the migrator raised fence ``fence_id`` towards ``target_version`` (``released`` 0), or
  released it (a second row, ``released`` 1). The newest fence row decides: a fence left raised
  by a migrator that died is released by the next ``migrate``, which raises its own first when
  it has something to apply.
- ``ack``: worker ``worker`` (Kafka group member ``member``) paused for fence ``fence_id``: none of
  its inserts is running, and none starts until the fence is released.
- ``presence``: worker ``worker`` is running (``alive`` 1, every ``HEARTBEAT_SECONDS``) or stopped
  (``alive`` 0, written as it stops). Kept a day.

Who must acknowledge: every worker whose latest presence row is alive and at most
``PRESENCE_LEASE_SECONDS`` old (server clock), and every member of the workers' Kafka consumer
group when the broker describes its members (Kafka does; Tansu, the embedded broker, does
not): a member without an acknowledgement, e.g. a worker of a runlens version without the
fence, holds the migration back instead of writing through it.

The worker's side (``streams.fence.FenceWatcher``) polls the fence about every second and keeps
a ``WriteGate`` that every insert passes (``sinks.clickhouse.Warehouse``): the gate is closed
before the acknowledgement is written, and the acknowledgement waits until every insert that
passed the gate before has finished. The gate also closes by itself when the worker could not
check the fence for ``SELF_LEASE_SECONDS``, well within the presence lease: a worker that cannot
reach the warehouse to say it is alive (or that died) starts no insert after the migrator stops
waiting for it.

This module imports nothing of runlens: ``sinks.clickhouse`` builds on it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often a worker reads the fence."""
HEARTBEAT_SECONDS = 2.0
"""How often a worker writes its presence row."""
SELF_LEASE_SECONDS = 5.0
"""A worker's gate closes when its last successful fence check (read and presence row) started
longer ago than this."""
PRESENCE_LEASE_SECONDS = 15.0
"""The migrator waits for a worker whose latest presence row is at most this old. The margin
over ``SELF_LEASE_SECONDS`` is for an insert that passed the gate just before it closed."""
GATE_WAIT_SECONDS = 2.0
"""How long an insert waits at a closed gate before it reports the warehouse as paused (the
worker's retry loop then tries again): a stopping worker never waits longer for a fence."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _db(database: str) -> str:
    if not _IDENTIFIER.match(database):
        raise ValueError(f"invalid database name {database!r}: use letters, digits and underscores")
    return database


def fence_table_statement(database: str) -> str:
    """The single-node DDL of the fence table (``sinks.cluster.on_cluster`` renders its cluster form)."""
    return (f"CREATE TABLE IF NOT EXISTS {_db(database)}.schema_fence "
            "(kind LowCardinality(String), fence_id String, target_version UInt32, released UInt8, "
            "worker String, member String, alive UInt8, at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = MergeTree ORDER BY (kind, at) "
            "TTL toDateTime(at) + INTERVAL 1 DAY DELETE WHERE kind = 'presence'")


@dataclass(frozen=True)
class Fence:
    """The newest fence row: ``released`` False while the migrator holds it."""

    fence_id: str
    target_version: int
    released: bool


def current_fence(client: Client, database: str) -> Fence | None:
    """The newest fence (None: none was ever raised). One read of the fence rows (a few per
    migration ever run)."""
    row = client.query(
        "SELECT argMax(tuple(fence_id, target_version, released), tuple(at, released)), count() "
        f"FROM {_db(database)}.schema_fence WHERE kind = 'fence'").result_rows[0]
    (fence_id, target, released), count = row
    if not count:
        return None
    return Fence(str(fence_id), int(target), bool(released))


def raise_fence(client: Client, database: str, target_version: int) -> str:
    """Raise a new fence towards ``target_version``; returns its id."""
    fence_id = uuid.uuid4().hex
    client.command(f"INSERT INTO {_db(database)}.schema_fence (kind, fence_id, target_version, released, at) "
                   "SELECT 'fence', {f:String}, {v:UInt32}, 0, now64(3)",
                   parameters={"f": fence_id, "v": target_version})
    return fence_id


def release_fence(client: Client, database: str, fence: Fence | str) -> None:
    """Release ``fence`` (a ``Fence`` or a fence id): workers go on."""
    fence_id, target = (fence.fence_id, fence.target_version) if isinstance(fence, Fence) else (fence, 0)
    client.command(f"INSERT INTO {_db(database)}.schema_fence (kind, fence_id, target_version, released, at) "
                   "SELECT 'fence', {f:String}, {v:UInt32}, 1, now64(3)",
                   parameters={"f": fence_id, "v": target})


def acknowledge(client: Client, database: str, fence_id: str, worker: str, member: str) -> None:
    """Worker ``worker`` (Kafka member ``member``, '' before it joined) paused for ``fence_id``."""
    client.command(f"INSERT INTO {_db(database)}.schema_fence (kind, fence_id, worker, member, at) "
                   "SELECT 'ack', {f:String}, {w:String}, {m:String}, now64(3)",
                   parameters={"f": fence_id, "w": worker, "m": member})


def announce(client: Client, database: str, worker: str, member: str, *, alive: bool = True) -> None:
    """Worker ``worker``'s presence row: running (``alive``) or stopped."""
    client.command(f"INSERT INTO {_db(database)}.schema_fence (kind, worker, member, alive, at) "
                   "SELECT 'presence', {w:String}, {m:String}, {a:UInt8}, now64(3)",
                   parameters={"w": worker, "m": member, "a": int(alive)})


def waiting_for(client: Client, database: str, fence_id: str, members: Mapping[str, str] | None = None,
                lease: float = PRESENCE_LEASE_SECONDS) -> list[str]:
    """Who has not acknowledged ``fence_id`` yet: the present workers (``host:pid``) and the
    Kafka group members in ``members`` (member id -> how to name it) with no acknowledgement."""
    db = _db(database)
    present = client.query(
        f"SELECT worker, argMax(alive, at) AS up FROM {db}.schema_fence WHERE kind = 'presence' "
        "AND at > now64(3) - toIntervalMillisecond({lease:UInt32}) GROUP BY worker HAVING up = 1",
        parameters={"lease": int(lease * 1000)}).result_rows
    acks = client.query(f"SELECT worker, member FROM {db}.schema_fence WHERE kind = 'ack' AND fence_id = {{f:String}}",
                        parameters={"f": fence_id}).result_rows
    acked_workers = {worker for worker, _ in acks}
    acked_members = {member for _, member in acks if member}
    return sorted(outstanding(acked_workers, acked_members, [worker for worker, _ in present], members or {}))


def outstanding(acked_workers: set[str], acked_members: set[str], present: list[str],
                members: Mapping[str, str]) -> list[str]:
    """The names of the present workers and Kafka members (id -> name) not among the acknowledged."""
    return ([f"worker {worker}" for worker in present if worker not in acked_workers]
            + [f"group member {name}" for member, name in members.items() if member not in acked_members])


@dataclass(frozen=True)
class FenceOptions:
    """How ``migrate`` fences: ``timeout`` seconds at most for every worker to pause; ``members``:
    the Kafka member ids of the workers' consumer group (id -> a name for messages), None when
    the broker cannot say."""

    timeout: float = 120.0
    members: Callable[[], Mapping[str, str] | None] | None = None
    interval: float = 0.25
    lease: float = PRESENCE_LEASE_SECONDS


FENCE = FenceOptions()
"""The default: wait up to two minutes for the workers that announce themselves."""


def wait_until_paused(client: Client, database: str, fence_id: str, options: FenceOptions) -> list[str]:
    """Wait until every worker acknowledged ``fence_id``; returns who had not when ``options.timeout``
    ran out (empty: all paused). The broker is asked for the group's members about once a second."""
    deadline = time.monotonic() + options.timeout
    members: Mapping[str, str] | None = None
    asked = -1.0
    while True:
        if options.members is not None and time.monotonic() - asked >= 1.0:
            members, asked = options.members(), time.monotonic()
        waiting = waiting_for(client, database, fence_id, members, options.lease)
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(options.interval)


class WriteGate:
    """What every insert of a worker passes (thread-safe; inserts run in executor threads).

    Closed from the start until the worker's first fence check; open while no fence is raised
    and the last check is at most ``SELF_LEASE_SECONDS`` old (``open_until``); closed while a
    fence is raised (``close``). ``drained`` tells when no insert that passed is still running."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._until = 0.0
        self._closed_for = "the migration fence has not been checked yet"
        self._writing = 0

    def _is_open(self) -> bool:
        return not self._closed_for and self._clock() < self._until

    @property
    def reason(self) -> str:
        """Why inserts wait now ('' when they do not)."""
        with self._cond:
            if self._closed_for:
                return self._closed_for
            return "" if self._clock() < self._until else "the migration fence could not be checked lately"

    def open_until(self, until: float) -> None:
        """No fence is raised (as of a check that started at ``until - SELF_LEASE_SECONDS``)."""
        with self._cond:
            self._closed_for = ""
            self._until = max(self._until, until)
            self._cond.notify_all()

    def close(self, reason: str) -> None:
        """Let no insert start until ``open_until`` is called."""
        with self._cond:
            self._closed_for = reason

    def admit(self, wait: float = GATE_WAIT_SECONDS) -> bool:
        """Pass the gate (then ``leave`` when the insert is done), waiting at most ``wait`` seconds."""
        deadline = self._clock() + wait
        with self._cond:
            while not self._is_open():
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))   # an expiring lease does not notify: look again
            self._writing += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._writing -= 1
            self._cond.notify_all()

    def drained(self, timeout: float) -> bool:
        """Closed and no insert that passed the gate still running (waits up to ``timeout``)."""
        deadline = self._clock() + timeout
        with self._cond:
            while self._writing:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return bool(self._closed_for)

    @property
    def writing(self) -> int:
        with self._cond:
            return self._writing
