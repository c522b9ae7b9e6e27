"""Child-process helpers for tests that need a writable warehouse of their own.

A chDB directory belongs to one process and a process can host one chDB directory, so tests
that write (retention, the 1M-row export) run their warehouse in a child process:

    python -m tests.integration.warehouse_probe serve DIR DB ROWS      # print the read URL, serve until stdin closes
    python -m tests.integration.warehouse_probe export OUT.json ARGS   # run `runlens ARGS`, record peak memory
    python -m tests.integration.warehouse_probe retention DIR DB OUT.json

Nothing here asserts; the tests read what the probes report.
"""

from __future__ import annotations

import json
import resource
import sys
import tracemalloc

GENERATE = """
INSERT INTO {db}.events (event_id, schema_version, type, ts, account_id, run_id, workflow_id, workflow_name,
    workflow_version, workflow_type, trigger, site_id, site_name, status, started_at, error_code,
    error_class, error_message, source_partition, source_offset, is_new)
SELECT
    concat({account:String}, '-e', toString(number)), 1, 'run.finished',
    toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 10),
    {account:String}, concat('run_', leftPad(toString(number), 9, '0')), 'wf-bulk', 'Bulk, "quoted" workflow', 1,
    'integration', 'api', 'site-1', 'Site, one', if(number % 10 = 0, 'failed', 'success'),
    toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 10 - 500),
    if(number % 10 = 0, 'API_TIMEOUT', NULL), if(number % 10 = 0, 'external_service', NULL),
    if(number % 10 = 0,
       concat('Request to "https://api.example.com/v2", timed out;\\nretry #', toString(number)), NULL),
    0, number, 0
FROM numbers({rows:UInt64})
"""


def _warehouse(path: str, db: str):
    from sinks.clickhouse import connect, migrate

    client = connect(f"chdb://{path}")
    migrate(client, db)
    return client


def serve(path: str, db: str, rows: int) -> None:
    """A warehouse with ``rows`` finished runs of account ``bulk`` and 10,000 of ``small``,
    served read-only over HTTP (the warehouse process's front, reader only) until stdin closes. Prints the
    endpoint's URL with its (generated) reader credentials in it."""
    from embedded.access import Credentials
    from embedded.warehouse_server import WarehouseServer

    client = _warehouse(path, db)
    for account, n in (("bulk", rows), ("small", 10_000)):
        client.command(GENERATE.replace("{db}", db), parameters={"account": account, "rows": n})
    client.close()
    endpoint = WarehouseServer(path, database=db, reader=Credentials.generate())
    endpoint.start()
    print(endpoint.dsn, flush=True)
    sys.stdin.read()
    endpoint.stop()


def export(report: str, argv: list[str]) -> None:
    """Run the real CLI in this process; record its exit code, peak RSS and Python heap peak."""
    from runlens.cli import main

    tracemalloc.start()
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code or 0
    _, peak = tracemalloc.get_traced_memory()
    with open(report, "w") as fh:
        json.dump({"code": code, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   "heap_peak_bytes": peak}, fh)


def retention(path: str, db: str, report: str) -> None:
    """Old and recent runs of three accounts on different plans; counts before and after the
    TTL merge. acme: free (7 days), globex: 30 days custom, initech: no plan (kept forever)."""
    from datetime import UTC, datetime, timedelta

    from schemas import parse_event
    from sinks import retention as ret
    from sinks.clickhouse import Warehouse
    from sinks.rows import event_columns, sourced

    client = _warehouse(path, db)
    now = datetime.now(UTC)
    ages = {"acme": (2, 10, 40), "globex": (2, 10, 40), "initech": (2, 400)}
    events = []
    for account, days_list in ages.items():
        for days in days_list:
            run_id = f"{account}-{days}d"
            at = now - timedelta(days=days)
            base = {"schema_version": 1, "account_id": account, "run_id": run_id, "workflow_id": "wf-1",
                    "workflow_name": "One", "workflow_version": 1, "workflow_type": "site", "trigger": "api",
                    "site_id": "site-gone", "site_name": "A deleted site", "card_id": "card-gone",
                    "card_name": "A deleted card"}
            stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # noqa: E731
            events += [
                {**base, "event_id": f"{run_id}-q", "type": "run.queued", "ts": stamp(at)},
                {**base, "event_id": f"{run_id}-s1", "type": "step.finished", "ts": stamp(at + timedelta(seconds=2)),
                 "step_id": "st1", "step_index": 0, "step_name": "Trigger", "step_type": "trigger", "attempt": 1,
                 "status": "success", "started_at": stamp(at + timedelta(seconds=1))},
                {**base, "event_id": f"{run_id}-f", "type": "run.finished", "ts": stamp(at + timedelta(seconds=3)),
                 "status": "success", "started_at": stamp(at + timedelta(seconds=1))},
            ]
    parsed = [parse_event(json.dumps(e).encode()) for e in events]
    Warehouse(client, db).insert_columns("events", event_columns(sourced(e, 0, i) for i, e in enumerate(parsed)),
                                         token="retention-probe")

    def counts():
        out = {}
        for table, key in (("runs", "run_id"), ("steps", "run_id"), ("events", "run_id")):
            rows = client.query(f"SELECT {key}, count() FROM {db}.{table} GROUP BY {key} ORDER BY {key}").result_rows
            out[table] = {k: n for k, n in rows}
        out["names"] = client.query(f"SELECT run_id, site_name, card_name FROM {db}.runs ORDER BY run_id").result_rows
        return out

    before = counts()
    ret.set_account(client, db, "acme", plan="free")
    ret.set_account(client, db, "globex", days=30)
    applied = ret.apply(client, db)
    for table in ret.TTL_TABLES:
        client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    after = counts()
    ret.set_plan(client, db, "default", 100)
    ret.apply(client, db)
    for table in ret.TTL_TABLES:
        client.command(f"OPTIMIZE TABLE {db}.{table} FINAL")
    with_default = counts()
    with open(report, "w") as fh:
        json.dump({"before": before, "after": after, "with_default": with_default, "applied": applied,
                   "plans": ret.plans(client, db),
                   "accounts": [a.__dict__ for a in ret.accounts(client, db)]}, fh, default=str)


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "serve":
        serve(rest[0], rest[1], int(rest[2]))
    elif role == "export":
        export(rest[0], rest[1:])
    elif role == "retention":
        retention(rest[0], rest[1], rest[2])
    else:
        raise SystemExit(f"unknown role {role!r}")
