"""The run-level detectors (``streams.detectors``): silent workflow, version regression, new
error signature, run deadline. Each fires on the condition and not without it, resolves, gives
the same alerts when its inputs arrive out of order within the lateness, and survives a
snapshot round trip of the partition detectors unchanged."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from streams.detection import PartitionDetectors
from streams.detectors import (
    Detectors,
    NewErrorSignatureDetector,
    RunDeadlineDetector,
    SilentWorkflowDetector,
    VersionRegressionDetector,
    parse_deadlines,
)
from streams.signals import FINISHED, QUEUED, STARTED, Packet, RunSignal, pack, unpack

T0 = datetime(2026, 7, 13, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def only(**kwargs: object) -> Detectors:
    off = {n: None for n in ("failure_spike", "account_failure_spike", "stuck_run", "queue_growth",
                             "silent_workflow", "version_regression", "error_signature", "run_deadline")}
    off.update(kwargs)
    return Detectors(**off)  # type: ignore[arg-type]


def runs(wf: str, start: datetime, count: int, every: timedelta, *, seconds: float = 30.0, version: int = 1,
         fail_every: int = 0, code: str = "HTTP_500", error_class: str = "external_service",
         prefix: str = "r", account: str = "acme") -> list[tuple]:
    """Signals (kind, account, wf, run, ts, started, failed, version, code, class) of ``count`` runs."""
    out = []
    rng = random.Random(f"{wf}{prefix}{start}")
    for i in range(count):
        q = start + i * every
        s = q + timedelta(seconds=1)
        f = s + timedelta(milliseconds=int(seconds * 1000 * rng.uniform(0.8, 1.2)))
        failed = bool(fail_every) and i % fail_every == 0
        rid = f"{prefix}{wf}{i}"
        out += [(QUEUED, account, wf, rid, q, None, False, version, "", ""),
                (STARTED, account, wf, rid, s, None, False, version, "", ""),
                (FINISHED, account, wf, rid, f, s, failed, version, code if failed else "",
                 error_class if failed else "")]
    return out


def feed(det: Detectors, signals: list[tuple], until: datetime, *, lateness: timedelta = 2 * MIN,
         shuffle: int | None = None) -> list:
    """Feed signals (in time order, or shuffled within ``lateness`` with seed ``shuffle``), advancing
    the watermark to the newest time - lateness after each; then to ``until``."""
    ordered = sorted(signals, key=lambda s: (s[4], s[3], s[0]))
    if shuffle is not None:
        rng = random.Random(shuffle)
        keyed = [(s[4] + timedelta(seconds=rng.uniform(0, lateness.total_seconds() * 0.9)), i, s)
                 for i, s in enumerate(ordered)]
        ordered = [s for _, _, s in sorted(keyed)]
    out, high = [], None
    for kind, account, wf, rid, t, started, failed, version, code, cls in ordered:
        det.observe_signal(account, kind, wf, wf.upper(), rid, t, started, failed, version, code, cls)
        high = t if high is None or t > high else high
        out += det.advance(high - lateness)
    return out + det.advance(until)


def states(alerts: list) -> list[tuple]:
    return [(a.kind, a.subject, a.state, a.started_at, a.resolved_at) for a in alerts]


# ---- silent workflow

def test_a_steady_workflow_that_stops_is_alerted_and_resolves_when_a_run_arrives():
    steady = runs("wf-a", T0, 120, MIN)                     # one run a minute for 2 hours, then nothing
    other = runs("wf-b", T0, 200, MIN)                      # keeps running for 3 h 20 min
    rare = runs("wf-rare", T0, 5, timedelta(minutes=30))    # too few runs to judge
    det = only(silent_workflow=SilentWorkflowDetector())
    alerts = feed(det, steady + other + rare, T0 + timedelta(hours=3))
    assert [(a.subject, a.state) for a in alerts] == [("wf-a", "firing")], alerts
    last = T0 + 119 * MIN
    assert alerts[0].started_at == last + timedelta(minutes=15)   # max(3 x 1 min, 15 min floor)
    assert alerts[0].numbers["usual_gap_seconds"] == 60
    back = T0 + timedelta(hours=3, minutes=30)
    det.observe_signal("acme", QUEUED, "wf-a", "WF-A", "again", back)
    (resolved,) = det.advance(back + 2 * MIN)
    assert (resolved.state, resolved.alert_id, resolved.resolved_at) == ("resolved", alerts[0].alert_id, back)


def test_the_silence_threshold_follows_the_workflows_own_rhythm():
    det = SilentWorkflowDetector()
    for i in range(40):
        det.run_arrived("acme", "wf-slow", "Slow", T0 + i * timedelta(minutes=20))
    det.advance(T0 + timedelta(hours=13, minutes=1))
    assert det.threshold_seconds("acme", "wf-slow") == 3 * 20 * 60
    assert det.threshold_seconds("acme", "nope") is None


def test_a_workflow_quiet_every_night_is_not_alerted_once_it_has_a_day_of_history():
    signals = []
    for day in range(3):                      # a run a minute 08:00-20:00, none at night
        signals += runs("wf-day", T0 + timedelta(days=day), 12 * 60, MIN, prefix=f"d{day}")
    alerts = feed(only(silent_workflow=SilentWorkflowDetector()), signals, T0 + timedelta(days=2, hours=13))
    # the first night is judged on the recent rate alone (one run a minute): it fires, then
    # resolves in the morning; later nights are expected to be quiet (hour of day)
    assert [(a.state, a.started_at.date()) for a in alerts] == [("firing", T0.date()),
                                                                ("resolved", T0.date())]


def test_silent_workflow_is_the_same_out_of_order_and_with_one_wall_clock_watermark():
    signals = runs("wf-a", T0, 90, MIN) + runs("wf-b", T0, 150, MIN)
    a = feed(only(silent_workflow=SilentWorkflowDetector()), signals, T0 + timedelta(hours=4))
    b = feed(only(silent_workflow=SilentWorkflowDetector()), signals, T0 + timedelta(hours=4), shuffle=3)
    assert states(a) == states(b) and [x.subject for x in a] == ["wf-a", "wf-b"]


# ---- version regression

def test_a_new_version_that_fails_more_is_a_regression_and_a_newer_version_resolves_it():
    old = runs("wf-a", T0, 200, timedelta(seconds=30), version=3, fail_every=50)            # 2 %
    new = runs("wf-a", T0 + timedelta(minutes=100), 60, timedelta(seconds=30), version=4, fail_every=2,
               prefix="n")                                                                   # 50 %
    det = only(version_regression=VersionRegressionDetector())
    alerts = feed(det, old + new, T0 + timedelta(hours=3))
    assert [(a.subject, a.state) for a in alerts] == [("wf-a", "firing")]
    fired = alerts[0]
    assert fired.numbers["version"] == 4 and fired.numbers["previous_version"] == 3
    assert fired.numbers["p_value"] <= 1e-4 and "version 4 worse than version 3" in fired.summary
    newer = runs("wf-a", T0 + timedelta(hours=3), 3, MIN, version=5, prefix="x")
    more = feed(det, newer, T0 + timedelta(hours=4))
    assert [(a.state, a.alert_id) for a in more] == [("resolved", fired.alert_id)]


def test_a_slower_version_is_a_regression_and_a_same_version_is_not():
    old = runs("wf-a", T0, 100, MIN, seconds=60, version=1)
    slow = runs("wf-a", T0 + timedelta(minutes=101), 40, MIN, seconds=200, version=2, prefix="s")
    alerts = feed(only(version_regression=VersionRegressionDetector()), old + slow, T0 + timedelta(hours=4))
    assert [(a.state, "slower" in a.numbers) for a in alerts] == [("firing", True)]
    same = runs("wf-a", T0 + timedelta(minutes=101), 40, MIN, seconds=60, version=2, prefix="s")
    assert feed(only(version_regression=VersionRegressionDetector()), old + same, T0 + timedelta(hours=4)) == []


def test_version_regression_is_the_same_out_of_order():
    signals = (runs("wf-a", T0, 200, timedelta(seconds=30), version=3, fail_every=50)
               + runs("wf-a", T0 + timedelta(minutes=100), 60, timedelta(seconds=30), version=4, fail_every=2,
                      prefix="n"))
    a = feed(only(version_regression=VersionRegressionDetector()), signals, T0 + timedelta(hours=3))
    b = feed(only(version_regression=VersionRegressionDetector()), signals, T0 + timedelta(hours=3), shuffle=5)
    assert states(a) == states(b) and len(a) == 1


# ---- new error signature

def test_a_new_error_code_fires_once_and_resolves_after_an_hour_without_it():
    base = runs("wf-a", T0, 120, MIN, fail_every=10)                     # HTTP_500 all along
    new = runs("wf-a", T0 + timedelta(minutes=90), 10, MIN, fail_every=2, code="QUOTA", error_class="config",
               prefix="q")
    det = only(error_signature=NewErrorSignatureDetector(learn_minutes=60))
    alerts = feed(det, base + new, T0 + timedelta(hours=4))
    assert [(a.subject, a.state) for a in alerts] == [("wf-a:QUOTA:config", "firing"),
                                                        ("wf-a:QUOTA:config", "resolved")]
    first_quota = T0 + timedelta(minutes=90)
    assert first_quota < alerts[0].started_at < first_quota + MIN
    last_quota = T0 + timedelta(minutes=98)                               # the 5th failing run, queued then
    assert alerts[1].numbers["occurrences"] == 5
    assert last_quota + timedelta(minutes=60) < alerts[1].resolved_at < last_quota + timedelta(minutes=61)


def test_errors_while_a_workflow_is_still_being_learned_are_its_baseline():
    early = runs("wf-a", T0, 30, MIN, fail_every=3, code="EARLY")
    assert feed(only(error_signature=NewErrorSignatureDetector(learn_minutes=60)), early,
                T0 + timedelta(hours=3)) == []
    day = runs("wf-a", T0, 20 * 60, MIN, fail_every=7) + runs("wf-a", T0 + timedelta(hours=20), 5, MIN,
                                                              fail_every=1, code="LATE", prefix="l")
    assert feed(only(error_signature=NewErrorSignatureDetector()), day, T0 + timedelta(hours=21)) == []  # 24 h


def test_a_signature_not_seen_for_30_days_is_new_again():
    det = NewErrorSignatureDetector(learn_minutes=0, min_runs=0)
    det.run_finished("acme", "wf-a", "A", T0, True, "OLD", "data")
    det.run_finished("acme", "wf-a", "A", T0 + timedelta(days=10), True, "OLD", "data")
    assert det.advance(T0 + timedelta(days=10, minutes=5)) != []          # first ever: fires, resolves
    det.run_finished("acme", "wf-a", "A", T0 + timedelta(days=20), True, "OLD", "data")
    assert det.advance(T0 + timedelta(days=21)) == []                   # seen 10 days ago
    det.run_finished("acme", "wf-a", "A", T0 + timedelta(days=55), True, "OLD", "data")
    assert [a.state for a in det.advance(T0 + timedelta(days=55, minutes=2))] == ["firing"]


def test_new_error_signature_is_the_same_out_of_order():
    signals = (runs("wf-a", T0, 120, MIN, fail_every=10)
               + runs("wf-a", T0 + timedelta(minutes=90), 10, MIN, fail_every=2, code="QUOTA", prefix="q"))
    a = feed(only(error_signature=NewErrorSignatureDetector(learn_minutes=60)), signals, T0 + timedelta(hours=4))
    b = feed(only(error_signature=NewErrorSignatureDetector(learn_minutes=60)), signals, T0 + timedelta(hours=4),
             shuffle=9)
    assert states(a) == states(b) and len(a) == 2


# ---- run deadline

def test_a_run_past_its_workflows_limit_fires_while_it_runs_and_resolves_when_it_finishes():
    normal = runs("wf-a", T0, 60, MIN, seconds=240)                     # ~4 min each: p99 ~ 4.8 min
    long_start = T0 + timedelta(hours=1, minutes=5)
    long = [(STARTED, "acme", "wf-a", "long", long_start, None, False, 1, "", ""),
            (FINISHED, "acme", "wf-a", "long", long_start + timedelta(minutes=30), long_start, False, 1, "", "")]
    det = only(run_deadline=RunDeadlineDetector())
    alerts = feed(det, normal + long, T0 + timedelta(hours=3))
    assert [(a.subject, a.state) for a in alerts] == [("long", "firing"), ("long", "resolved")]
    limit = alerts[0].numbers["limit_seconds"]
    assert 1.5 * 4 * 60 < limit <= 1.5 * 1.2 * 4 * 60 + 1
    assert alerts[0].started_at == long_start + timedelta(seconds=limit)
    assert alerts[1].resolved_at == long_start + timedelta(minutes=30)


def test_a_configured_deadline_wins_and_bad_settings_are_refused():
    limits = parse_deadlines('{"acme/wf-a": "10m", "wf-b": 90}')
    assert limits == {"acme/wf-a": 600.0, "wf-b": 90.0}
    det = RunDeadlineDetector(limits=limits)
    det.run_started("acme", "wf-a", "A", "r1", T0)
    det.run_started("globex", "wf-a", "A", "r2", T0)          # no limit here: the 1 h cold floor
    fired = det.advance(T0 + timedelta(minutes=12))
    assert [(a.subject, a.numbers["limit_seconds"]) for a in fired] == [("r1", 600.0)]
    assert "configured" in fired[0].summary
    for bad in ('{"wf": "soon"}', "[1]", "nope", '{"wf": -3}'):
        with pytest.raises(ValueError):
            parse_deadlines(bad)


def test_run_deadline_is_the_same_when_the_finish_arrives_before_the_start():
    normal = runs("wf-a", T0, 60, MIN, seconds=240)
    s = T0 + timedelta(hours=1, minutes=5)
    long = [(FINISHED, "acme", "wf-a", "long", s + timedelta(minutes=30), s, False, 1, "", ""),
            (STARTED, "acme", "wf-a", "long", s, None, False, 1, "", "")]
    a = feed(only(run_deadline=RunDeadlineDetector()), normal + long, T0 + timedelta(hours=3))
    b = feed(only(run_deadline=RunDeadlineDetector()), normal + long, T0 + timedelta(hours=3), shuffle=2)
    assert states(a) == states(b) and len(a) == 2


# ---- together, through the partition detectors and the packets

def _signal(i: int, row: tuple) -> RunSignal:
    kind, account, wf, rid, t, started, failed, version, code, cls = row
    return RunSignal(0, i, 0, kind, account, wf, wf.upper(), rid, t, started, failed, version, code, cls)


def test_signals_carry_version_and_error_through_a_packet_and_a_snapshot_round_trip_changes_nothing():
    rows = sorted(runs("wf-a", T0, 120, MIN, fail_every=10, version=2)
                  + runs("wf-a", T0 + timedelta(minutes=90), 10, MIN, fail_every=2, code="QUOTA", prefix="q",
                         version=3)
                  + runs("wf-b", T0, 60, MIN, seconds=240), key=lambda r: (r[4], r[3], r[0]))
    signals = [_signal(i, r) for i, r in enumerate(rows)]
    assert unpack(pack(signals, {0: False})).signals == signals
    plain = RunSignal(0, 0, 0, QUEUED, "acme", "wf", "WF", "r", T0, None, False)
    assert unpack(pack([plain], {})).signals == [plain]                    # compact: no version, no error
    now = T0 + timedelta(hours=5)
    half = len(signals) // 2
    one = PartitionDetectors(2 * MIN, Detectors(error_signature=NewErrorSignatureDetector(learn_minutes=60)),
                             now=lambda: now)
    first = one.apply(Packet(signals[:half], {0: False}), now)
    two = PartitionDetectors.restore(one.snapshot(), now=lambda: now)
    rest = one.apply(Packet(signals[half:], {0: False}), now) + one.advance(now + timedelta(hours=2),
                                                                          every_account=True)
    rest_two = two.apply(Packet(signals[half:], {0: False}), now) + two.advance(now + timedelta(hours=2),
                                                                              every_account=True)
    assert rest == rest_two
    kinds = {a.kind for a in first + rest}
    assert {"silent_workflow", "new_error_signature"} <= kinds, kinds
    assert "run_deadline" not in kinds


def test_packets_of_signals_with_names_and_codes_at_their_bound_stay_under_a_megabyte():
    from streams.signals import packets
    long = "\u00e9" * 512
    signals = [RunSignal(0, i, 0, FINISHED, "acme", long, long, long, T0, T0, True, 7, long, "external_service")
               for i in range(3000)]
    sent = packets(signals, {0: False}, 1)
    assert len(sent) > 1 and all(len(raw) < 1_000_000 for _, raw in sent)
    assert [s for _, raw in sent for s in unpack(raw).signals] == signals


def test_the_caps_bound_every_run_level_detector():
    silent, regression = SilentWorkflowDetector(max_workflows=3), VersionRegressionDetector(keep_versions=2)
    signature = NewErrorSignatureDetector(max_signatures=4, learn_minutes=0, min_runs=0)
    deadline = RunDeadlineDetector(max_open_runs=5, max_done=10)
    for i in range(50):
        t = T0 + i * MIN
        silent.run_arrived("acme", f"wf-{i}", "", t)
        regression.run_finished("acme", "wf", "", i, t, t, False)
        signature.run_finished("acme", "wf", "", t, True, f"E{i}", "data")
        deadline.run_started("acme", "wf", "", f"r{i}", t)
        if i % 2:
            deadline.run_finished("acme", "wf", f"r{i - 50}", t, t)
    for det in (silent, regression, signature, deadline):
        det.advance(T0 + timedelta(hours=2))
    assert silent.state_sizes()["keys"] == 3
    assert regression.state_sizes()["versions"] == 2
    assert signature.state_sizes()["signatures"] == 4 and signature.stats["capped"] > 0
    sizes = deadline.state_sizes()
    assert sizes["open_runs"] <= 5 and sizes["closed_runs"] <= 10
