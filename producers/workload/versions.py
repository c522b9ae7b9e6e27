"""Workflow versions: when each workflow's version bumps, and what a version changed (its
display name and each step's failure odds), derived from (workflow, version) alone."""

from __future__ import annotations

import random

from producers.workload.catalog import _Workflow
from producers.workload.failures import _ERRORS
from producers.workload.spec import _DAY_MS, _HOUR_MS, _VERSION_ANCHOR_MS

_GENERIC_NOTES = ("new branding", "shorter copy", "added UTM parameters", "renamed steps", "updated descriptions",
                  "cleanup")
_EDIT_VERBS = ("updated", "edited", "reworked", "changed")

# (regression?, edited step index or -1, extra failure (code, p) or None, duration factor, note)
_Plan = tuple[bool, int, tuple[str, float] | None, float, str]
# per step: (total failure probability, cumulative (probability, code), duration factor)
_StepOdds = tuple[float, list[tuple[float, str]], float]


class _Versions:
    """Versions bump every few days at deterministic business-hour times. What a version
    changed is derived from (workflow, version): about one version in six is a regression
    (one step fails more often with one of its error codes, or gets 2.5-5x slower) and its
    display name says which step was edited; the next version reverts it."""

    def __init__(self) -> None:
        self._bumps: dict[tuple[str, int], int] = {}
        self._info: dict[tuple[str, int], tuple[str | None, list[_StepOdds]]] = {}
        self._plans: dict[tuple[str, int], _Plan] = {}

    def at(self, wf: _Workflow, t: int) -> int:
        rel = t - _VERSION_ANCHOR_MS
        if rel < 0:
            return 1
        period = wf.period_ms
        n = rel // period
        key = (wf.key, n)
        off = self._bumps.get(key)
        if off is None:
            r = random.Random(f"bump:{wf.key}:{n}")
            local = r.randrange(period // _DAY_MS) * _DAY_MS + r.randint(9, 17) * _HOUR_MS + r.randrange(60) * 60_000
            off = (local - wf.account.tz * _HOUR_MS) % period
            self._bumps[key] = off
        return 2 + n if rel - n * period >= off else 1 + n

    def _plan(self, wf: _Workflow, v: int) -> _Plan:
        """(regression?, step index or -1, extra failure (code, p) or None, duration factor, note)."""
        key = (wf.key, v)
        got = self._plans.get(key)
        if got is not None:
            return got
        r = random.Random(f"ver:{wf.key}:{v}")
        editable = [s for s in wf.steps if s.type in ("action", "condition")]
        regression = v > 1 and r.random() < 0.16
        idx, mult = -1, 1.0
        extra: tuple[str, float] | None = None
        if regression:
            s = r.choice([s for s in editable if s.fails] or editable)
            idx = s.index
            if s.fails and r.random() < 0.65:
                codes = ([c for c, _ in s.fails if _ERRORS[c][0] in ("config", "data", "logic")]
                         or [c for c, _ in s.fails])
                extra = (r.choice(codes), r.uniform(0.04, 0.15))
            else:
                mult = r.uniform(2.5, 5.0)
        elif r.random() < 0.1:
            s = r.choice(editable)
            idx, mult = s.index, r.uniform(0.5, 0.8)
        if idx >= 0 or r.random() < 0.6:
            s = wf.steps[idx] if idx >= 0 else r.choice(editable)
            if s.kind == "email" and r.random() < 0.5:
                note = f"new subject line in '{s.name}'"
            else:
                note = f"{r.choice(_EDIT_VERBS)} '{s.name}'"
        else:
            note = r.choice(_GENERIC_NOTES)
        got = (regression, idx, extra, mult, note)
        self._plans[key] = got
        return got

    def info(self, wf: _Workflow, v: int) -> tuple[str | None, list[_StepOdds]]:
        """The version's display name (None: unnamed) and the failure odds of each step."""
        key = (wf.key, v)
        got = self._info.get(key)
        if got is not None:
            return got
        regression, idx, extra, mult, note = self._plan(wf, v)
        prev_regression = v > 1 and self._plan(wf, v - 1)[0]
        r = random.Random(f"name:{wf.key}:{v}")
        name: str | None
        if v == 1:
            name = "v1 - initial version"
        elif prev_regression and not regression:
            name = f"v{v} - revert v{v - 1} ({self._plan(wf, v - 1)[4]})"
        elif r.random() < 0.3:
            name = None
        else:
            name = f"v{v} - {note}"
        table: list[_StepOdds] = []
        for s in wf.steps:
            fails = list(s.fails)
            if s.index == idx and extra is not None:
                fails.append(extra)
            cum: list[tuple[float, str]] = []
            acc = 0.0
            for code, p in fails:
                acc += p
                cum.append((acc, code))
            table.append((acc, cum, mult if s.index == idx else 1.0))
        got = (name, table)
        self._info[key] = got
        return got
