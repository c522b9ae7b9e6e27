"""Failures the workload's steps raise: error codes with their class, retry and duration
behaviour, and the variable messages, stack traces and suggested fixes of each."""

from __future__ import annotations

import random
from dataclasses import dataclass

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


@dataclass(slots=True, kw_only=True)
class _ErrEnv:
    """What an error message may mention about the failing step."""

    account: str
    domain: str
    run_id: str
    wf_id: str
    version: int
    step: str  # step name
    index: int  # step index
    contact: str  # contact id (or a placeholder)
    email: str
    system: str | None  # external system of the step (SendGrid, HubSpot, ...)
    url: str
    card_id: str | None
    kind: str | None  # action kind


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
                    f"{r.randrange(10, 99)}x-{r.randrange(1000, 9999)}' is not a valid E.164 number "
                    f"(contact {e.contact})")
        if which == 1:
            return (f"Field 'birthday' value '{r.randrange(30, 32)}/02/{r.randrange(1950, 2008)}' "
                    "is not a valid date")
        return (f"Payload field 'order.total' value '{r.randrange(1, 999)},{r.randrange(10, 99)}' "
                "is not a decimal number")
    if code == "NULL_VALUE":
        path = r.choice(("contact.company", "contact.email", "entry.answers[2]", "order.customer.id",
                         "form.fields.country"))
        return f"Value of '{path}' is null at step {e.index + 1} ('{e.step}') in run {e.run_id}"
    if code == "TYPE_MISMATCH":
        field, value = r.choice((("nps_score", f"{r.randrange(0, 11)}/10"),
                                 ("order.total", f"${r.randrange(5, 900)}"),
                                 ("entry.score", f"{r.randrange(0, 100)}%"),
                                 ("lead.employees", f"{r.randrange(10, 500)}+")))
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
            path = r.choice((f"GET /v1/persons/search?term={e.contact}",
                             f"PUT /v1/persons/{r.randrange(1000, 999999)}"))
        elif e.system == "Mailchimp":
            path = f"PUT /3.0/lists/{_hexs(r, 10)}/members/{_hexs(r, 32)}"
        else:
            path = r.choice(("POST /services/data/v59.0/sobjects/Lead",
                             f"PATCH /services/data/v59.0/sobjects/Contact/003{_hexs(r, 12)}",
                             "GET /services/data/v59.0/query?q=SELECT+Id+FROM+Contact+LIMIT+"
                             f"{r.choice((200, 500, 2000))}"))
        return f"{e.system or 'CRM'} API did not answer within 30s ({path})"
    if code == "CRM_SYNC_FAILED":
        status, detail = r.choice(((409, f"duplicate record {r.randrange(10**6, 10**8)}"), (429, "rate limit exceeded"),
                                   (500, f"upstream error id {_hexs(r, 8)}"), (422, "field 'lifecyclestage' rejected")))
        reason = _HTTP_REASONS.get(status, {409: "Conflict", 422: "Unprocessable Entity"}.get(status, "Error"))
        return f"{e.system or 'CRM'} sync failed for contact {e.contact}: HTTP {status} {reason} ({detail})"
    if code == "WEBHOOK_DELIVERY_FAILED":
        status = r.choice((500, 502, 502, 503, 504, 429, 404, 410))
        return (f"Webhook POST {e.url} failed with HTTP {status} {_HTTP_REASONS[status]} "
                f"after {r.randrange(80, 4000)} ms")
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
    "INVALID_API_CREDENTIALS": "flowengine.clients.http.Unauthorized",
    "DELETED_RESOURCE": "flowengine.errors.ResourceDeleted",
    "MISSING_CONTACT_PROPERTY": "flowengine.errors.MissingProperty",
    "INVALID_DATA_FORMAT": "flowengine.errors.InvalidFormat",
    "NULL_VALUE": "flowengine.errors.NullValue", "TYPE_MISMATCH": "TypeError",
    "EMAIL_SERVICE_UNAVAILABLE": "flowengine.providers.ProviderUnavailable", "API_TIMEOUT": "asyncio.TimeoutError",
    "CRM_TIMEOUT": "flowengine.clients.crm.CrmTimeout", "CRM_SYNC_FAILED": "flowengine.clients.crm.CrmSyncError",
    "WEBHOOK_DELIVERY_FAILED": "flowengine.clients.http.HTTPStatusError",
    "INFINITE_LOOP": "flowengine.errors.LoopLimitExceeded",
    "MISSING_BRANCH": "flowengine.errors.UnhandledBranch",
    "INVALID_VARIABLE_REFERENCE": "flowengine.errors.UnknownVariable",
    "INTERNAL_ERROR": "flowengine.engine.leases.LeaseLost",
}


def _make_error(code: str, r: random.Random, e: _ErrEnv, kind: str) -> dict[str, str]:
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
