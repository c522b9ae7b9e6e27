"""Event generation: ``generate`` runs of every account as contract events in time order;
workflow versions that bump every few days, some with a regression."""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from producers.workload.catalog import (
    _FIRST,
    _Account,
    _build_accounts,
    _concurrency,
    _email,
    _Site,
    _Step,
    _Window,
    _Workflow,
)
from producers.workload.failures import _ERRORS, _MAX_ATTEMPTS, _RETRY_FAILS_AGAIN, _ErrEnv, _make_error
from producers.workload.spec import (
    _DAY_MS,
    _HOUR_MS,
    _QUARTER_MS,
    _VERSION_ANCHOR_MS,
    _WEEK_QUARTERS,
    Spike,
    WorkloadConfig,
    _fmt,
    _to_ms,
)
from producers.workload.templates import _SEASON

# --------------------------------------------------------------------------- versions

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


# --------------------------------------------------------------------------- generation


def generate(config: WorkloadConfig, start: datetime, end: datetime,
             live_from: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Events (JSON-ready dicts per the contract) of runs queued in [start, end), yielded in
    nondecreasing `ts` order; events whose ts >= end are not yielded (runs in flight at `end` stay open).

    Before ``live_from`` runs arrive at ``backfill_runs_per_hour`` shaped by daily and weekly
    seasonality; from ``live_from`` on at a flat ``live_runs_per_second``."""
    start_ms, end_ms = _to_ms(start, "start"), _to_ms(end, "end")
    live_ms = None if live_from is None else _to_ms(live_from, "live_from")
    if not 0.0 <= float(config.replay_probability) <= 1.0:
        raise ValueError(f"replay_probability must be in 0..1, got {config.replay_probability!r}")
    accounts = _build_accounts(config)
    _concurrency(accounts, config)
    _attach_spikes(accounts, config.spikes)
    for a in accounts:
        a.backlogs = [_window(b.at, b.minutes, b.capacity_factor) for b in config.backlogs
                      if b.account is None or b.account == a.id]
    known = {a.id for a in accounts}
    for b in config.backlogs:
        if b.account is not None and b.account not in known:
            raise ValueError(f"backlog: account {b.account!r} is not one of {', '.join(sorted(known))}")
    if end_ms <= start_ms:
        return iter(())
    return _Generator(config, accounts, start_ms, end_ms, live_ms).events()


def _window(at: datetime, minutes: float, value: float) -> _Window:
    """[at, at + minutes) in ms, with the spike's rate or the backlog's capacity factor."""
    t0 = _to_ms(at)
    return (t0, t0 + int(minutes * 60_000), float(value))


def _attach_spikes(accounts: list[_Account], spikes: tuple[Spike, ...]) -> None:
    for a in accounts:
        for wf in a.workflows:
            wf.spikes = []
    for sp in spikes:
        matched = False
        for a in accounts:
            for wf in a.workflows:
                if sp.workflow in (wf.id, wf.name, wf.key) or sp.workflow.lower() == wf.name.lower():
                    wf.spikes.append(_window(sp.at, sp.minutes, sp.rate))
                    matched = True
        if not matched:
            names = sorted({wf.id for a in accounts for wf in a.workflows})
            raise ValueError(f"spike: workflow {sp.workflow!r} matches no workflow id or name "
                             f"(ids: {', '.join(names)})")


_LN_DISPATCH = math.log(120.0)
_LN_LATE = math.log(150.0)
_P_STOP = 0.012
_REPLAY_SUCCESS = {"exact": 0.85, "modified": 0.92}

_Event = dict[str, Any]
_Arrive = Callable[[int], None]  # starts the run(s) of one arrival at its time


class _Replay(NamedTuple):
    """A replay of a failed run: what it replays and how, and where the original failed."""

    of: str  # run_id of the failed run
    mode: str  # exact (same version and trigger) or modified (latest version, manual)
    version: int | None  # pinned version (exact) or None (the version current at queue time)
    step: int  # index of the step that failed
    code: str  # its error code


class _Generator:
    def __init__(self, config: WorkloadConfig, accounts: list[_Account], start_ms: int, end_ms: int,
                 live_ms: int | None) -> None:
        self.config, self.accounts = config, accounts
        self.start_ms, self.end_ms, self.live_ms = start_ms, end_ms, live_ms
        self.seed = int(config.seed)
        self.replay_p = float(config.replay_probability)
        self.versions = _Versions()
        # per run in flight: (next ts, run seq, index of its next event, its (ts, event) list)
        self.heap: list[tuple[int, int, int, list[tuple[int, _Event]]]] = []
        self.arrivals: list[tuple[int, int, _Arrive]] = []  # (ts, order, what arrives)
        self.order = 0
        self.run_seq = 0

    # ---- arrival sources

    def _push_arrival(self, t_ms: int, arrive: _Arrive) -> None:
        if t_ms < self.end_ms:
            self.order += 1
            heapq.heappush(self.arrivals, (t_ms, self.order, arrive))

    def _push_poisson(self, a: _Account, t: float) -> None:
        """Queue the account's next ad-hoc arrival after ``t`` (if one comes before the end)."""
        nxt = self._next_poisson(a, t)
        if nxt is not None:
            self._push_arrival(int(nxt), partial(self._arrive_poisson, a, nxt))

    def _next_poisson(self, a: _Account, t: float) -> float | None:
        end, live, rng, q_ms = self.end_ms, self.live_ms, a.rng, _QUARTER_MS
        while t < end:
            if live is not None and t >= live:
                return t + rng.expovariate(a.rate_l) if a.rate_l > 0 else None
            q = int(t // q_ms)
            b_end = (q + 1) * q_ms
            if live is not None and live < b_end:
                b_end = live
            rate = a.rate_b * _SEASON[(q + a.q_shift) % _WEEK_QUARTERS]
            if rate > 0:
                nxt = t + rng.expovariate(rate)
                if nxt < b_end:
                    return nxt
            elif a.rate_b <= 0 and (live is None or live >= end):
                return None
            t = float(b_end)
        return None

    @staticmethod
    def _next_fire(wf: _Workflow, schedule: tuple[int, int, float], t: int) -> int:
        period, local_off, _ = schedule
        if period == 7 * _DAY_MS:  # weekly on Monday: shift from the epoch's Thursday
            local_off += 4 * _DAY_MS
        off = (local_off - wf.account.tz * _HOUR_MS) % period
        k = -((off - t) // period)  # ceil((t - off) / period)
        return off + k * period

    # ---- main loop

    def events(self) -> Iterator[_Event]:
        seed, start, end = self.seed, self.start_ms, self.end_ms
        for a in self.accounts:
            a.rng = random.Random(f"{seed}:{start}:arrivals:{a.id}")
            a.wf_list = [w for w in a.workflows if w.adhoc > 0]
            cum, acc = [], 0.0
            for w in a.wf_list:
                acc += w.adhoc
                cum.append(acc)
            a.wf_cum = [c / acc for c in cum]
            a.wf_cum[-1] = 1.0
            live_now = self.live_ms is not None and self.live_ms <= start
            a.slots = [(start, i) for i in range(a.k_live if live_now else a.k_backfill)]
            a.live_added = live_now
            self._push_poisson(a, float(start))
            for wf in a.workflows:
                if wf.schedule is not None:
                    self._push_arrival(self._next_fire(wf, wf.schedule, start), partial(
                        self._arrive_scheduled, wf, wf.schedule, random.Random(f"{seed}:{start}:sched:{wf.key}")))
        heap, arrivals = self.heap, self.arrivals
        heappop, heapreplace = heapq.heappop, heapq.heapreplace
        last = end - 1  # times are whole ms: events at ts >= end are not yielded
        while True:
            # every event up to the next arrival (after the last one: up to the end) is final
            until = arrivals[0][0] if arrivals else last
            while heap and heap[0][0] <= until:
                _, seq, i, evs = heap[0]
                yield evs[i][1]
                i += 1
                if i < len(evs):
                    heapreplace(heap, (evs[i][0], seq, i, evs))
                else:
                    heappop(heap)
            if not arrivals:
                return
            heappop(arrivals)[2](until)

    def _arrive_poisson(self, a: _Account, t_float: float, t: int) -> None:
        rng = a.rng
        wf = a.wf_list[bisect_right(a.wf_cum, rng.random())]
        run_seed = rng.getrandbits(64)
        self._push_poisson(a, t_float)
        r = random.Random(run_seed)
        trig = wf.trig_names[bisect_right(wf.trig_cum, r.random())]
        self._run(r, a, wf, trig, t, self._contact(r, a, wf), self._site(r, a, wf), None)

    def _arrive_scheduled(self, wf: _Workflow, schedule: tuple[int, int, float], srng: random.Random,
                          t: int) -> None:
        a = wf.account
        share = schedule[2]
        if share > 0:
            is_live = self.live_ms is not None and t >= self.live_ms
            per_hour = (a.rate_l * 1000 * 3600) if is_live else a.rate_b * _HOUR_MS
            count = max(1, round(per_hour * share * srng.uniform(0.8, 1.2)))
        else:
            count = 1
        q = t
        for _ in range(count):
            r = random.Random(srng.getrandbits(64))
            self._run(r, a, wf, "scheduled", q, self._contact(r, a, wf), self._site(r, a, wf), None)
            q += srng.randrange(0, 4)
        self._push_arrival(self._next_fire(wf, schedule, t + 1), partial(self._arrive_scheduled, wf, schedule, srng))

    def _arrive_replay(self, a: _Account, wf: _Workflow, trig: str, cno: int | None, site: _Site | None,
                       replay: _Replay, run_seed: int, t: int) -> None:
        r = random.Random(run_seed)
        if replay.mode == "modified" and wf.p_contact > 0 and r.random() < 0.4:
            cno = self._contact(r, a, wf)
        self._run(r, a, wf, trig, t, cno, site, replay)

    @staticmethod
    def _contact(r: random.Random, a: _Account, wf: _Workflow) -> int | None:
        if wf.p_contact >= 1.0 or (wf.p_contact > 0 and r.random() < wf.p_contact):
            return 10000 + int(a.contacts * r.random() ** 1.8)
        return None

    @staticmethod
    def _site(r: random.Random, a: _Account, wf: _Workflow) -> _Site | None:
        if wf.random_site:
            x = r.random()
            return a.sites[int(x * 1.4 * len(a.sites))] if x < 1 / 1.4 else None
        return wf.site

    # ---- queue

    def _assign_slot(self, a: _Account, ready: int) -> tuple[int, int]:
        slots = a.slots
        live = self.live_ms
        if not a.live_added and live is not None and ready >= live:
            a.live_added = True
            for i in range(len(slots), a.k_live):
                heapq.heappush(slots, (live, i))
        backlogs = a.backlogs
        while True:
            free, idx = slots[0]
            s = free if free > ready else ready
            if backlogs:
                blocked = 0
                k = a.k_live if (live is not None and s >= live) else a.k_backfill
                for b0, b1, factor in backlogs:
                    if b0 <= s < b1:
                        usable = 0 if factor <= 0 else max(1, round(k * factor))
                        if idx >= usable and b1 > blocked:
                            blocked = b1
                if blocked:
                    heapq.heapreplace(slots, (blocked, idx))
                    continue
            heapq.heappop(slots)
            return s, idx

    # ---- one run

    def _run(self, r: random.Random, a: _Account, wf: _Workflow, trig: str, t_q: int, cno: int | None,
             site: _Site | None, replay: _Replay | None) -> None:
        fmt = _fmt
        if replay is not None and replay.version is not None:
            version = replay.version
        else:
            version = self.versions.at(wf, t_q)
        vname, vtable = self.versions.info(wf, version)
        rid = f"run_{r.getrandbits(64):016x}"
        contact_id = None if cno is None else f"c-{cno}"
        email = None if cno is None else _email(cno)
        ctx: _Event = {"account_id": a.id, "run_id": rid, "workflow_id": wf.id, "workflow_name": wf.name,
               "workflow_version": version, "workflow_version_name": vname, "workflow_type": wf.type,
               "trigger": trig, "site_id": site[0] if site else None, "site_name": site[1] if site else None,
               "card_id": wf.card[0] if wf.card else None, "card_name": wf.card[1] if wf.card else None,
               "contact_id": contact_id, "replay_of": replay.of if replay else None,
               "replay_mode": replay.mode if replay else None}
        evs: list[tuple[int, _Event]] = []
        app = evs.append
        app((t_q, {"event_id": f"{rid}-0", "schema_version": 1, "type": "run.queued", "ts": fmt(t_q), **ctx}))
        s, slot = self._assign_slot(a, t_q + int(r.lognormvariate(_LN_DISPATCH, 0.5)))
        app((s, {"event_id": f"{rid}-1", "schema_version": 1, "type": "run.started", "ts": fmt(s), **ctx}))

        # outcome plan: spikes, then replays, then natural failures
        forced, suppress = -1, False
        fcode: str | None = None
        for x0, x1, rate in wf.spikes:
            if x0 <= s < x1:
                suppress = True
                if r.random() < rate:
                    forced, fcode = wf.spike_step, wf.spike_code
                break
        if not suppress and replay is not None:
            suppress = True
            if r.random() >= _REPLAY_SUCCESS[replay.mode]:
                forced, fcode = replay.step, replay.code
        stop = not suppress and wf.has_delay and r.random() < _P_STOP
        backlogs = a.backlogs

        t = s + 3 + int(r.random() * 30)
        conds: list[bool | None] = [None] * len(wf.steps)
        status, fail_idx = "success", -1
        err: dict[str, str] | None = None
        rnd, lognorm = r.random, r.lognormvariate
        for st in wf.steps:
            when = st.when
            if when is not None and conds[when[0]] is not when[1]:
                ts = fmt(t)
                n = len(evs)
                app((t, {"event_id": f"{rid}-{n}", "schema_version": 1, "type": "step.started", "ts": ts,
                         **ctx, **st.skip_start}))
                app((t, {"event_id": f"{rid}-{n + 1}", "schema_version": 1, "type": "step.finished", "ts": ts,
                         **ctx, **st.skip_fin, "started_at": ts}))
                t += 1
                continue
            ftot, fcum, dmult = vtable[st.index]
            typ = st.type
            attempt = 1
            code: str | None = None
            while True:
                t0 = t
                ts0 = fmt(t0)
                app((t0, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "step.started", "ts": ts0,
                          **ctx, **st.base, "attempt": attempt}))
                if typ == "delay":
                    sched = t0 + st.delay_ms
                    if stop:
                        t_stop = t0 + int(st.delay_ms * (0.2 + 0.7 * rnd()))
                        app((t_stop, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "step.finished",
                                      "ts": fmt(t_stop), **ctx, **st.base, "attempt": 1, "status": "skipped",
                                      "started_at": ts0, "input": {"seconds": st.delay_ms // 1000},
                                      "output": {"stopped_by": f"{_FIRST[int(rnd() * 24)]}@{a.domain}"},
                                      "scheduled_resume_at": fmt(sched), "resumed_at": None}))
                        t, status = t_stop, "stopped"
                        break
                    late = lognorm(_LN_LATE, 0.6)
                    if rnd() < 0.06:
                        late += 1000 * min(300.0, 3.0 * r.paretovariate(1.2))
                    for b0, b1, _f in backlogs:
                        if b0 <= sched < b1:
                            late += 5000 + 40000 * rnd()
                    resumed = sched + int(late)
                    fin = resumed + 2 + int(rnd() * 6)
                    app((fin, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "step.finished",
                               "ts": fmt(fin), **ctx, **st.base, "attempt": 1, "status": "success",
                               "started_at": ts0, "input": {"seconds": st.delay_ms // 1000},
                               "scheduled_resume_at": fmt(sched), "resumed_at": fmt(resumed)}))
                    t = fin + 1 + int(rnd() * 8)
                    break
                # which error (if any) this attempt hits
                if attempt == 1:
                    if st.index == forced:
                        code = fcode
                    elif suppress or ftot == 0.0:
                        code = None
                    else:
                        x = rnd()
                        code = None
                        if x < ftot:
                            for c_, cc in fcum:
                                if x < c_:
                                    code = cc
                                    break
                elif st.index != forced and rnd() >= _RETRY_FAILS_AGAIN:
                    code = None
                dur = lognorm(st.mu, st.sigma) * dmult
                if rnd() < 0.012:
                    dur *= min(25.0, r.paretovariate(1.5))
                if code is not None:
                    how = _ERRORS[code][2]
                    if how == "timeout30":
                        dur = 30000 + rnd() * 150
                    elif how == "timeout10":
                        dur = 10000 + rnd() * 100
                    elif how == "fast":
                        dur *= 0.05 + 0.45 * rnd()
                    elif how == "slow":
                        dur *= 0.5 + 2.5 * rnd()
                    elif how == "loop":
                        dur = 8000 + rnd() * 32000
                    elif how == "lease":
                        dur = 30000 + rnd() * 30000
                fin = t0 + 1 + int(dur)
                extra = self._step_io(r, a, st, contact_id, email, code is None)
                if code is None:
                    if typ == "condition":
                        res = (cno is not None) if st.contact_cond else rnd() < st.p_true
                        conds[st.index] = res
                        extra["output"] = {"result": res}
                        extra["condition_result"] = res
                        branches = st.branches
                        assert branches is not None  # every condition step has its two branches
                        extra["branch"] = branches[0] if res else branches[1]
                    app((fin, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "step.finished",
                               "ts": fmt(fin), **ctx, **st.base, "attempt": attempt, "status": "success",
                               "started_at": ts0, **extra}))
                    t = fin + 1 + int(rnd() * 8)
                    break
                e = _make_error(code, r, _ErrEnv(account=a.id, domain=a.domain, run_id=rid, wf_id=wf.id,
                                                 version=version, step=st.name, index=st.index,
                                                 contact=contact_id or "c-unknown", email=email or f"info@{a.domain}",
                                                 system=st.system, card_id=ctx["card_id"], kind=st.kind,
                                                 url=st.target if st.target is not None
                                                 and st.target.startswith("https://")
                                                 else f"https://api.{a.domain}/v2/{st.kind or 'hooks'}"),
                                st.error_kind)
                extra.pop("output", None)
                app((fin, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "step.finished",
                           "ts": fmt(fin), **ctx, **st.base, "attempt": attempt, "status": "failed",
                           "started_at": ts0, **extra, "error": e}))
                if _ERRORS[code][1] and attempt < _MAX_ATTEMPTS:
                    t = fin + int((2000 if attempt == 1 else 10000) * (0.8 + 0.7 * rnd()))
                    attempt += 1
                    continue
                status, err, fail_idx, t = "failed", e, st.index, fin
                break
            if status != "success":
                break

        fin_run = t + 2 + int(rnd() * 20)
        done: dict[str, Any] = {"status": status, "started_at": fmt(s)}
        if err is not None:
            done["error"] = dict(err)
        app((fin_run, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "run.finished",
                       "ts": fmt(fin_run), **ctx, **done}))
        heapq.heappush(a.slots, (fin_run, slot))
        self.run_seq += 1
        heapq.heappush(self.heap, (t_q, self.run_seq, 0, evs))

        # err is set exactly when the run failed
        if err is not None and replay is None and self.replay_p > 0 and rnd() < self.replay_p:
            delay = min(12 * _HOUR_MS, max(2 * 60_000, int(lognorm(math.log(40 * 60_000), 1.0))))
            mode = "exact" if rnd() < 0.55 else "modified"
            again = _Replay(rid, mode, version if mode == "exact" else None, fail_idx, err["code"])
            self._push_arrival(fin_run + delay, partial(self._arrive_replay, a, wf,
                                                        trig if mode == "exact" else "manual", cno, site, again,
                                                        r.getrandbits(64)))

    @staticmethod
    def _step_io(r: random.Random, a: _Account, st: _Step, contact_id: str | None, email: str | None,
                 ok: bool) -> dict[str, Any]:
        typ, kind = st.type, st.kind
        if typ == "trigger":
            inp: dict[str, Any] = {"event": st.event}
            if contact_id is not None:
                inp["contact_id"] = contact_id
            return {"input": inp, "output": {"accepted": True}}
        if typ == "condition":
            return {"input": {"expression": st.expr}}
        target = st.target
        if target == "@email":
            target = email
        elif target == "@contact":
            target = contact_id
        extra: dict[str, Any] = {"action_kind": kind, "target": target}
        if kind == "email":
            extra["input"] = {"to": target, "provider": st.system}
            if ok:
                extra["output"] = {"message_id": f"<{r.getrandbits(48):012x}@mail.{a.domain}>"}
        elif kind == "crm_sync":
            extra["input"] = {"system": st.system, "record": target}
            if ok:
                extra["output"] = {"crm_id": f"{r.getrandbits(40):010x}",
                                   "operation": "update" if r.random() < 0.7 else "create"}
        elif kind == "webhook":
            extra["input"] = {"method": "POST", "url": target}
            if ok:
                extra["output"] = {"status": 200 if r.random() < 0.9 else 202, "bytes": r.randrange(2, 4096)}
        elif kind == "tag":
            extra["input"] = {"tag": target}
            if ok:
                extra["output"] = {"applied": True}
        elif kind == "coupon":
            extra["input"] = {"campaign": target}
            if ok:
                extra["output"] = {"code": f"{target}-{r.getrandbits(24):06X}"}
        else:
            n = r.randrange(3, 40)
            extra["input"] = {"fields": n}
            if ok:
                extra["output"] = {"fields": n, "valid": True}
        return extra


# --------------------------------------------------------------------------- one run on demand


class RunRenderer:
    """One run's events on demand, for a stand-in engine that answers replay commands: the
    workload's own catalog, versions and step behaviour (``_Generator._run``), outside its
    arrival streams, so ``generate``'s output for a seed is unchanged. The same arguments give
    the same events (the run's randomness comes from ``seed`` alone; its queue starts empty)."""

    def __init__(self, config: WorkloadConfig) -> None:
        accounts = _build_accounts(config)
        _concurrency(accounts, config)
        _attach_spikes(accounts, ())
        for a in accounts:
            a.backlogs = []
        self._accounts = {a.id: a for a in accounts}
        self._generator = _Generator(config, accounts, 0, 2**62, None)
        self._generator.replay_p = 0.0   # a rendered run never schedules a replay of its own

    def workflow_known(self, account_id: str, workflow_id: str) -> bool:
        a = self._accounts.get(account_id)
        return a is not None and any(wf.id == workflow_id for wf in a.workflows)

    def current_version(self, account_id: str, workflow_id: str, at: datetime) -> int:
        """The version of the workflow current at ``at`` (what a modified replay runs)."""
        return self._generator.versions.at(self._workflow(account_id, workflow_id), _to_ms(at))

    def _workflow(self, account_id: str, workflow_id: str) -> _Workflow:
        a = self._accounts.get(account_id)
        for wf in a.workflows if a is not None else ():
            if wf.id == workflow_id:
                return wf
        raise ValueError(f"workflow {workflow_id!r} of account {account_id!r} is not in the workload's catalog")

    def render_replay(self, account_id: str, workflow_id: str, queued_at: datetime, seed: int, *, replay_of: str,
                      replay_mode: str, version: int, trigger: str, contact: int | None, site_id: str | None,
                      failed_step: int = -1, failed_code: str | None = None) -> list[_Event]:
        """Events of one replay run of ``replay_of`` queued at ``queued_at``, in time order. Like
        the workload's replays, it fails again at ``failed_step`` with ``failed_code`` with the
        workload's odds (15 % exact, 8 % modified), else succeeds; ``failed_code`` None: it succeeds."""
        if replay_mode not in _REPLAY_SUCCESS:
            raise ValueError(f"replay mode {replay_mode!r} is not exact or modified")
        wf = self._workflow(account_id, workflow_id)
        a = wf.account
        t_q = _to_ms(queued_at)
        a.slots = [(t_q, i) for i in range(max(1, a.k_live))]   # an empty queue: it starts at once
        a.live_added = True
        site = next((s for s in (*a.sites, *([wf.site] if wf.site else [])) if s[0] == site_id), None)
        replay = _Replay(replay_of, replay_mode, version, failed_step if failed_code else -1, failed_code or "")
        gen = self._generator
        gen.heap = []
        gen._run(random.Random(seed), a, wf, trigger, t_q, contact, site, replay)
        events = [event for _, _, _, evs in gen.heap for _, event in evs]
        gen.heap = []
        return events
