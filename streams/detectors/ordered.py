"""The event-time skeleton of the run-level detectors (silent workflow, version regression, new
error signature, deadline): each account's inputs wait in a heap and are applied in event-time
order (ties broken by the input itself, never by arrival) as the account's watermark passes
whole minute boundaries; at every boundary the detector judges what is due. So inputs that
arrive out of order, but before the watermark passes their minute, give exactly the same alerts
as the same inputs in time order; an input older than the account's last judged boundary is
applied at the next one (late, still counted). Boundaries with nothing pending and nothing due
are skipped in one step. Pure, no I/O; the state pickles (snapshots) as plain containers."""

from __future__ import annotations

import heapq
import sys
from collections import OrderedDict
from typing import Any, Generic, Protocol, TypeVar

from streams.detectors.alert import _MINUTE_MS, Alert, Watermark, _lru_account, _lru_hit, _targets

Item = tuple[Any, ...]
"""An input: ``(event time ms, ...)``, every field a str, int, float or bool (so ties compare)."""

Changes = list[tuple[int, int, str, str, Alert]]
"""Alerts raised while advancing, with their order: (boundary, 0 resolved / 1 firing, account, subject)."""


class OrderedAccount:
    """One account's progress: the next boundary to judge (None before its first input), its
    earliest input until then, its pending inputs, and the detector's own state (``state``)."""

    __slots__ = ("account_id", "next", "first", "pending", "state")

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.next: int | None = None
        self.first: int | None = None
        self.pending: list[Item] = []
        self.state: dict[Any, Any] = {}


def _idle(acct: OrderedAccount) -> bool:
    return not acct.pending and not acct.state


def _forget(acct: OrderedAccount) -> None:
    """An evicted account's alerts are never resolved."""


class Rule(Protocol):
    """A run-level detector's public face: its alert kind and thresholds."""

    kind: str


R = TypeVar("R", bound=Rule)


class OrderedDetector(Generic[R]):
    """Base of the run-level detectors' cores: ``_push`` inputs, ``advance`` to a watermark, judged
    by the thresholds of ``rule`` (the public detector) and raising alerts of its kind. Subclasses
    define ``_apply`` (one input, in time order), ``_tick`` (judge at a boundary) and ``_due`` (the
    earliest time something may fire or resolve without new input)."""

    def __init__(self, rule: R, max_accounts: int) -> None:
        if max_accounts < 1:
            raise ValueError("max_accounts must be >= 1")
        self.rule = rule
        self.kind = rule.kind
        self.max_accounts = int(max_accounts)
        self._accounts: OrderedDict[str, OrderedAccount] = OrderedDict()
        self.stats = {"ticks": 0, "late_inputs": 0}

    def _account(self, account_id: str) -> OrderedAccount:
        acct = _lru_hit(self._accounts, account_id)
        if acct is not None:
            return acct
        return _lru_account(self._accounts, account_id, self.max_accounts, _idle, _forget,
                            lambda: OrderedAccount(account_id))

    def _push(self, account_id: str, item: Item) -> None:
        """Hold ``item`` until the account's watermark passes its minute. Its strings are interned:
        the pending inputs of many runs of one workflow share their names, in memory and in a
        snapshot (pickle writes an object it has seen as a reference)."""
        item = tuple([sys.intern(x) if type(x) is str else x for x in item])
        acct = self._account(account_id)
        ts = int(item[0])
        if acct.next is None:
            if acct.first is None or ts < acct.first:
                acct.first = ts
        elif ts < acct.next - _MINUTE_MS:
            self.stats["late_inputs"] += 1
        heapq.heappush(acct.pending, item)

    def advance(self, watermark: Watermark) -> list[Alert]:
        """Judge every minute boundary up to the watermark not judged yet (one time for every
        account, or ``{account_id: time}`` for those accounts only); the alerts that started
        firing or resolved, by boundary, resolutions first, then account and subject."""
        targets, _ = _targets(watermark, self._accounts)
        out: Changes = []
        for account_id, w in targets:
            acct = self._accounts.get(account_id)
            if acct is not None:
                self._advance_account(acct, (w // _MINUTE_MS) * _MINUTE_MS, out)
        out.sort(key=lambda x: x[:4])
        return [alert for *_, alert in out]

    def _advance_account(self, acct: OrderedAccount, last_tick: int, out: Changes) -> None:
        if acct.next is None:
            if acct.first is None:
                return
            acct.next = (acct.first // _MINUTE_MS + 1) * _MINUTE_MS
        pending = acct.pending
        while acct.next <= last_tick:
            T = acct.next
            self.stats["ticks"] += 1
            while pending and pending[0][0] < T:
                self._apply(acct, heapq.heappop(pending), T, out)
            self._tick(acct, T, out)
            nxt = last_tick + _MINUTE_MS
            if pending:
                nxt = min(nxt, (pending[0][0] // _MINUTE_MS + 1) * _MINUTE_MS)
            due = self._due(acct)
            if due is not None:
                nxt = min(nxt, -(-due // _MINUTE_MS) * _MINUTE_MS)
            acct.next = max(T + _MINUTE_MS, nxt)

    # ---- what a subclass defines

    def _apply(self, acct: OrderedAccount, item: Item, T: int, out: Changes) -> None:
        raise NotImplementedError

    def _tick(self, acct: OrderedAccount, T: int, out: Changes) -> None:
        raise NotImplementedError

    def _due(self, acct: OrderedAccount) -> int | None:
        raise NotImplementedError

    def state_sizes(self) -> dict[str, int]:
        return {"accounts": len(self._accounts),
                "pending": sum(len(a.pending) for a in self._accounts.values()),
                "keys": sum(len(a.state) for a in self._accounts.values())}


class RunLevelDetector:
    """The public face of a run-level detector: its thresholds, its inputs, and ``advance`` and
    ``stats`` of the core (an ``OrderedDetector``) that holds its state."""

    _core: OrderedDetector[Any]

    @property
    def stats(self) -> dict[str, int]:
        return self._core.stats

    def advance(self, watermark: Watermark) -> list[Alert]:
        return self._core.advance(watermark)
