"""Deterministic synthetic workload: workflow runs of several tenants, as contract events.

Pure: no I/O, no wall clock, no global ``random``. Every random choice comes from a
``random.Random`` seeded from the config, so the same config and window give byte-identical
output. What the workload contains:

* accounts (``acme``, ``globex``, ``initech``, ...) with 5-8 workflows each covering the five
  workflow types, sites, cards, contacts and all four triggers (scheduled workflows fire on
  their schedule, some as batches that queue many runs at once);
* workflow versions that change every few days at deterministic times; some versions bring a
  regression (a step fails more often or gets slower) that the next version reverts;
* steps of the four types: trigger first, actions (email, tag, webhook, crm_sync, ...),
  conditions that pick a branch (the other branch's steps finish as ``skipped``) and delays
  (scheduled vs actual resume, sometimes late);
* heavy-tailed durations, a consistently slow CRM upsert, failures of the product's classes
  with variable messages, stack traces and suggested fixes, retried external-service
  failures (attempt 2, 3), manual stops and replays (exact or modified) of failed runs;
* daily and weekly seasonality per account time zone, a concurrency limit per account (a
  FIFO k-server queue, so queue wait grows at peaks), injected failure spikes and capacity
  drops (backlogs).

Each run draws from its own generator (seeded from the arrival stream), so injecting a spike
or a backlog changes the affected runs and queue timings, not every other run's outcome.
Events are merged in time order with a heap; memory is bounded by the runs in flight.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import time as _time
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson

__all__ = ["Spike", "Backlog", "WorkloadConfig", "generate", "catalog", "perturb", "corrupt"]

UTC = timezone.utc
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
        prefix = "%04d-%02d-%02dT%02d:%02d" % _time.gmtime(minute * 60)[:5]
        _MINUTE_PREFIX[minute] = prefix
    sec, milli = divmod(rest, 1000)
    return f"{prefix}:{sec:02d}.{milli:03d}Z"


_RELATIVE = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_REL_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_when(kind: str, text: str, now: datetime) -> datetime:
    """Absolute RFC 3339 time (naive = UTC), ``now``, or relative ``+5m`` / ``-2h`` / ``+30s``."""
    text = text.strip()
    if text.lower() == "now":
        base = now
    elif match := _RELATIVE.match(text):
        sign, amount, unit = match.groups()
        delta = timedelta(seconds=float(amount) * _REL_UNITS[unit])
        base = now + delta if sign == "+" else now - delta
    else:
        try:
            base = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{kind}: bad at={text!r} (use an RFC 3339 time like 2026-11-20T10:00:00Z "
                "or a relative time like +5m, -2h, +30s)"
            ) from None
        if base.tzinfo is None:
            base = base.replace(tzinfo=UTC)
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
        if not (0.0 <= float(self.rate) <= 1.0):
            raise ValueError(f"spike: bad rate={self.rate!r} (expected a number in 0..1)")
        if not (float(self.minutes) > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"spike: bad minutes={self.minutes!r} (expected a number > 0)")

    @classmethod
    def parse(cls, text: str, now: datetime) -> "Spike":
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
        if not (float(self.minutes) > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"backlog: bad minutes={self.minutes!r} (expected a number > 0)")
        if not (0.0 <= float(self.capacity_factor) <= 1.0):
            raise ValueError(f"backlog: bad capacity={self.capacity_factor!r} (expected a number in 0..1)")

    @classmethod
    def parse(cls, text: str, now: datetime) -> "Backlog":
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
class WorkloadConfig:
    seed: int = 7
    accounts: int = 3
    backfill_runs_per_hour: float = 120.0  # whole-workload average before live_from (seasonality modulates it)
    live_runs_per_second: float = 5.0  # whole-workload average from live_from on (flat, no seasonality)
    spikes: tuple[Spike, ...] = ()
    backlogs: tuple[Backlog, ...] = ()
    replay_probability: float = 0.25  # share of failed runs later replayed (exact or modified)


# --------------------------------------------------------------------------- accounts and workflow templates

# (account_id, display name, UTC offset in hours, email domain, relative size)
_ACCOUNTS = (
    ("acme", "Acme Corp", -5, "acme.com", 5.0),
    ("globex", "Globex Corporation", 1, "globex.de", 3.0),
    ("initech", "Initech", -8, "initech.com", 2.0),
    ("umbrella", "Umbrella Corp", 9, "umbrella.co.jp", 1.6),
    ("hooli", "Hooli", -8, "hooli.xyz", 1.4),
    ("stark", "Stark Industries", -5, "stark.com", 1.2),
    ("wayne", "Wayne Enterprises", -5, "wayne.com", 1.1),
    ("soylent", "Soylent", 0, "soylent.co.uk", 1.0),
    ("tyrell", "Tyrell Corp", 10, "tyrell.com.au", 0.9),
    ("wonka", "Wonka Industries", 1, "wonka.fr", 0.8),
    ("cyberdyne", "Cyberdyne Systems", -6, "cyberdyne.io", 0.7),
    ("vandelay", "Vandelay Industries", -5, "vandelay.com", 0.6),
)
_SITE_NAMES = ("Main site", "Summer Competition 2026", "Black Friday Hub", "Customer Community",
               "Holiday Campaign", "Loyalty Club", "Careers")
_CARD_NAMES = {
    "prize-draw": ("Win a trip to Bali", "Spin to win", "Instant win scratchie"),
    "quiz-reward": ("Holiday quiz", "Guess the score", "Trivia night"),
    "card-lead-mailchimp": ("Newsletter signup", "Enter the draw", "Free sample request"),
    "survey-followup": ("Customer satisfaction survey", "NPS survey Q4", "Event feedback"),
    "nps-alert": ("Product feedback", "Support experience survey", "NPS survey"),
}

# Local-time shape of traffic: relative volume per hour and per weekday (Mon..Sun).
_HOURLY = (0.18, 0.12, 0.10, 0.10, 0.12, 0.20, 0.40, 0.80, 1.40, 1.90, 2.10, 2.10,
           1.90, 2.00, 2.10, 2.00, 1.80, 1.40, 1.00, 0.85, 0.75, 0.60, 0.40, 0.25)
_WEEKDAY = (1.05, 1.10, 1.10, 1.05, 0.95, 0.45, 0.35)


def _season_table() -> tuple[float, ...]:
    values = []
    for day in range(7):
        for quarter in range(96):
            hour = quarter / 4
            h0 = int(hour)
            frac = hour - h0
            values.append((_HOURLY[h0] * (1 - frac) + _HOURLY[(h0 + 1) % 24] * frac) * _WEEKDAY[day])
    mean = sum(values) / len(values)
    return tuple(v / mean for v in values)


_SEASON = _season_table()
_SEASON_PEAK = max(_SEASON)


def _T(name, event, fails=()):
    return dict(type="trigger", name=name, event=event, ms=12, sigma=0.5, fails=fails)


def _A(name, kind, target, ms, sigma=0.7, fails=(), when=None, system=None):
    return dict(type="action", name=name, kind=kind, target=target, ms=ms, sigma=sigma, fails=fails,
                when=when, system=system)


def _C(name, expr, p_true, branches=("yes", "no"), fails=(), when=None):
    return dict(type="condition", name=name, expr=expr, p_true=p_true, branches=branches, ms=14,
                sigma=0.6, fails=fails, when=when)


def _D(name, seconds, when=None):
    return dict(type="delay", name=name, seconds=seconds, ms=3, sigma=0.3, fails=(), when=when)


_SLACK = "https://hooks.slack.com/services/T0{h6}/B0{h8}/{h24}"

# Workflow templates. ``when=(i, result)``: the step runs only when condition step i gave
# ``result``. ``schedule``: (period ms, offset ms in local time, batch size as a share of the
# account's hourly volume). ``adhoc``: weight of non-scheduled runs.
_TEMPLATES: tuple[dict, ...] = (
    dict(slug="welcome", name="Welcome email", type="contact", adhoc=10.0, p_contact=1.0,
         triggers={"automatic": 0.90, "api": 0.07, "manual": 0.03},
         steps=[_T("Contact subscribed", "contact.subscribed"),
                _A("Send welcome email", "email", "@email", 450, system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.012), ("INVALID_EMAIL", 0.005),
                          ("MISSING_CONTACT_PROPERTY", 0.004), ("MISSING_REQUIRED_FIELD", 0.001),
                          ("INTERNAL_ERROR", 0.0005))),
                _D("Wait 2 minutes", 120),
                _C("Opened welcome email?", "email.opened == true", 0.45, ("opened", "not_opened"),
                   fails=(("MISSING_BRANCH", 0.001),)),
                _A("Tag as engaged", "tag", "engaged", 70, when=(3, True), fails=(("DELETED_RESOURCE", 0.002),)),
                _A("Send reminder email", "email", "@email", 450, when=(3, False), system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.012), ("INVALID_VARIABLE_REFERENCE", 0.002)))]),
    dict(slug="lead-sync-hubspot", name="Lead sync to HubSpot", type="contact", adhoc=6.0, p_contact=1.0,
         triggers={"automatic": 0.80, "api": 0.17, "manual": 0.03},
         steps=[_T("Contact created", "contact.created"),
                _C("Has email address?", "contact.email != null", 0.93, fails=(("NULL_VALUE", 0.002),)),
                _A("Upsert contact in HubSpot", "crm_sync", "@contact", 1800, 0.8, when=(1, True), system="HubSpot",
                   fails=(("CRM_TIMEOUT", 0.015), ("CRM_SYNC_FAILED", 0.010), ("INVALID_API_CREDENTIALS", 0.002),
                          ("TYPE_MISMATCH", 0.003))),
                _A("Tag as synced", "tag", "crm-synced", 60, when=(1, True), fails=(("DELETED_RESOURCE", 0.001),)),
                _A("Tag as incomplete lead", "tag", "incomplete-lead", 60, when=(1, False))]),
    dict(slug="birthday", name="Birthday discount", type="contact", adhoc=0.3, p_contact=1.0,
         triggers={"manual": 1.0}, schedule=(_DAY_MS, 8 * _HOUR_MS, 0.10), schedule_label="daily at 08:00",
         steps=[_T("Daily at 08:00", "schedule.daily"),
                _C("Has marketing consent?", "contact.consent.marketing == true", 0.85, ("consented", "no_consent"),
                   fails=(("NULL_VALUE", 0.003), ("TYPE_MISMATCH", 0.002))),
                _A("Generate discount code", "coupon", "BDAY20", 120, when=(1, True),
                   fails=(("INVALID_DATA_FORMAT", 0.004),)),
                _A("Send birthday email", "email", "@email", 450, when=(1, True), system="Postmark",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_EMAIL", 0.004),
                          ("MISSING_CONTACT_PROPERTY", 0.005)))]),
    dict(slug="reengage", name="Re-engagement campaign", type="contact", adhoc=3.0, p_contact=1.0,
         triggers={"automatic": 0.95, "manual": 0.05},
         steps=[_T("Inactive for 30 days", "contact.inactive"),
                _A("Send we-miss-you email", "email", "@email", 450, system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_EMAIL", 0.004))),
                _D("Wait 90 seconds", 90),
                _C("Clicked a link?", "email.clicked == true", 0.20, ("clicked", "ignored")),
                _A("Update lifecycle stage", "crm_sync", "@contact", 1500, when=(3, True), system="Pipedrive",
                   fails=(("CRM_SYNC_FAILED", 0.010), ("CRM_TIMEOUT", 0.010))),
                _A("Tag as dormant", "tag", "dormant", 60, when=(3, False))]),
    dict(slug="newsletter", name="Weekly newsletter", type="contact", adhoc=0.2, p_contact=1.0,
         triggers={"manual": 1.0}, schedule=(7 * _DAY_MS, 9 * _HOUR_MS, 0.50), schedule_label="Mondays at 09:00",
         steps=[_T("Mondays at 09:00", "schedule.weekly"),
                _C("Subscribed to newsletter?", "'newsletter' in contact.lists", 0.90, ("subscribed", "unsubscribed"),
                   fails=(("INVALID_VARIABLE_REFERENCE", 0.002),)),
                _A("Send weekly newsletter", "email", "@email", 600, when=(1, True), system="Mailgun",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_EMAIL", 0.003),
                          ("MISSING_REQUIRED_FIELD", 0.002)))]),
    dict(slug="prize-draw", name="Prize draw entry confirmation", type="card", adhoc=8.0, p_contact=1.0,
         triggers={"automatic": 0.95, "api": 0.03, "manual": 0.02},
         steps=[_T("Card completed", "card.completed"),
                _A("Send entry confirmation", "email", "@email", 420, system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_EMAIL", 0.006),
                          ("MISSING_CONTACT_PROPERTY", 0.003))),
                _C("Instant win?", "entry.prize != null", 0.08, ("won", "lost"), fails=(("MISSING_BRANCH", 0.002),)),
                _A("Notify prize fulfilment", "webhook", "https://fulfilment.{domain}/api/prizes", 380, 1.0,
                   when=(2, True), fails=(("WEBHOOK_DELIVERY_FAILED", 0.04), ("API_TIMEOUT", 0.01),
                                          ("DELETED_RESOURCE", 0.003))),
                _A("Tag as entrant", "tag", "competition-entrant", 60, fails=(("DELETED_RESOURCE", 0.001),))]),
    dict(slug="quiz-reward", name="Quiz completion reward", type="card", adhoc=5.0, p_contact=1.0,
         triggers={"automatic": 0.97, "manual": 0.03},
         steps=[_T("Quiz completed", "card.quiz_completed"),
                _C("Score above 80%?", "entry.score >= 0.8", 0.30, ("high_score", "low_score"),
                   fails=(("TYPE_MISMATCH", 0.004), ("NULL_VALUE", 0.002))),
                _A("Issue reward coupon", "coupon", "QUIZ15", 150, when=(1, True), fails=(("INVALID_DATA_FORMAT", 0.002),)),
                _A("Send results email", "email", "@email", 450, system="Postmark",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_VARIABLE_REFERENCE", 0.003),
                          ("MISSING_CONTACT_PROPERTY", 0.003)))]),
    dict(slug="card-lead-mailchimp", name="Competition entrants to Mailchimp", type="card", adhoc=4.0, p_contact=1.0,
         triggers={"automatic": 0.90, "api": 0.05, "manual": 0.05},
         steps=[_T("Form submitted on card", "card.form_submitted"),
                _A("Validate entry data", "validate", "entry", 30, fails=(("INVALID_DATA_FORMAT", 0.006), ("NULL_VALUE", 0.003))),
                _A("Add to Mailchimp audience", "crm_sync", "@contact", 900, 0.9, system="Mailchimp",
                   fails=(("CRM_SYNC_FAILED", 0.012), ("API_TIMEOUT", 0.008), ("INVALID_API_CREDENTIALS", 0.002))),
                _A("Tag by entry source", "tag", "source-competition", 60, fails=(("NULL_VALUE", 0.002),))]),
    dict(slug="abandoned-form", name="Abandoned form reminder", type="site", adhoc=6.0, p_contact=1.0,
         triggers={"automatic": 0.99, "manual": 0.01},
         steps=[_T("Form abandoned", "site.form_abandoned"),
                _D("Wait 3 minutes", 180),
                _C("Form completed since?", "form.completed_at != null", 0.30, ("completed", "still_abandoned"),
                   fails=(("NULL_VALUE", 0.002),)),
                _A("Send reminder email", "email", "@email", 450, when=(2, False), system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_EMAIL", 0.004),
                          ("MISSING_CONTACT_PROPERTY", 0.004))),
                _A("Tag as reminded", "tag", "form-reminded", 60, when=(2, False))]),
    dict(slug="high-intent", name="High-intent page alert", type="site", adhoc=4.0, p_contact=0.55,
         triggers={"automatic": 0.97, "manual": 0.03},
         steps=[_T("Pricing page visited", "site.page_viewed"),
                _C("Known contact?", "contact != null", "contact", ("known", "anonymous")),
                _A("Post to Slack #sales", "webhook", _SLACK, 300, when=(1, True),
                   fails=(("WEBHOOK_DELIVERY_FAILED", 0.02), ("INVALID_VARIABLE_REFERENCE", 0.003))),
                _A("Log activity in CRM", "crm_sync", "@contact", 1400, when=(1, True), system="HubSpot",
                   fails=(("CRM_TIMEOUT", 0.010), ("CRM_SYNC_FAILED", 0.008)))]),
    dict(slug="site-publish", name="Site publish notification", type="site", adhoc=0.6, p_contact=0.0,
         triggers={"manual": 0.80, "api": 0.20},
         steps=[_T("Site published", "site.published"),
                _A("Purge CDN cache", "webhook", "https://api.fastly.com/service/{h8}/purge_all", 900, 0.8,
                   fails=(("API_TIMEOUT", 0.02), ("WEBHOOK_DELIVERY_FAILED", 0.01), ("INVALID_API_CREDENTIALS", 0.004))),
                _A("Notify site owners", "email", "owners@{domain}", 420, system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("MISSING_REQUIRED_FIELD", 0.003)))]),
    dict(slug="survey-followup", name="Survey follow-up", type="survey", adhoc=4.0, p_contact=1.0,
         triggers={"automatic": 0.96, "manual": 0.04},
         steps=[_T("Survey submitted", "survey.submitted"),
                _C("NPS score >= 9?", "answers.nps >= 9", 0.38, ("promoter", "not_promoter"),
                   fails=(("TYPE_MISMATCH", 0.006), ("MISSING_BRANCH", 0.003), ("NULL_VALUE", 0.002))),
                _A("Ask for a review", "email", "@email", 450, when=(1, True), system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("MISSING_CONTACT_PROPERTY", 0.004))),
                _A("Create Zendesk ticket", "webhook", "https://{acct}.zendesk.com/api/v2/tickets.json", 650, 0.9,
                   when=(1, False), fails=(("WEBHOOK_DELIVERY_FAILED", 0.015), ("API_TIMEOUT", 0.008),
                                           ("INVALID_API_CREDENTIALS", 0.002))),
                _A("Save NPS to CRM", "crm_sync", "@contact", 1600, system="Salesforce",
                   fails=(("CRM_TIMEOUT", 0.012), ("CRM_SYNC_FAILED", 0.006), ("TYPE_MISMATCH", 0.003)))]),
    dict(slug="nps-alert", name="NPS detractor alert", type="survey", adhoc=3.0, p_contact=1.0,
         triggers={"automatic": 0.97, "manual": 0.03},
         steps=[_T("Survey answered", "survey.answered"),
                _C("Score <= 6?", "answers.nps <= 6", 0.25, ("detractor", "passive_or_promoter"),
                   fails=(("TYPE_MISMATCH", 0.005), ("INVALID_VARIABLE_REFERENCE", 0.002))),
                _A("Alert #customer-success on Slack", "webhook", _SLACK, 300, when=(1, True),
                   fails=(("WEBHOOK_DELIVERY_FAILED", 0.02),)),
                _D("Wait 1 minute", 60, when=(1, True)),
                _A("Send apology email", "email", "@email", 450, when=(1, True), system="Postmark",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("MISSING_CONTACT_PROPERTY", 0.004)))]),
    dict(slug="lead-sync-salesforce", name="Lead sync to Salesforce", type="integration", adhoc=5.0, p_contact=1.0,
         triggers={"api": 0.88, "automatic": 0.08, "manual": 0.04},
         steps=[_T("Webhook received", "api.webhook",
                   fails=(("INVALID_DATA_FORMAT", 0.004), ("MISSING_REQUIRED_FIELD", 0.002))),
                _A("Map lead fields", "transform", "lead", 25,
                   fails=(("NULL_VALUE", 0.004), ("TYPE_MISMATCH", 0.003), ("INVALID_VARIABLE_REFERENCE", 0.002))),
                # consistently slow: a ~9 s upsert with little spread
                _A("Upsert lead in Salesforce", "crm_sync", "@contact", 9000, 0.35, system="Salesforce",
                   fails=(("CRM_TIMEOUT", 0.03), ("CRM_SYNC_FAILED", 0.01), ("INVALID_API_CREDENTIALS", 0.002),
                          ("INTERNAL_ERROR", 0.0005))),
                _C("New lead?", "crm.operation == 'create'", 0.60, ("new_lead", "existing_lead")),
                _A("Notify sales rep", "email", "sales@{domain}", 400, when=(3, True), system="SendGrid",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010),)),
                _A("Tag as synced", "tag", "salesforce-synced", 60)]),
    dict(slug="shopify-orders", name="Shopify order import", type="integration", adhoc=5.0, p_contact=1.0,
         triggers={"api": 0.95, "manual": 0.05},
         steps=[_T("Order webhook", "shopify.orders_create", fails=(("INVALID_DATA_FORMAT", 0.005),)),
                _A("Validate order payload", "validate", "order", 20,
                   fails=(("INVALID_DATA_FORMAT", 0.004), ("NULL_VALUE", 0.003))),
                _C("Order total > $500?", "order.total > 500", 0.12, ("vip", "standard"), fails=(("TYPE_MISMATCH", 0.004),)),
                _A("Tag as VIP customer", "tag", "vip", 60, when=(2, True)),
                _A("Send order to ERP", "webhook", "https://erp.{domain}/api/v1/orders", 700, 1.1,
                   fails=(("API_TIMEOUT", 0.012), ("WEBHOOK_DELIVERY_FAILED", 0.015), ("INVALID_API_CREDENTIALS", 0.001),
                          ("INTERNAL_ERROR", 0.0005)))]),
    dict(slug="crm-reconcile", name="Hourly CRM reconciliation", type="integration", adhoc=0.2, p_contact=0.0,
         triggers={"manual": 1.0}, schedule=(_HOUR_MS, 0, 0.0), schedule_label="every hour at :00",
         steps=[_T("Every hour", "schedule.hourly"),
                _A("Fetch changed contacts", "crm_sync", "contacts", 4000, 0.5, system="Salesforce",
                   fails=(("CRM_TIMEOUT", 0.02), ("INVALID_API_CREDENTIALS", 0.003))),
                _C("More pages to fetch?", "page.next_cursor != null", 0.35, ("more_pages", "done"),
                   fails=(("INFINITE_LOOP", 0.02),)),
                _A("Fetch next page", "crm_sync", "contacts", 3500, 0.5, when=(2, True), system="Salesforce",
                   fails=(("CRM_TIMEOUT", 0.02),)),
                _A("Push updates to CRM", "crm_sync", "contacts", 6000, 0.6, system="Salesforce",
                   fails=(("CRM_SYNC_FAILED", 0.02), ("TYPE_MISMATCH", 0.005), ("CRM_TIMEOUT", 0.01)))]),
    dict(slug="sheets-export", name="Export entries to Google Sheets", type="integration", adhoc=0.2, p_contact=0.0,
         triggers={"manual": 1.0}, schedule=(15 * 60_000, 5 * 60_000, 0.0), schedule_label="every 15 minutes",
         steps=[_T("Every 15 minutes", "schedule.interval"),
                _A("Query new entries", "transform", "entries", 150, 0.6, fails=(("NULL_VALUE", 0.002),)),
                _C("Any new entries?", "entries.count > 0", 0.80, ("has_entries", "empty")),
                _A("Append rows to Google Sheets", "webhook",
                   "https://sheets.googleapis.com/v4/spreadsheets/{h24}/values/Entries!A1:append", 800, 0.8,
                   when=(2, True), fails=(("API_TIMEOUT", 0.01), ("WEBHOOK_DELIVERY_FAILED", 0.01),
                                          ("INVALID_API_CREDENTIALS", 0.003), ("DELETED_RESOURCE", 0.002)))]),
)
_TEMPLATE_BY_SLUG = {t["slug"]: t for t in _TEMPLATES}
_TYPES = ("contact", "card", "site", "survey", "integration")
_ACME_WORKFLOWS = ("welcome", "lead-sync-hubspot", "prize-draw", "abandoned-form", "survey-followup",
                   "lead-sync-salesforce", "crm-reconcile")


# --------------------------------------------------------------------------- errors

# code -> (class, retried, duration behaviour)
_ERRORS: dict[str, tuple[str, bool, str]] = {
    "MISSING_REQUIRED_FIELD": ("config", False, "fast"),
    "INVALID_EMAIL": ("config", False, "fast"),
    "INVALID_API_CREDENTIALS": ("config", False, "fast"),
    "DELETED_RESOURCE": ("config", False, "fast"),
    "MISSING_CONTACT_PROPERTY": ("data", False, "fast"),
    "INVALID_DATA_FORMAT": ("data", False, "fast"),
    "NULL_VALUE": ("data", False, "fast"),
    "TYPE_MISMATCH": ("data", False, "fast"),
    "EMAIL_SERVICE_UNAVAILABLE": ("external_service", True, "normal"),
    "API_TIMEOUT": ("external_service", True, "timeout10"),
    "CRM_TIMEOUT": ("external_service", True, "timeout30"),
    "CRM_SYNC_FAILED": ("external_service", True, "normal"),
    "WEBHOOK_DELIVERY_FAILED": ("external_service", True, "slow"),
    "INFINITE_LOOP": ("logic", False, "loop"),
    "MISSING_BRANCH": ("logic", False, "fast"),
    "INVALID_VARIABLE_REFERENCE": ("logic", False, "fast"),
    "INTERNAL_ERROR": ("internal", False, "lease"),
}
_MAX_ATTEMPTS = 3
_RETRY_FAILS_AGAIN = 0.5
_HTTP_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                 503: "Service Unavailable", 504: "Gateway Timeout", 404: "Not Found", 410: "Gone"}
_PROPS = ("first_name", "last_name", "company", "city", "plan_tier", "birthday", "phone")


class _ErrEnv:
    """What an error message may mention about the failing step."""

    __slots__ = ("account", "domain", "run_id", "wf_id", "version", "step", "index", "contact", "email",
                 "system", "url", "card_id", "kind")

    def __init__(self, **kw):
        for key, value in kw.items():
            setattr(self, key, value)


def _hexs(r: random.Random, n: int) -> str:
    return f"{r.getrandbits(4 * n):0{n}x}"


def _msg(code: str, r: random.Random, e: _ErrEnv) -> str:
    if code == "MISSING_REQUIRED_FIELD":
        field = r.choice(("subject", "from_address", "recipient", "template_id", "list_id"))
        return f"Required field '{field}' is empty in step '{e.step}' ({e.wf_id} v{e.version})"
    if code == "INVALID_EMAIL":
        local, _, dom = e.email.partition("@")
        bad = r.choice((f"{local}@@{dom}", f"{local}{dom}", f"{local}@{dom.replace('.', ',')}", f"{local}@",
                        f"{local} @{dom}"))
        return f"Invalid email address '{bad}' for contact {e.contact}"
    if code == "INVALID_API_CREDENTIALS":
        return (f"{e.system} API rejected the credentials of connection conn_{_hexs(r, 6)} "
                f"(HTTP 401 Unauthorized, token ending ...{_hexs(r, 4)})")
    if code == "DELETED_RESOURCE":
        if e.kind == "tag":
            return f"Step '{e.step}' refers to tag tag_{r.randrange(1000, 99999)} which no longer exists"
        if e.kind == "email":
            return f"Email template tpl_{r.randrange(100, 9999)} referenced by step '{e.step}' was deleted"
        if e.card_id and r.random() < 0.5:
            return f"Card {e.card_id} referenced by step '{e.step}' was deleted"
        return f"Endpoint {e.url} referenced by step '{e.step}' was removed (HTTP 410 Gone)"
    if code == "MISSING_CONTACT_PROPERTY":
        return (f"Contact {e.contact} has no value for property '{r.choice(_PROPS)}' "
                f"used in template 'tpl_{r.randrange(100, 9999)}'")
    if code == "INVALID_DATA_FORMAT":
        which = r.randrange(3)
        if which == 0:
            return (f"Field 'phone' value '+{r.randrange(1, 99)} ({r.randrange(100, 999)}) "
                    f"{r.randrange(10, 99)}x-{r.randrange(1000, 9999)}' is not a valid E.164 number (contact {e.contact})")
        if which == 1:
            return f"Field 'birthday' value '{r.randrange(30, 32)}/02/{r.randrange(1950, 2008)}' is not a valid date"
        return f"Payload field 'order.total' value '{r.randrange(1, 999)},{r.randrange(10, 99)}' is not a decimal number"
    if code == "NULL_VALUE":
        path = r.choice(("contact.company", "contact.email", "entry.answers[2]", "order.customer.id", "form.fields.country"))
        return f"Value of '{path}' is null at step {e.index + 1} ('{e.step}') in run {e.run_id}"
    if code == "TYPE_MISMATCH":
        field, value = r.choice((("nps_score", f"{r.randrange(0, 11)}/10"), ("order.total", f"${r.randrange(5, 900)}"),
                                 ("entry.score", f"{r.randrange(0, 100)}%"), ("lead.employees", f"{r.randrange(10, 500)}+")))
        return f"Expected number for '{field}' but got string '{value}'"
    if code == "EMAIL_SERVICE_UNAVAILABLE":
        return (f"Email provider {e.system or 'SendGrid'} returned HTTP 503 Service Unavailable "
                f"(request id {_hexs(r, 8)}-{_hexs(r, 4)})")
    if code == "API_TIMEOUT":
        return f"Request to {e.url} timed out after 10000 ms (attempted {r.randrange(1, 4)} connections)"
    if code == "CRM_TIMEOUT":
        if e.system == "HubSpot":
            path = r.choice((f"PATCH /crm/v3/objects/contacts/{r.randrange(10**6, 10**8)}",
                             "POST /crm/v3/objects/contacts/batch/upsert"))
        elif e.system == "Pipedrive":
            path = r.choice((f"GET /v1/persons/search?term={e.contact}", f"PUT /v1/persons/{r.randrange(1000, 999999)}"))
        elif e.system == "Mailchimp":
            path = f"PUT /3.0/lists/{_hexs(r, 10)}/members/{_hexs(r, 32)}"
        else:
            path = r.choice(("POST /services/data/v59.0/sobjects/Lead",
                             f"PATCH /services/data/v59.0/sobjects/Contact/003{_hexs(r, 12)}",
                             f"GET /services/data/v59.0/query?q=SELECT+Id+FROM+Contact+LIMIT+{r.choice((200, 500, 2000))}"))
        return f"{e.system or 'CRM'} API did not answer within 30s ({path})"
    if code == "CRM_SYNC_FAILED":
        status, detail = r.choice(((409, f"duplicate record {r.randrange(10**6, 10**8)}"), (429, "rate limit exceeded"),
                                   (500, f"upstream error id {_hexs(r, 8)}"), (422, "field 'lifecyclestage' rejected")))
        reason = _HTTP_REASONS.get(status, {409: "Conflict", 422: "Unprocessable Entity"}.get(status, "Error"))
        return f"{e.system or 'CRM'} sync failed for contact {e.contact}: HTTP {status} {reason} ({detail})"
    if code == "WEBHOOK_DELIVERY_FAILED":
        status = r.choice((500, 502, 502, 503, 504, 429, 404, 410))
        return f"Webhook POST {e.url} failed with HTTP {status} {_HTTP_REASONS[status]} after {r.randrange(80, 4000)} ms"
    if code == "INFINITE_LOOP":
        return f"Loop limit exceeded: step '{e.step}' ran {r.randrange(100, 120)} times in run {e.run_id} (limit 100)"
    if code == "MISSING_BRANCH":
        value = r.choice(("null", "'maybe'", "'unknown'", str(r.randrange(-5, 0))))
        return f"Condition '{e.step}' evaluated to {value} but no branch handles it"
    if code == "INVALID_VARIABLE_REFERENCE":
        var = r.choice(("contact.frist_name", "contact.plan_tire", "entry.prize_nme", "survey.answer[7]", "order.totl"))
        return "Unknown variable '{{" + var + "}}' in step '" + e.step + "'"
    if code == "INTERNAL_ERROR":
        return (f"Worker wkr-{r.randrange(1, 64):02d} lost its lease on run {e.run_id} after "
                f"{r.randrange(30, 61)}s; step state could not be recovered")
    raise KeyError(code)


_FIXES = {
    "MISSING_REQUIRED_FIELD": "Open the step settings and fill in every required field, then publish a new version.",
    "INVALID_EMAIL": "Correct the contact's email address or add a condition that skips invalid addresses.",
    "INVALID_API_CREDENTIALS": "Reconnect the {system} integration under Settings > Integrations and replay the run.",
    "DELETED_RESOURCE": "Point the step at an existing resource (or restore the deleted one) and replay.",
    "MISSING_CONTACT_PROPERTY": "Add a fallback value for the property in the template or require it on the form.",
    "INVALID_DATA_FORMAT": "Validate the field on input or add a formatting step before this one.",
    "NULL_VALUE": "Add a condition that handles empty values before this step.",
    "TYPE_MISMATCH": "Convert the value to a number in a transform step or fix the source field type.",
    "EMAIL_SERVICE_UNAVAILABLE": "Usually transient: check {system} status and replay the failed runs.",
    "API_TIMEOUT": "Check the endpoint's availability and latency; raise the timeout if it is consistently slow.",
    "CRM_TIMEOUT": "Check the {system} integration status and API limits, then replay.",
    "CRM_SYNC_FAILED": "Check the {system} record and field mapping; replay once the conflict is resolved.",
    "WEBHOOK_DELIVERY_FAILED": "Check that the receiving endpoint is up and accepts the payload, then replay.",
    "INFINITE_LOOP": "Make sure the loop's exit condition can become true (e.g. the cursor advances).",
    "MISSING_BRANCH": "Add a default branch to the condition so every result is handled.",
    "INVALID_VARIABLE_REFERENCE": "Fix the variable name in the step; use the variable picker to insert it.",
    "INTERNAL_ERROR": "Replay the run; contact support if it happens again.",
}

_RUNNER_FRAMES = (
    '  File "/srv/flowengine/engine/runner.py", line 412, in execute_step\n'
    "    result = await handler.run(step, ctx)\n"
)
_TRACE_FRAMES = {
    "email": ('  File "/srv/flowengine/actions/email.py", line {l1}, in run\n'
              "    message = self.render(step.template, ctx.contact)\n"
              '  File "/srv/flowengine/actions/email.py", line {l2}, in render\n'
              "    return self.provider.send(message, idempotency_key=ctx.step_key)\n"),
    "crm_sync": ('  File "/srv/flowengine/actions/crm.py", line {l1}, in run\n'
                 "    record = await self.client.upsert(self.map_fields(ctx), timeout=30)\n"
                 '  File "/srv/flowengine/clients/http.py", line {l2}, in request\n'
                 "    response = await self.session.request(method, url, json=body, timeout=timeout)\n"),
    "webhook": ('  File "/srv/flowengine/actions/webhook.py", line {l1}, in run\n'
                "    response = await self.client.post(step.url, json=payload, timeout=10)\n"
                '  File "/srv/flowengine/clients/http.py", line {l2}, in request\n'
                "    response.raise_for_status()\n"),
    "condition": ('  File "/srv/flowengine/engine/conditions.py", line {l1}, in evaluate\n'
                  "    value = self.expr.evaluate(ctx.variables)\n"
                  '  File "/srv/flowengine/engine/expressions.py", line {l2}, in evaluate\n'
                  "    return self.op(self.left.resolve(scope), self.right.resolve(scope))\n"),
    "default": ('  File "/srv/flowengine/actions/{kind}.py", line {l1}, in run\n'
                "    output = self.apply(ctx.resolve(step.inputs))\n"
                '  File "/srv/flowengine/engine/variables.py", line {l2}, in resolve\n'
                "    return self.scope.lookup(path, strict=True)\n"),
}
_EXCEPTIONS = {
    "MISSING_REQUIRED_FIELD": "flowengine.errors.ConfigError", "INVALID_EMAIL": "flowengine.errors.InvalidEmail",
    "INVALID_API_CREDENTIALS": "flowengine.clients.http.Unauthorized", "DELETED_RESOURCE": "flowengine.errors.ResourceDeleted",
    "MISSING_CONTACT_PROPERTY": "flowengine.errors.MissingProperty", "INVALID_DATA_FORMAT": "flowengine.errors.InvalidFormat",
    "NULL_VALUE": "flowengine.errors.NullValue", "TYPE_MISMATCH": "TypeError",
    "EMAIL_SERVICE_UNAVAILABLE": "flowengine.providers.ProviderUnavailable", "API_TIMEOUT": "asyncio.TimeoutError",
    "CRM_TIMEOUT": "flowengine.clients.crm.CrmTimeout", "CRM_SYNC_FAILED": "flowengine.clients.crm.CrmSyncError",
    "WEBHOOK_DELIVERY_FAILED": "flowengine.clients.http.HTTPStatusError", "INFINITE_LOOP": "flowengine.errors.LoopLimitExceeded",
    "MISSING_BRANCH": "flowengine.errors.UnhandledBranch", "INVALID_VARIABLE_REFERENCE": "flowengine.errors.UnknownVariable",
    "INTERNAL_ERROR": "flowengine.engine.leases.LeaseLost",
}


def _make_error(code: str, r: random.Random, e: _ErrEnv, kind: str) -> dict:
    message = _msg(code, r, e)
    frames = _TRACE_FRAMES.get(kind, _TRACE_FRAMES["default"])
    if code == "INTERNAL_ERROR":
        frames = ('  File "/srv/flowengine/engine/leases.py", line 77, in heartbeat\n'
                  "    await self.store.renew(self.lease_id, ttl=30)\n")
    seed_line = sum(map(ord, code))
    trace = ("Traceback (most recent call last):\n" + _RUNNER_FRAMES
             + frames.format(l1=100 + seed_line % 200, l2=40 + seed_line % 90, kind=kind or "step")
             + f"{_EXCEPTIONS[code]}: {message}")
    return {"code": code, "message": message, "class": _ERRORS[code][0], "stack_trace": trace,
            "suggested_fix": _FIXES[code].format(system=e.system or "CRM")}


# --------------------------------------------------------------------------- the model

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
    for trig, w in wf.triggers.items():
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


# --------------------------------------------------------------------------- versions

_GENERIC_NOTES = ("new branding", "shorter copy", "added UTM parameters", "renamed steps", "updated descriptions",
                  "cleanup")
_EDIT_VERBS = ("updated", "edited", "reworked", "changed")


class _Versions:
    """Versions bump every few days at deterministic business-hour times. What a version
    changed is derived from (workflow, version): about one version in six is a regression
    (one step fails more often with one of its error codes, or gets 2.5-5x slower) and its
    display name says which step was edited; the next version reverts it."""

    def __init__(self) -> None:
        self._bumps: dict[tuple[str, int], int] = {}
        self._info: dict[tuple[str, int], tuple] = {}
        self._plans: dict[tuple[str, int], tuple] = {}

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

    def _plan(self, wf: _Workflow, v: int) -> tuple:
        """(regression?, step index or -1, extra failure (code, p) or None, duration factor, note)."""
        key = (wf.key, v)
        got = self._plans.get(key)
        if got is not None:
            return got
        r = random.Random(f"ver:{wf.key}:{v}")
        editable = [s for s in wf.steps if s.type in ("action", "condition")]
        regression = v > 1 and r.random() < 0.16
        idx, extra, mult = -1, None, 1.0
        if regression:
            s = r.choice([s for s in editable if s.fails] or editable)
            idx = s.index
            if s.fails and r.random() < 0.65:
                codes = [c for c, _ in s.fails if _ERRORS[c][0] in ("config", "data", "logic")] or [c for c, _ in s.fails]
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

    def info(self, wf: _Workflow, v: int) -> tuple[str | None, list[tuple[float, list, float]]]:
        key = (wf.key, v)
        got = self._info.get(key)
        if got is not None:
            return got
        regression, idx, extra, mult, note = self._plan(wf, v)
        prev_regression = v > 1 and self._plan(wf, v - 1)[0]
        r = random.Random(f"name:{wf.key}:{v}")
        if v == 1:
            name = "v1 - initial version"
        elif prev_regression and not regression:
            name = f"v{v} - revert v{v - 1} ({self._plan(wf, v - 1)[4]})"
        elif r.random() < 0.3:
            name = None
        else:
            name = f"v{v} - {note}"
        table = []
        for s in wf.steps:
            fails = list(s.fails)
            if s.index == idx and extra is not None:
                fails.append(extra)
            cum, acc = [], 0.0
            for code, p in fails:
                acc += p
                cum.append((acc, code))
            table.append((acc, cum, mult if s.index == idx else 1.0))
        got = (name, table)
        self._info[key] = got
        return got


# --------------------------------------------------------------------------- generation


def generate(config: WorkloadConfig, start: datetime, end: datetime, live_from: datetime | None = None) -> Iterator[dict]:
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
        a.backlogs = []
        for b in config.backlogs:
            if b.account is None or b.account == a.id:
                b0 = _to_ms(b.at)
                a.backlogs.append((b0, b0 + int(b.minutes * 60_000), float(b.capacity_factor)))
    known = {a.id for a in accounts}
    for b in config.backlogs:
        if b.account is not None and b.account not in known:
            raise ValueError(f"backlog: account {b.account!r} is not one of {', '.join(sorted(known))}")
    if end_ms <= start_ms:
        return iter(())
    return _Generator(config, accounts, start_ms, end_ms, live_ms).events()


def _attach_spikes(accounts: list[_Account], spikes: tuple[Spike, ...]) -> None:
    for a in accounts:
        for wf in a.workflows:
            wf.spikes = []
    for sp in spikes:
        matched = False
        for a in accounts:
            for wf in a.workflows:
                if sp.workflow in (wf.id, wf.name, wf.key) or sp.workflow.lower() == wf.name.lower():
                    s0 = _to_ms(sp.at)
                    wf.spikes.append((s0, s0 + int(sp.minutes * 60_000), float(sp.rate)))
                    matched = True
        if not matched:
            names = sorted({wf.id for a in accounts for wf in a.workflows})
            raise ValueError(f"spike: workflow {sp.workflow!r} matches no workflow id or name (ids: {', '.join(names)})")


_LN_DISPATCH = math.log(120.0)
_LN_LATE = math.log(150.0)
_P_STOP = 0.012
_REPLAY_SUCCESS = {"exact": 0.85, "modified": 0.92}


class _Generator:
    def __init__(self, config: WorkloadConfig, accounts: list[_Account], start_ms: int, end_ms: int,
                 live_ms: int | None) -> None:
        self.config, self.accounts = config, accounts
        self.start_ms, self.end_ms, self.live_ms = start_ms, end_ms, live_ms
        self.seed = int(config.seed)
        self.replay_p = float(config.replay_probability)
        self.versions = _Versions()
        self.heap: list = []  # (next ts, run seq, index, events) per run in flight
        self.arrivals: list = []  # (ts, order, kind, payload)
        self.order = 0
        self.run_seq = 0

    # ---- arrival sources

    def _push_arrival(self, t_ms: int, kind: int, payload) -> None:
        if t_ms < self.end_ms:
            self.order += 1
            heapq.heappush(self.arrivals, (t_ms, self.order, kind, payload))

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

    def _next_fire(self, wf: _Workflow, t: int) -> int:
        period, local_off, _ = wf.schedule
        if period == 7 * _DAY_MS:  # weekly on Monday: shift from the epoch's Thursday
            local_off += 4 * _DAY_MS
        off = (local_off - wf.account.tz * _HOUR_MS) % period
        k = -((off - t) // period)  # ceil((t - off) / period)
        return off + k * period

    # ---- main loop

    def events(self) -> Iterator[dict]:
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
            nxt = self._next_poisson(a, float(start))
            if nxt is not None:
                self._push_arrival(int(nxt), 0, (a, nxt))
            for wf in a.workflows:
                if wf.schedule is not None:
                    self._push_arrival(self._next_fire(wf, start), 1, (wf, random.Random(f"{seed}:{start}:sched:{wf.key}")))
        heap, arrivals = self.heap, self.arrivals
        heappop, heapreplace = heapq.heappop, heapq.heapreplace
        run_poisson, run_sched, run_replay = self._arrive_poisson, self._arrive_scheduled, self._arrive_replay
        while arrivals:
            t = arrivals[0][0]
            while heap and heap[0][0] <= t:
                _, seq, i, evs = heap[0]
                yield evs[i][1]
                i += 1
                if i < len(evs):
                    heapreplace(heap, (evs[i][0], seq, i, evs))
                else:
                    heappop(heap)
            _, _, kind, payload = heappop(arrivals)
            if kind == 0:
                run_poisson(t, payload)
            elif kind == 1:
                run_sched(t, payload)
            else:
                run_replay(t, payload)
        while heap:
            ts, seq, i, evs = heap[0]
            if ts >= end:
                return
            yield evs[i][1]
            i += 1
            if i < len(evs):
                heapreplace(heap, (evs[i][0], seq, i, evs))
            else:
                heappop(heap)

    def _arrive_poisson(self, t: int, payload) -> None:
        a, t_float = payload
        rng = a.rng
        wf = a.wf_list[bisect_right(a.wf_cum, rng.random())]
        run_seed = rng.getrandbits(64)
        nxt = self._next_poisson(a, t_float)
        if nxt is not None:
            self._push_arrival(int(nxt), 0, (a, nxt))
        r = random.Random(run_seed)
        trig = wf.trig_names[bisect_right(wf.trig_cum, r.random())]
        self._run(r, a, wf, trig, t, self._contact(r, a, wf), self._site(r, a, wf), None)

    def _arrive_scheduled(self, t: int, payload) -> None:
        wf, srng = payload
        a = wf.account
        share = wf.schedule[2]
        if share > 0:
            per_hour = (a.rate_l * 1000 * 3600) if (self.live_ms is not None and t >= self.live_ms) else a.rate_b * _HOUR_MS
            count = max(1, round(per_hour * share * srng.uniform(0.8, 1.2)))
        else:
            count = 1
        q = t
        for _ in range(count):
            r = random.Random(srng.getrandbits(64))
            self._run(r, a, wf, "scheduled", q, self._contact(r, a, wf), self._site(r, a, wf), None)
            q += srng.randrange(0, 4)
        self._push_arrival(self._next_fire(wf, t + 1), 1, payload)

    def _arrive_replay(self, t: int, payload) -> None:
        a, wf, trig, cno, site, replay, run_seed = payload
        r = random.Random(run_seed)
        if replay[1] == "modified" and wf.p_contact > 0 and r.random() < 0.4:
            cno = self._contact(r, a, wf)
        self._run(r, a, wf, trig, t, cno, site, replay)

    @staticmethod
    def _contact(r: random.Random, a: _Account, wf: _Workflow) -> int | None:
        if wf.p_contact >= 1.0 or (wf.p_contact > 0 and r.random() < wf.p_contact):
            return 10000 + int(a.contacts * r.random() ** 1.8)
        return None

    @staticmethod
    def _site(r: random.Random, a: _Account, wf: _Workflow):
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
             site, replay) -> None:
        fmt = _fmt
        if replay is not None and replay[2] is not None:
            version = replay[2]
        else:
            version = self.versions.at(wf, t_q)
        vname, vtable = self.versions.info(wf, version)
        rid = f"run_{r.getrandbits(64):016x}"
        contact_id = None if cno is None else f"c-{cno}"
        email = None if cno is None else _email(cno)
        ctx = {"account_id": a.id, "run_id": rid, "workflow_id": wf.id, "workflow_name": wf.name,
               "workflow_version": version, "workflow_version_name": vname, "workflow_type": wf.type,
               "trigger": trig, "site_id": site[0] if site else None, "site_name": site[1] if site else None,
               "card_id": wf.card[0] if wf.card else None, "card_name": wf.card[1] if wf.card else None,
               "contact_id": contact_id, "replay_of": replay[0] if replay else None,
               "replay_mode": replay[1] if replay else None}
        evs: list = []
        app = evs.append
        app((t_q, {"event_id": f"{rid}-0", "schema_version": 1, "type": "run.queued", "ts": fmt(t_q), **ctx}))
        s, slot = self._assign_slot(a, t_q + int(r.lognormvariate(_LN_DISPATCH, 0.5)))
        app((s, {"event_id": f"{rid}-1", "schema_version": 1, "type": "run.started", "ts": fmt(s), **ctx}))

        # outcome plan: spikes, then replays, then natural failures
        forced, fcode, suppress = -1, None, False
        for x0, x1, rate in wf.spikes:
            if x0 <= s < x1:
                suppress = True
                if r.random() < rate:
                    forced, fcode = wf.spike_step, wf.spike_code
                break
        if not suppress and replay is not None:
            suppress = True
            if r.random() >= _REPLAY_SUCCESS[replay[1]]:
                forced, fcode = replay[3], replay[4]
        stop = not suppress and wf.has_delay and r.random() < _P_STOP
        backlogs = a.backlogs

        t = s + 3 + int(r.random() * 30)
        conds = [None] * len(wf.steps)
        status, err, fail_idx = "success", None, -1
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
            attempt, code = 1, None
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
                        extra["branch"] = st.branches[0] if res else st.branches[1]
                    app((fin, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "step.finished",
                               "ts": fmt(fin), **ctx, **st.base, "attempt": attempt, "status": "success",
                               "started_at": ts0, **extra}))
                    t = fin + 1 + int(rnd() * 8)
                    break
                e = _make_error(code, r, _ErrEnv(account=a.id, domain=a.domain, run_id=rid, wf_id=wf.id,
                                                 version=version, step=st.name, index=st.index,
                                                 contact=contact_id or "c-unknown", email=email or f"info@{a.domain}",
                                                 system=st.system, card_id=ctx["card_id"], kind=st.kind,
                                                 url=st.target if (st.target or "").startswith("https://")
                                                 else f"https://api.{a.domain}/v2/{st.kind or 'hooks'}"),
                                st.kind if typ == "action" else typ)
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
        done = {"status": status, "started_at": fmt(s)}
        if err is not None:
            done["error"] = dict(err)
        app((fin_run, {"event_id": f"{rid}-{len(evs)}", "schema_version": 1, "type": "run.finished",
                       "ts": fmt(fin_run), **ctx, **done}))
        heapq.heappush(a.slots, (fin_run, slot))
        self.run_seq += 1
        heapq.heappush(self.heap, (t_q, self.run_seq, 0, evs))

        if status == "failed" and replay is None and self.replay_p > 0 and rnd() < self.replay_p:
            delay = min(12 * _HOUR_MS, max(2 * 60_000, int(lognorm(math.log(40 * 60_000), 1.0))))
            mode = "exact" if rnd() < 0.55 else "modified"
            payload = (a, wf, trig if mode == "exact" else "manual", cno, site,
                       (rid, mode, version if mode == "exact" else None, fail_idx, err["code"]), r.getrandbits(64))
            self._push_arrival(fin_run + delay, 2, payload)

    @staticmethod
    def _step_io(r: random.Random, a: _Account, st: _Step, contact_id, email, ok: bool) -> dict:
        typ, kind = st.type, st.kind
        if typ == "trigger":
            inp = {"event": st.event}
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
        extra = {"action_kind": kind, "target": target}
        if kind == "email":
            extra["input"] = {"to": target, "provider": st.system}
            if ok:
                extra["output"] = {"message_id": f"<{r.getrandbits(48):012x}@mail.{a.domain}>"}
        elif kind == "crm_sync":
            extra["input"] = {"system": st.system, "record": target}
            if ok:
                extra["output"] = {"crm_id": f"{r.getrandbits(40):010x}", "operation": "update" if r.random() < 0.7 else "create"}
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


# --------------------------------------------------------------------------- delivery faults


_REQUIRED = ("event_id", "schema_version", "type", "ts", "account_id", "run_id", "workflow_id", "workflow_name",
             "workflow_version", "workflow_type", "trigger")
_BAD_ENUMS = (("workflow_type", ("newsletter", "Contact", "cards")), ("trigger", ("webhook", "cron", "Manual")),
              ("type", ("run.exploded", "step.retried", "run.paused")), ("step_type", ("loop", "Action")),
              ("status", ("crashed", "done", "cancelled")), ("replay_mode", ("partial", "fuzzy")))
_BAD_TIMES = ("2026-13-45T25:61:00Z", "yesterday", "20/11/2026 10:00:00", "2026-11-20T10:00:00", "2026-02-30T10:00:00Z",
              "")
_BAD_KINDS = ("not_json", "missing_field", "bad_enum", "bad_time", "bad_version", "array")


def _bad_line(r: random.Random, ev: dict, line: bytes, k: int) -> bytes:
    kind = _BAD_KINDS[k % len(_BAD_KINDS)]
    if kind == "not_json":
        return r.choice((line[: max(1, len(line) // 2)], b"not json at all", line.replace(b'"', b"'", 6),
                         line[:-1] + b",}", b"{event_id: " + line[:20]))
    if kind == "array":
        return r.choice((orjson.dumps([ev]), b"[]", orjson.dumps([ev.get("event_id"), ev.get("type")])))
    doc = dict(ev)
    doc["event_id"] = f"{ev.get('event_id', 'x')}-bad{k}"
    if kind == "missing_field":
        del doc[r.choice([f for f in _REQUIRED if f in doc] or ["event_id"])]
    elif kind == "bad_enum":
        field, values = r.choice([(f, v) for f, v in _BAD_ENUMS if doc.get(f) is not None])
        doc[field] = r.choice(values)
    elif kind == "bad_time":
        field = "started_at" if ("started_at" in doc and r.random() < 0.3) else "ts"
        doc[field] = r.choice(_BAD_TIMES)
    else:
        doc["schema_version"] = r.choice((0, 3, 7, 99))
    return orjson.dumps(doc)


def corrupt(event: dict, k: int, rng: random.Random) -> bytes:
    """A bad line made from ``event``: the k-th of the kinds the contract rejects (not JSON,
    missing field, bad enum, bad time, unknown schema version, array), in rotation."""
    return _bad_line(rng, event, orjson.dumps(event), k)


_MINUTE_MS: dict[str, int] = {}


def _ts_ms(value) -> int | None:
    """Event time in ms; fast path for this module's own format, fromisoformat otherwise."""
    if not isinstance(value, str):
        return None
    if len(value) == 24 and value[19] == "." and value[23] == "Z" and value[16] == ":":
        minute = _MINUTE_MS.get(value[:16])
        if minute is None:
            if len(_MINUTE_MS) > 50_000:
                _MINUTE_MS.clear()
            try:
                minute = _to_ms(datetime.fromisoformat(value[:16] + "+00:00"))
            except ValueError:
                return None
            _MINUTE_MS[value[:16]] = minute
        try:
            return minute + int(value[17:19]) * 1000 + int(value[20:23])
        except ValueError:
            return None
    try:
        return _to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def perturb(events: Iterable[dict], *, seed: int, duplicate_rate: float = 0.0, reorder_rate: float = 0.0,
            late_rate: float = 0.0, late_by: timedelta = timedelta(minutes=5), bad_line_rate: float = 0.0) -> Iterator[bytes]:
    """Encode events as NDJSON lines (orjson, no trailing newline in each item) with delivery faults:
    exact duplicates (same event_id, same bytes), local reordering (swap within a small window),
    late delivery (an event emitted up to `late_by` of event time after its position), and bad lines
    of every kind the contract rejects (not JSON, missing required field, value outside its enum,
    unparseable time, unknown schema_version, a JSON array instead of an object). Deterministic.

    Rates are per input event: a duplicate follows within 8 positions; a reordered event is held
    back 1-4 positions; a late event is released once the stream's event time passes its own
    ts plus up to ``late_by``; a bad line is an extra line (kinds in rotation, so every kind
    appears once six bad lines were written). Every line that is not a bad line is the exact
    orjson encoding of an input event."""
    for name, rate in (("duplicate_rate", duplicate_rate), ("reorder_rate", reorder_rate),
                       ("late_rate", late_rate), ("bad_line_rate", bad_line_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in 0..1, got {rate!r}")
    if late_rate + reorder_rate > 1.0:
        raise ValueError("late_rate + reorder_rate must be <= 1")
    return _perturb(events, seed, duplicate_rate, reorder_rate, late_rate, max(1, late_by // _MS), bad_line_rate)


def _perturb(events, seed, duplicate_rate, reorder_rate, late_rate, late_ms, bad_line_rate) -> Iterator[bytes]:
    r = random.Random(f"perturb:{seed}")
    rnd, dumps = r.random, orjson.dumps
    heappush, heappop = heapq.heappush, heapq.heappop
    by_pos: list = []  # (release position, order, line)
    by_time: list = []  # (release event time ms, order, line)
    pos = order = bad = 0
    hold = late_rate + reorder_rate
    last_ts, last_ms = None, None
    for ev in events:
        line = dumps(ev)
        now = None
        if late_rate or by_time:
            ts = ev.get("ts")
            if ts != last_ts:
                last_ts, last_ms = ts, _ts_ms(ts)
            now = last_ms
            if now is not None:
                while by_time and by_time[0][0] <= now:
                    yield heappop(by_time)[2]
        x = rnd() if hold else 1.0
        if x < late_rate and now is not None:
            order += 1
            heappush(by_time, (now + 1 + int(rnd() * late_ms), order, line))
        elif late_rate <= x < hold:
            order += 1
            heappush(by_pos, (pos + 1 + int(rnd() * 4), order, line))
        else:
            yield line
        if duplicate_rate and rnd() < duplicate_rate:
            order += 1
            heappush(by_pos, (pos + int(rnd() * 9), order, line))
        if bad_line_rate and rnd() < bad_line_rate:
            yield _bad_line(r, ev, line, bad)
            bad += 1
        pos += 1
        while by_pos and by_pos[0][0] <= pos:
            yield heappop(by_pos)[2]
    while by_pos:
        yield heappop(by_pos)[2]
    while by_time:
        yield heappop(by_time)[2]
