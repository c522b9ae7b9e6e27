"""The workload's tenants and workflow templates: accounts with their time zones and sizes,
site and card names, the daily and weekly traffic shape, and the step templates."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from producers.workload.spec import _DAY_MS, _HOUR_MS

_Fails = tuple[tuple[str, float], ...]  # (error code, probability per attempt)


class _StepTemplate(TypedDict):
    """One step of a workflow template; which optional keys are set depends on ``type``."""

    type: str  # trigger, action, condition, delay
    name: str
    ms: int  # median duration
    sigma: float  # log-normal spread of the duration
    fails: _Fails
    when: NotRequired[tuple[int, bool] | None]  # (condition step index, result it needs)
    event: NotRequired[str]  # trigger
    kind: NotRequired[str]  # action
    target: NotRequired[str]  # action; may hold {domain}, {acct}, {h6}, {h8}, {h24} or @email / @contact
    system: NotRequired[str | None]  # action
    expr: NotRequired[str]  # condition
    p_true: NotRequired[float | str]  # condition: probability of true, or "contact" (true when a contact is known)
    branches: NotRequired[tuple[str, str]]  # condition: (true branch, false branch)
    seconds: NotRequired[int]  # delay


class _WorkflowTemplate(TypedDict):
    slug: str
    name: str
    type: str
    adhoc: float
    p_contact: float
    triggers: dict[str, float]
    schedule: NotRequired[tuple[int, int, float]]
    schedule_label: NotRequired[str]
    steps: list[_StepTemplate]


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


def _T(name: str, event: str, fails: _Fails = ()) -> _StepTemplate:
    return dict(type="trigger", name=name, event=event, ms=12, sigma=0.5, fails=fails)


def _A(name: str, kind: str, target: str, ms: int, sigma: float = 0.7, fails: _Fails = (),
       when: tuple[int, bool] | None = None, system: str | None = None) -> _StepTemplate:
    return dict(type="action", name=name, kind=kind, target=target, ms=ms, sigma=sigma, fails=fails,
                when=when, system=system)


def _C(name: str, expr: str, p_true: float | str, branches: tuple[str, str] = ("yes", "no"), fails: _Fails = (),
       when: tuple[int, bool] | None = None) -> _StepTemplate:
    return dict(type="condition", name=name, expr=expr, p_true=p_true, branches=branches, ms=14,
                sigma=0.6, fails=fails, when=when)


def _D(name: str, seconds: int, when: tuple[int, bool] | None = None) -> _StepTemplate:
    return dict(type="delay", name=name, seconds=seconds, ms=3, sigma=0.3, fails=(), when=when)


_SLACK = "https://hooks.slack.com/services/T0{h6}/B0{h8}/{h24}"

# Workflow templates. ``when=(i, result)``: the step runs only when condition step i gave
# ``result``. ``schedule``: (period ms, offset ms in local time, batch size as a share of the
# account's hourly volume). ``adhoc``: weight of non-scheduled runs.
_TEMPLATES: tuple[_WorkflowTemplate, ...] = (
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
                _A("Issue reward coupon", "coupon", "QUIZ15", 150, when=(1, True),
                   fails=(("INVALID_DATA_FORMAT", 0.002),)),
                _A("Send results email", "email", "@email", 450, system="Postmark",
                   fails=(("EMAIL_SERVICE_UNAVAILABLE", 0.010), ("INVALID_VARIABLE_REFERENCE", 0.003),
                          ("MISSING_CONTACT_PROPERTY", 0.003)))]),
    dict(slug="card-lead-mailchimp", name="Competition entrants to Mailchimp", type="card", adhoc=4.0, p_contact=1.0,
         triggers={"automatic": 0.90, "api": 0.05, "manual": 0.05},
         steps=[_T("Form submitted on card", "card.form_submitted"),
                _A("Validate entry data", "validate", "entry", 30,
                   fails=(("INVALID_DATA_FORMAT", 0.006), ("NULL_VALUE", 0.003))),
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
                   fails=(("API_TIMEOUT", 0.02), ("WEBHOOK_DELIVERY_FAILED", 0.01),
                          ("INVALID_API_CREDENTIALS", 0.004))),
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
                _C("Order total > $500?", "order.total > 500", 0.12, ("vip", "standard"),
                   fails=(("TYPE_MISMATCH", 0.004),)),
                _A("Tag as VIP customer", "tag", "vip", 60, when=(2, True)),
                _A("Send order to ERP", "webhook", "https://erp.{domain}/api/v1/orders", 700, 1.1,
                   fails=(("API_TIMEOUT", 0.012), ("WEBHOOK_DELIVERY_FAILED", 0.015),
                          ("INVALID_API_CREDENTIALS", 0.001), ("INTERNAL_ERROR", 0.0005)))]),
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
