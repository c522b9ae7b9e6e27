"""``AccountWatermarks``: one clock per (account, input partition); the slowest active lane, a
lagging partition or the wall clock (once input is quiet) decides how far an account is judged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.detectors import AccountWatermarks

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
LATENESS, TOLERANCE, IDLE = 2 * MIN, MIN, timedelta(seconds=30)


def marks() -> AccountWatermarks:
    return AccountWatermarks(LATENESS, TOLERANCE, IDLE)


def test_one_batch_holding_hours_of_one_partition_moves_only_as_far_as_the_slowest_partition():
    """The replay that lost a spike: history read in one batch, partition 0's two days before
    partition 1's first minutes. Nothing of partition 1 is too late, and the watermark stops at
    partition 1's clock, not partition 0's."""
    w = marks()
    start = NOW - timedelta(days=2)
    late = [w.observe("acme", 0, start + timedelta(minutes=i), NOW) for i in range(0, 2 * 24 * 60, 10)]
    late += [w.observe("acme", 1, start + timedelta(minutes=i), NOW) for i in range(0, 30)]
    assert not any(late) and w.stats["too_late"] == 0
    assert w.moved(NOW) == {"acme": start + timedelta(minutes=29) - LATENESS}
    # partition 1 catches up: now the account moves to the newer of the two partitions' minimum
    w.observe("acme", 1, NOW - 3 * MIN, NOW)
    assert w.moved(NOW) == {"acme": start + timedelta(minutes=2 * 24 * 60 - 10) - LATENESS}


def test_a_lagging_partition_holds_every_account_back_to_what_was_read_from_it():
    w = marks()
    w.lagging({2})
    w.observe("acme", 0, NOW - MIN, NOW)
    assert w.moved(NOW) == {}                      # nothing read from partition 2 yet: no judgement
    w.observe("globex", 2, NOW - timedelta(hours=1), NOW)
    assert w.moved(NOW) == {"globex": NOW - timedelta(hours=1) - LATENESS}   # the accounts that sent
    assert w.moved(NOW, every_account=True) == {"acme": NOW - timedelta(hours=1) - LATENESS}
    w.lagging(())                                  # partition 2 read to its end
    assert w.moved(NOW, every_account=True) == {"acme": NOW - MIN - LATENESS}
    # globex's lane on 2 is still active (its event arrived less than IDLE ago)
    assert w.watermark("globex") == NOW - timedelta(hours=1) - LATENESS


def test_when_input_goes_quiet_the_watermark_follows_the_wall_clock():
    w = marks()
    w.observe("acme", 0, NOW - 10 * MIN, NOW)
    assert w.moved(NOW) == {"acme": NOW - 12 * MIN}
    later = NOW + IDLE + timedelta(seconds=1)
    assert w.moved(later) == {}                    # only accounts that sent something are looked at
    assert w.moved(later, every_account=True) == {"acme": later - IDLE - LATENESS}
    # but not while a partition still lags (the account's events may be there)
    w.observe("acme", 0, NOW - 9 * MIN, later)
    w.lagging({0})
    assert w.moved(later + timedelta(hours=1), every_account=True) == {}


def test_an_account_dated_in_the_future_moves_only_its_own_watermark_and_only_to_the_wall_clock():
    w = marks()
    assert w.observe("acme", 0, NOW - MIN, NOW) is False
    assert w.observe("mallory", 0, NOW + timedelta(days=2), NOW) is False      # capped, not too late
    assert w.observe("mallory", 1, datetime(9999, 12, 31, tzinfo=UTC), NOW) is False
    assert w.stats["capped"] == 2
    assert w.moved(NOW) == {"acme": NOW - MIN - LATENESS, "mallory": NOW + TOLERANCE - LATENESS}
    assert w.moved(NOW) == {}                                                   # nothing new since
    # too late only against its own account's watermark
    assert w.observe("acme", 1, NOW - 4 * MIN, NOW) is True
    assert w.observe("globex", 0, NOW - timedelta(hours=5), NOW) is False       # its first event
    assert w.observe("acme", 0, NOW - timedelta(minutes=2, seconds=30), NOW) is False
    assert w.stats["too_late"] == 1


def test_watermarks_never_go_back_and_memory_is_bounded():
    w = marks()
    w.observe("acme", 0, NOW, NOW)
    w.moved(NOW)
    w.observe("acme", 1, NOW - timedelta(hours=3), NOW)     # a new, older lane: the clock would go back
    assert w.moved(NOW) == {} and w.watermark("acme") == NOW - LATENESS
    small = AccountWatermarks(LATENESS, TOLERANCE, IDLE, max_accounts=2)
    for account in ("a", "b", "c"):
        small.observe(account, 0, NOW, NOW)
    assert len(small) == 2 and small.watermark("a") is None and small.stats["forgotten_accounts"] == 1


@pytest.mark.parametrize("args", [(-MIN, TOLERANCE, IDLE), (LATENESS, -MIN, IDLE), (LATENESS, TOLERANCE, timedelta(0))])
def test_bad_settings_are_refused(args):
    with pytest.raises(ValueError, match="need lateness"):
        AccountWatermarks(*args)
