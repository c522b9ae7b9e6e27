"""What every detector shares: the ``Alert`` it reports, the watermark it is advanced by, the
checks of its arguments, the state of an alert while it fires (``_Firing``: resolved after a
number of quiet minutes in a row), and the helpers for event times (integer milliseconds),
alert ids, readable numbers and the per-account LRU. Pure, no I/O."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MINUTE_MS = 60_000


def _ms(value: datetime, what: str = "time") -> int:
    """Milliseconds since the epoch of an aware datetime (exact integer arithmetic). Anything
    else (a naive datetime, a date, a number) cannot be subtracted from an aware datetime: the
    subtraction's TypeError is the check, at no cost for the times that pass it."""
    try:
        return (value - _EPOCH) // _MS
    except TypeError:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}") from None


def _dt(ms: int) -> datetime:
    return _EPOCH + _MS * ms   # exact, as timedelta(milliseconds=ms), at half its cost


Watermark = datetime | Mapping[str, datetime]  # one time for every account, or one per account


def _targets(watermark: Watermark, known: Mapping[str, object]) -> tuple[list[tuple[str, int]], int | None]:
    """(account, watermark ms) pairs to advance, and the common watermark in ms when one time
    was given for every account (None for a per-account mapping)."""
    if isinstance(watermark, Mapping):
        return [(account, _ms(w, "watermark")) for account, w in watermark.items()], None
    w = _ms(watermark, "watermark")
    return [(account, w) for account in list(known)], w


class _Clocked(Protocol):
    """A detector's per-account progress: the next minute (or boundary) to evaluate, None
    before the account has started."""

    next: int | None


def _common_floor(floor: int | None, candidate: int, accounts: Collection[_Clocked]) -> int | None:
    """After a watermark common to every account (the single-clock mode): where accounts not
    started yet start, and accounts seen later, so that late data below it counts as late
    exactly as with one clock. Set once any account has started."""
    if floor is None and all(a.next is None for a in accounts):
        return None
    floor = candidate if floor is None else max(floor, candidate)
    for a in accounts:
        if a.next is None:
            a.next = floor
    return floor


def _require_at_least(minimum: float, **values: float) -> None:
    """A detector's argument check: ValueError naming every one of ``values`` below ``minimum``."""
    low = [name for name, value in values.items() if value < minimum]
    if low:
        raise ValueError(f"{', '.join(low)} must be >= {minimum:g}")


class _Firing:
    """An alert while it fires: its id, when it started (ms), its severity, and the run of quiet
    minutes (the rule no longer met) that resolves it. Detectors add their own peak figures."""

    __slots__ = ("alert_id", "started_ms", "severity", "clear_streak", "clear_since_ms")

    def __init__(self, alert_id: str, started_ms: int, severity: str) -> None:
        self.alert_id = alert_id
        self.started_ms = started_ms
        self.severity = severity
        self.clear_streak = 0
        self.clear_since_ms = started_ms

    def holds(self) -> None:
        """The rule is met this minute: the quiet run, if any, is over."""
        self.clear_streak = 0

    def quiet(self, end_ms: int, needed: int) -> bool:
        """One more minute, ending at ``end_ms``, without the rule met; True once ``needed`` such
        minutes came in a row: the alert resolves, as of ``clear_since_ms`` (the end of the first)."""
        self.clear_streak += 1
        if self.clear_streak == 1:
            self.clear_since_ms = end_ms
        return self.clear_streak >= needed


def _alert_id(kind: str, account_id: str, subject: str, started_at: datetime) -> str:
    return f"{kind}:{account_id}:{subject}:{started_at:%Y%m%dT%H%M}"


def _fmt_minutes(minutes: float) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    return f"{minutes:g} min"


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _fmt_chance(p: float) -> str:
    """1e-4 -> "1 in 10,000"."""
    if 0 < p < 1:
        inv = 1 / p
        if abs(inv - round(inv)) < 1e-6 * inv:
            return f"1 in {round(inv):,}"
    return f"{p:g}"


def _fmt_pct(rate: float) -> str:
    pct = 100.0 * rate
    if pct >= 10 or pct == 0:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%"


@dataclass(frozen=True)
class Alert:
    alert_id: str  # f"{kind}:{account_id}:{subject}:{started_at:%Y%m%dT%H%M}", same when firing and resolved
    kind: str  # "failure_spike" | "stuck_run" | "queue_growing"
    account_id: str
    # workflow_id (failure_spike; account_id with scope="account"), run_id (stuck_run), account_id (queue_growing)
    subject: str
    subject_name: str  # workflow name / the run's workflow name / account id, for humans
    state: str  # "firing" | "resolved"
    severity: str  # "warning" | "critical"
    started_at: datetime  # event time the condition began (aware UTC)
    resolved_at: datetime | None
    summary: str  # one readable sentence with the numbers
    numbers: dict[str, float] = field(default_factory=dict)  # the figures behind it


_Account = TypeVar("_Account")


def _lru_hit(accounts: OrderedDict[str, _Account], account_id: str) -> _Account | None:
    """``accounts[account_id]`` made the most recently used, or None when it is not held: the
    common case of ``_lru_account``, for callers to try before they build its callables."""
    acct = accounts.get(account_id)
    if acct is not None:
        accounts.move_to_end(account_id)
    return acct


def _lru_account(accounts: OrderedDict[str, _Account], account_id: str, cap: int, idle: Callable[[_Account], bool],
                 forget: Callable[[_Account], None], new: Callable[[], _Account]) -> _Account:
    """``accounts[account_id]``, most recently used last; a new one evicts the least recently
    used idle account (or, if none is idle, the least recently used) once ``cap`` are held."""
    acct = accounts.get(account_id)
    if acct is not None:
        accounts.move_to_end(account_id)
        return acct
    if len(accounts) >= cap:
        old_id = next((key for key, old in accounts.items() if idle(old)), next(iter(accounts)))
        forget(accounts.pop(old_id))
    acct = accounts[account_id] = new()
    return acct
