"""Warehouse storage per million events, measured (the figures of ``docs/sizing.md``).

    python -m runlens.bench.storage --events 1000000 [--workdir DIR] [--json OUT]

Generates a fixed workload (``runlens simulate --out``: seed 11, three accounts, a week of
history; about 13 events per run), starts an embedded stack of its own in a temporary data
directory (random topic prefix, its own broker, warehouse process and one worker), publishes the
file with ``runlens publish``, waits until the worker committed everything, stops the stack, then
opens the warehouse's chDB directory itself and reads ``system.parts`` (active parts) per table:
rows, compressed and uncompressed bytes, as inserted and again after ``OPTIMIZE TABLE ... FINAL``
(the steady state merges converge to). Prints one table per state and, with ``--json``, writes
both. Nothing outside the work directory is touched; a crash leaves only that directory behind.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runlens.settings import Settings

# events of a 7-day backfill per run-per-hour of --backfill-rate (seasonality included; measured)
_EVENTS_PER_RATE_UNIT = 2_290
# tables whose size does not grow with events (bookkeeping, settings): left out of the per-million figures
_FIXED_TABLES = frozenset({"schema_migrations", "retention_plans", "account_plans"})


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "runlens", *args], env=env, capture_output=True, text=True,
                          check=False)


def _parts(client: Any, database: str) -> list[dict[str, Any]]:
    rows = client.query(
        "SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes), count() "
        "FROM system.parts WHERE database = {db:String} AND active GROUP BY table ORDER BY table",
        parameters={"db": database}).result_rows
    return [{"table": t, "rows": int(r), "compressed": int(c), "uncompressed": int(u), "parts": int(p)}
            for t, r, c, u, p in rows]


def measure(events: int, workdir: Path) -> dict[str, Any]:
    """Publish about ``events`` events to a fresh embedded stack under ``workdir`` and return the
    warehouse's parts per table, as inserted and merged."""
    from embedded.stack import EmbeddedStack
    from producers.kafka import consumer_lag
    from sinks.clickhouse import connect

    settings = Settings(data_dir=workdir / "stack", topic_prefix=f"sizing-{secrets.token_hex(4)}",
                        database="runlens", workers=1)
    source = workdir / "events.ndjson"
    rate = max(1.0, events / _EVENTS_PER_RATE_UNIT)
    made = _cli(settings, "simulate", "--seed", "11", "--accounts", "3", "--backfill", "7d",
                "--backfill-rate", f"{rate:.1f}", "--duration", "1s", "--rate", "0.01", "--no-pace",
                "--now", "2026-11-30T12:00:00Z", "--out", str(source))
    if made.returncode != 0:
        raise RuntimeError(f"simulate failed: {made.stderr.strip()}")
    lines = sum(1 for _ in source.open("rb"))
    with EmbeddedStack(settings) as stack:
        started = time.monotonic()
        published = _cli(settings, "publish", str(source))
        if published.returncode != 0:
            raise RuntimeError(f"publish failed: {published.stderr.strip()}")
        deadline = time.monotonic() + 1800
        topics = [settings.events_topic, settings.dead_letter_topic]
        while consumer_lag(stack.brokers, settings.consumer_group, topics) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not catch up within 30 minutes")
            time.sleep(1.0)
        ingest_seconds = time.monotonic() - started
    client = connect(settings.embedded_dsn)
    try:
        stored = int(client.query("SELECT count() FROM runlens.events").result_rows[0][0])
        batches, batch_events, largest = client.query(
            "SELECT count(), sum(value), max(value) FROM runlens.pipeline_metrics "
            "WHERE metric = 'batch_events_stored'").result_rows[0]
        inserted = _parts(client, settings.database)
        for entry in inserted:
            client.command(f"OPTIMIZE TABLE runlens.`{entry['table']}` FINAL")
        merged = _parts(client, settings.database)
    finally:
        client.close()
    return {"events_published": lines, "events_stored": stored, "ndjson_bytes": source.stat().st_size,
            "ingest_seconds": round(ingest_seconds, 1), "batches": int(batches),
            "events_per_batch": round(float(batch_events or 0) / max(1, int(batches))),
            "largest_batch": int(largest or 0), "as_inserted": inserted, "merged": merged}


def per_million(result: dict[str, Any], state: str) -> list[tuple[str, int, float, float, float]]:
    """(table, rows, compressed MiB, uncompressed MiB, ratio) per million stored events, largest first,
    and a total row."""
    scale = 1_000_000 / max(1, result["events_stored"])
    mib = 2**20
    rows = [(e["table"], round(e["rows"] * scale), e["compressed"] * scale / mib, e["uncompressed"] * scale / mib,
             e["uncompressed"] / max(1, e["compressed"])) for e in result[state]
            if e["rows"] and e["table"] not in _FIXED_TABLES]
    rows.sort(key=lambda row: -row[2])
    compressed = sum(row[2] for row in rows)
    uncompressed = sum(row[3] for row in rows)
    rows.append(("total", sum(row[1] for row in rows), compressed, uncompressed, uncompressed / max(compressed, 1e-9)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runlens.bench.storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="about how many events to publish")
    parser.add_argument("--workdir", type=Path, help="work directory (default: a temporary one, removed)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runlens-sizing-") as tmp:
        result = measure(args.events, args.workdir or Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(f"{result['events_stored']:,} events stored of {result['events_published']:,} published "
          f"({result['ndjson_bytes'] / result['events_published']:.0f} bytes per event as NDJSON) in "
          f"{result['ingest_seconds']} s from the first publish to lag 0 (one worker, the machine shared); "
          f"{result['batches']:,} batches, {result['events_per_batch']:,} events per batch on average, "
          f"largest {result['largest_batch']:,}")
    for state in ("as_inserted", "merged"):
        print(f"\n{state} (per million events): table | rows | compressed MiB | uncompressed MiB | ratio")
        for table, rows, compressed, uncompressed, ratio in per_million(result, state):
            print(f"{table} | {rows:,} | {compressed:.2f} | {uncompressed:.2f} | {ratio:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
