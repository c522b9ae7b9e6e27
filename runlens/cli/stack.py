"""`runlens up`, `runlens worker` and `runlens demo`: run the pipeline."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from runlens.cli.common import (
    DURATION_HELP,
    AccountsOpt,
    BackfillRateOpt,
    FormatOpt,
    OutputFormat,
    RateOpt,
    SeedOpt,
    UserError,
    err,
    out,
    parse_duration_option,
    plain_cell,
    printable,
    progress_spinner,
    settings_of,
    stop_on_signals,
    workload_options,
    write_rows,
)
from runlens.cli.reporting import write_report
from runlens.settings import Settings, redact_text, redact_url

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from embedded.stack import EmbeddedStack
    from producers.kafka import CheckedProducer, GroupMember


WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, max=32, help="Stream workers in the consumer group (default: RUNLENS_WORKERS, else 1).")]


def up(ctx: typer.Context, workers: WorkersOpt = None) -> None:
    """Start the embedded stack (broker, warehouse process, workers) in the foreground until Ctrl-C;
    restart any part that dies."""
    from embedded.stack import EmbeddedStack

    settings = settings_of(ctx)
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    with stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(f"runlens is up. broker: {redact_text(stack.brokers)}  warehouse: "
                  f"{redact_url(stack.query_url)}  workers: {len(stack.workers)}", markup=False, highlight=False,
                  soft_wrap=True)
        out.print(f"logs: {printable(str(stack.logs))}   Ctrl-C to stop.", markup=False, highlight=False,
                  soft_wrap=True)
        try:
            while True:
                time.sleep(1)
                stack.supervise()
        except KeyboardInterrupt:
            out.print("stopping...")
    out.print("stopped.")


def status(ctx: typer.Context, format: FormatOpt = OutputFormat.table) -> None:
    """The running stack: the warehouse's health, each worker with the partitions it owns and their
    lag, members of the consumer group from elsewhere."""
    from embedded import processes
    from embedded.stack import StackInfo, StackNotRunning, resolve_brokers, resolve_reader
    from producers.kafka import group_members, partition_lags

    settings = settings_of(ctx)
    info = StackInfo.read(settings.stack_file)
    if info is None and not (settings.brokers and settings.warehouse_dsn):
        raise StackNotRunning(f"no running stack in {settings.data_dir} (start one with `runlens up`, or set "
                              "RUNLENS_BROKERS and RUNLENS_WAREHOUSE_DSN)")
    brokers = resolve_brokers(settings)
    rows: list[list[object]] = [["broker", info.pid if info else None, "up", "", None, redact_text(brokers)]]
    reader = resolve_reader(settings).connect(settings.database)
    try:
        rows.append(_warehouse_row(reader, settings.database, info.warehouse_pid if info else 0))
        try:
            members = group_members(brokers, settings.consumer_group) or _reported_members(
                reader, settings.events_topic)
            lags = partition_lags(brokers, settings.consumer_group, [settings.events_topic])
        except Exception as exc:  # noqa: BLE001 - the broker's answer is part of the status
            rows.append(["workers", None, "unknown", "", None, printable(str(exc), one_line=True)])
            write_rows(["part", "pid", "state", "partitions", "lag", "detail"], rows, format)
            return
    finally:
        reader.close()
    by_pid = {_pid_of(m.client_id): m for m in members}
    known = [pid for pid in (info.worker_pids if info else ()) if pid]
    for number, pid in enumerate(info.worker_pids if info else (), start=1):
        member = by_pid.get(pid)
        alive = bool(pid) and processes.alive(pid)
        rows.append(_worker_row(f"worker {number}", pid or None, member, lags, alive))
    for member in members:
        if _pid_of(member.client_id) not in known:
            rows.append(_worker_row(f"member {member.client_id}@{member.host}", None, member, lags, True))
    unowned = sorted(tp for tp in lags if not any(tp in m.partitions for m in members))
    if unowned:
        rows.append(["unassigned", None, "rebalancing" if members else "no consumer", _partitions(unowned),
                     sum(lags[tp] for tp in unowned), ""])
    write_rows(["part", "pid", "state", "partitions", "lag", "detail"], rows, format)


def _reported_members(client: Client, events_topic: str) -> list[GroupMember]:
    """Who owns which events partition, as the workers report it in ``pipeline_metrics`` (for
    brokers that do not describe a group's members): the latest report of each partition in the
    last 30 seconds."""
    from producers.kafka import GroupMember

    rows = client.query(
        "SELECT partition, argMax(worker, time) FROM pipeline_metrics WHERE metric = 'partition_lag' "
        "AND time > now64(3) - INTERVAL 30 SECOND GROUP BY partition ORDER BY partition").result_rows
    owned: dict[str, list[tuple[str, int]]] = {}
    for partition, worker in rows:
        owned.setdefault(worker, []).append((events_topic, int(partition)))
    members = []
    for worker, partitions in owned.items():
        host, _, pid = worker.rpartition(":")
        members.append(GroupMember(f"runlens-worker-{pid}", host, tuple(partitions)))
    return members


def _pid_of(client_id: str) -> int:
    prefix, _, pid = client_id.rpartition("-")
    return int(pid) if prefix.endswith("runlens-worker") and pid.isdigit() else 0


def _rss(pid: int) -> str:
    from embedded.processes import rss_mb

    mb = rss_mb(pid)
    return "" if mb is None else f"RSS {mb:,.0f} MiB"


def _partitions(partitions: Sequence[tuple[str, int]]) -> str:
    return ",".join(str(partition) for _, partition in partitions)


def _worker_row(name: str, pid: int | None, member: GroupMember | None, lags: dict[tuple[str, int], int],
                alive: bool) -> list[object]:
    if member is None:
        return [name, pid, "running, not in the group yet" if alive else "dead", "", None, _rss(pid) if pid else ""]
    owned = [tp for tp in member.partitions if tp in lags]
    return [name, pid, "running" if alive else "gone", _partitions(owned), sum(lags[tp] for tp in owned),
            _rss(pid) if pid else ""]


def _warehouse_row(client: Client, database: str, pid: int) -> list[object]:
    """Health of the warehouse as its reader sees it."""
    try:
        version, schema, events = client.query(
            f"SELECT version(), (SELECT max(version) FROM {database}.schema_migrations), "
            f"(SELECT count() FROM {database}.events)").result_rows[0]
        detail = f"ClickHouse {version}, schema {schema}, {events:,} events stored"
        state = "up"
    except Exception as exc:  # noqa: BLE001 - an unhealthy warehouse is what status reports
        detail, state = printable(str(exc), one_line=True)[:200], "unreachable"
    rss = _rss(pid) if pid else ""
    return ["warehouse", pid or None, state, "", None, f"{detail}; {rss}" if rss else detail]


def worker(ctx: typer.Context) -> None:
    """Run one stream worker (Faust) against the configured broker and warehouse; joins a running
    stack's consumer group when none is configured."""
    from runlens.worker import run_worker

    run_worker(settings_of(ctx))


def migrate(ctx: typer.Context) -> None:
    """Apply the warehouse migrations this version ships (to RUNLENS_WAREHOUSE_DSN, or a running
    stack's warehouse process). Running workers pause their inserts meanwhile (the migration
    fence); workers started later wait for the schema."""
    from embedded.stack import resolve_writer
    from sinks.clickhouse import WarehouseRefused, WarehouseUnavailable, connect
    from sinks.clickhouse import migrate as apply_migrations
    from sinks.fence import FenceOptions

    settings = settings_of(ctx)
    if settings.clickhouse_cluster and settings.uses_embedded_warehouse:
        raise UserError("RUNLENS_CLICKHOUSE_CLUSTER needs a ClickHouse server (RUNLENS_WAREHOUSE_DSN): "
                        "the embedded warehouse is one node")
    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    fence = FenceOptions(timeout=settings.migrate_fence_seconds, members=_group_members_of(settings))
    try:
        client = connect(resolve_writer(settings), password=password if settings.warehouse_dsn else None)
        try:
            applied = apply_migrations(client, settings.database, cluster=settings.clickhouse_cluster, fence=fence)
        finally:
            client.close()
    except (WarehouseUnavailable, WarehouseRefused) as exc:
        raise UserError(f"cannot migrate the warehouse: {redact_text(str(exc).splitlines()[0])}") from None
    out.print(f"{settings.database}: " + (f"applied {', '.join(applied)}" if applied else "schema is current"),
              markup=False, highlight=False)


def _group_members_of(settings: Settings) -> Callable[[], dict[str, str] | None]:
    """The workers' consumer group members as the broker describes them (member id -> client@host),
    for the migration fence; None when no broker is configured or it does not answer (the
    workers' own presence rows then tell who runs)."""
    from embedded.stack import StackNotRunning, resolve_brokers
    from producers.kafka import group_members

    try:
        brokers = resolve_brokers(settings)
    except StackNotRunning:
        return lambda: None

    def members() -> dict[str, str] | None:
        try:
            found = group_members(brokers, settings.consumer_group, timeout=5.0)
        except Exception:  # noqa: BLE001 - an unreachable broker: nobody consumes, presence rows decide
            return None
        return {m.member_id: f"{m.client_id}@{m.host}" for m in found if m.member_id}

    return members


def warehouse(ctx: typer.Context) -> None:
    """Run the embedded warehouse process: chDB in the data directory, served over ClickHouse's
    HTTP interface to the writer (workers) and the reader (everything else). `up` runs it."""
    from runlens.warehouse import run_warehouse

    run_warehouse(settings_of(ctx))


def demo(
    ctx: typer.Context,
    seed: SeedOpt = 7,
    accounts: AccountsOpt = 3,
    rate: RateOpt = 5.0,
    duration: Annotated[str, typer.Option(help="Live traffic duration." + DURATION_HELP)] = "60s",
    backfill: Annotated[str, typer.Option(help="History to backfill before the live traffic." + DURATION_HELP)] = "3d",
    backfill_rate: BackfillRateOpt = 400.0,
) -> None:
    """Start the embedded stack, replay a realistic workload, print what happened, stop."""
    import shutil

    from embedded.stack import EmbeddedStack
    from producers.engine import RunBook, start_engine
    from producers.kafka import CheckedProducer
    from producers.simulate import EventSink, run_simulation
    from producers.workload import Spike, catalog

    base = settings_of(ctx)
    settings = base.model_copy(update={"data_dir": (base.data_dir / "demo").resolve()})
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    moment = datetime.now(UTC)
    config = workload_options(seed, accounts, rate, backfill_rate, [], [], moment)
    spiked = catalog(config)[0]
    config = config.__class__(**{**config.__dict__, "spikes": (
        Spike(workflow=spiked["workflow_id"], at=moment + timedelta(seconds=15), rate=0.7, minutes=0.5),)})
    history = parse_duration_option(backfill, "--backfill")
    live = parse_duration_option(duration, "--duration")
    with stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(Text.assemble(("runlens demo", "bold"), f" - broker {redact_text(stack.brokers)}, warehouse "
                                f"{redact_url(stack.query_url)}"))
        out.print(f"backfilling {backfill} of history, then {duration} of live traffic "
                  f"(failure spike on {spiked['name']!r} 15s in)...", markup=False, highlight=False)
        producer = CheckedProducer(stack.brokers)
        book = RunBook()   # the stand-in engine answers replay and stop commands for the runs it sends
        engine = start_engine(config, book, stack.brokers, commands_topic=settings.commands_topic,
                              outcomes_topic=settings.command_outcomes_topic, events_topic=settings.events_topic,
                              group=settings.engine_group)
        try:
            with progress_spinner() as progress:
                task = progress.add_task("simulating", total=None)
                report = run_simulation(
                    config, EventSink(producer, settings.events_topic), now=moment, bad_line_rate=0.0005,
                    on_progress=lambda r, ts: progress.update(
                        task, description=f"{r.events:,} events, {r.runs:,} runs, event time {ts:%a %H:%M}"),
                    backfill=history, duration=live, book=book)
                progress.update(task, description="waiting for the worker to catch up")
                producer.close()
                lag = _wait_caught_up(stack, settings)
            out.print(f"sent {report.events:,} events of {report.runs:,} runs (and {report.bad_lines} bad lines) "
                      f"in {report.seconds:.0f}s; consumer lag now {lag}", highlight=False)
            _print_summary(settings, stack.reader_dsn)
            _demo_replay(settings, stack, producer, spiked["account_id"])
        finally:
            engine.stop()
        # a librdkafka client ends with its last reference: end them while the broker is still up
        # (alive when it stops, they print its absence on the terminal)
        del producer, engine
        report_path = _write_demo_report(settings, stack.reader_dsn, moment - history,
                                         moment + live + timedelta(minutes=5))
        out.print(f"report: {printable(str(report_path))}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"worker log: {printable(str(stack.logs / 'worker.log'))}", markup=False, highlight=False,
                  soft_wrap=True)
    out.print("stack stopped. Run `runlens up` to keep one running and query it with `runlens query`.")


_SHORT_FAILED_RUN = (
    "SELECT run_id FROM runs WHERE account_id = {account:String} AND status = 'failed' AND replay_of IS NULL "
    "AND workflow_id IN (SELECT workflow_id FROM runs WHERE account_id = {account:String} AND status = 'success' "
    "GROUP BY workflow_id HAVING quantile(0.9)(duration_ms) < 20000) ORDER BY finished_at DESC LIMIT 1")


def _demo_replay(settings: Settings, stack: EmbeddedStack, producer: CheckedProducer, account: str,
                 timeout: float = 120.0) -> None:
    """The replay loop: replay a recent failed run of a short workflow through the command path
    (as `runlens runs replay` does), wait until the engine's outcome and the replay run are
    stored, and print `runlens runs compare` of the two. Waits on conditions, never longer
    than ``timeout`` each; says so and goes on when one is not met."""
    import subprocess
    import sys

    from producers.commands import make_command, send_command
    from schemas.commands import CommandAction
    from schemas.events import ReplayMode
    from sinks.clickhouse import connect

    client = connect(stack.reader_dsn, database=settings.database, readonly=True)
    try:
        rows = client.query(_SHORT_FAILED_RUN, parameters={"account": account}).result_rows
        if not rows:
            out.print(f"no failed run of a short workflow in {account} to replay", markup=False, highlight=False)
            return
        original = rows[0][0]
        command = make_command(account, original, CommandAction.REPLAY, mode=ReplayMode.EXACT,
                               requested_by="runlens demo")
        sent_at = time.monotonic()
        send_command(producer, settings.commands_topic, command)
        out.print(f"replaying failed run {original} of {account} through {settings.commands_topic} "
                  f"(command {command.command_id})...", markup=False, highlight=False)

        def poll(sql: str, params: dict[str, str], done: Callable[[list[Any]], bool]) -> list[Any]:
            deadline = time.monotonic() + timeout
            while True:
                found = list(client.query(sql, parameters=params).result_rows)
                if done(found) or time.monotonic() > deadline:
                    return found
                stack.supervise()
                time.sleep(0.5)

        decided = poll("SELECT outcome, new_run_id, reason FROM commands WHERE account_id = {account:String} "
                       "AND command_id = {command:String}", {"account": account, "command": command.command_id},
                       lambda found: bool(found) and found[0][0] is not None)
        if not decided or decided[0][0] != "replayed":
            out.print(f"the engine did not replay it: {decided[0] if decided else 'no outcome yet'}", markup=False,
                      highlight=False)
            return
        replay, decided_after = decided[0][1], time.monotonic() - sent_at
        seen = poll("SELECT status FROM runs WHERE account_id = {account:String} AND run_id = {run:String}",
                    {"account": account, "run": replay},
                    lambda found: bool(found) and found[0][0] in ("success", "failed", "stopped"))
        out.print(f"outcome: replayed as {replay} (outcome stored {decided_after:.1f}s after the command, the replay "
                  f"{seen[0][0] if seen else 'not yet visible'} in runs after {time.monotonic() - sent_at:.1f}s); "
                  f"runlens runs compare {original} {replay} --account {account}:", markup=False,
                  highlight=False)
    finally:
        client.close()
    env = {**os.environ, **settings.to_env(), "COLUMNS": str(out.width)}
    compare = subprocess.run([sys.executable, "-m", "runlens", "runs", "compare", original, replay, "--account",
                              account], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    out.print(printable(compare.stdout + compare.stderr), markup=False, highlight=False, soft_wrap=True)


def _write_demo_report(settings: Settings, query_url: str, since: datetime, until: datetime) -> Path:
    """The dashboards' panels over the demo's window as one HTML page (see `runlens report`)."""
    from sinks.clickhouse import connect

    client = connect(query_url, database=settings.database, readonly=True)
    return write_report(client, settings.data_dir / "report.html", since, until,
                        warn=lambda text: err.print(text, highlight=False))


def _wait_caught_up(stack: EmbeddedStack, s: Settings, timeout: float = 600.0) -> int:
    """Wait until the worker's consumer lag on ``s``'s topics is 0 (the stack runs with ``s``)."""
    from producers.kafka import consumer_lag

    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        stack.supervise()
        lag = consumer_lag(stack.brokers, s.consumer_group, [s.events_topic, s.dead_letter_topic])
        if lag == 0:
            break
        time.sleep(0.5)
    return lag


def _print_summary(settings: Settings, query_url: str) -> None:
    from dashboards.summary import run_panels
    from sinks.clickhouse import connect

    client = connect(query_url, database=settings.database, readonly=True)
    for panel, columns, rows in run_panels(client):
        if not rows:
            out.print(f"[bold]{panel.title}[/]: none")
            continue
        table = Table(*columns, title=panel.title, title_justify="left", title_style="bold")
        for row in rows:
            table.add_row(*(Text(printable("" if v is None else str(plain_cell(v)))) for v in row))
        out.print(table)
