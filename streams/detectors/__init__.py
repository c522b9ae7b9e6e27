"""Alert detectors that run inside the stream worker.

Pure and deterministic: no I/O, no wall clock, no randomness. Time is the *event* time,
advanced by a watermark the caller passes to ``advance``: one time for every account, or one
per account. The worker keeps one clock per account (``EventClocks``: the newest event time
of that account, never more than a small tolerance ahead of the wall clock, minus the
allowed lateness), so one account's or one sender's clock can neither delay, suppress nor
fabricate another account's alerts: every detector's state is per account and judged by
that account's watermark only. Every detector evaluates whole minutes: a minute
``[t, t + 1 min)`` of an account is evaluated once, when its watermark reaches its end, with
all the data whose event time falls before that end. Events that arrive out of order but
before the watermark passes their minute therefore give exactly the same alerts as the
same events in time order. Minutes in which nothing can change (no data in the window, no
run due, no alert firing) are skipped in one step, so a watermark that jumps by years costs
no more than one that moves by a minute. ``advance`` returns state changes only: an alert
once when it starts firing and once when it resolves, with the same ``alert_id`` both times.

The rules and their default thresholds
--------------------------------------

**Failure spike** (``failure_spike``, one per workflow; an account-wide variant with
``scope="account"``). Each workflow is judged against its own recent history, not a
global threshold. Every minute the detector looks at the last 5 whole minutes (the
*window*) and the 120 minutes before it (the *baseline*). The baseline failure rate is
smoothed with a small prior: 20 imaginary runs failing at 2%, so a workflow with little
history counts as failing about 2% of the time instead of 0% or 100%. It fires when all
of these hold: the window has at least 10 finished runs, at least 5 of them failed, the
window's failure rate is at least 3 times the baseline rate, and so many failures would
happen by chance at the baseline rate with probability at most 1 in 10,000 (one-sided
binomial test) - also once the uncertainty of the baseline rate itself is allowed for
(beta-binomial test: a baseline of a few dozen runs proves little; ``predictive=False``
drops this check). It is critical when at least half the window's runs failed or at
least 50 failed, else a warning (decided when it fires). It resolves after 5 consecutive
minutes in which the window no longer meets the rule. While it fires, the window is
judged against the baseline of the moment it fired, and the minutes of the incident never
count towards a later baseline, so a long incident does not become the new normal. A run
counts as failed when its status is ``failed`` (a manual stop is not a failure); it is
placed at the minute it finished. A workflow with a few runs an hour can never fire: it
never has 10 runs in 5 minutes.

**Stuck run** (``stuck_run``, one per run). A run is stuck when it has been running for
longer than max(5 minutes, 5 x the 99th percentile of its workflow's recent run
durations). The percentile comes from the durations of the workflow's 500 most recently
finished runs (runs that were themselves reported stuck are left out). Until a workflow
has 20 finished runs its percentile is not trusted and a run of it is stuck after 1 hour
(``cold_floor_seconds``; ``None`` means such runs are not judged at all). Each run fires
at most once (a warning) and resolves when it finishes. A run whose finish arrives before
its start is handled: it is running only between its start and its finish, so a run of
normal length never alerts, whatever order its events come in.

**Queue growing** (``queue_growing``, one per account). The account's pending depth
(runs queued and not yet started) is sampled at the end of every minute. It fires when
the depth grew in each of the last 5 minutes and is at least 50 runs now; it is critical
when at least 500 runs are pending or no run started in those 5 minutes. It resolves after
3 consecutive minutes in which the depth did not grow or was below 50. The alert reports
the depth, the runs running, growth, arrivals, starts and finishes per minute, and how long the
backlog would take to drain (``eta_minutes``: at the current rates, infinite while
arrivals outpace starts; ``drain_minutes``: at the current start rate if arrivals stopped).

Memory is bounded: minute buckets older than the baseline are dropped, workflows and
accounts not seen for a long time are forgotten, duration samples are capped, and the
number of tracked workflows, runs and accounts is capped (oldest evicted first). These caps
are shared by all accounts (a capacity limit, not a clock: an account with very many
workflows or runs can push out another's oldest state, never move its time).

Modules: ``alert`` (the ``Alert`` and what every detector shares: event-time arithmetic,
alert ids, readable numbers), ``stats`` (binomial and beta-binomial tails),
``failure_spike``, ``stuck_run``, ``queue_growth`` (one rule each), ``clocks`` (one event-time
clock per account), ``facade`` (``Detectors``: all of them together, and ``describe``).
Import from the package: ``from streams.detectors import Detectors``.
"""

from __future__ import annotations

from streams.detectors.alert import Alert, Watermark
from streams.detectors.facade import Detectors, describe
from streams.detectors.failure_spike import FailureSpikeDetector
from streams.detectors.queue_growth import QueueGrowthDetector
from streams.detectors.stats import beta_binomial_tail, binomial_tail
from streams.detectors.stuck_run import StuckRunDetector
from streams.detectors.watermarks import AccountWatermarks

__all__ = [
    "Alert",
    "AccountWatermarks",
    "Watermark",
    "FailureSpikeDetector",
    "StuckRunDetector",
    "QueueGrowthDetector",
    "Detectors",
    "binomial_tail",
    "beta_binomial_tail",
    "describe",
]
