"""Workflows needing attention: per-workflow facts as SQL, and a pure score over them.

One query (``facts``) reads, for every workflow of one account, what the reasons below need from
the aggregate tables (``run_stats_hourly`` + the ragged minutes of ``run_stats_state``, the same
for ``step_stats_*``, and ``run_notes``), plus, for stuck runs, the account's ``run_state`` rows
of the lookback (filtered before their GROUP BY) and the open runs' workflow by key: never a fold
of every run ever stored. ``score(facts)`` turns one row into reasons, each with its numbers,
points and the command or dashboard to drill in. The overview panel runs the same facts with the
dashboard's macros (``grafana_dialect``, without open runs) and the same rules written in SQL
(``panel_sql``); an integration test checks that both give the same scores.

Windows. The window is ``[since, until)``; the baseline is the ``min(4 x window, 28 days)``
before it; error signatures look back 30 days before the window. "Now" for silence and stuck
runs is the account's own clock: ``as_of = min(until, the end of the account's last minute
with a finished run)``, so a workload replayed from the past is not "silent" today.

Reasons, when each fires, and its points (the score is their sum; a workflow is listed when
it has at least one reason):

====================  ====================================================  =========================================
reason                fires when                                            points
====================  ====================================================  =========================================
``failure_rate``      >= 10 finished runs and >= 3 failed in the window;     100 x (rate - baseline): one point per
                      rate >= 2 x baseline and >= baseline + 5 pp and        percentage point above the baseline
                      z = (failed - runs x b) / sqrt(runs x b x (1 - b))
                      >= 3; baseline b = (failed + 1) / (finished + 20)
                      before the window (5 % when there is no history)
``new_errors``        >= 20 runs in the baseline; error signatures           10 x min(new signatures, 5)
                      (error code + step) first seen in the window, not in
                      the 30 days before, with >= 2 failed attempts in all
``version_regression`` the latest version and the one before, >= 10 runs     20 x min(p95 ratio - 1, 4) if the ratio is
                      each over window + baseline: p95 duration >= 1.5 x,    >= 1.5, + 100 x failure rate increase if
                      or failure rate >= +10 pp with >= 3 failures           >= 10 pp
``silent``            >= 20 runs in window + baseline over >= 12 hours with  10 x min(silence / max(longest gap, 1 h),
                      runs; no finished run for >= max(3 h, 2 x the           4)
                      longest gap between its active hours before)
``stuck_runs``        runs started in window + baseline, not finished,       5 x min(stuck runs, 10)
                      running for > max(5 min, 5 x the workflow's p99)
                      (1 h without a p99)
``queue_growing``     >= 10 queue waits in window and baseline; queue wait   5 x min(ratio, 8), ratio = p95 /
                      p95 >= 3 x max(the baseline's p95, 60 s)               max(baseline p95, 60 s)
``late_delays``       >= 5 delay steps resumed in the window; >= 20 % of     0.3 x late share in percent
                      them late (> 1 s) by 60 s or more on average
``replays_failing``   >= 2 replays finished failed in the window, at least   5 x min(failed replays, 6)
                      half of the replays that finished
====================  ====================================================  =========================================

Every query is scoped to one account (``{account:String}``; in the dashboards, the account variable) with
every value bound.
Crash/retry: read-only; the same window on the same data gives the same answer.

Modules: ``attention_rules`` (the thresholds and points below), ``attention_facts`` (the facts
query, ``facts``), ``attention_panel`` (the rules in SQL, ``panel_sql``) and this one (the score;
every public name of the others is importable from here).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

# re-exported (``as``): importers name the facts query, the panel and the rules here
from dashboards.attention_facts import BOUND as BOUND
from dashboards.attention_facts import FACT_COLUMNS as FACT_COLUMNS
from dashboards.attention_facts import Dialect as Dialect
from dashboards.attention_facts import baseline_start as baseline_start
from dashboards.attention_facts import facts as facts
from dashboards.attention_facts import facts_sql as facts_sql
from dashboards.attention_facts import grafana_dialect as grafana_dialect
from dashboards.attention_panel import panel_sql as panel_sql
from dashboards.attention_rules import (
    DELAYS_LATE_AVG_MS,
    DELAYS_LATE_SHARE,
    DELAYS_MIN,
    DELAYS_POINTS,
    FAILURE_EXCESS,
    FAILURE_POINTS,
    FAILURE_RATIO,
    FAILURE_Z,
    MAX_LIMIT,
    MIN_FAILED,
    MIN_RUNS,
    NEW_ERRORS_CAP,
    NEW_ERRORS_HISTORY,
    NEW_ERRORS_POINTS,
    PRIOR_FAILED,
    PRIOR_RUNS,
    QUEUE_CAP,
    QUEUE_MIN_P95_MS,
    QUEUE_MIN_SAMPLES,
    QUEUE_POINTS,
    QUEUE_RATIO,
    REPLAYS_CAP,
    REPLAYS_FAILED_SHARE,
    REPLAYS_MIN_FAILED,
    REPLAYS_POINTS,
    SILENT_CAP,
    SILENT_GAP_FACTOR,
    SILENT_MIN_HOURS,
    SILENT_MIN_RUNS,
    SILENT_MIN_SECONDS,
    SILENT_POINTS,
    SLOWDOWN_CAP,
    SLOWDOWN_POINTS,
    SLOWDOWN_RATIO,
    STUCK_CAP,
    STUCK_POINTS,
    VERSION_FAILURE_EXCESS,
    VERSION_MIN_RUNS,
)
from dashboards.attention_rules import REASONS as REASONS
from dashboards.runs import QueryError

# Grafana dashboards to drill into (uids of dashboards/definitions/).
FAILURES_DASHBOARD = "/d/runlens-failures"
WORKFLOW_DASHBOARD = "/d/runlens-workflow"
QUEUE_DASHBOARD = "/d/runlens-queue"
RUNS_DASHBOARD = "/d/runlens-runs"


# --------------------------------------------------------------------------- scoring (pure)


@dataclass(frozen=True)
class Reason:
    kind: str
    points: float
    summary: str
    numbers: dict[str, Any]
    drill: tuple[str, ...]      # runlens commands and Grafana dashboard paths


@dataclass(frozen=True)
class Assessment:
    account_id: str
    workflow_id: str
    workflow_name: str
    score: float
    reasons: tuple[Reason, ...] = field(default_factory=tuple)


def _num(value: Any) -> float:
    """A number from the warehouse: NULL and NaN (an empty digest) are 0."""
    if value is None:
        return 0.0
    number = float(value)
    return 0.0 if math.isnan(number) or math.isinf(number) else number


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _pct(value: float) -> float:
    return round(100 * value, 1)


@dataclass(frozen=True)
class Window:
    """The window the facts were read for (drill-ins repeat it)."""

    since: datetime
    until: datetime

    def text(self) -> str:
        return f"--since {_iso(self.since)} --until {_iso(self.until)}"

    def grafana(self) -> str:
        return f"from={_ms(self.since)}&to={_ms(self.until)}"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _cmd(*parts: str) -> str:
    return " ".join(shlex.quote(p) for p in parts)


def _grafana(path: str, account: str, window: Window, workflow: str | None = None, status: str | None = None) -> str:
    q = f"var-account={quote(account, safe='')}"
    if workflow is not None:
        q += f"&var-workflow={quote(workflow, safe='')}"
    if status is not None:
        q += f"&var-status={status}"
    return f"{path}?{q}&{window.grafana()}"


def failure_baseline(base_failed: float, base_runs: float) -> float:
    """The baseline failure rate, smoothed by a prior of 1 failure in 20 runs."""
    return (base_failed + PRIOR_FAILED) / (base_runs + PRIOR_RUNS)


def reasons_of(f: Mapping[str, Any], window: Window) -> list[Reason]:
    """The reasons of one workflow's facts (a row of ``facts``), strongest rule first."""
    account, wf = str(f["account_id"]), str(f["workflow_id"])
    since_until = window.text().split()
    runs_cmd = ("runlens", "runs", "list", "--account", account, "--workflow", wf)
    found: list[Reason] = []

    runs, failed = _num(f.get("runs")), _num(f.get("failed"))
    base = failure_baseline(_num(f.get("base_failed")), _num(f.get("base_runs")))
    if runs >= MIN_RUNS and failed >= MIN_FAILED:
        rate = failed / runs
        z = (failed - runs * base) / math.sqrt(runs * base * (1 - base))
        if rate >= FAILURE_RATIO * base and rate - base >= FAILURE_EXCESS and z >= FAILURE_Z:
            found.append(Reason(
                "failure_rate", FAILURE_POINTS * (rate - base),
                f"failure rate {_pct(rate)}% ({int(failed)} of {int(runs)} runs) vs baseline {_pct(base)}%",
                {"failure_pct": _pct(rate), "baseline_pct": _pct(base), "failed": int(failed), "runs": int(runs),
                 "baseline_runs": int(_num(f.get("base_runs"))), "z": round(z, 1)},
                (_cmd(*runs_cmd, "--status", "failed", *since_until),
                 _grafana(FAILURES_DASHBOARD, account, window, wf))))

    new, hits = int(_num(f.get("new_signatures"))), int(_num(f.get("new_signature_failures")))
    if new >= 1 and _num(f.get("base_runs")) >= NEW_ERRORS_HISTORY:
        examples = [str(e) for e in (f.get("new_signature_examples") or [])]
        found.append(Reason(
            "new_errors", NEW_ERRORS_POINTS * min(new, NEW_ERRORS_CAP),
            f"{new} new error signature{'s' if new != 1 else ''} ({hits} failed attempts): {', '.join(examples)}",
            {"new_signatures": new, "failed_attempts": hits, "examples": examples},
            (_cmd("runlens", "sql", "error_signatures", "--account", account, "-p", f"workflow={wf}",
                  "-p", f"since={_iso(window.since)}", "-p", f"until={_iso(window.until)}"),
             _grafana(FAILURES_DASHBOARD, account, window, wf))))

    cur_runs, prev_runs = _num(f.get("current_runs")), _num(f.get("previous_runs"))
    if cur_runs >= VERSION_MIN_RUNS and prev_runs >= VERSION_MIN_RUNS:
        cur_p95, prev_p95 = _finite(f.get("current_p95_ms")), _finite(f.get("previous_p95_ms"))
        ratio = cur_p95 / prev_p95 if cur_p95 is not None and prev_p95 else None
        cur_failed = _num(f.get("current_failed"))
        cur_rate, prev_rate = cur_failed / cur_runs, _num(f.get("previous_failed")) / prev_runs
        points, parts = 0.0, []
        if ratio is not None and ratio >= SLOWDOWN_RATIO:
            points += SLOWDOWN_POINTS * min(ratio - 1, SLOWDOWN_CAP)
            parts.append(f"p95 {ratio:.2f}x")
        if cur_failed >= MIN_FAILED and cur_rate - prev_rate >= VERSION_FAILURE_EXCESS:
            points += FAILURE_POINTS * (cur_rate - prev_rate)
            parts.append(f"failure rate {_pct(cur_rate)}% vs {_pct(prev_rate)}%")
        if points > 0:
            cv, pv = int(_num(f.get("current_version"))), int(_num(f.get("previous_version")))
            found.append(Reason(
                "version_regression", points, f"v{cv} against v{pv}: {', '.join(parts)}",
                {"version": cv, "previous_version": pv, "p95_ratio": None if ratio is None else round(ratio, 2),
                 "p95_ms": cur_p95, "previous_p95_ms": prev_p95, "failure_pct": _pct(cur_rate),
                 "previous_failure_pct": _pct(prev_rate), "runs": int(cur_runs), "previous_runs": int(prev_runs)},
                (_cmd("runlens", "stats", "bottlenecks", "--account", account, "--workflow", wf),
                 _grafana(WORKFLOW_DASHBOARD, account, window, wf))))

    silence, longest = _num(f.get("silence_s")), _num(f.get("longest_gap_s"))
    if (_num(f.get("lookback_runs")) >= SILENT_MIN_RUNS and _num(f.get("active_hours")) >= SILENT_MIN_HOURS
            and silence >= max(SILENT_MIN_SECONDS, SILENT_GAP_FACTOR * longest)):
        usual = max(longest, 3600.0)
        found.append(Reason(
            "silent", SILENT_POINTS * min(silence / usual, SILENT_CAP),
            f"no finished run for {silence / 3600:.1f} h (longest gap before: {longest / 3600:.1f} h)",
            {"silence_h": round(silence / 3600, 1), "longest_gap_h": round(longest / 3600, 1),
             "runs": int(_num(f.get("lookback_runs")))},
            (_cmd(*runs_cmd, "--limit", "5"), _grafana(RUNS_DASHBOARD, account, window, wf))))

    stuck = int(_num(f.get("stuck_runs")))
    if stuck >= 1:
        p99 = _finite(f.get("p99_ms"))
        found.append(Reason(
            "stuck_runs", STUCK_POINTS * min(stuck, STUCK_CAP),
            f"{stuck} run{'s' if stuck != 1 else ''} still running, the oldest for "
            f"{_num(f.get('stuck_oldest_ms')) / 60_000:.0f} min (p99 {'-' if p99 is None else f'{p99 / 1000:.0f} s'})",
            {"stuck_runs": stuck, "oldest_min": round(_num(f.get("stuck_oldest_ms")) / 60_000, 1),
             "p99_ms": p99},
            (_cmd(*runs_cmd, "--status", "running", "--sort", "started_at:asc"),
             _grafana(RUNS_DASHBOARD, account, window, wf, "running"))))

    q, bq = _finite(f.get("queue_p95_ms")), _finite(f.get("base_queue_p95_ms"))
    if (_num(f.get("queue_samples")) >= QUEUE_MIN_SAMPLES and _num(f.get("base_queue_samples")) >= QUEUE_MIN_SAMPLES
            and q is not None and bq is not None and q >= QUEUE_RATIO * max(bq, QUEUE_MIN_P95_MS)):
        ratio = q / max(bq, QUEUE_MIN_P95_MS)
        found.append(Reason(
            "queue_growing", QUEUE_POINTS * min(ratio, QUEUE_CAP),
            f"queue wait p95 {q / 1000:.0f} s vs {bq / 1000:.0f} s before ({ratio:.1f}x)",
            {"queue_p95_s": round(q / 1000, 1), "baseline_queue_p95_s": round(bq / 1000, 1),
             "ratio": round(ratio, 2)},
            (_cmd("runlens", "stats", "queue", "--account", account, "--by", "hour", *since_until),
             _grafana(QUEUE_DASHBOARD, account, window))))

    delays, late, late_avg = _num(f.get("delays")), _num(f.get("delays_late")), _num(f.get("lateness_avg_ms"))
    if delays >= DELAYS_MIN and late / delays >= DELAYS_LATE_SHARE and late_avg >= DELAYS_LATE_AVG_MS:
        share = late / delays
        found.append(Reason(
            "late_delays", DELAYS_POINTS * 100 * share,
            f"{int(late)} of {int(delays)} delays resumed late ({_pct(share)}%), by {late_avg / 1000:.0f} s on "
            f"average (at most {_num(f.get('lateness_max_ms')) / 1000:.0f} s)",
            {"delays": int(delays), "late": int(late), "late_pct": _pct(share),
             "late_avg_s": round(late_avg / 1000, 1), "late_max_s": round(_num(f.get("lateness_max_ms")) / 1000, 1)},
            (_cmd("runlens", "stats", "bottlenecks", "--account", account, "--workflow", wf),
             _grafana(WORKFLOW_DASHBOARD, account, window, wf))))

    r_done, r_failed = _num(f.get("replays_finished")), _num(f.get("replays_failed"))
    if r_failed >= REPLAYS_MIN_FAILED and r_failed >= REPLAYS_FAILED_SHARE * r_done:
        found.append(Reason(
            "replays_failing", REPLAYS_POINTS * min(r_failed, REPLAYS_CAP),
            f"{int(r_failed)} of {int(r_done)} replays failed again",
            {"replays": int(r_done), "failed": int(r_failed)},
            (_cmd("runlens", "runs", "replays", "--account", account, "--workflow", wf, "--pairs", *since_until),
             _grafana(FAILURES_DASHBOARD, account, window, wf))))
    return found


def score(f: Mapping[str, Any], window: Window) -> Assessment:
    """One workflow's reasons and its score (the sum of their points, rounded to 0.1)."""
    found = reasons_of(f, window)
    return Assessment(str(f["account_id"]), str(f["workflow_id"]), str(f.get("workflow_name") or ""),
                      round(sum(r.points for r in found), 1), tuple(found))


def rank(rows: Sequence[Mapping[str, Any]], window: Window, limit: int | None = None) -> list[Assessment]:
    """Workflows with at least one reason, highest score first (ties by workflow id)."""
    assessed = [a for a in (score(r, window) for r in rows) if a.reasons]
    assessed.sort(key=lambda a: (-a.score, a.account_id, a.workflow_id))
    return assessed[:limit] if limit is not None else assessed


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"--limit: {limit} (use 1..{MAX_LIMIT})")
