"""``runlens bench``: throughput, latency, memory and query speed of the pipeline, each against
yardsticks measured in the same run on the same machine.

Phases, each on its own embedded broker and (where there is one) its own worker, topic prefix,
database and data directory under ``<out>/<timestamp>/scratch`` (deleted at the end):

* **baselines** (own broker, no worker; B2 writes to its own chDB directory in this process):
  B0 a bare confluent-kafka produce loop of pre-encoded events, one record per event, with the
  runlens producer configuration (idempotent, acks=all, lz4, linger 20 ms);
  B1 a bare consume loop (``consume(2000)``) that only counts records;
  B2 a bare consume loop + orjson decode + timestamp parsing + columnar clickhouse-connect insert
  of one batch of as many rows as the worker's insert size setting into ``events`` of a warehouse created with
  the runlens migrations (so its materialized views run too) + a synchronous offset commit
  after each insert. No validation, no ledger, no dead letters, no dedup token.
* **pipeline** (one stack): the runlens producer path (``producers.simulate.EventSink``) ->
  broker -> Faust worker -> chDB. Sustained throughput for a fixed number of pre-generated,
  pre-encoded events sent as fast as possible, until the worker's committed consumer lag is 0;
  then event -> queryable latency at fixed shares of that rate; then a soak at half of it.
* **queries** (one stack): history backfilled through the same pipeline to each size, then
  every summary panel, every ``runlens stats`` query and every Grafana panel
  (``dashboards.panels``, when present) run repeatedly through the worker's read endpoint,
  exactly as ``runlens stats`` reaches it.

Writes ``bench.json``, ``bench.md`` and ``bench.png`` to ``<out>/<timestamp>/`` and prints the
markdown. No figure is asserted anywhere: this is an instrument, not a test.

Modules: ``common`` (plan, measuring helpers, workload), ``probes`` (producer paths and latency
probes), ``yardsticks`` / ``pipeline`` / ``latency`` / ``queries`` (the phases, as parts of
``Bench``), ``suite`` (the timed queries), ``runner`` (``Bench``), ``report`` (markdown and chart).
The command line is ``runlens.cli.bench``.
"""

from runlens.bench.common import (
                                  PRODUCERS,
                                  Plan,
                                  b2_batch_rows,
                                  count_label,
                                  encoded,
                                  live_events,
                                  machine_facts,
                                  percentile,
                                  proc_cpu_seconds,
                                  proc_memory_mb,
                                  rss_mb,
                                  stats_group,
)
from runlens.bench.report import render_chart, render_markdown
from runlens.bench.runner import Bench
from runlens.bench.suite import SuiteQuery, query_suite

__all__ = ["PRODUCERS", "Bench", "Plan", "SuiteQuery", "b2_batch_rows", "count_label", "encoded", "live_events",
           "machine_facts", "percentile", "proc_cpu_seconds", "proc_memory_mb", "query_suite", "render_chart",
           "render_markdown", "rss_mb", "stats_group"]
