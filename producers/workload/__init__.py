"""Deterministic synthetic workload: workflow runs of several tenants, as contract events.

Pure: no I/O, no wall clock, no global ``random``. Every random choice comes from a
``random.Random`` seeded from the config, so the same config and window give byte-identical
output. What the workload contains:

* accounts (``acme``, ``globex``, ``initech``, ...) with 5-8 workflows each covering the five
  workflow types, sites, cards, contacts and all four triggers (scheduled workflows fire on
  their schedule, some as batches that queue many runs at once);
* workflow versions that change every few days at deterministic times; some versions bring a
  regression (a step fails more often or gets slower) that the next version reverts;
* steps of the four types: trigger first, actions (email, tag, webhook, crm_sync, ...),
  conditions that pick a branch (the other branch's steps finish as ``skipped``) and delays
  (scheduled vs actual resume, sometimes late);
* heavy-tailed durations, a consistently slow CRM upsert, failures of the product's classes
  with variable messages, stack traces and suggested fixes, retried external-service
  failures (attempt 2, 3), manual stops and replays (exact or modified) of failed runs;
* daily and weekly seasonality per account time zone, a concurrency limit per account (a
  FIFO k-server queue, so queue wait grows at peaks), injected failure spikes and capacity
  drops (backlogs).

Each run draws from its own generator (seeded from the arrival stream), so injecting a spike
or a backlog changes the affected runs and queue timings, not every other run's outcome.
Events are merged in time order with a heap; memory is bounded by the runs in flight.

Modules: ``spec`` (``Spike``, ``Backlog``, ``Silence``, ``WorkloadConfig``, their text parsers and the
shared time helpers), ``templates`` (tenants and workflow templates), ``failures`` (error codes,
messages, traces, fixes), ``catalog`` (accounts and workflows built from the templates,
``catalog()``), ``versions`` (when versions bump and what each changed), ``run`` (one run's
events; ``RunRenderer``), ``generator`` (``generate``: arrivals, the concurrency queue, the merge
in time order), ``perturb`` (delivery faults: ``perturb``, ``corrupt``). Import from the
package: ``from producers.workload import generate``.
"""

from __future__ import annotations

from producers.workload.catalog import catalog
from producers.workload.generator import check_workload, generate
from producers.workload.perturb import corrupt, perturb
from producers.workload.spec import Backlog, Silence, Spike, WorkloadConfig

__all__ = ["Spike", "Backlog", "Silence", "WorkloadConfig", "check_workload", "generate", "catalog", "perturb",
           "corrupt"]
