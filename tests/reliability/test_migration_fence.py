"""Migrations while workers run (the migration fence, ``sinks.fence``). Two workers ingest a known
workload while migration 007 is applied again, three times: its objects are dropped and
re-created, so each time it swaps the view feeding run_stats_state (DROP, then CREATE) and
backfills the roll-ups from what is stored while their views feed them. Without the fence the
rows inserted meanwhile are lost or counted twice; with it every aggregate equals the batch
recomputation from the raw events. A rebalance during a fence (a worker stopped and started
again) does not hold the migration up, and a worker that never pauses makes `runlens migrate`
give up with one line, the fence released and nothing migrated."""

from __future__ import annotations

import threading
import time

from producers.kafka import group_members
from sinks.clickhouse import apply_migrations, bookkeeping_statements, connect, migration_files, migration_statements
from sinks.fence import FenceOptions, announce, current_fence
from tests.helpers import run_cli, wait_caught_up, wait_for
from tests.reliability.conftest import FULL, make_workload, oracle_problems, reader_of, report

# what migration 007 creates, dropped first so that applying it again swaps and backfills again
_VIEWS_007 = ("run_stats_mv", "run_notes_mv", "step_stats_hourly_mv", "run_stats_hourly_mv", "step_stats_daily_mv")
_TABLES_007 = ("run_notes", "step_stats_hourly", "run_stats_hourly", "step_stats_daily")


def _reapply_007(database: str, version: int, *, pause_s: int = 0) -> tuple[int, str, list[str]]:
    """A test-only migration: drop what 007 created, then 007's own statements (after ``pause_s``
    seconds of ``sleep``, to hold the fence up for a while)."""
    statements = next(s for v, _, s in migration_statements(database) if v == 7)
    drops = ([f"DROP VIEW IF EXISTS {database}.{view}" for view in _VIEWS_007]
             + [f"DROP TABLE IF EXISTS {database}.{table}" for table in _TABLES_007])
    pauses = ["SELECT sleep(3)"] * (pause_s // 3)
    return version, f"{version}_reapply_007.sql", drops + pauses + statements


def _fence(stack, timeout: float = 60.0) -> FenceOptions:
    """What `runlens migrate` passes: the group's members as Kafka describes them (Tansu does not)."""
    s = stack.settings

    def members() -> dict[str, str]:
        return {m.member_id: f"{m.client_id}@{m.host}"
                for m in group_members(stack.brokers, s.consumer_group) if m.member_id}
    return FenceOptions(timeout=timeout, members=members)


def _stored(stack) -> int:
    with reader_of(stack) as client:
        return int(client.query("SELECT count() FROM events").result_rows[0][0])


def rollup_problems(client) -> list[str]:
    """The hourly and daily roll-ups must hold exactly the minute aggregates they roll up."""
    problems = []
    step_sums = "sum(executions), sum(succeeded), sum(failed), sum(skipped), sum(retries), sum(delays)"
    run_sums = "sum(finished), sum(succeeded), sum(failed), sum(stopped), sum(queue_samples), sum(duration_lt_1s)"
    for rollup, source, by, sums in (
            ("step_stats_hourly", "step_stats_state", "toStartOfHour(bucket)", step_sums),
            ("step_stats_daily", "step_stats_state", "toStartOfDay(bucket)", step_sums),
            ("run_stats_hourly", "run_stats_state", "toStartOfHour(bucket)", run_sums)):
        got = client.query(f"SELECT {by} AS b, account_id, {sums} FROM {rollup} GROUP BY ALL ORDER BY ALL").result_rows
        want = client.query(f"SELECT {by} AS b, account_id, {sums} FROM {source} GROUP BY ALL ORDER BY ALL").result_rows
        if got != want:
            wrong = [(g, w) for g, w in zip(got, want, strict=False) if g != w][:2]
            problems.append(f"{rollup}: {len(got)} rows vs {len(want)} from {source}, first differences {wrong}")
    return problems


def test_migrations_that_swap_views_and_backfill_lose_and_double_count_nothing(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=8 if FULL else 4, duplicate_rate=0.02, reorder_rate=0.02)
    stack = stack_factory(workers=2, partitions=4, batch_max_records=10, batch_max_seconds=0.2)
    db = stack.settings.database
    publisher = threading.Thread(target=lambda: run_cli(stack.settings, "publish", str(workload.path)), daemon=True)
    publisher.start()
    writer = connect(stack.writer_dsn)
    fences = []
    try:
        for round_ in range(3):
            before = wait_for(lambda: _stored(stack), lambda n, r=round_: n > 2_000 * (r + 1), timeout=180,
                              what="the workers storing between migrations")
            started = time.monotonic()
            applied = apply_migrations(writer, db, bookkeeping_statements(db), [_reapply_007(db, 900 + round_)],
                                       fence=_fence(stack))
            fences.append(round(time.monotonic() - started, 2))
            assert applied == [f"{900 + round_}_reapply_007.sql"]
            assert _stored(stack) >= before
        acks = writer.query(f"SELECT fence_id, uniqExact(worker) FROM {db}.schema_fence WHERE kind = 'ack' "
                            "GROUP BY fence_id").result_rows
        fence = current_fence(writer, db)
    finally:
        writer.close()
    publisher.join(300)
    wait_caught_up(stack, timeout=300)
    report("migration fence", events=len(workload.lines), migrations_s=fences, acks=[n for _, n in acks])
    client = reader_of(stack)
    assert oracle_problems(client, workload) == []
    assert rollup_problems(client) == []
    assert len(acks) == 3 and all(n == 2 for _, n in acks), acks   # both workers paused for each
    assert fence is not None and fence.released
    assert all(proc is not None and proc.poll() is None for proc in stack.workers) and stack.worker_restarts == 0


def test_a_rebalance_during_a_fence_does_not_hold_the_migration_up(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=3 if FULL else 2, duplicate_rate=0.02)
    stack = stack_factory(workers=2, partitions=4, batch_max_records=10, batch_max_seconds=0.2)
    db = stack.settings.database
    publisher = threading.Thread(target=lambda: run_cli(stack.settings, "publish", str(workload.path)), daemon=True)
    publisher.start()
    wait_for(lambda: _stored(stack), lambda n: n > 2_000, timeout=120, what="both workers storing")
    writer = connect(stack.writer_dsn)
    outcome: list[object] = []

    def migrate() -> None:   # its 20 s pause outlasts a worker restart on a loaded machine
        try:
            outcome.append(apply_migrations(writer, db, bookkeeping_statements(db),
                                            [_reapply_007(db, 910, pause_s=20)], fence=_fence(stack)))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)

    migrator = threading.Thread(target=migrate)
    started = time.monotonic()
    migrator.start()
    try:
        wait_for(lambda: current_fence(writer, db), lambda f: f is not None and not f.released, timeout=30,
                 interval=0.1, what="the fence raised")
        # a worker joins and another leaves while the fence is up: two rebalances of a paused group.
        # Batches waiting on the fence when their partitions are revoked are given up, not stored
        # after the release beside the new owner's copy (run_stats counted twice before that).
        stack.workers.append(None)
        stack.start_worker(len(stack.workers) - 1)
        wait_for(lambda: writer.query(f"SELECT uniqExact(worker) FROM {db}.schema_fence WHERE kind = 'ack'")
                 .result_rows[0][0], lambda n: n == 3, timeout=60, what="the joining worker's acknowledgement")
        assert stack.stop_worker(index=1) == 0, "the worker did not stop cleanly while paused"
        migrator.join(120)
        took = time.monotonic() - started
        acks = writer.query(f"SELECT uniqExact(worker) FROM {db}.schema_fence WHERE kind = 'ack'").result_rows[0][0]
    finally:
        writer.close()
    assert outcome == [["910_reapply_007.sql"]], outcome
    publisher.join(300)
    wait_caught_up(stack, timeout=300)
    report("rebalance during a fence", migration_s=round(took, 1), acks=acks)
    assert acks == 3   # the worker that left, the one that stayed, the one that joined
    assert took < 60, took
    running = [proc for proc in stack.workers if proc is not None]
    assert len(running) == 2 and all(proc.poll() is None for proc in running) and stack.worker_restarts == 0
    client = reader_of(stack)
    assert oracle_problems(client, workload) == []
    assert rollup_problems(client) == []


def test_a_worker_that_never_pauses_makes_migrate_give_up_in_one_line(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=1)
    stack = stack_factory(batch_max_records=10, batch_max_seconds=0.2)
    db = stack.settings.database
    latest, latest_name, _ = migration_files()[-1]
    writer = connect(stack.writer_dsn)
    stop = threading.Event()

    def stuck_worker() -> None:   # announces itself as a worker, never acknowledges a fence
        while not stop.is_set():
            announce(writer, db, "stuck-host:4242", "")
            stop.wait(1.0)

    ghost = threading.Thread(target=stuck_worker, daemon=True)
    try:
        wait_for(lambda: writer.query(f"SELECT count() FROM {db}.schema_fence WHERE kind = 'presence'").result_rows,
                 lambda rows: rows[0][0] > 0, timeout=60, what="the stack's worker announcing itself")
        # the latest migration is pending again: its record is gone (it can be applied again)
        writer.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = {latest}",
                       settings={"mutations_sync": 2})
        ghost.start()
        started = time.monotonic()
        failed = run_cli(stack.settings, "migrate", RUNLENS_MIGRATE_FENCE_SECONDS="3")
        took = time.monotonic() - started
        stderr = failed.stderr.decode().strip()
        assert failed.returncode == 1, (failed.stdout, stderr)
        assert len(stderr.splitlines()) == 1, stderr
        assert "did not pause" in stderr and "stuck-host:4242" in stderr and "nothing was migrated" in stderr, stderr
        assert "Traceback" not in stderr
        fence = current_fence(writer, db)
        assert fence is not None and fence.released
        version = writer.query(f"SELECT max(version) FROM {db}.schema_migrations").result_rows[0][0]
        assert version == latest - 1
        # the stack's own worker did pause: only the stuck one was missing
        # one row per Kafka membership: a worker that had not joined its group yet acknowledges again once it has
        acks = writer.query(f"SELECT DISTINCT worker FROM {db}.schema_fence WHERE kind = 'ack'").result_rows
        assert len(acks) == 1 and acks[0][0] != "stuck-host:4242", acks

        # the stuck worker goes away: migrate applies the latest, and the worker (which needs it) writes again
        stop.set()
        ghost.join()
        announce(writer, db, "stuck-host:4242", "", alive=False)
        done = run_cli(stack.settings, "migrate", RUNLENS_MIGRATE_FENCE_SECONDS="30")
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().strip() == f"{db}: applied {latest_name}"
    finally:
        stop.set()
        writer.close()
    published = run_cli(stack.settings, "publish", str(workload.path))
    assert published.returncode == 0, published.stderr
    wait_caught_up(stack, timeout=180)
    report("fence timeout", migrate_s=round(took, 1))
    assert took < 30, took
    assert _stored(stack) > 0
