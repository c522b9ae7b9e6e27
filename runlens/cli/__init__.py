"""The ``runlens`` command line: the typer app, every command module registered on it, and ``main``.

Errors a user can cause (bad arguments, nothing running, broker unreachable) end in one line on
stderr and a non-zero exit code, never a traceback: 2 for bad usage (``InputError``), 1 otherwise
(any other ``RunlensError``); see ``runlens.cli.common.run_app``.

Layout: ``common`` (shared by all; imports no command module), helper modules ``explore_common``
and ``reporting`` (import only ``common``), and one module per job, each importing only helper
modules: ``stack`` (up, status, worker, warehouse, migrate, demo), ``ingest`` (publish, simulate,
schema), ``query`` (query, stats, reconcile), ``explore`` (runs), ``commands`` (runs replay,
stop and commands, registered here on explore's ``runs`` group),
``attention``, ``export`` (export, sql), ``retention``, ``grafana``
(grafana, report), ``dlq`` and ``bench``. Only this module imports the command modules.
"""

from __future__ import annotations

import typer

from runlens.cli import attention, bench, commands, dlq, explore, export, grafana, ingest, query, retention, stack
from runlens.cli.common import load_settings, run_app

app = typer.Typer(
    name="runlens",
    help="Streaming analytics for workflow runs: Kafka -> Faust -> ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Streaming analytics for workflow runs. Settings come from RUNLENS_* environment variables."""
    load_settings(ctx)


# In the order `runlens --help` lists them.
for _name, _command in (("up", stack.up), ("status", stack.status), ("worker", stack.worker),
                        ("warehouse", stack.warehouse), ("migrate", stack.migrate), ("publish", ingest.publish),
                        ("simulate", ingest.simulate), ("demo", stack.demo), ("query", query.query),
                        ("reconcile", query.reconcile), ("report", grafana.report), ("export", export.export_command),
                        ("sql", export.sql_command), ("attention", attention.attention),
                        ("bench", bench.bench_command)):
    app.command(_name)(_command)
# replay and stop as commands, on the runs group (runlens.cli.commands imports no command module)
for _verb, _step in (("replay", commands.runs_replay), ("stop", commands.runs_stop),
                     ("commands", commands.runs_commands)):
    explore.runs_app.command(_verb)(_step)
for _name, _group in (("schema", ingest.schema_app), ("stats", query.stats_app), ("grafana", grafana.grafana_app),
                      ("runs", explore.runs_app), ("retention", retention.retention_app), ("dlq", dlq.dlq_app)):
    app.add_typer(_group, name=_name)

cli = app


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning expected failures into one-line errors."""
    run_app(app, argv)


__all__ = ["app", "cli", "main"]
