"""The overview panel's "Workflows needing attention": the rules of ``attention.reasons_of``
written in SQL over the facts query, so the panel ranks workflows as ``runlens attention`` does
(an integration test checks that both give the same scores)."""

from __future__ import annotations

from dashboards import attention_rules as rule
from dashboards.attention_facts import Dialect, facts_sql


def _points_sql() -> list[tuple[str, str, str]]:
    """(kind, points expression, reason text expression) over the facts' columns; 0 points = no reason."""
    base = f"((base_failed + {rule.PRIOR_FAILED}) / (base_runs + {rule.PRIOR_RUNS}))"
    rate = "(failed / runs)"
    z = f"((failed - runs * {base}) / sqrt(runs * {base} * (1 - {base})))"
    cur_rate, prev_rate = "(current_failed / current_runs)", "(previous_failed / previous_runs)"
    ratio = "(current_p95_ms / previous_p95_ms)"
    versions_ok = f"current_runs >= {rule.VERSION_MIN_RUNS} AND previous_runs >= {rule.VERSION_MIN_RUNS}"
    slow = f"({versions_ok} AND previous_p95_ms > 0 AND {ratio} >= {rule.SLOWDOWN_RATIO})"
    vfail = (f"({versions_ok} AND current_failed >= {rule.MIN_FAILED} "
             f"AND {cur_rate} - {prev_rate} >= {rule.VERSION_FAILURE_EXCESS})")
    qratio = f"(queue_p95_ms / greatest(base_queue_p95_ms, {rule.QUEUE_MIN_P95_MS}))"
    late_share = "(delays_late / delays)"

    def pct(expr: str) -> str:
        return f"toString(round(100 * {expr}, 1))"

    return [
        ("failure_rate",
         f"if(runs >= {rule.MIN_RUNS} AND failed >= {rule.MIN_FAILED} AND {rate} >= {rule.FAILURE_RATIO} * {base} "
         f"AND {rate} - {base} >= {rule.FAILURE_EXCESS} AND {z} >= {rule.FAILURE_Z}, "
         f"{rule.FAILURE_POINTS} * ({rate} - {base}), 0)",
         f"concat('failure rate ', {pct(rate)}, '% (', toString(failed), ' of ', toString(runs), "
         f"' runs) vs baseline ', {pct(base)}, '%')"),
        ("new_errors",
         f"if(new_signatures >= 1 AND base_runs >= {rule.NEW_ERRORS_HISTORY}, "
         f"{rule.NEW_ERRORS_POINTS} * least(new_signatures, {rule.NEW_ERRORS_CAP}), 0)",
         "concat(toString(new_signatures), ' new error signature(s): ', "
         "arrayStringConcat(new_signature_examples, ', '))"),
        ("version_regression",
         f"if({slow}, {rule.SLOWDOWN_POINTS} * least({ratio} - 1, {rule.SLOWDOWN_CAP}), 0) "
         f"+ if({vfail}, {rule.FAILURE_POINTS} * ({cur_rate} - {prev_rate}), 0)",
         f"concat('v', toString(current_version), ' against v', toString(previous_version), ': ', "
         f"arrayStringConcat(arrayFilter(x -> x != '', ["
         f"if({slow}, concat('p95 ', toString(round({ratio}, 2)), 'x'), ''), "
         f"if({vfail}, concat('failure rate ', {pct(cur_rate)}, '% vs ', {pct(prev_rate)}, '%'), '')]), ', '))"),
        ("silent",
         f"if(lookback_runs >= {rule.SILENT_MIN_RUNS} AND active_hours >= {rule.SILENT_MIN_HOURS} "
         f"AND silence_s >= greatest({rule.SILENT_MIN_SECONDS}, {rule.SILENT_GAP_FACTOR} * longest_gap_s), "
         f"{rule.SILENT_POINTS} * least(silence_s / greatest(longest_gap_s, 3600), {rule.SILENT_CAP}), 0)",
         "concat('no finished run for ', toString(round(silence_s / 3600, 1)), ' h')"),
        ("stuck_runs",
         f"if(stuck_runs >= 1, {rule.STUCK_POINTS} * least(stuck_runs, {rule.STUCK_CAP}), 0)",
         "concat(toString(stuck_runs), ' run(s) stuck, the oldest for ', "
         "toString(round(stuck_oldest_ms / 60000)), ' min')"),
        ("queue_growing",
         f"if(queue_samples >= {rule.QUEUE_MIN_SAMPLES} AND base_queue_samples >= {rule.QUEUE_MIN_SAMPLES} "
         f"AND {qratio} >= {rule.QUEUE_RATIO}, {rule.QUEUE_POINTS} * least({qratio}, {rule.QUEUE_CAP}), 0)",
         f"concat('queue wait p95 ', toString(round(queue_p95_ms / 1000)), ' s (', "
         f"toString(round({qratio}, 1)), 'x)')"),
        ("late_delays",
         f"if(delays >= {rule.DELAYS_MIN} AND {late_share} >= {rule.DELAYS_LATE_SHARE} "
         f"AND lateness_avg_ms >= {rule.DELAYS_LATE_AVG_MS}, {rule.DELAYS_POINTS} * 100 * {late_share}, 0)",
         "concat(toString(delays_late), ' of ', toString(delays), ' delays late by ', "
         "toString(round(lateness_avg_ms / 1000)), ' s on average')"),
        ("replays_failing",
         f"if(replays_failed >= {rule.REPLAYS_MIN_FAILED} "
         f"AND replays_failed >= {rule.REPLAYS_FAILED_SHARE} * replays_finished, "
         f"{rule.REPLAYS_POINTS} * least(replays_failed, {rule.REPLAYS_CAP}), 0)",
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
