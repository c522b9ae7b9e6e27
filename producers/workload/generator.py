"""Event generation: ``generate`` runs of every account as contract events in time order. This
module decides when runs arrive (ad-hoc Poisson streams with seasonality, schedules, replays of
failed runs), when each may start (the account's concurrency queue, capacity drops) and merges
the runs' events by time; ``run`` renders one run's events, ``versions`` what each workflow
version changed. ``run.RunRenderer`` renders one run on demand, outside the arrival streams."""

from __future__ import annotations

import heapq
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial

from producers.workload.catalog import _Account, _build_accounts, _concurrency, _Site, _Window, _Workflow
from producers.workload.run import RunRenderer as RunRenderer  # re-exported: importers name it here
from producers.workload.run import _Event, _Replay, render_run
from producers.workload.spec import (
    _DAY_MS,
    _HOUR_MS,
    _QUARTER_MS,
    _WEEK_QUARTERS,
    Silence,
    Spike,
    WorkloadConfig,
    _to_ms,
)
from producers.workload.templates import _SEASON
from producers.workload.versions import _Versions

# --------------------------------------------------------------------------- generation


def generate(config: WorkloadConfig, start: datetime, end: datetime,
             live_from: datetime | None = None) -> Iterator[_Event]:
    """Events (JSON-ready dicts per the contract) of runs queued in [start, end), yielded in
    nondecreasing `ts` order; events whose ts >= end are not yielded (runs in flight at `end` stay open).

    Before ``live_from`` runs arrive at ``backfill_runs_per_hour`` shaped by daily and weekly
    seasonality; from ``live_from`` on at a flat ``live_runs_per_second``."""
    start_ms, end_ms = _to_ms(start, "start"), _to_ms(end, "end")
    live_ms = None if live_from is None else _to_ms(live_from, "live_from")
    accounts = _accounts(config)
    if end_ms <= start_ms:
        return iter(())
    return _Generator(config, accounts, start_ms, end_ms, live_ms).events()


def check_workload(config: WorkloadConfig) -> None:
    """Raise ValueError naming what ``generate`` would refuse in ``config``: a spike, silence or
    backlog that names no workflow or account of the catalog, a replay probability out of range."""
    _accounts(config)


def _accounts(config: WorkloadConfig) -> list[_Account]:
    """The catalog's accounts for ``config``, with its spikes, silences and backlogs attached."""
    if not 0.0 <= float(config.replay_probability) <= 1.0:
        raise ValueError(f"replay_probability must be in 0..1, got {config.replay_probability!r}")
    accounts = _build_accounts(config)
    _concurrency(accounts, config)
    _attach_spikes(accounts, config.spikes, config.silences)
    for a in accounts:
        a.backlogs = [_window(b.at, b.minutes, b.capacity_factor) for b in config.backlogs
                      if b.account is None or b.account == a.id]
    known = {a.id for a in accounts}
    for b in config.backlogs:
        if b.account is not None and b.account not in known:
            raise ValueError(f"backlog: account {b.account!r} is not one of {', '.join(sorted(known))}")
    return accounts


def _window(at: datetime, minutes: float, value: float) -> _Window:
    """[at, at + minutes) in ms, with the spike's rate or the backlog's capacity factor."""
    t0 = _to_ms(at)
    return (t0, t0 + int(minutes * 60_000), float(value))


def _attach_spikes(accounts: list[_Account], spikes: tuple[Spike, ...], silences: tuple[Silence, ...]) -> None:
    for a in accounts:
        for wf in a.workflows:
            wf.spikes, wf.silences = [], []
    for sp in spikes:
        for wf in _matching(accounts, "spike", sp.workflow):
            wf.spikes.append(_window(sp.at, sp.minutes, sp.rate))
    for quiet in silences:
        for wf in _matching(accounts, "silence", quiet.workflow):
            end = _to_ms(quiet.at) + int(quiet.minutes * 60_000) if quiet.minutes is not None else 2**62
            wf.silences.append((_to_ms(quiet.at), end, 0.0))


def _matching(accounts: list[_Account], kind: str, workflow: str) -> list[_Workflow]:
    """The workflows ``workflow`` names (id, name, "account/id", or the name in any case)."""
    found = [wf for a in accounts for wf in a.workflows
             if workflow in (wf.id, wf.name, wf.key) or workflow.lower() == wf.name.lower()]
    if not found:
        names = sorted({wf.id for a in accounts for wf in a.workflows})
        raise ValueError(f"{kind}: workflow {workflow!r} matches no workflow id or name (ids: {', '.join(names)})")
    return found


_Arrive = Callable[[int], None]  # starts the run(s) of one arrival at its time


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
        if wf.silences and any(s0 <= t_q < s1 for s0, s1, _ in wf.silences):
            return   # silenced: the workflow starts nothing (its randomness was drawn already)
        run = render_run(r, self.versions, a, wf, trig, t_q, cno, site, replay, self._assign_slot)
        heapq.heappush(a.slots, (run.finished, run.slot))
        self.run_seq += 1
        heapq.heappush(self.heap, (t_q, self.run_seq, 0, run.events))

        # a failed run may be replayed later (its own randomness goes on after its events')
        err = run.error
        if err is not None and replay is None and self.replay_p > 0 and r.random() < self.replay_p:
            delay = min(12 * _HOUR_MS, max(2 * 60_000, int(r.lognormvariate(math.log(40 * 60_000), 1.0))))
            mode = "exact" if r.random() < 0.55 else "modified"
            again = _Replay(run.run_id, mode, run.version if mode == "exact" else None, run.failed_step, err["code"])
            self._push_arrival(run.finished + delay, partial(self._arrive_replay, a, wf,
                                                             trig if mode == "exact" else "manual", cno, site, again,
                                                             r.getrandbits(64)))
