"""ClickHouse adapter: connection, versioned migrations and idempotent columnar inserts.

Works unchanged against ``chdb://`` (embedded, in-process) and ``http(s)://`` DSNs.

Guarantees on crash, retry and duplicate:
- ``migrate`` is idempotent: each numbered file is applied once and recorded; statements
  are ``IF NOT EXISTS`` / ``OR REPLACE`` so a crash between statement and record is harmless.
- ``write_*`` inserts one batch with a deterministic ``insert_deduplication_token``: a retry of
  the same batch after a lost reply is dropped by ClickHouse. Rows that still arrive twice (a
  batch cut differently after a worker restart) collapse on the natural key, and every view is
  built from duplicate-proof functions, so nothing is counted twice.
- Transient failures raise ``WarehouseUnavailable`` (a ``RetryableError``: retry later); bad SQL
  or data raises ``WarehouseRefused`` (a ``PoisonError``: a bug, not a reason to retry). A caller
  that handles every warehouse failure catches both.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    OperationalError,
)

from schemas.errors import PoisonError, RetryableError, RunlensError
from sinks.cluster import on_cluster
from sinks.fence import (
    FENCE,
    GATE_WAIT_SECONDS,
    FenceOptions,
    WriteGate,
    current_fence,
    fence_table_statement,
    raise_fence,
    release_fence,
    wait_until_paused,
)
from sinks.ledger_state import LedgerState, StoredOpenRun

log = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class WarehouseUnavailable(RetryableError):
    """The warehouse could not be reached or did not answer, or answered with a transient code
    (``TRANSIENT_SERVER_CODES``). Retry later. ``server_code``: ClickHouse's numeric error code
    when it sent one."""

    code = "warehouse_unavailable"


class WarehouseRefused(PoisonError):
    """The warehouse refused a statement or a connection: a bug or bad data. Retrying will not
    help. ``server_code``: ClickHouse's numeric error code when it sent one."""

    code = "warehouse"


class WarehousePaused(WarehouseUnavailable):
    """A migration is running (``sinks.fence``): the worker's inserts wait until it is done."""

    code = "warehouse_paused"


class InsertAbandoned(RunlensError):
    """The writer gave the insert up after waiting (its worker's partitions may have moved to
    another worker, or the worker is stopping): nothing was written. Not retried: the batch is
    delivered again, to whichever worker owns it then."""

    code = "insert_abandoned"


class FenceTimeout(WarehouseUnavailable):
    """Not every worker paused for a migration in time: nothing was migrated, the fence is released."""

    code = "migration_fence"


def check_identifier(name: str) -> str:
    """A database name safe to place in DDL, or ValueError."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid database name {name!r}: use letters, digits and underscores")
    return name


def connect(dsn: str, *, database: str | None = None, password: str | None = None,
            readonly: bool = False) -> Client:
    """A clickhouse-connect client for ``dsn``; raises WarehouseUnavailable when unreachable,
    WarehouseRefused when the server refuses the connection.

    ``readonly=True``: the server refuses every write from this client (ClickHouse's ``readonly=1``).
    Sent with each request only when the server user is not read-only already: a ``readonly=2``
    user may not change ``readonly`` at all (the server and clickhouse-connect would refuse every
    query), and ``readonly=1`` is already what is asked. A ``chdb://`` client opens its engine
    connection with ``readonly=1``."""
    kwargs: dict[str, Any] = {}
    if password is not None:
        kwargs["password"] = password
    if database is not None:
        kwargs["database"] = database
    if not dsn.startswith("chdb:"):
        kwargs.update(compress=False, connect_timeout=5, send_receive_timeout=120,
                      autogenerate_session_id=False)
    elif readonly:
        kwargs["chdb_options"] = {"readonly": 1}
    try:
        client = clickhouse_connect.get_client(dsn=dsn, **kwargs)
        if readonly:
            setting = readonly_setting(client.server_settings)
            if setting is not None:
                client.set_client_setting("readonly", setting)
        return client
    except OperationalError as exc:
        raise WarehouseUnavailable(f"cannot reach the warehouse at {_redact(dsn)}: {exc}",
                                   server_code=server_code(exc)) from exc
    except DatabaseError as exc:
        raise WarehouseRefused(f"warehouse at {_redact(dsn)} refused the connection: {exc}",
                             server_code=server_code(exc)) from exc


def readonly_setting(server_settings: dict[str, Any]) -> str | None:
    """The ``readonly`` value a read-only client must send, given the server's settings for its
    user (clickhouse-connect's ``server_settings``): "1" unless the user is read-only already."""
    current = server_settings.get("readonly")
    value = getattr(current, "value", None)
    return None if value in ("1", "2") else "1"


def _redact(dsn: str) -> str:
    return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", dsn)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql template) of every migration shipped in ``sinks/migrations``, in order."""
    found = []
    for entry in resources.files("sinks.migrations").iterdir():
        match = re.match(r"^(\d+)_.*\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: separated by ';' at the end of a line, comments dropped."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return [p.strip() for p in parts if p.strip()]


def bookkeeping_statements(database: str) -> list[str]:
    """The single-node DDL ``migrate`` runs before the migrations: the database, the table
    recording which migrations were applied and the migration fence's (``sinks.fence``)."""
    db = check_identifier(database)
    return [f"CREATE DATABASE IF NOT EXISTS {db}",
            f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
            "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version",
            fence_table_statement(db)]


def migration_statements(database: str, cluster: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(version, name, statements) of every migration for ``database``: the single-node DDL, or with
    ``cluster`` its replicated ``ON CLUSTER`` form (``sinks.cluster.on_cluster``)."""
    db = check_identifier(database)
    found = []
    for version, name, template in migration_files():
        statements = split_statements(template.replace("{db}", db))
        if cluster is not None:
            statements = [on_cluster(statement, cluster) for statement in statements]
        found.append((version, name, statements))
    return found


def migrate(client: Client, database: str, *, cluster: str | None = None,
            fence: FenceOptions | None = FENCE) -> list[str]:
    """Create ``database`` and apply the migrations it lacks. Returns the names applied.

    ``cluster``: the server is one replica of that ClickHouse cluster; every table, view and
    alteration is made ``ON CLUSTER`` with Replicated engines (``sinks.cluster``), and the
    bookkeeping insert replicates to the other replicas.

    ``fence``: how running workers are paused while the migrations run (``apply_migrations``);
    None only where no worker can write meanwhile (the embedded warehouse process migrates
    before its port opens)."""
    bookkeeping = bookkeeping_statements(database)
    if cluster is not None:
        bookkeeping = [on_cluster(statement, cluster) for statement in bookkeeping]
    return apply_migrations(client, database, bookkeeping, migration_statements(database, cluster), fence=fence)


def apply_migrations(client: Client, database: str, bookkeeping: list[str],
                     migrations: list[tuple[int, str, list[str]]],
                     fence: FenceOptions | None = FENCE) -> list[str]:
    """Run ``bookkeeping`` (creates the database, ``schema_migrations`` and ``schema_fence``), then
    each migration not recorded there, recording it after its last statement. Returns the names
    applied.

    With ``fence`` and something to apply: raise the migration fence first and wait until every
    running worker paused (``sinks.fence``), so that no row is inserted while a view is swapped or
    a table backfilled; ``FenceTimeout`` (nothing applied) when one did not within
    ``fence.timeout``. The fence is released at the end, also when a migration fails. A fence
    left raised by a migrator that stopped midway is released here too (after this run applied
    what it lacked), so the workers it paused go on."""
    db = check_identifier(database)
    for statement in bookkeeping:
        client.command(statement)
    done = {row[0] for row in client.query(f"SELECT version FROM {db}.schema_migrations").result_rows}
    pending = [(version, name, statements) for version, name, statements in migrations if version not in done]
    fence_id = raise_fence(client, db, max(version for version, _, _ in pending)) if pending and fence else None
    try:
        if fence_id is not None and fence is not None:
            waiting = wait_until_paused(client, db, fence_id, fence)
            if waiting:
                raise FenceTimeout(
                    f"{len(waiting)} of the running workers did not pause for the migration within "
                    f"{fence.timeout:.0f}s ({', '.join(waiting[:4])}{', ...' if len(waiting) > 4 else ''}): a worker "
                    "whose insert hangs cannot pause, one of a runlens version without the migration fence never "
                    "does; nothing was migrated and the fence is released")
            log.info("every running worker paused for the migration of %s", db)
        applied = []
        for version, name, statements in pending:
            for statement in statements:
                client.command(statement)
            client.insert(f"{db}.schema_migrations", [[version, name]], column_names=["version", "name"])
            applied.append(name)
            log.info("applied migration %s to %s", name, db)
    except BaseException:
        if fence_id is not None:
            _release_quietly(client, db, fence_id)
        raise
    _release_left_fence(client, db, fence_id)
    return applied


def _release_quietly(client: Client, database: str, fence_id: str) -> None:
    """Release ``fence_id`` after a failure, without hiding that failure."""
    try:
        release_fence(client, database, fence_id)
    except Exception as exc:  # noqa: BLE001 - the migration's own error is the one to report
        log.error("could not release the migration fence of %s (run `runlens migrate` again to release it): %s",
                  database, str(exc).splitlines()[0] if str(exc) else exc)


def _release_left_fence(client: Client, database: str, fence_id: str | None) -> None:
    """Release this run's fence, or one that a migrator which stopped midway left raised."""
    if fence_id is not None:
        release_fence(client, database, fence_id)
        return
    left = current_fence(client, database)
    if left is not None and not left.released:
        log.warning("released migration fence %s, left raised by a migration that stopped midway", left.fence_id)
        release_fence(client, database, left)


def latest_version() -> int:
    """The schema version this code needs: the highest migration it ships."""
    return max(version for version, _, _ in migration_files())


def schema_version(client: Client, database: str) -> int:
    """The highest migration applied to ``database`` (0: none, or no such database yet)."""
    db = check_identifier(database)
    exists = client.query("SELECT count() FROM system.tables WHERE database = {db:String} "
                          "AND name = 'schema_migrations'", parameters={"db": db}).result_rows[0][0]
    if not exists:
        return 0
    return int(client.query(f"SELECT max(version) FROM {db}.schema_migrations").result_rows[0][0] or 0)


def wait_for_schema(client: Client, database: str, version: int | None = None, *, timeout: float = 300.0,
                    interval: float = 0.5) -> int:
    """Wait until ``database`` has at least ``version`` (default: ``latest_version()``) applied, and
    return the version found. Workers call this instead of migrating: one party (the warehouse
    process before its port opens, or ``runlens migrate`` behind the migration fence of
    ``sinks.fence``) applies migrations while no worker inserts, so a migration that swaps a
    materialized view or backfills a table cannot lose or double-count rows inserted meanwhile.
    Raises ``WarehouseUnavailable`` after ``timeout``."""
    needed = latest_version() if version is None else version
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = schema_version(client, database)
        except (OperationalError, DatabaseError) as exc:
            found, problem = -1, str(exc).splitlines()[0]
        else:
            problem = ""
        if found >= needed:
            return found
        if time.monotonic() > deadline:
            raise WarehouseUnavailable(
                f"database {database} has schema version {max(found, 0)}, this worker needs {needed}: run "
                f"`runlens migrate` (the embedded warehouse process migrates when it starts){'; ' if problem else ''}"
                f"{problem}")
        time.sleep(interval)


def batch_token(kind: str, keys: Iterable[object]) -> str:
    """Deterministic dedup token of a batch from the keys of its rows, e.g. their
    (partition, offset) positions: the same rows give the same token, in any order."""
    return batch_token_of_texts(kind, map(repr, keys))


def batch_token_of_texts(kind: str, texts: Iterable[str]) -> str:
    """``batch_token`` of keys given as their ``repr`` texts (the worker writes its events' keys
    as text directly, ``sinks.rows.event_keys``): the same token, byte for byte."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(kind.encode())
    ordered = sorted(texts)
    if ordered:   # each key's text followed by ";", hashed in one piece
        digest.update((";".join(ordered) + ";").encode())
    return f"{kind}-{digest.hexdigest()}"


def insert_type(column_type: str) -> str:
    """The type an insert sends a column of ``column_type`` as: a ``LowCardinality(T)`` column as
    plain ``T`` (the server builds the dictionary as it stores the block, where clickhouse-connect
    would build it in Python on every insert: ~0.5 us of the worker's CPU per event); any other
    type as itself. The stored column and its values are the same."""
    if column_type.startswith("LowCardinality(") and column_type.endswith(")"):
        return column_type[len("LowCardinality("):-1]
    return column_type


# Both spellings: ClickHouse 25+ decides by `deduplicate_insert`, older servers by `insert_deduplicate`.
_NO_DEDUP = {"insert_deduplicate": 0, "deduplicate_insert": "disable"}
# An insert into `events` feeds nine materialized views, each ~5-15 ms of fixed cost per insert whatever
# its size; run side by side, an insert of 300-3,000 events takes ~25 % less wall time (same CPU).
_INSERT_SETTINGS = {"parallel_view_processing": 1}


@dataclass
class Faults:
    """Test hooks that make the warehouse misbehave the way real ones do (reliability suite)."""

    lose_reply_every: int = 0          # after every Nth stored insert, raise as if the reply was lost
    outage_file: Path | None = None    # while this file exists, every call fails as unreachable
    inserts: int = 0

    def before(self) -> None:
        if self.outage_file is not None and self.outage_file.exists():
            raise WarehouseUnavailable("injected outage: warehouse unreachable")

    def after(self) -> None:
        self.inserts += 1
        if self.lose_reply_every and self.inserts % self.lose_reply_every == 0:
            raise WarehouseUnavailable("injected fault: the insert was stored but its reply was lost")


class Warehouse:
    """Writes batches into the runlens tables of one database.

    Thread-compatible: one writer per worker; the worker calls it from one thread at a time.
    ``gate``: the worker's migration fence (``sinks.fence.WriteGate``): every insert passes it, and
    one that waits there longer than ``GATE_WAIT_SECONDS`` raises ``WarehousePaused`` (retried).
    """

    def __init__(self, client: Client, database: str, *, dedup: bool = True, faults: Faults | None = None,
                 gate: WriteGate | None = None):
        self.client = client
        self.database = check_identifier(database)
        self.dedup = dedup
        self.faults = faults or Faults()
        self.gate = gate
        self._column_types: dict[str, dict[str, str]] = {}

    def _types_of(self, table: str, names: list[str]) -> list[str]:
        """The types an insert sends its columns as (``insert_type``), read once per table:
        clickhouse-connect would otherwise DESCRIBE the table before every insert (~25 ms each on
        chDB)."""
        types = self._column_types.get(table)
        if types is None or any(name not in types for name in names):
            rows = self.client.query(f"DESCRIBE TABLE {self.database}.{table}").result_rows
            types = self._column_types[table] = {row[0]: insert_type(row[1]) for row in rows}
        return [types[name] for name in names]

    def insert_columns(self, table: str, columns: dict[str, list[Any]], token: str, *,
                       proceed: Callable[[], bool] | None = None) -> None:
        """Insert a column-oriented batch once. Raises WarehouseUnavailable / WarehouseRefused.
        ``proceed``: asked once the gate let the insert pass (a fence may have held it for
        long); False raises ``InsertAbandoned`` and writes nothing."""
        if not columns or not next(iter(columns.values())):
            return
        gate = self.gate
        if gate is not None and not gate.admit(GATE_WAIT_SECONDS):
            raise WarehousePaused(f"insert into {table} waits: {gate.reason or 'paused'}")
        try:
            if proceed is not None and not proceed():
                raise InsertAbandoned(f"insert into {table} given up: its batch is no longer this worker's")
            self._insert(table, columns, token)
        finally:
            if gate is not None:
                gate.leave()

    def _insert(self, table: str, columns: dict[str, list[Any]], token: str) -> None:
        self.faults.before()
        names = list(columns)
        try:
            self.client.insert(
                f"{self.database}.{table}",
                list(columns.values()),
                column_names=names,
                column_type_names=self._types_of(table, names),
                column_oriented=True,
                settings={"insert_deduplication_token": token, **_INSERT_SETTINGS} if self.dedup
                else {**_NO_DEDUP, **_INSERT_SETTINGS},
            )
        except OperationalError as exc:
            raise WarehouseUnavailable(f"insert into {table} failed: {exc}", server_code=server_code(exc)) from exc
        except DatabaseError as exc:
            self._column_types.pop(table, None)   # the table may have changed under us
            code = server_code(exc)
            message = f"insert into {table} failed: {exc}"
            if is_transient(code, exc):
                raise WarehouseUnavailable(message, server_code=code) from exc
            raise WarehouseRefused(message, server_code=code) from exc
        self.faults.after()

    def load_ledger(self, partition: int, *, recent_capacity: int = 200_000) -> LedgerState:
        """Read what the worker must remember about ``partition`` from what is stored: the
        position stored last, the last ``recent_capacity`` (account, event id) pairs stored, and
        half-seen runs by (account, run id) (queued but not started, or started with the queued
        event still missing). Ids are unique only within an account, so every key has both.
        Read-only: loading twice (a rebalance, a retry after a lost reply) gives the same state;
        ``streams.ledger.PartitionLedger.from_state`` turns it into a ledger."""
        db = self.database
        self.faults.before()
        try:
            # The newest stored positions, not the highest: after a topic was re-created (a memory
            # broker restarted) offsets start again from 0 below positions stored earlier.
            recent = self.client.query(
                f"SELECT account_id, event_id, source_offset, source_index FROM {db}.events "
                "WHERE source_partition = {p:UInt32} "
                "ORDER BY ingested_at DESC, source_offset DESC, source_index DESC LIMIT {n:UInt64}",
                parameters={"p": partition, "n": recent_capacity}).result_rows
            if not recent:
                return LedgerState(partition, recent_capacity)
            half_seen = self.client.query(
                f"SELECT account_id, run_id, q, s FROM (SELECT account_id, run_id, max(source_partition) AS p, "
                f"min(queued_at) AS q, min(started_ts) AS s FROM {db}.run_state GROUP BY account_id, run_id) "
                "WHERE p = {p:UInt32} AND (q IS NULL) != (s IS NULL)",
                parameters={"p": partition}).result_rows
            return LedgerState(
                partition, recent_capacity,
                high_water=(int(recent[0][2]), int(recent[0][3])),
                # oldest first: they leave the horizon first
                recent=tuple((account_id, event_id) for account_id, event_id, _, _ in reversed(recent)),
                open_runs=tuple(StoredOpenRun(account_id, run_id, _utc(queued_at), _utc(started_at))
                                for account_id, run_id, queued_at, started_at in half_seen))
        except OperationalError as exc:
            raise WarehouseUnavailable(f"loading partition {partition} state failed: {exc}") from exc

    def ping(self) -> bool:
        try:
            self.client.command("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - a health probe reports, it does not raise
            return False


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


# ClickHouse server error codes worth retrying: the same statement may succeed later.
TRANSIENT_SERVER_CODES: frozenset[int] = frozenset({
    159,   # TIMEOUT_EXCEEDED
    202,   # TOO_MANY_SIMULTANEOUS_QUERIES
    203,   # NO_FREE_CONNECTION
    209,   # SOCKET_TIMEOUT
    210,   # NETWORK_ERROR
    241,   # MEMORY_LIMIT_EXCEEDED
    242,   # TABLE_IS_READ_ONLY (a replica lost its keeper session)
    252,   # TOO_MANY_PARTS (inserts faster than merges)
    999,   # KEEPER_EXCEPTION
})
_SERVER_CODE = re.compile(r"\bCode:\s*(\d+)")


def server_code(exc: BaseException) -> int | None:
    """ClickHouse's numeric error code for a driver error: clickhouse-connect's ``code`` attribute
    (set from the HTTP ``X-ClickHouse-Exception-Code`` header or chDB's message), else the first
    ``Code: N`` of the message (older drivers, hand-made errors); None for transport errors."""
    code = getattr(exc, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    match = _SERVER_CODE.search(str(exc))
    return int(match.group(1)) if match else None


def is_transient(code: int | None, exc: BaseException) -> bool:
    """Worth retrying: a server code in ``TRANSIENT_SERVER_CODES``; without a server code, a
    connection failure (the driver's text names the "Connection")."""
    if code is not None:
        return code in TRANSIENT_SERVER_CODES
    return "Connection" in str(exc)
