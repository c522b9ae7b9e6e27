"""`runlens up`, `runlens worker` and `runlens demo`: run the pipeline."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from runlens.cli.common import (
    DURATION_HELP,
    AccountsOpt,
    BackfillRateOpt,
    RateOpt,
    SeedOpt,
    err,
    out,
    parse_duration_option,
    plain_cell,
    printable,
    progress_spinner,
    settings_of,
    stop_on_signals,
    workload_options,
)
from runlens.cli.reporting import write_report
from runlens.settings import Settings, redact_text, redact_url


def up(ctx: typer.Context) -> None:
    """Start the embedded stack (broker, worker, warehouse) in the foreground until Ctrl-C."""
    from embedded.stack import EmbeddedStack

    settings = settings_of(ctx)
    with stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(f"runlens is up. broker: {redact_text(stack.brokers)}  query endpoint: "
                  f"{redact_url(stack.query_url)}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"logs: {printable(str(stack.logs))}   Ctrl-C to stop.", markup=False, highlight=False,
                  soft_wrap=True)
        try:
            while True:
                time.sleep(1)
                stack.check_worker()
        except KeyboardInterrupt:
            out.print("stopping...")
    out.print("stopped.")


def worker(ctx: typer.Context) -> None:
    """Run one stream worker (Faust) against the configured broker and warehouse."""
    from runlens.worker import run_worker

    run_worker(settings_of(ctx))


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
    window = dict(backfill=parse_duration_option(backfill, "--backfill"),
                  duration=parse_duration_option(duration, "--duration"))
    with stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(Text.assemble(("runlens demo", "bold"), f" - broker {redact_text(stack.brokers)}, warehouse "
                                f"{redact_url(settings.worker_dsn)}"))
        out.print(f"backfilling {backfill} of history, then {duration} of live traffic "
                  f"(failure spike on {spiked['name']!r} 15s in)...", markup=False, highlight=False)
        producer = CheckedProducer(stack.brokers)
        with progress_spinner() as progress:
            task = progress.add_task("simulating", total=None)
            report = run_simulation(
                config, EventSink(producer, settings.events_topic), now=moment, bad_line_rate=0.0005,
                on_progress=lambda r, ts: progress.update(
                    task, description=f"{r.events:,} events, {r.runs:,} runs, event time {ts:%a %H:%M}"),
                **window)
            progress.update(task, description="waiting for the worker to catch up")
            producer.close()
            lag = _wait_caught_up(stack)
        out.print(f"sent {report.events:,} events of {report.runs:,} runs (and {report.bad_lines} bad lines) "
                  f"in {report.seconds:.0f}s; consumer lag now {lag}", highlight=False)
        _print_summary(settings, stack.reader_dsn)
        report_path = _write_demo_report(settings, stack.reader_dsn, moment - window["backfill"],
                                         moment + window["duration"] + timedelta(minutes=5))
        out.print(f"report: {printable(str(report_path))}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"worker log: {printable(str(stack.logs / 'worker.log'))}", markup=False, highlight=False,
                  soft_wrap=True)
    out.print("stack stopped. Run `runlens up` to keep one running and query it with `runlens query`.")


def _write_demo_report(settings: Settings, query_url: str, since: datetime, until: datetime) -> Path:
    """The dashboards' panels over the demo's window as one HTML page (see `runlens report`)."""
    from sinks.clickhouse import connect

    client = connect(query_url, database=settings.database, readonly=True)
    return write_report(client, settings.data_dir / "report.html", since, until,
                        warn=lambda text: err.print(text, highlight=False))


def _wait_caught_up(stack, timeout: float = 600.0) -> int:
    from producers.kafka import consumer_lag

    s = stack.settings
    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        stack.check_worker()
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
