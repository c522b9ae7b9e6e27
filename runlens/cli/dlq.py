"""`runlens dlq`: read the dead-letter store and re-publish dead letters after a fix.

Replaying sends each selected dead letter's original bytes to the events topic again; the
worker validates them anew, so lines that are still invalid come back to the dead-letter
store (as new entries, with the events topic as their source) and nothing is lost.
"""

from __future__ import annotations

from typing import Annotated

import typer

from runlens.cli.common import (
    MAX_PATH_CHARS,
    FormatOpt,
    OutputFormat,
    RawCsvOpt,
    UserError,
    check_text,
    out,
    query_client,
    run_and_report,
    run_query,
    settings_of,
    text_values,
)

dlq_app = typer.Typer(help="The dead-letter store: list rejected events, re-publish them after a fix.",
                      no_args_is_help=True)


def _source(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    if value is not None:
        check_text(value, "--source", MAX_PATH_CHARS + len("file:"))
    return value


SourceOpt = Annotated[str | None, typer.Option(help="Only dead letters from this source (topic or file:PATH).",
                                                  callback=_source)]
ReasonOpt = Annotated[str | None, typer.Option("--reason-contains", help="Only reasons containing this text "
                                                  "(at most 512 characters).", callback=text_values)]


def _where(source: str | None, reason: str | None) -> tuple[str, dict]:
    clauses, params = [], {}
    if source:
        clauses.append("source = {source:String}")
        params["source"] = source
    if reason:
        clauses.append("positionCaseInsensitive(reason, {reason:String}) > 0")
        params["reason"] = reason
    return " AND ".join(clauses) or "1", params


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    source: SourceOpt = None,
    reason_contains: ReasonOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most rows to show (1..100,000).")] = 50,
    format: FormatOpt = OutputFormat.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Dead letters, newest first: where each came from and why it was rejected."""
    where, params = _where(source, reason_contains)
    run_and_report(ctx, "SELECT received_at, source, source_partition, source_offset, source_index, field, reason, "
                        f"substring(raw, 1, 120) AS raw_start FROM rejected_events WHERE {where} "
                        "ORDER BY received_at DESC, source, source_offset, source_index LIMIT {limit:UInt32}",
                   {**params, "limit": limit}, format, raw_csv)


@dlq_app.command("replay")
def dlq_replay(
    ctx: typer.Context,
    source: SourceOpt = None,
    reason_contains: ReasonOpt = None,
) -> None:
    """Re-publish the selected dead letters to the events topic (after fixing what rejected them)."""
    from embedded.stack import resolve_brokers
    from producers.kafka import CheckedProducer
    from producers.publish import publish_lines

    settings = settings_of(ctx)
    where, params = _where(source, reason_contains)
    rows = run_query(query_client(settings), f"SELECT raw FROM rejected_events WHERE {where} ORDER BY source, "
                     "source_offset, source_index", params).result_rows
    if not rows:
        raise UserError("no dead letters match")
    producer = CheckedProducer(resolve_brokers(settings))
    report = publish_lines((raw.encode() for (raw,) in rows), producer, events_topic=settings.events_topic,
                           dead_letter_topic=settings.dead_letter_topic, source="dlq-replay",
                           max_event_bytes=settings.max_event_bytes,
                           max_clock_skew_seconds=settings.max_clock_skew_seconds)
    out.print(f"replayed {len(rows)} dead letters: {report.published} published, "
              f"{len(report.rejected)} still invalid (dead-lettered again)", highlight=False)
