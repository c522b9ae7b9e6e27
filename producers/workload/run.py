"""One run's events: its context, queued and started events, the outcome plan (spikes, replays,
natural failures), every step's attempts (durations, retries, delays, conditions and skipped
branches, errors) and the run's end. The generator decides when a run arrives and when it may
start (its queue); the run's randomness comes from its own generator ``r``. ``RunRenderer``:
one run on demand (a stand-in engine's replays), outside the generator."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from producers.workload.catalog import _FIRST, _Account, _build_accounts, _concurrency, _email, _Site, _Step, _Workflow
from producers.workload.failures import _ERRORS, _MAX_ATTEMPTS, _RETRY_FAILS_AGAIN, _ErrEnv, _make_error
from producers.workload.spec import WorkloadConfig, _fmt, _to_ms
from producers.workload.versions import _Versions

_LN_DISPATCH = math.log(120.0)
_LN_LATE = math.log(150.0)
_P_STOP = 0.012
_REPLAY_SUCCESS = {"exact": 0.85, "modified": 0.92}

_Event = dict[str, Any]
_Start = Callable[[_Account, int], tuple[int, int]]  # (account, ready at) -> (start time, concurrency slot)


class _Replay(NamedTuple):
    """A replay of a failed run: what it replays and how, and where the original failed."""

    of: str  # run_id of the failed run
    mode: str  # exact (same version and trigger) or modified (latest version, manual)
    version: int | None  # pinned version (exact) or None (the version current at queue time)
    step: int  # index of the step that failed
    code: str  # its error code


class _Run(NamedTuple):
    """One run's events in time order, and what the generator does next with it."""

    events: list[tuple[int, _Event]]  # (ts in ms, event)
    run_id: str
    version: int
    slot: int  # the concurrency slot it held
    finished: int  # ts of run.finished (the slot is free from then)
    error: dict[str, str] | None  # the run's error: set exactly when it failed
    failed_step: int  # index of the step that failed, -1 when it did not


def render_run(r: random.Random, versions: _Versions, a: _Account, wf: _Workflow, trig: str, t_q: int,
               cno: int | None, site: _Site | None, replay: _Replay | None, start: _Start) -> _Run:
    """The events of one run of ``wf`` queued at ``t_q`` (ms); ``start`` gives the time it starts
    (after its dispatch delay, when a concurrency slot is free) and the slot."""
    fmt = _fmt
    if replay is not None and replay.version is not None:
        version = replay.version
    else:
        version = versions.at(wf, t_q)
    vname, vtable = versions.info(wf, version)
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
    s, slot = start(a, t_q + int(r.lognormvariate(_LN_DISPATCH, 0.5)))
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
            extra = _step_io(r, a, st, contact_id, email, code is None)
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
    return _Run(evs, rid, version, slot, fin_run, err, fail_idx)


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
    workload's own catalog, versions and step behaviour (``render_run``), outside the generator's
    arrival streams, so ``generate``'s output for a seed is unchanged. The same arguments give
    the same events (the run's randomness comes from ``seed`` alone; its queue starts empty)."""

    def __init__(self, config: WorkloadConfig) -> None:
        accounts = _build_accounts(config)   # no spikes, no backlogs: the catalog's defaults
        _concurrency(accounts, config)
        self._accounts = {a.id: a for a in accounts}
        self._versions = _Versions()

    def workflow_known(self, account_id: str, workflow_id: str) -> bool:
        a = self._accounts.get(account_id)
        return a is not None and any(wf.id == workflow_id for wf in a.workflows)

    def current_version(self, account_id: str, workflow_id: str, at: datetime) -> int:
        """The version of the workflow current at ``at`` (what a modified replay runs)."""
        return self._versions.at(self._workflow(account_id, workflow_id), _to_ms(at))

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
        site = next((s for s in (*a.sites, *([wf.site] if wf.site else [])) if s[0] == site_id), None)
        replay = _Replay(replay_of, replay_mode, version, failed_step if failed_code else -1, failed_code or "")
        run = render_run(random.Random(seed), self._versions, a, wf, trigger, t_q, contact, site, replay,
                         _start_at_once)
        return [event for _, event in run.events]


def _start_at_once(a: _Account, ready: int) -> tuple[int, int]:
    """An empty queue: a rendered run starts when it is ready, in the account's first slot."""
    return ready, 0
