"""The overview panel's "Workflows needing attention": the rules of ``attention.reasons_of``
written in SQL over the facts query, so the panel ranks workflows as ``runlens attention`` does
(an integration test checks that both give the same scores)."""

from __future__ import annotations

from dashboards.attention_facts import Dialect, facts_sql
from dashboards.attention_rules import (
    DELAYS_LATE_AVG_MS,
    DELAYS_LATE_SHARE,
    DELAYS_MIN,
    DELAYS_POINTS,
    FAILURE_EXCESS,
    FAILURE_POINTS,
    FAILURE_RATIO,
    FAILURE_Z,
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


def _points_sql() -> list[tuple[str, str, str]]:
    """(kind, points expression, reason text expression) over the facts' columns; 0 points = no reason."""
    base = f"((base_failed + {PRIOR_FAILED}) / (base_runs + {PRIOR_RUNS}))"
    rate = "(failed / runs)"
    z = f"((failed - runs * {base}) / sqrt(runs * {base} * (1 - {base})))"
    cur_rate, prev_rate = "(current_failed / current_runs)", "(previous_failed / previous_runs)"
    ratio = "(current_p95_ms / previous_p95_ms)"
    versions_ok = f"current_runs >= {VERSION_MIN_RUNS} AND previous_runs >= {VERSION_MIN_RUNS}"
    slow = f"({versions_ok} AND previous_p95_ms > 0 AND {ratio} >= {SLOWDOWN_RATIO})"
    vfail = (f"({versions_ok} AND current_failed >= {MIN_FAILED} "
             f"AND {cur_rate} - {prev_rate} >= {VERSION_FAILURE_EXCESS})")
    qratio = f"(queue_p95_ms / greatest(base_queue_p95_ms, {QUEUE_MIN_P95_MS}))"
    late_share = "(delays_late / delays)"

    def pct(expr: str) -> str:
        return f"toString(round(100 * {expr}, 1))"

    return [
        ("failure_rate",
         f"if(runs >= {MIN_RUNS} AND failed >= {MIN_FAILED} AND {rate} >= {FAILURE_RATIO} * {base} "
         f"AND {rate} - {base} >= {FAILURE_EXCESS} AND {z} >= {FAILURE_Z}, {FAILURE_POINTS} * ({rate} - {base}), 0)",
         f"concat('failure rate ', {pct(rate)}, '% (', toString(failed), ' of ', toString(runs), "
         f"' runs) vs baseline ', {pct(base)}, '%')"),
        ("new_errors",
         f"if(new_signatures >= 1 AND base_runs >= {NEW_ERRORS_HISTORY}, "
         f"{NEW_ERRORS_POINTS} * least(new_signatures, {NEW_ERRORS_CAP}), 0)",
         "concat(toString(new_signatures), ' new error signature(s): ', "
         "arrayStringConcat(new_signature_examples, ', '))"),
        ("version_regression",
         f"if({slow}, {SLOWDOWN_POINTS} * least({ratio} - 1, {SLOWDOWN_CAP}), 0) "
         f"+ if({vfail}, {FAILURE_POINTS} * ({cur_rate} - {prev_rate}), 0)",
         f"concat('v', toString(current_version), ' against v', toString(previous_version), ': ', "
         f"arrayStringConcat(arrayFilter(x -> x != '', ["
         f"if({slow}, concat('p95 ', toString(round({ratio}, 2)), 'x'), ''), "
         f"if({vfail}, concat('failure rate ', {pct(cur_rate)}, '% vs ', {pct(prev_rate)}, '%'), '')]), ', '))"),
        ("silent",
         f"if(lookback_runs >= {SILENT_MIN_RUNS} AND active_hours >= {SILENT_MIN_HOURS} "
         f"AND silence_s >= greatest({SILENT_MIN_SECONDS}, {SILENT_GAP_FACTOR} * longest_gap_s), "
         f"{SILENT_POINTS} * least(silence_s / greatest(longest_gap_s, 3600), {SILENT_CAP}), 0)",
         "concat('no finished run for ', toString(round(silence_s / 3600, 1)), ' h')"),
        ("stuck_runs",
         f"if(stuck_runs >= 1, {STUCK_POINTS} * least(stuck_runs, {STUCK_CAP}), 0)",
         "concat(toString(stuck_runs), ' run(s) stuck, the oldest for ', "
         "toString(round(stuck_oldest_ms / 60000)), ' min')"),
        ("queue_growing",
         f"if(queue_samples >= {QUEUE_MIN_SAMPLES} AND base_queue_samples >= {QUEUE_MIN_SAMPLES} "
         f"AND {qratio} >= {QUEUE_RATIO}, {QUEUE_POINTS} * least({qratio}, {QUEUE_CAP}), 0)",
         f"concat('queue wait p95 ', toString(round(queue_p95_ms / 1000)), ' s (', "
         f"toString(round({qratio}, 1)), 'x)')"),
        ("late_delays",
         f"if(delays >= {DELAYS_MIN} AND {late_share} >= {DELAYS_LATE_SHARE} "
         f"AND lateness_avg_ms >= {DELAYS_LATE_AVG_MS}, {DELAYS_POINTS} * 100 * {late_share}, 0)",
         "concat(toString(delays_late), ' of ', toString(delays), ' delays late by ', "
         "toString(round(lateness_avg_ms / 1000)), ' s on average')"),
        ("replays_failing",
         f"if(replays_failed >= {REPLAYS_MIN_FAILED} AND replays_failed >= {REPLAYS_FAILED_SHARE} * replays_finished, "
         f"{REPLAYS_POINTS} * least(replays_failed, {REPLAYS_CAP}), 0)",
         "concat(toString(replays_failed), ' of ', toString(replays_finished), ' replays failed again')"),
    ]


def panel_sql(d: Dialect, limit: int = 50) -> str:
    """Workflows needing attention as a table (account, workflow_id, workflow (its name), score,
    reasons), the rules of ``reasons_of`` written in SQL over ``facts_sql(d)``."""
    rules = _points_sql()
    points = ",\n       ".join(f"{expr} AS p_{kind}" for kind, expr, _ in rules)
    texts = ", ".join(f"if(p_{kind} > 0, {text}, '')" for kind, _, text in rules)
    total = " + ".join(f"p_{kind}" for kind, _, _ in rules)
    return (f"SELECT account_id AS account, workflow_id, workflow_name AS workflow, score, reasons\n"
            f"FROM (\n SELECT *,\n       {points},\n"
            f"       round({total}, 1) AS score,\n"
            f"       arrayStringConcat(arrayFilter(x -> x != '', [{texts}]), '; ') AS reasons\n"
            f" FROM (\n{facts_sql(d)}\n )\n)\n"
            f"WHERE score > 0\nORDER BY score DESC, account, workflow_id\nLIMIT {int(limit)}")
