"""The run explorer and failure analysis on the command line: ``runlens runs``, ``export``,
``sql`` and ``retention``.

Every command reads exactly one account (``--account`` or ``RUNLENS_ACCOUNT``) and binds every
value the user types as a query parameter (the SQL is built by ``dashboards.runs`` and
``dashboards.sqllib``). Bad input is one line on stderr and a non-zero exit, before any query
runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dashboards import run_page, sqllib
from dashboards import runs as rq
from runlens.cli.common import (
    BadArgument,
    RawCsvOpt,
    UserError,
    parse_when,
    path_value,
    printable,
    shown,
    text_values,
)
from runlens.cli.explore_common import (
    AccountOpt,
    CardOpt,
    ContactOpt,
    ErrorClassOpt,
    ErrorCodeOpt,
    Format,
    FormatOpt,
    ReplaysOpt,
    RunIdArg,
    SinceOpt,
    SiteOpt,
    SortOpt,
    StatusOpt,
    TriggerOpt,
    TypeOpt,
    UntilOpt,
    VersionOpt,
    WorkflowOpt,
    as_records,
    build_query,
    client_of,
    console_for,
    json_doc,
    now_utc,
    rfc3339,
    run_filters,
    run_rows,
    say,
    write_table,
)

runs_app = typer.Typer(help="The Workflow Runs page: list, show and compare runs, replay outcomes.",
                       no_args_is_help=True, rich_markup_mode=None)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


# --------------------------------------------------------------------------- runs list

MAX_PAGE = 1_000_000_000   # (page - 1) x limit stays a UInt64 offset


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    account: AccountOpt,
    since: SinceOpt = None, until: UntilOpt = None, status: StatusOpt = [], type_: TypeOpt = [],  # noqa: B006
    workflow: WorkflowOpt = [], version: VersionOpt = [], site: SiteOpt = [], card: CardOpt = [],  # noqa: B006
    trigger: TriggerOpt = [], contact: ContactOpt = [], error_code: ErrorCodeOpt = [],  # noqa: B006
    error_class: ErrorClassOpt = [], replays: ReplaysOpt = None,  # noqa: B006
    sort: SortOpt = "-started_at",
    limit: Annotated[int, typer.Option(help=f"Runs per page (1..{rq.MAX_PAGE_SIZE}).")] = 50,
    page: Annotated[int, typer.Option(help=f"Page number, 1..{MAX_PAGE:,}.")] = 1,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Runs of one account with the product's filters, sorted and paged (newest first)."""
    f = run_filters(account, since, until, status, type_, workflow, version, site, card, trigger, contact,
                 error_code, error_class, replays)
    if page > MAX_PAGE:
        raise BadArgument(f"--page: {page} (pages 1..{MAX_PAGE:,})")
    query = build_query(lambda: rq.run_list(f, sort, limit, page))
    count = rq.run_count(f)
    client = client_of(ctx)
    columns, rows = run_rows(client, query)
    if format is not Format.table:
        write_table(columns, rows, format, raw_csv)
        return
    total = run_rows(client, count)[1][0][0]
    keep = [columns.index(c) for c in rq.RUN_TABLE_COLUMNS]
    write_table(list(rq.RUN_TABLE_COLUMNS), [[row[i] for i in keep] for row in rows], format)
    pages = max(1, -(-total // limit))
    key, direction = rq.parse_sort(sort)
    console_for().print(f"page {page} of {pages}, {total} runs, sorted by {key} {direction.lower()}",
                     highlight=False)


# --------------------------------------------------------------------------- runs show


def _one_run(client: Client, account: str, run_id: str) -> dict[str, Any]:
    columns, rows = run_rows(client, build_query(lambda: rq.run_detail(account, run_id)))
    if not rows:
        raise UserError(f"run {shown(run_id)} not found in account {shown(account)}")
    return as_records(columns, rows)[0]


def _steps(client: Client, account: str, run_id: str) -> list[dict[str, Any]]:
    columns, rows = run_rows(client, rq.run_steps(account, run_id))
    return as_records(columns, rows)


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) < 1000:
        return f"{value} ms"
    if abs(value) < 120_000:
        return f"{value / 1000:.2f} s"
    return f"{value / 60000:.1f} min"


def _time(value: object) -> str:
    return rfc3339(value) if isinstance(value, datetime) else ("" if value is None else str(value))


def _notes(step: dict) -> str:
    parts = []
    if step["status"] == "failed" and step["error_code"]:
        parts.append(f"{step['error_code']}: {step['error_message'] or ''}")
    if step["step_type"] == "condition" and step["condition_result"] is not None:
        parts.append(f"result {str(step['condition_result']).lower()} -> branch {step['branch']}")
    if step["step_type"] == "delay" and step["scheduled_resume_at"] is not None:
        late = step.get("resume_late_ms")
        resumed = _time(step["resumed_at"]) if step["resumed_at"] else "not resumed"
        parts.append(f"scheduled {_time(step['scheduled_resume_at'])}, resumed {resumed}"
                     + (f" ({_ms(late)} late)" if late and late > 0 else ""))
    if step["action_kind"] or step["target"]:
        parts.append(f"{step['action_kind'] or 'action'} -> {step['target'] or ''}")
    return "; ".join(parts)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: RunIdArg,
    account: AccountOpt,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
    html_file: Annotated[str | None, typer.Option(
        "--html", metavar="FILE", callback=path_value,
        help="Write the run details as one self-contained HTML page (overview, step timeline chart, step log, "
             "replays) instead of printing them.")] = None,
) -> None:
    """One run: overview, step timeline with inputs, outputs and errors, and its replay links."""
    client = client_of(ctx)
    run = _one_run(client, account, run_id)
    steps = _steps(client, account, run_id)
    replay_cols, replay_rows = run_rows(client, rq.run_replays(account, run_id))
    replays = as_records(replay_cols, replay_rows)
    original = None
    if run["replay_of"]:
        cols, rows = run_rows(client, rq.run_links(account, [run["replay_of"]]))
        original = as_records(cols, rows)[0] if rows else {"run_id": run["replay_of"], "status": "not found"}
    if html_file is not None:
        try:
            path = run_page.write_run_page(run_page.RunDetails(run, steps, original, replays), html_file)
        except OSError as exc:
            raise UserError(f"--html: cannot write {shown(html_file, 200)}: {exc.strerror or exc.__class__.__name__}") \
                from None
        say(f"wrote {path.resolve()}")
        return
    if format is Format.json:
        json_doc({"run": run, "original": original, "replays": replays, "steps": steps})
        return
    if format is Format.csv:
        columns = list(steps[0]) if steps else [*rq.STEP_COLUMNS, "resume_late_ms"]
        write_table(columns, [list(s.values()) for s in steps], format, raw_csv)
        return
    _print_run(run, steps, original, replays)


def _print_run(run: dict, steps: list[dict], original: dict | None, replays: list[dict]) -> None:
    """The run for a terminal: every value from the events made printable and shown as plain text
    (rich ``Text``, never markup)."""
    from rich.table import Table
    from rich.text import Text

    def text(value: Any, style: str = "") -> Text:
        return Text(printable(str(value)), style=style)

    console = console_for()
    overview = Table(show_header=False, box=None, pad_edge=False, title=text(f"Run {run['run_id']}"),
                     title_justify="left", title_style="bold")
    overview.add_column(style="bold")
    overview.add_column()
    version = f"v{run['workflow_version']}" + (f" ({run['workflow_version_name']})"
                                                if run["workflow_version_name"] else "")
    site = run["site_name"] or run["site_id"]
    card = run["card_name"] or run["card_id"]
    lines = [
        ("workflow", f"{run['workflow_name']} ({run['workflow_id']}, {run['workflow_type']})"),
        ("version", version),
        ("status", run["status"] + (f"  {run['error_code']} [{run['error_class']}]: {run['error_message']}"
                                    if run["error_code"] else "")),
        ("trigger", run["trigger"]),
        ("contact", run["contact_id"] or ""),
        ("site", f"{site} ({run['site_id']})" if site else ""),
        ("card", f"{card} ({run['card_id']})" if card else ""),
        ("queued", _time(run["queued_at"])),
        ("started", _time(run["started_at"])),
        ("finished", _time(run["finished_at"])),
        ("duration", _ms(run["duration_ms"])),
        ("queue wait", _ms(run["queue_ms"])),
    ]
    if original is not None:
        lines.append(("replay of", f"{original['run_id']} ({original.get('status')}"
                                   + (f", {original['error_code']}" if original.get("error_code") else "")
                                   + f"), {run['replay_mode']} replay"))
    for replay in replays:
        lines.append(("replayed by", f"{replay['run_id']} ({replay['replay_mode']} replay, {replay['status']}"
                                     + (f", {replay['error_code']}" if replay["error_code"] else "") + ")"))
    for key, value in lines:
        if value:
            overview.add_row(key, text(value))
    console.print(overview)
    console.print()
    timeline = Table("#", "step", "type", "try", "status", "started", "duration", "input", "output", "notes",
                     title="Steps", title_justify="left", title_style="bold")
    for step in steps:
        cells = (str(step["step_index"]), step["step_name"], step["step_type"], str(step["attempt"]),
                 step["status"], _time(step["started_at"]), _ms(step["duration_ms"]),
                 step["input"] or "", step["output"] or "", _notes(step))
        timeline.add_row(*(text(cell) for cell in cells))
    console.print(timeline)
    for step in steps:
        if step["status"] != "failed":
            continue
        console.print()
        console.print(text(f"Error at step {step['step_index']} '{step['step_name']}', attempt {step['attempt']}",
                           "bold"), highlight=False)
        for label, key in (("code", "error_code"), ("class", "error_class"), ("message", "error_message"),
                           ("suggested fix", "error_suggested_fix"), ("input", "input")):
            if step[key]:
                console.print(text(f"  {label}: {step[key]}"), highlight=False)
        if step["error_stack_trace"]:
            console.print("  stack trace:", highlight=False)
            console.print(text("    " + step["error_stack_trace"].replace("\n", "\n    ")), highlight=False)


# --------------------------------------------------------------------------- runs compare


@runs_app.command("compare")
def runs_compare(
    ctx: typer.Context,
    original_id: Annotated[str, typer.Argument(metavar="ORIGINAL", help="The original run.", callback=text_values)],
    replay_id: Annotated[str, typer.Argument(metavar="REPLAY", help="Its replay.", callback=text_values)],
    account: AccountOpt,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """A run and its replay side by side, step by step, and whether the replay fixed the failure."""
    client = client_of(ctx)
    original = _one_run(client, account, original_id)
    replay = _one_run(client, account, replay_id)
    if original["replay_of"] == replay_id and replay["replay_of"] != original_id:
        raise UserError(f"{shown(replay_id)} is the original of {shown(original_id)}: give the original first")
    rows = rq.compare_steps(_steps(client, account, original_id), _steps(client, account, replay_id))
    outcome = rq.verdict(original, replay)
    linked = replay["replay_of"] == original_id
    summary = {
        "original": {k: original[k] for k in ("run_id", "status", "error_code", "error_message", "duration_ms",
                                                "workflow_version")},
        "replay": {k: replay[k] for k in ("run_id", "status", "error_code", "error_message", "duration_ms",
                                            "workflow_version", "replay_mode")},
        "linked": linked,
        "verdict": outcome,
        "fixed": outcome == "fixed",
    }
    if format is Format.json:
        json_doc({**summary, "steps": rows})
        return
    if format is Format.csv:
        columns = [*rq.COMPARE_COLUMNS, "verdict"]
        write_table(columns, [[*(r[c] for c in rq.COMPARE_COLUMNS), outcome] for r in rows], format, raw_csv)
        return
    say(f"original {original_id}: {original['status']}"
         + (f" ({original['error_code']})" if original["error_code"] else "")
         + f", v{original['workflow_version']}, {_ms(original['duration_ms'])}")
    say(f"replay   {replay_id}: {replay['status']}"
         + (f" ({replay['error_code']})" if replay["error_code"] else "")
         + f", v{replay['workflow_version']}, {_ms(replay['duration_ms'])}"
         + (f", {replay['replay_mode']} replay" if replay["replay_mode"] else ""))
    if not linked:
        say(f"note: {replay_id} is not recorded as a replay of {original_id}")
    columns = ["#", "step", "original", "tries", "duration", "error", "replay", "tries ", "duration ", "error ",
               "change"]
    table_rows = [[r["step_index"], r["step_name"], r["original_status"], r["original_attempts"],
                   _ms(r["original_duration_ms"]), r["original_error_code"] or "", r["replay_status"],
                   r["replay_attempts"], _ms(r["replay_duration_ms"]), r["replay_error_code"] or "", r["change"]]
                  for r in rows]
    write_table(columns, table_rows, format)
    say(f"verdict: {outcome}")


# --------------------------------------------------------------------------- runs replays


@runs_app.command("replays")
def runs_replays(
    ctx: typer.Context,
    account: AccountOpt,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w", help="Workflow id or name.",
                                                    callback=text_values)] = None,
    since: SinceOpt = None, until: UntilOpt = None,
    pairs: Annotated[bool, typer.Option("--pairs", help="One row per replay and its original.")] = False,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """How often replays succeed, exact vs modified, per workflow (or every pair with --pairs)."""
    now = now_utc()
    given = {"workflow": workflow or ""}
    for name, text in (("since", since), ("until", until)):
        if text is not None:
            given[name] = rfc3339(parse_when(text, f"--{name}", now))
    query = build_query(lambda: sqllib.bind(sqllib.load("replay_pairs" if pairs else "replay_outcomes"),
                                       account, given, now))
    columns, rows = run_rows(client_of(ctx), query)
    write_table(columns, rows, format, raw_csv)
