"""The workload's model: accounts and their workflows built from the templates, their
concurrency limits, and ``catalog()`` listing them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from producers.workload.failures import _ERRORS, _hexs
from producers.workload.spec import _DAY_MS, _HOUR_MS, _MONDAY0_QUARTERS, WorkloadConfig
from producers.workload.templates import (
    _ACCOUNTS,
    _ACME_WORKFLOWS,
    _CARD_NAMES,
    _SEASON_PEAK,
    _SITE_NAMES,
    _TEMPLATE_BY_SLUG,
    _TEMPLATES,
    _TYPES,
    _StepTemplate,
    _WorkflowTemplate,
)

_FIRST = ("jane", "john", "maria", "li", "ahmed", "sofia", "lucas", "emma", "noah", "olivia", "mateo", "yuki",
          "priya", "omar", "chloe", "liam", "ava", "ethan", "mia", "arjun", "zoe", "leo", "nora", "ivan")
_LAST = ("smith", "garcia", "chen", "muller", "rossi", "kim", "nguyen", "silva", "brown", "tanaka", "kowalski",
         "patel", "dubois", "jones", "lopez", "wilson", "sato", "novak", "khan", "martin")
_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "example.com", "hey.com")


def _email(n: int) -> str:
    return f"{_FIRST[n % 24]}.{_LAST[(n // 24) % 20]}{n % 97}@{_MAIL[(n // 480) % 7]}"


_Site = tuple[str, str]  # (site_id, site_name); a card is (card_id, card_name) alike
_Window = tuple[int, int, float]  # [start ms, end ms) and a rate (spike) or capacity factor (backlog)


@dataclass(slots=True, eq=False)
class _Step:
    index: int
    id: str
    name: str
    type: str  # trigger, action, condition, delay
    kind: str | None  # action kind
    error_kind: str  # what a stack trace is named after: the action kind, else the step type
    target: str | None
    median: float  # ms
    mu: float  # log-normal parameters of the duration
    sigma: float
    fails: tuple[tuple[str, float], ...]  # (error code, probability per attempt)
    when: tuple[int, bool] | None  # runs only when condition step when[0] gave when[1]
    delay_ms: int
    p_true: float  # condition: probability of true (unused when contact_cond)
    contact_cond: bool  # condition: true exactly when the run has a contact
    branches: tuple[str, str] | None  # condition: (true branch, false branch)
    expr: str | None
    system: str | None
    event: str | None
    base: dict[str, object]  # the fields every event of the step carries
    skip_start: dict[str, object]  # step.started / step.finished fields of a skipped step
    skip_fin: dict[str, object]


@dataclass(slots=True, eq=False)
class _Workflow:
    account: _Account = field(repr=False)
    slug: str
    id: str
    name: str
    type: str
    key: str  # "account/workflow_id"
    adhoc: float  # weight of non-scheduled runs
    triggers: dict[str, float | None]  # "scheduled" (None) first when the workflow has a schedule
    trig_names: list[str]  # triggers of non-scheduled runs and their cumulative probabilities
    trig_cum: list[float]
    schedule: tuple[int, int, float] | None  # (period ms, local offset ms, batch share)
    schedule_label: str | None
    p_contact: float
    random_site: bool  # each run picks one of the account's sites (or none)
    site: _Site | None
    card: _Site | None
    period_ms: int  # versions bump once per period
    steps: list[_Step]
    has_delay: bool
    occupancy_ms: float  # expected time a run holds a concurrency slot
    spike_step: int  # the step and code an injected spike fails with
    spike_code: str
    spikes: list[_Window] = field(default_factory=list)
    silences: list[_Window] = field(default_factory=list)   # (start, end, 0.0): no run starts inside


@dataclass(slots=True, eq=False)
class _Account:
    idx: int
    id: str
    name: str
    tz: int  # UTC offset in hours
    domain: str
    size: float
    share: float  # of the whole workload's volume
    q_shift: int  # quarter-hour shift from UTC to local time, Monday 00:00 = 0
    sites: list[_Site]
    contacts: int
    workflows: list[_Workflow] = field(default_factory=list)
    # set by _concurrency
    occupancy_ms: float = 0.0
    rate_b: float = 0.0  # backfill runs per ms (before seasonality)
    rate_l: float = 0.0  # live runs per ms
    k_backfill: int = 0  # concurrency limits
    k_live: int = 0
    # generator state, set when generation starts
    backlogs: list[_Window] = field(default_factory=list)
    rng: random.Random = field(init=False, repr=False)  # arrival stream
    wf_list: list[_Workflow] = field(init=False, repr=False)  # workflows with ad-hoc runs, cumulative weights
    wf_cum: list[float] = field(init=False, repr=False)
    slots: list[tuple[int, int]] = field(init=False, repr=False)  # heap of (free from ms, slot index)
    live_added: bool = False


def _build_accounts(config: WorkloadConfig) -> list[_Account]:
    n = int(config.accounts)
    if n < 1:
        raise ValueError(f"accounts must be >= 1, got {config.accounts!r}")
    picked: list[tuple[str, str, int, str, float]] = []
    for i in range(n):
        base = _ACCOUNTS[i % len(_ACCOUNTS)]
        suffix = "" if i < len(_ACCOUNTS) else f"-{i // len(_ACCOUNTS) + 1}"
        picked.append((base[0] + suffix, base[1] + (f" {i // len(_ACCOUNTS) + 1}" if suffix else ""), base[2],
                       base[3], base[4] / (1 + i // len(_ACCOUNTS))))
    total_size = sum(p[4] for p in picked)
    accounts = []
    for idx, (aid, name, tz, domain, size) in enumerate(picked):
        # The catalog depends on the account only (not on the seed), so docs and demos can name workflows.
        r = random.Random(f"catalog:{aid}")
        site_names = list(_SITE_NAMES)
        r.shuffle(site_names)
        if aid == "acme":
            site_names = ["Main site"] + [s for s in site_names if s != "Main site"]
        a = _Account(idx=idx, id=aid, name=name, tz=tz, domain=domain, size=size, share=size / total_size,
                     q_shift=tz * 4 - _MONDAY0_QUARTERS,
                     sites=[(f"site-{_hexs(r, 6)}", s) for s in site_names[:3]],
                     contacts=int(4000 + 16000 * size))
        slugs = _pick_templates(aid, r)
        a.workflows = [_build_workflow(a, _TEMPLATE_BY_SLUG[s], r) for s in slugs]
        accounts.append(a)
    return accounts


def _pick_templates(aid: str, r: random.Random) -> list[str]:
    """One workflow of each type, at least one scheduled and one with a delay, 5-8 in all."""
    if aid == "acme":
        return list(_ACME_WORKFLOWS)
    slugs = [r.choice([t["slug"] for t in _TEMPLATES if t["type"] == typ]) for typ in _TYPES]
    if not any("schedule" in _TEMPLATE_BY_SLUG[s] for s in slugs):
        slugs.append(r.choice(("crm-reconcile", "sheets-export", "birthday")))
    if not any(st["type"] == "delay" for s in slugs for st in _TEMPLATE_BY_SLUG[s]["steps"]):
        slugs.append(r.choice(("welcome", "abandoned-form", "reengage")))
    rest = [t["slug"] for t in _TEMPLATES if t["slug"] not in slugs]
    slugs += r.sample(rest, min(8 - len(slugs), r.randint(0, 3)))
    order = {t["slug"]: i for i, t in enumerate(_TEMPLATES)}
    return sorted(slugs, key=order.__getitem__)


def _build_workflow(a: _Account, t: _WorkflowTemplate, r: random.Random) -> _Workflow:
    # the draws from r keep this order: adhoc weight, site, card, version period, fill values
    adhoc = t["adhoc"] * r.uniform(0.6, 1.4)
    triggers: dict[str, float | None] = dict(t["triggers"])
    total = sum(t["triggers"].values())
    cum, acc = [], 0.0
    for w in t["triggers"].values():
        acc += w / total
        cum.append(acc)
    cum[-1] = 1.0
    schedule = t.get("schedule")
    if schedule is not None:
        triggers = {"scheduled": None, **triggers}
    wf_type = t["type"]
    site = r.choice(a.sites) if wf_type in ("card", "site", "survey") else None
    card = None
    if wf_type in ("card", "survey"):
        card = (f"card-{_hexs(r, 6)}", r.choice(_CARD_NAMES[t["slug"]]))
    period_ms = r.randint(3, 7) * _DAY_MS
    fill = {"domain": a.domain, "acct": a.id, "h6": _hexs(r, 6).upper(), "h8": _hexs(r, 8).upper(), "h24": _hexs(r, 24)}
    steps = [_build_step(i, s, fill) for i, s in enumerate(t["steps"])]
    occupancy = 25.0
    for st in steps:
        occupancy += st.median * math.exp(st.sigma ** 2 / 2) + st.delay_ms + 10
    # the spike's failure: the first unconditional action, preferring an external-service error
    candidates = [s for s in steps if s.type == "action" and s.when is None and s.fails] or \
                 [s for s in steps if s.fails]
    pick = next((s for s in candidates if any(_ERRORS[c][0] == "external_service" for c, _ in s.fails)), candidates[0])
    return _Workflow(
        account=a, slug=t["slug"], id=f"wf-{t['slug']}", name=t["name"], type=wf_type, key=f"{a.id}/wf-{t['slug']}",
        adhoc=adhoc, triggers=triggers, trig_names=list(t["triggers"]), trig_cum=cum,
        schedule=schedule, schedule_label=t.get("schedule_label"), p_contact=t["p_contact"],
        random_site=wf_type == "contact", site=site, card=card, period_ms=period_ms,
        steps=steps, has_delay=any(s.type == "delay" for s in steps), occupancy_ms=occupancy,
        spike_step=pick.index,
        spike_code=next((c for c, _ in pick.fails if _ERRORS[c][0] == "external_service"), pick.fails[0][0]),
    )


def _build_step(i: int, s: _StepTemplate, fill: dict[str, str]) -> _Step:
    target = s.get("target")
    median = float(s["ms"])
    p_true = s.get("p_true")
    base: dict[str, object] = {"step_id": f"st{i + 1}", "step_index": i, "step_name": s["name"], "step_type": s["type"]}
    return _Step(
        index=i, id=f"st{i + 1}", name=s["name"], type=s["type"], kind=s.get("kind"),
        error_kind=s["kind"] if s["type"] == "action" else s["type"],
        target=target.format(**fill) if target and "{" in target else target,
        median=median, mu=math.log(median), sigma=s["sigma"], fails=tuple(s["fails"]), when=s.get("when"),
        delay_ms=int(s["seconds"] * 1000) if s["type"] == "delay" else 0,
        p_true=0.5 if p_true is None or isinstance(p_true, str) else p_true, contact_cond=p_true == "contact",
        branches=s.get("branches"), expr=s.get("expr"), system=s.get("system"), event=s.get("event"),
        base=base, skip_start={**base, "attempt": 1}, skip_fin={**base, "attempt": 1, "status": "skipped"},
    )


def _concurrency(accounts: list[_Account], config: WorkloadConfig) -> None:
    for a in accounts:
        wsum = sum(w.adhoc for w in a.workflows)
        a.occupancy_ms = sum(w.adhoc * w.occupancy_ms for w in a.workflows) / wsum
        rate_b = max(0.0, float(config.backfill_runs_per_hour)) * a.share / _HOUR_MS  # runs per ms
        rate_l = max(0.0, float(config.live_runs_per_second)) * a.share / 1000.0
        a.rate_b, a.rate_l = rate_b, rate_l
        # sized so utilisation reaches ~75% at the weekly peak: waits grow at peaks, vanish at night
        a.k_backfill = max(2, math.ceil(rate_b * _SEASON_PEAK * a.occupancy_ms / 0.75))
        a.k_live = max(2, math.ceil(rate_l * a.occupancy_ms / 0.75))


def catalog(config: WorkloadConfig) -> list[dict[str, Any]]:
    """The accounts and workflows the generator uses: one dict per workflow with its account,
    id, name, type, triggers, schedule, site/card, concurrency limits and steps."""
    accounts = _build_accounts(config)
    _concurrency(accounts, config)
    out = []
    for a in accounts:
        for wf in a.workflows:
            out.append({
                "account_id": a.id, "account_name": a.name, "utc_offset_hours": a.tz,
                "concurrency_limit": {"backfill": a.k_backfill, "live": a.k_live},
                "workflow_id": wf.id, "name": wf.name, "type": wf.type,
                "triggers": sorted(wf.triggers), "schedule": wf.schedule_label,
                "site_id": wf.site[0] if wf.site else None, "site_name": wf.site[1] if wf.site else None,
                "card_id": wf.card[0] if wf.card else None, "card_name": wf.card[1] if wf.card else None,
                "sites": None if not wf.random_site else [{"site_id": s, "site_name": n} for s, n in a.sites],
                "version_period_days": wf.period_ms // _DAY_MS,
                "spike_failure": {"step_id": wf.steps[wf.spike_step].id, "code": wf.spike_code},
                "steps": [{
                    "step_id": s.id, "step_index": s.index, "name": s.name, "type": s.type,
                    "action_kind": s.kind, "target": s.target, "system": s.system,
                    "when": None if s.when is None else {"step_index": s.when[0], "condition_result": s.when[1]},
                    "branches": list(s.branches) if s.branches else None, "expression": s.expr,
                    "delay_seconds": s.delay_ms / 1000 if s.type == "delay" else None,
                    "median_ms": s.median if s.type != "delay" else None,
                    "failure_codes": [c for c, _ in s.fails],
                } for s in wf.steps],
            })
    return out
