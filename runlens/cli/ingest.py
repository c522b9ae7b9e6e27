"""`runlens publish`, `runlens simulate` and `runlens schema export`: events in."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer

from runlens.cli.common import (
    DURATION_HELP,
    TIME_FORMS,
    AccountsOpt,
    BackfillRateOpt,
    BacklogOpt,
    RateOpt,
    SeedOpt,
    SilenceOpt,
    SpikeOpt,
    UserError,
    err,
    out,
    parse_duration_option,
    parse_when,
    path_value,
    printable,
    progress_spinner,
    settings_of,
    stop_on_signals,
    workload_options,
)

schema_app = typer.Typer(help="The event contract as JSON Schema.", no_args_is_help=True)


def publish(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="NDJSON file of events, or - for standard input.",
                                        callback=path_value)],
) -> None:
    """Publish an NDJSON file of events; rejected lines are reported and dead-lettered."""
    from embedded.stack import resolve_brokers
    from producers.kafka import CheckedProducer
    from producers.publish import publish_lines

    settings = settings_of(ctx)
    if file == "-":
        stream, source = sys.stdin.buffer, "stdin"
    else:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"no such file: {printable(file, one_line=True)}")
        stream, source = path.open("rb"), f"file:{path}"
    producer = CheckedProducer(resolve_brokers(settings))
    with stream:
        report = publish_lines(stream, producer, events_topic=settings.events_topic,
                               dead_letter_topic=settings.dead_letter_topic, source=source,
                               max_event_bytes=settings.max_event_bytes,
                               max_clock_skew_seconds=settings.max_clock_skew_seconds)
    for rejected in report.rejected[:50]:   # a reason may quote the line: printable, no markup
        err.print(f"line {rejected.line_number}: rejected: {printable(rejected.reason, one_line=True)}",
                  highlight=False, soft_wrap=True, markup=False)
    if len(report.rejected) > 50:
        err.print(f"... and {len(report.rejected) - 50} more rejected lines", highlight=False)
    out.print(f"published {report.published} events, rejected {len(report.rejected)} lines "
              f"(sent to {settings.dead_letter_topic})", highlight=False)


def simulate(
    ctx: typer.Context,
    seed: SeedOpt = 7,
    accounts: AccountsOpt = 3,
    rate: RateOpt = 5.0,
    duration: Annotated[str, typer.Option(help="Live traffic duration, e.g. 60s, 10m, 2h." + DURATION_HELP)] = "60s",
    backfill: Annotated[str, typer.Option(help="History before now, sent at once, e.g. 30d (0 = none)."
                                               + DURATION_HELP)] = "0",
    backfill_rate: BackfillRateOpt = 120.0,
    spike: SpikeOpt = [],  # noqa: B006 - typer reads the default
    backlog: BacklogOpt = [],  # noqa: B006
    silence: SilenceOpt = [],  # noqa: B006
    out_path: Annotated[str | None, typer.Option("--out", help="Write NDJSON here instead of publishing.",
                                                    callback=path_value)] = None,
    no_pace: Annotated[bool, typer.Option("--no-pace", help="Send live events at once, not in real time.")] = False,
    bad_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of invalid lines to mix in.")] = 0.0,
    now: Annotated[str | None, typer.Option(help=f"Pretend the current time is this: {TIME_FORMS}.")] = None,
    commands: Annotated[bool, typer.Option(
        "--commands/--no-commands", help="Answer replay and stop commands (`runlens runs replay|stop`) for the "
                                         "runs it sends, as an engine would (docs/commands.md).")] = True,
    serve_commands: Annotated[bool, typer.Option(
        "--serve-commands", help="After the traffic, keep answering commands until Ctrl-C.")] = False,
) -> None:
    """Generate a realistic synthetic workload: backfilled history, then live traffic."""
    from producers.simulate import EventSink, run_simulation

    settings = settings_of(ctx)
    out_file = Path(out_path) if out_path is not None else None
    moment = datetime.now(UTC) if now is None else parse_when(now, "--now")
    config = workload_options(seed, accounts, rate, backfill_rate, spike, backlog, moment, silence)
    history = parse_duration_option(backfill, "--backfill")
    live = parse_duration_option(duration, "--duration")
    if out_file is not None:
        with out_file.open("wb") as handle:
            report = run_simulation(config, EventSink(file=handle), now=moment, pace=False,
                                    bad_line_rate=bad_rate, backfill=history, duration=live)
    else:
        from embedded.stack import resolve_brokers
        from producers.engine import CommandServer, RunBook, start_engine
        from producers.kafka import CheckedProducer

        brokers = resolve_brokers(settings)
        producer = CheckedProducer(brokers)
        book = RunBook() if commands else None
        started = time.monotonic()   # the engine's clock runs from --now like the simulation's
        engine: CommandServer | None = None
        with stop_on_signals():
            try:
                if book is not None:
                    engine = start_engine(config, book, brokers, commands_topic=settings.commands_topic,
                                          outcomes_topic=settings.command_outcomes_topic,
                                          events_topic=settings.events_topic, group=settings.engine_group,
                                          clock=lambda: moment + timedelta(seconds=time.monotonic() - started))
                with progress_spinner() as progress:
                    task = progress.add_task("simulating", total=None)
                    report = run_simulation(
                        config, EventSink(producer, settings.events_topic), now=moment, pace=not no_pace,
                        bad_line_rate=bad_rate, book=book,
                        on_progress=lambda r, ts: progress.update(
                            task, description=f"{r.events:,} events, {r.runs:,} runs, at {ts:%Y-%m-%d %H:%M}"),
                        backfill=history, duration=live)
                if engine is not None and serve_commands:
                    out.print("traffic sent; answering replay and stop commands until Ctrl-C", highlight=False)
                    while True:
                        time.sleep(0.5)
            except KeyboardInterrupt:
                if not serve_commands:
                    raise
            finally:
                if engine is not None:
                    engine.stop()
                    out.print(f"answered {engine.handled} commands ({engine.acted} acted on)", highlight=False)
    target = printable(str(out_file or settings.events_topic), one_line=True)
    out.print(f"sent {report.events:,} events of {report.runs:,} runs to {target} "
              f"({report.backfill_events:,} backfilled, {report.live_events:,} live) in {report.seconds:.1f}s",
              highlight=False, markup=False)


@schema_app.command("export")
def schema_export(
    output: Annotated[str | None, typer.Option("--out", "-o", help="File to write; stdout if omitted.",
                                                  callback=path_value)] = None,
) -> None:
    """Write the JSON Schema of one event."""
    from schemas import event_json_schema

    text = orjson.dumps(event_json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
        out.print(f"wrote {printable(output, one_line=True)}", markup=False, highlight=False)
