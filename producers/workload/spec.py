"""Workload specs: ``Spike`` and ``Backlog`` (with their ``key=value`` text parsers), the
``WorkloadConfig``, and the time helpers and constants every part of the workload shares."""

from __future__ import annotations

import math
import time as _time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.times import DurationOutOfRange, parse_time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_QUARTER_MS = 900_000
_WEEK_QUARTERS = 7 * 96
_MONDAY0_QUARTERS = 4 * 96  # 1970-01-05 (a Monday) in quarter hours since the epoch
_VERSION_ANCHOR_MS = 1_785_715_200_000  # 2026-08-03T00:00:00Z: versions count bumps from here


# --------------------------------------------------------------------------- time helpers


def _to_ms(value: datetime, what: str = "time") -> int:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return (value - _EPOCH) // _MS


_MINUTE_PREFIX: dict[int, str] = {}


def _fmt(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: ``2026-11-20T10:00:00.250Z``."""
    minute, rest = divmod(ms, 60_000)
    prefix = _MINUTE_PREFIX.get(minute)
    if prefix is None:
        if len(_MINUTE_PREFIX) > 50_000:
            _MINUTE_PREFIX.clear()
        prefix = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}".format(*_time.gmtime(minute * 60)[:5])
        _MINUTE_PREFIX[minute] = prefix
    sec, milli = divmod(rest, 1000)
    return f"{prefix}:{sec:02d}.{milli:03d}Z"


def _parse_when(kind: str, text: str, now: datetime) -> datetime:
    """Absolute RFC 3339 time (naive = UTC), ``now``, or relative ``+5m`` / ``-2h`` / ``+30s``
    (``schemas.times.parse_time``, signed); ValueError naming ``kind`` otherwise."""
    text = text.strip()
    try:
        base = parse_time(text, now, "signed")
    except DurationOutOfRange as exc:
        raise ValueError(f"{kind}: bad at={text!r} ({exc})") from None
    except ValueError:
        raise ValueError(
            f"{kind}: bad at={text!r} (use an RFC 3339 time like 2026-11-20T10:00:00Z "
            "or a relative time like +5m, -2h, +30s)"
        ) from None
    if base.tzinfo is None:
        raise ValueError(f"{kind}: `now` must be timezone-aware to resolve at={text!r}")
    return base.astimezone(UTC)


def _parse_fields(kind: str, text: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"{kind}: {part!r} is not key=value (expected e.g. {allowed[0]}=...)")
        key, value = (s.strip() for s in part.split("=", 1))
        key = key.lower()
        if key not in allowed:
            raise ValueError(f"{kind}: unknown key {key!r} (expected one of: {', '.join(allowed)})")
        if key in fields:
            raise ValueError(f"{kind}: {key!r} given twice")
        if not value:
            raise ValueError(f"{kind}: empty value for {key!r}")
        fields[key] = value
    for key in required:
        if key not in fields:
            raise ValueError(f"{kind}: missing {key}=... in {text!r}")
    return fields


def _parse_number(kind: str, key: str, text: str, lo: float, hi: float | None) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        bound = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
        raise ValueError(f"{kind}: bad {key}={text!r} (expected a number in {bound})")
    return value


def _check_fraction(kind: str, key: str, value: float) -> None:
    if not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"{kind}: bad {key}={value!r} (expected a number in 0..1)")


def _check_minutes(kind: str, minutes: float) -> None:
    if not (float(minutes) > 0 and math.isfinite(minutes)):
        raise ValueError(f"{kind}: bad minutes={minutes!r} (expected a number > 0)")


# --------------------------------------------------------------------------- public config


@dataclass(frozen=True)
class Spike:
    """Injected failure spike: a run of the workflow that starts in [at, at + minutes) fails
    with probability ``rate`` (always at the same step, with the same error code, external
    failures after all retries); the window's other runs of the workflow succeed, so its
    failure rate is ``rate``. ``catalog()`` lists each workflow's spike step and code."""

    workflow: str  # workflow_id or workflow_name (match either); "account/workflow_id" narrows to one tenant
    at: datetime  # aware UTC start
    rate: float  # failure probability of that workflow's runs during the window (0..1)
    minutes: float = 15.0

    def __post_init__(self) -> None:
        if not isinstance(self.workflow, str) or not self.workflow.strip():
            raise ValueError("spike: workflow must be a non-empty workflow id or name")
        _to_ms(self.at, "spike: at")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        _check_fraction("spike", "rate", self.rate)
        _check_minutes("spike", self.minutes)

    @classmethod
    def parse(cls, text: str, now: datetime) -> Spike:
        """``workflow=wf-welcome,at=2026-11-20T10:00:00Z,rate=0.6[,minutes=10]``; ``at`` may be
        relative to ``now`` (``+5m``, ``-2h``, ``+30s``). ValueError names the bad part."""
        f = _parse_fields("spike", text, ("workflow", "at", "rate", "minutes"), ("workflow", "at", "rate"))
        return cls(
            workflow=f["workflow"],
            at=_parse_when("spike", f["at"], now),
            rate=_parse_number("spike", "rate", f["rate"], 0.0, 1.0),
            minutes=_parse_number("spike", "minutes", f["minutes"], 1e-9, None) if "minutes" in f else 15.0,
        )


@dataclass(frozen=True)
class Backlog:
    """Injected capacity drop: during [at, at + minutes) only ``capacity_factor`` of the
    account's concurrency slots may start runs, so queue wait (and delay-resume lateness) grows."""

    account: str | None  # None = every account
    at: datetime
    minutes: float
    capacity_factor: float = 0.2  # fraction of normal concurrency left

    def __post_init__(self) -> None:
        _to_ms(self.at, "backlog: at")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        _check_minutes("backlog", self.minutes)
        _check_fraction("backlog", "capacity", self.capacity_factor)

    @classmethod
    def parse(cls, text: str, now: datetime) -> Backlog:
        """``at=+10m,minutes=5[,account=acme][,capacity=0.2]``. ValueError names the bad part."""
        f = _parse_fields("backlog", text, ("at", "minutes", "account", "capacity"), ("at", "minutes"))
        account = f.get("account")
        if account is not None and account.lower() in ("*", "all"):
            account = None
        return cls(
            account=account,
            at=_parse_when("backlog", f["at"], now),
            minutes=_parse_number("backlog", "minutes", f["minutes"], 1e-9, None),
            capacity_factor=_parse_number("backlog", "capacity", f["capacity"], 0.0, 1.0) if "capacity" in f else 0.2,
        )


@dataclass(frozen=True)
class Silence:
    """Injected silence: the workflow starts no run in [at, at + minutes) (``minutes`` None: from
    ``at`` to the end of the workload), as when its trigger broke while every panel stayed green;
    the other workflows go on as before."""

    workflow: str  # workflow_id or workflow_name (match either); "account/workflow_id" narrows to one tenant
    at: datetime  # aware UTC start
    minutes: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workflow, str) or not self.workflow.strip():
            raise ValueError("silence: workflow must be a non-empty workflow id or name")
        _to_ms(self.at, "silence: at")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        if self.minutes is not None:
            _check_minutes("silence", self.minutes)

    @classmethod
    def parse(cls, text: str, now: datetime) -> Silence:
        """``workflow=wf-welcome,at=-90m[,minutes=60]``; ``at`` may be relative to ``now``.
        ValueError names the bad part."""
        f = _parse_fields("silence", text, ("workflow", "at", "minutes"), ("workflow", "at"))
        return cls(
            workflow=f["workflow"],
            at=_parse_when("silence", f["at"], now),
            minutes=_parse_number("silence", "minutes", f["minutes"], 1e-9, None) if "minutes" in f else None,
        )


@dataclass(frozen=True)
class WorkloadConfig:
    seed: int = 7
    accounts: int = 3
    backfill_runs_per_hour: float = 120.0  # whole-workload average before live_from (seasonality modulates it)
    live_runs_per_second: float = 5.0  # whole-workload average from live_from on (flat, no seasonality)
    spikes: tuple[Spike, ...] = ()
    backlogs: tuple[Backlog, ...] = ()
    silences: tuple[Silence, ...] = ()
    replay_probability: float = 0.25  # share of failed runs later replayed (exact or modified)
