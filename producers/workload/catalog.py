"""The workload's model: accounts and their workflows built from the templates, their
concurrency limits, and ``catalog()`` listing them."""

from __future__ import annotations

import math
import random

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
)

_FIRST = ("jane", "john", "maria", "li", "ahmed", "sofia", "lucas", "emma", "noah", "olivia", "mateo", "yuki",
          "priya", "omar", "chloe", "liam", "ava", "ethan", "mia", "arjun", "zoe", "leo", "nora", "ivan")
_LAST = ("smith", "garcia", "chen", "muller", "rossi", "kim", "nguyen", "silva", "brown", "tanaka", "kowalski",
         "patel", "dubois", "jones", "lopez", "wilson", "sato", "novak", "khan", "martin")
_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "proton.me", "example.com", "hey.com")


def _email(n: int) -> str:
    return f"{_FIRST[n % 24]}.{_LAST[(n // 24) % 20]}{n % 97}@{_MAIL[(n // 480) % 7]}"


class _Step:
    __slots__ = ("index", "id", "name", "type", "kind", "target", "mu", "sigma", "median", "fails", "when",
                 "delay_ms", "p_true", "contact_cond", "branches", "expr", "system", "event", "base",
                 "skip_start", "skip_fin")


class _Workflow:
    __slots__ = ("account", "slug", "id", "name", "type", "steps", "trig_cum", "trig_names", "adhoc",
                 "schedule", "schedule_label", "site", "card", "random_site", "p_contact", "period_ms",
                 "key", "has_delay", "spikes", "spike_step", "spike_code", "occupancy_ms", "triggers")


class _Account:
    __slots__ = ("idx", "id", "name", "tz", "domain", "size", "share", "workflows", "wf_cum", "wf_list",
                 "sites", "contacts", "occupancy_ms", "k_backfill", "k_live", "slots", "live_added",
                 "backlogs", "rate_b", "rate_l", "q_shift", "rng")


def _build_accounts(config: WorkloadConfig) -> list[_Account]:
    n = int(config.accounts)
    if n < 1:
        raise ValueError(f"accounts must be >= 1, got {config.accounts!r}")
    picked = []
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
        a = _Account()
        a.idx, a.id, a.name, a.tz, a.domain, a.size = idx, aid, name, tz, domain, size
        a.share = size / total_size
        a.q_shift = tz * 4 - _MONDAY0_QUARTERS
        site_names = list(_SITE_NAMES)
        r.shuffle(site_names)
        if aid == "acme":
            site_names = ["Main site"] + [s for s in site_names if s != "Main site"]
        a.sites = [(f"site-{_hexs(r, 6)}", s) for s in site_names[:3]]
        a.contacts = int(4000 + 16000 * size)
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


def _build_workflow(a: _Account, t: dict, r: random.Random) -> _Workflow:
    wf = _Workflow()
    wf.account, wf.slug, wf.name, wf.type = a, t["slug"], t["name"], t["type"]
    wf.id = f"wf-{t['slug']}"
    wf.key = f"{a.id}/{wf.id}"
    wf.adhoc = t["adhoc"] * r.uniform(0.6, 1.4)
    wf.triggers = dict(t["triggers"])
    total = sum(wf.triggers.values())
    cum, acc = [], 0.0
    for w in wf.triggers.values():
        acc += w / total
        cum.append(acc)
    cum[-1] = 1.0
    wf.trig_cum, wf.trig_names = cum, list(wf.triggers)
    wf.schedule = t.get("schedule")
    wf.schedule_label = t.get("schedule_label")
    if wf.schedule is not None:
        wf.triggers = {"scheduled": None, **wf.triggers}
    wf.p_contact = t["p_contact"]
    wf.random_site = wf.type == "contact"
    wf.site = r.choice(a.sites) if wf.type in ("card", "site", "survey") else None
    wf.card = None
    if wf.type in ("card", "survey"):
        wf.card = (f"card-{_hexs(r, 6)}", r.choice(_CARD_NAMES[t["slug"]]))
    wf.period_ms = r.randint(3, 7) * _DAY_MS
    wf.spikes = []
    fill = {"domain": a.domain, "acct": a.id, "h6": _hexs(r, 6).upper(), "h8": _hexs(r, 8).upper(), "h24": _hexs(r, 24)}
    steps, occupancy = [], 25.0
    for i, s in enumerate(t["steps"]):
        st = _Step()
        st.index, st.id, st.name, st.type = i, f"st{i + 1}", s["name"], s["type"]
        st.kind = s.get("kind")
        target = s.get("target")
        st.target = target.format(**fill) if target and "{" in target else target
        st.median = float(s["ms"])
        st.mu, st.sigma = math.log(st.median), s["sigma"]
        st.fails = tuple(s["fails"])
        st.when = s.get("when")
        st.delay_ms = int(s["seconds"] * 1000) if s["type"] == "delay" else 0
        p_true = s.get("p_true")
        st.contact_cond = p_true == "contact"
        st.p_true = 0.5 if st.contact_cond else p_true
        st.branches = s.get("branches")
        st.expr = s.get("expr")
        st.system = s.get("system")
        st.event = s.get("event")
        st.base = {"step_id": st.id, "step_index": i, "step_name": st.name, "step_type": st.type}
        st.skip_start = {**st.base, "attempt": 1}
        st.skip_fin = {**st.base, "attempt": 1, "status": "skipped"}
        steps.append(st)
        occupancy += st.median * math.exp(st.sigma ** 2 / 2) + st.delay_ms + 10
    wf.steps = steps
    wf.has_delay = any(s.type == "delay" for s in steps)
    wf.occupancy_ms = occupancy
    # the spike's failure: the first unconditional action, preferring an external-service error
    candidates = [s for s in steps if s.type == "action" and s.when is None and s.fails] or \
                 [s for s in steps if s.fails]
    pick = next((s for s in candidates if any(_ERRORS[c][0] == "external_service" for c, _ in s.fails)), candidates[0])
    wf.spike_step = pick.index
    wf.spike_code = next((c for c, _ in pick.fails if _ERRORS[c][0] == "external_service"), pick.fails[0][0])
    return wf


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


def catalog(config: WorkloadConfig) -> list[dict]:
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
