"""Hiding the secrets in URLs and in text that holds URLs (pure functions, no settings).

Below every package that shows a URL: the settings' repr, the stack file, log lines and error
messages all redact through here (``runlens.settings`` re-exports these names)."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import parse_qsl, urlencode

MASK = "***"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred", re.IGNORECASE)


def _parts(url: str) -> tuple[str, str | None, str] | None:
    """(scheme://, user info or None, host and the rest) of a URL; None when ``url`` is not one.
    The user info ends at the last @ before the query: a raw password may hold / or @."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    rest = url[scheme.end():]
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, query_at)
    return (scheme.group(0), rest[:at], rest[at + 1:]) if at >= 0 else (scheme.group(0), None, rest)


def _path_start(hostpart: str) -> int:
    return min((i for i in (hostpart.find(c) for c in "/?#") if i >= 0), default=len(hostpart))


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``url`` safe to show: the password of its user info and the values of secret-looking query
    parameters (password, token, key, signature...) become ``***``; with ``keep_path=False`` (a
    webhook whose path is the secret) everything after the host does too. Not a URL: unchanged."""
    parts = _parts(url)
    if parts is None:
        return url
    scheme, userinfo, hostpart = parts
    if userinfo is not None and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    if not keep_path:
        end = _path_start(hostpart)
        hostpart = hostpart[:end] + ("/" + MASK if end < len(hostpart) else "")
    elif "?" in hostpart:
        head, _, query = hostpart.partition("?")
        query, hash_, fragment = query.partition("#")
        pairs = [(k, MASK if _SECRET_KEY.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        hostpart = head + "?" + urlencode(pairs, safe="*") + hash_ + fragment
    return scheme + (userinfo + "@" if userinfo is not None else "") + hostpart


def url_secrets(url: str, *, keep_path: bool = True) -> set[str]:
    """The parts of ``url`` that ``redact_url`` hides (to scrub them wherever else they appear)."""
    parts = _parts(url)
    if parts is None:
        return set()
    _, userinfo, hostpart = parts
    found = {userinfo.split(":", 1)[1]} if userinfo is not None and ":" in userinfo else set()
    if not keep_path:
        found.add(hostpart[_path_start(hostpart):].lstrip("/"))
    elif "?" in hostpart:
        query = hostpart.partition("?")[2].partition("#")[0]
        found |= {v for k, v in parse_qsl(query) if _SECRET_KEY.search(k)}
    return {f for f in found if f}


def redact_text(text: str, secrets: Collection[str] = ()) -> str:
    """``text`` (an error message, a log line) with every URL in it redacted (``redact_url``)
    and every literal occurrence of ``secrets`` replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:   # shorter "secrets" would blank out ordinary words
            text = text.replace(secret, MASK)
    return text
