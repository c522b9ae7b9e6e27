"""The dead-letter record: the rejected bytes plus why and where they came from. Pure.

On the dead-letter topic the value is the original bytes untouched and the metadata travels
in headers, so a replay after a fix re-publishes exactly what was sent, except when the bytes
were over ``MAX_RAW_BYTES`` (a whole absurd record, an enormous line): those are kept
truncated, and the reason says so, so that producing the dead letter can never fail on size.

``from_record`` reads whatever is on the dead-letter topic, runlens' own records or anyone
else's: it never raises. Missing headers take defaults (reason and source ``unknown``,
positions -1, index 0); a header value that is not a number of its column's type takes the
default too, and its text is kept at the end of the reason (``dead_letters`` has no column
for raw headers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

HEADER_PREFIX = "runlens."
_INTEGER = re.compile(r"\s*[+-]?[0-9]{1,40}\s*", re.ASCII)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT32_MAX = 2**32 - 1
"""Types of the ``dead_letters`` position columns: source_partition Int32, source_offset Int64,
source_index UInt32."""

MAX_RAW_BYTES = 768 * 1024
"""Most bytes of a rejected line or record a dead letter keeps (Kafka producers refuse
records over ~1 MB by default; the rest of a dead letter is at most a few KiB)."""
MAX_KEY_BYTES = 1024
MAX_TEXT_CHARS = 2048
"""Most characters of reason, field and source (headers stay small)."""

_POSITIONS = {  # header -> (low, high, default)
    "source_partition": (INT32_MIN, INT32_MAX, -1),
    "source_offset": (INT64_MIN, INT64_MAX, -1),
    "source_index": (0, UINT32_MAX, 0),
}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    reason: str
    source: str                 # topic name, or "file:<path>" / "stdin" for `runlens publish`
    source_partition: int       # partition, or -1 for files
    source_offset: int          # offset, or 1-based line number for files
    field: str | None = None
    key: bytes | None = None
    source_index: int = 0       # position of the event inside a multi-event record

    def headers(self) -> list[tuple[str, bytes]]:
        pairs = [
            ("reason", self.reason),
            ("source", self.source),
            ("source_partition", str(self.source_partition)),
            ("source_offset", str(self.source_offset)),
            ("source_index", str(self.source_index)),
        ]
        if self.field:
            pairs.append(("field", self.field))
        return [(HEADER_PREFIX + name, value.encode(errors="replace")) for name, value in pairs]

    def bounded(self) -> DeadLetter:
        """This dead letter with ``raw`` cut to ``MAX_RAW_BYTES`` (the reason says so), the key
        to ``MAX_KEY_BYTES`` and the texts to ``MAX_TEXT_CHARS``; itself when all fit."""
        if len(self.raw) <= MAX_RAW_BYTES and (self.key is None or len(self.key) <= MAX_KEY_BYTES) \
                and len(self.reason) <= MAX_TEXT_CHARS and len(self.source) <= MAX_TEXT_CHARS \
                and (self.field is None or len(self.field) <= MAX_TEXT_CHARS):
            return self
        reason = self.reason[:MAX_TEXT_CHARS]
        if len(self.raw) > MAX_RAW_BYTES:
            reason = f"{reason[:MAX_TEXT_CHARS - 80]} (kept the first {MAX_RAW_BYTES} of {len(self.raw)} bytes)"
        return replace(self, raw=self.raw[:MAX_RAW_BYTES], reason=reason, source=self.source[:MAX_TEXT_CHARS],
                       field=None if self.field is None else self.field[:MAX_TEXT_CHARS],
                       key=None if self.key is None else self.key[:MAX_KEY_BYTES])

    @classmethod
    def from_record(cls, value: Any, key: Any, headers: Any) -> DeadLetter:
        """The dead letter a record of the dead-letter topic carries. Never raises (see the
        module docstring for what odd headers become)."""
        meta: dict[str, str] = {}
        for pair in _pairs(headers):
            name, val = pair
            name = _text(name)
            if name.startswith(HEADER_PREFIX):
                meta[name[len(HEADER_PREFIX):]] = _text(val)
        odd: list[str] = []
        positions = {name: _position(meta, name, *bounds, odd) for name, bounds in _POSITIONS.items()}
        reason = meta.get("reason") or "unknown"
        if odd:
            reason = f"{reason} [unreadable dead-letter headers: {', '.join(odd)}]"
        return cls(
            raw=_bytes(value) or b"",
            reason=reason[:MAX_TEXT_CHARS * 2],
            source=(meta.get("source") or "unknown")[:MAX_TEXT_CHARS],
            field=(meta.get("field") or None) and meta["field"][:MAX_TEXT_CHARS],
            key=_bytes(key),
            **positions,
        )


def _pairs(headers: Any) -> list[Sequence[Any]]:
    if not headers:
        return []
    try:
        items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    except Exception:   # noqa: BLE001 - not iterable: no headers
        return []
    return [item for item in items if isinstance(item, (tuple, list)) and len(item) == 2]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(errors="replace")
    text = value if isinstance(value, str) else repr(value)
    return text.encode(errors="replace").decode()   # lone surrogates cannot be stored


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return _text(value).encode()


def _position(meta: dict[str, str], name: str, low: int, high: int, default: int, odd: list[str]) -> int:
    text = meta.get(name)
    if text is None or text == "":
        return default
    if _INTEGER.fullmatch(text):
        number = int(text)
        if low <= number <= high:
            return number
    odd.append(f"{name}={text[:64]!r}")
    return default
