"""The one duration parser and the one time parser. The command line's options, the SQL
library's time parameters, Grafana's panel intervals and the workload's spike and backlog times
all read theirs here; each caller words the errors for its own users. Pure: ``now`` is given."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from schemas.errors import InputError

MAX_DURATION = timedelta(days=36_500)
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)?\s*$", re.ASCII | re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


class DurationOutOfRange(InputError):
    """A well-formed duration longer than MAX_DURATION."""

    code = "duration_out_of_range"


def parse_duration(text: str) -> timedelta:
    """'90s', '10m', '2h', '30d', '1w', '500ms' (a bare number is seconds; units in any case), ASCII
    digits, at most 36,500 days (100 years). InputError (DurationOutOfRange when too long) otherwise."""
    match = _DURATION.match(text)
    if not match:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InputError(f"invalid duration {shown!r} (use ASCII digits and a unit, e.g. 90s, 10m, 2h, 30d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) and match.group(2).lower()]
    if seconds > MAX_DURATION.total_seconds():
        raise DurationOutOfRange(f"duration {text.strip()!r} is longer than {MAX_DURATION.days:,} days")
    return timedelta(seconds=seconds)


def parse_instant(text: str) -> datetime:
    """An RFC 3339 time or an ISO date (``Z`` in either case; naive means UTC) as an aware UTC
    datetime. ValueError when it is neither; OverflowError outside 1..9999 AD in UTC."""
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Relative = Literal["ago", "signed"]


def parse_time(text: str, now: datetime, relative: Relative = "ago") -> datetime:
    """A point in time: ``now``, an RFC 3339 time or a date (``parse_instant``), or one relative
    to ``now`` in one of two forms:

    * ``ago`` (the command line, the SQL library's parameters): ``today`` and ``yesterday``
      (midnight UTC) or a duration ago (``24h``, ``7d``: ``parse_duration``);
    * ``signed`` (the workload's spike and backlog times): ``+5m`` ahead, ``-2h`` ago.

    ``now`` and relative times keep ``now``'s zone. InputError (DurationOutOfRange for a duration
    too long) when ``text`` is none of these; OverflowError for a time outside 1..9999 AD."""
    text = text.strip()
    lowered = text.lower()
    if lowered == "now":
        return now
    if relative == "ago":
        if lowered in ("today", "yesterday"):
            midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            return midnight - timedelta(days=1) if lowered == "yesterday" else midnight
        if _DURATION.match(text):
            return now - parse_duration(text)
        forms = "now, today, a duration like 24h or 7d"
    else:
        if text[:1] in ("+", "-") and _DURATION.match(text[1:]):
            delta = parse_duration(text[1:])
            return now + delta if text[0] == "+" else now - delta
        forms = "now, a relative time like +5m or -2h"
    try:
        return parse_instant(text)
    except ValueError:
        raise InputError(f"invalid time {text!r} (use {forms}, or RFC 3339 such as 2026-11-16T10:00:00Z)") from None
