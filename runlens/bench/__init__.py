"""``runlens bench``: throughput, latency, memory and query speed of the pipeline, each against
yardsticks measured in the same run on the same machine.

Phases, each on its own embedded broker and (where there is one) its own worker, topic prefix,
database and data directory under ``<out>/<timestamp>/scratch`` (deleted at the end):

* **baselines** (own broker, no worker):
  B0 a bare confluent-kafka produce loop of pre-encoded events, one record per event, with the
  runlens producer configuration (idempotent, acks=all, lz4, linger 20 ms);
  B1 a bare consume loop (``consume(2000)``) that only counts records;
  B2 a bare consume loop + orjson decode + timestamp parsing + columnar clickhouse-connect insert
  of one batch of as many rows as the worker's insert size setting into ``events`` of a warehouse
  process (``runlens warehouse``, started by the phase on its own folder and port with fresh
  passwords) over HTTP as its writer, as the workers write; the warehouse applies the runlens
  migrations (so its materialized views run too) + a synchronous offset commit after each
  insert. No validation, no ledger, no dead letters, no dedup token. Its CPU is the consuming
  process's plus the warehouse process's; the warehouse's RSS is reported after it.
  B2_in_process the same loop into chDB opened in the consuming process (``chdb://``): the old
  shape, reported next to B2.
  P1, the peer yardstick (``peer_quix``): what a user would build instead, a quix-streams 3.28
  application (its ``BatchingSink`` API) in a venv of its own (quixstreams pins confluent-kafka and
  pydantic below runlens' pins; built on demand in ``~/.cache/runlens/peer-venv-...`` or
  ``RUNLENS_PEER_VENV``) that splits the same events' multi-event records, validates each line with
  the contract and inserts into ``events`` of B2's warehouse process: once on a pre-filled topic
  (timed as B2), once running while the events are produced (timed as the pipeline's max-rate run).
  A full bench always runs it (building the venv, ~20-60 s of pip); a quick bench only when the
  venv is built already. A venv that cannot be built is recorded as skipped with pip's reason.
  ``result["peer"]``: the pipeline's max rate ÷ P1's, CPU per million events of each, a verdict.
* **pipeline** (one stack, ``--workers`` workers, default the settings' ``workers``): the runlens
  producer path -> broker -> Faust workers -> warehouse process. Sustained throughput for a fixed
  number of pre-generated, pre-encoded events sent as fast as possible, until the workers'
  committed consumer lag is 0; then event -> queryable latency at fixed shares of that rate;
  then a soak at half of it. Workers' and the warehouse's CPU and RSS alongside.
* **workers** (a second stack with 2 workers, or 1 when the pipeline ran more): the pipeline
  phase's max-rate run again, the same events under fresh ids (retagged in place: the bench
  holds one copy), side by side with the pipeline phase's figure.
* **queries** (one stack): history backfilled through the same pipeline to each size, then
  every summary panel, every ``runlens stats`` query and every Grafana panel
  (``dashboards.panels``, when present) run repeatedly through the warehouse's read endpoint,
  exactly as ``runlens stats`` reaches it.

Writes ``bench.json``, ``bench.md`` and ``bench.png`` to ``<out>/<timestamp>/`` and prints the
markdown. No figure is asserted anywhere: this is an instrument, not a test.

Modules: ``common`` (plan, measuring helpers, workload), ``probes`` (producer paths and latency
probes), ``yardsticks`` / ``pipeline`` / ``latency`` / ``queries`` (the phases, as parts of
``Bench``), ``suite`` (the timed queries), ``runner`` (``Bench``), ``report`` (markdown and chart).
The command line is ``runlens.cli.bench``.
"""

from embedded.processes import proc_memory_mb, rss_mb
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
                                  stats_group,
)
from runlens.bench.report import render_chart, render_markdown
from runlens.bench.runner import Bench
from runlens.bench.suite import SuiteQuery, query_suite

__all__ = ["PRODUCERS", "Bench", "Plan", "SuiteQuery", "b2_batch_rows", "count_label", "encoded", "live_events",
           "machine_facts", "percentile", "proc_cpu_seconds", "proc_memory_mb", "query_suite", "render_chart",
           "render_markdown", "rss_mb", "stats_group"]
