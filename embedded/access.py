"""Who may use the warehouse process: its two users, their credentials, how a request proves
who it is, and the refusal a client gets, in ClickHouse's own terms. No chDB here: the stack
and the command line import this without loading the engine.

Promises: passwords are generated per stack (``secrets.token_urlsafe(32)``) and never shown by
``repr``; comparisons are constant-time and cover every candidate user, so timing tells nothing.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from schemas.errors import PoisonError, RunlensError

READER_USER = "runlens_reader"   # reads what embedded.read_policy allows
WRITER_USER = "runlens_writer"   # the workers: any statement, inserts (embedded.write_path)

_ERROR_CODE = re.compile(r"Code: (\d+)\.")


class Refused(PoisonError):
    """A request or statement the policy refuses, as ClickHouse would report it.

    The instance's ``code`` is ClickHouse's number (the read endpoint answers with it) and
    shadows the class's short name (``type(exc).code``); ``server_code`` holds the same number."""

    code = "refused"

    # ClickHouse's HTTP status for its error codes (the ones this module raises).
    STATUS = {516: 403, 164: 403, 497: 403, 291: 403, 358: 403, 446: 403, 392: 403,
              62: 400, 36: 400, 211: 400, 229: 413, 381: 411, 202: 503, 48: 501}

    def __init__(self, code: int, name: str, message: str, status: int | None = None):
        super().__init__(message, server_code=code)
        # the instance's number shadows the class's short name on purpose (see the docstring)
        self.code, self.name = code, name  # type: ignore[assignment]
        self.status = status or self.STATUS.get(code, 500)
        self.text = f"Code: {code}. DB::Exception: {message}. ({name})"


@dataclass(frozen=True)
class Credentials:
    """The reader's user and password (never shown by repr)."""

    user: str
    password: str = field(repr=False)

    @classmethod
    def generate(cls, user: str = READER_USER) -> Credentials:
        return cls(user, secrets.token_urlsafe(32))

    @classmethod
    def given_or_generated(cls, user: str, password: str | None) -> Credentials:
        """``user`` with ``password``, or with a generated one when it is unset or empty."""
        return cls(user, password) if password else cls.generate(user)

    def matches(self, user: str, password: str) -> bool:
        """Constant-time comparison of both parts (no early exit on the user name)."""
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok & password_ok

    def dsn(self, url: str) -> str:
        """``url`` (http://host:port) with these credentials in it, as clickhouse-connect takes them."""
        scheme, _, rest = url.partition("://")
        return f"{scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{rest}"


def _failed(user: str) -> Refused:
    return Refused(516, "AUTHENTICATION_FAILED",
                   f"{user or 'default'}: Authentication failed: password is incorrect, or there is no user "
                   "with such name")


class Headers(Protocol):
    """A request's headers: a mapping, or ``http.server``'s ``email.message.Message``."""

    def get(self, name: str, /) -> str | None: ...


def authenticate(headers: Headers, args: Mapping[str, str], *accepted: Credentials) -> Credentials:
    """The one of ``accepted`` whose user and password the request carries, sent the ways a
    ClickHouse server takes them (X-ClickHouse-User / X-ClickHouse-Key headers, HTTP basic auth,
    ``user``/``password`` parameters), or ``Refused`` (401 when none were sent, 403 when wrong or
    sent more than one way). Every candidate is compared, so timing tells nothing of which."""
    ways = []
    if headers.get("X-ClickHouse-User") is not None or headers.get("X-ClickHouse-Key") is not None:
        ways.append((headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key") or ""))
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise Refused(516, "AUTHENTICATION_FAILED", "Invalid authentication: only Basic authorization "
                          "and ClickHouse's user/password headers are supported")
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise _failed("") from None
        if not sep:
            raise _failed(user)
        ways.append((user, password))
    if "user" in args or "password" in args:
        ways.append((args.get("user") or "default", args.get("password") or ""))
    if not ways:   # a ClickHouse server would try user `default` without a password
        raise Refused(516, "AUTHENTICATION_FAILED", "default: Authentication failed: password is incorrect, "
                      "or there is no user with such name (this endpoint requires the reader's user and "
                      "password)", status=401)
    if len(ways) > 1:
        raise Refused(516, "AUTHENTICATION_FAILED", "Invalid authentication: it is not allowed to use "
                      "several authentication methods (headers, Authorization, user/password parameters) "
                      "simultaneously")
    user, password = ways[0]
    matched = [credentials for credentials in accepted if credentials.matches(user, password)]
    if not matched:
        raise _failed(user)
    return matched[0]


class EngineError(RunlensError):
    """ClickHouse refused or failed the statement; ``text`` is its error text, ``code`` its code
    (an int shadowing the class's short name ``type(exc).code``, as on ``Refused``)."""

    code = "engine"

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text if text.startswith("Code:") else f"Code: 1000. DB::Exception: {text}"
        match = _ERROR_CODE.search(self.text)
        code = int(match.group(1)) if match else 1000
        # the instance's number shadows the class's short name on purpose (see the docstring)
        self.code = code  # type: ignore[assignment]
        self.server_code = code
        self.status = Refused.STATUS.get(code, 500)
