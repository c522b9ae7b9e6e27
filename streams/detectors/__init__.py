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

**Silent workflow** (``silent_workflow``, one per workflow). A workflow's runs (``run.queued``)
set its rhythm: once it has at least 20 runs in the 24 hours before its latest run, its usual
gap is the 95% quantile of the gaps between those runs, and it fires when no run has arrived
for longer than max(3 x that gap, 15 minutes) *and* for so long that 10 runs would have come
at its usual rate for those hours (the same hour a week before, mean of two weeks, once it has
8 days of history; else the same hour of the previous days, up to 7, once it has a day; else
its rate over its last 20 runs), so a workflow that is quiet every night is not alerted every
night (58 false alerts in 72 hours of normal generated traffic with the gap rule alone, 3
with the rate). Started at the moment the silence crossed both; it resolves when a run
arrives. Rarer workflows are never judged. Judged as the account's watermark moves, which
follows the wall clock once the input is quiet: a workflow that stopped is noticed even when
nothing else of its account arrives.

**Version regression** (``version_regression``, one per workflow). The newest version of the
workflow's finished runs against the version before it, once both have >= 20 finished runs:
it fires when the new version's failure rate is >= 2x the previous one's (smoothed by the
spike's prior: 20 runs at 2%), with >= 5 failures and a one-sided binomial tail at the
previous rate <= 1e-4; or when its p95 duration is >= 1.5x the previous one's and >= 30 s
longer. Judged at each minute with new finished runs of the workflow; resolves after 5 such
judgements in a row without the condition, or at once when a newer version appears.

**New error signature** (``new_error_signature``, one per workflow and (error code, error
class); subject ``workflow_id:code:class``). A failed run whose signature the workflow has
never failed with, or not in the last 30 days of event time, once the workflow has >= 24
hours of history and >= 20 finished runs (its first day's errors are its baseline: with 1
hour of learning, 85 signatures fired in 48 hours of normal generated traffic, 6 in 48 hours
after a day of learning). Fires once,
at the failure's time; resolves 60 minutes after its last occurrence. (``run.finished``
carries no failing step, so the step is not part of the signature.)

**Run deadline** (``run_deadline``, one per run). A run still running past its workflow's
limit: the configured one (``RUNLENS_ALERT_DEADLINES``, a JSON object such as
``{"acme/wf-x": "10m", "wf-y": "90s"}``), else 1.5 x the p99 of the workflow's last 500
finished durations once it has >= 20 (never below 5 min), else 1 hour. The limit is fixed when the run
starts; it fires at the deadline while the run runs and resolves when it finishes. The
earlier, configurable warning before ``stuck_run``.

These four apply their inputs in event-time order as the account's watermark passes each
minute boundary (``ordered``), so out-of-order inputs within the lateness give the same alerts.

Memory is bounded: minute buckets older than the baseline are dropped, workflows and
accounts not seen for a long time are forgotten, duration samples are capped, and the
number of tracked workflows, runs and accounts is capped (oldest evicted first). These caps
are shared by all accounts (a capacity limit, not a clock: an account with very many
workflows or runs can push out another's oldest state, never move its time).

Modules: ``alert`` (the ``Alert`` and what every detector shares: event-time arithmetic,
alert ids, readable numbers), ``stats`` (binomial and beta-binomial tails),
``failure_spike``, ``stuck_run``, ``queue_growth``, ``silent_workflow``, ``version_regression``,
``error_signature``, ``run_deadline`` (one rule each; the last four on ``ordered``), ``clocks`` (one event-time
clock per account), ``facade`` (``Detectors``: all of them together, and ``describe``).
Import from the package: ``from streams.detectors import Detectors``.
"""

from __future__ import annotations

from streams.detectors.alert import Alert, Watermark
from streams.detectors.error_signature import NewErrorSignatureDetector
from streams.detectors.facade import Detectors, describe
from streams.detectors.failure_spike import FailureSpikeDetector
from streams.detectors.queue_growth import QueueGrowthDetector
from streams.detectors.run_deadline import RunDeadlineDetector, parse_deadlines
from streams.detectors.silent_workflow import SilentWorkflowDetector
from streams.detectors.stats import beta_binomial_tail, binomial_tail
from streams.detectors.stuck_run import StuckRunDetector
from streams.detectors.version_regression import VersionRegressionDetector
from streams.detectors.watermarks import AccountWatermarks

__all__ = [
    "Alert",
    "AccountWatermarks",
    "Watermark",
    "FailureSpikeDetector",
    "StuckRunDetector",
    "QueueGrowthDetector",
    "SilentWorkflowDetector",
    "VersionRegressionDetector",
    "NewErrorSignatureDetector",
    "RunDeadlineDetector",
    "parse_deadlines",
    "Detectors",
    "binomial_tail",
    "beta_binomial_tail",
    "describe",
]
