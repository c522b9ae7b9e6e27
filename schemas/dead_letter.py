"""The dead-letter record: the rejected bytes plus why and where they came from. Pure.

On the dead-letter topic the value is the original bytes untouched and the metadata travels
in headers, so a replay after a fix re-publishes exactly what was sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HEADER_PREFIX = "runlens."


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
        return [(HEADER_PREFIX + name, value.encode()) for name, value in pairs]

    @classmethod
    def from_record(cls, value: bytes | None, key: bytes | None,
                    headers: Iterable[tuple[str, bytes]] | None) -> "DeadLetter":
        meta = {name.removeprefix(HEADER_PREFIX): (val or b"").decode(errors="replace")
                for name, val in (headers or ()) if name.startswith(HEADER_PREFIX)}
        return cls(
            raw=value or b"",
            reason=meta.get("reason", "unknown"),
            source=meta.get("source", "unknown"),
            source_partition=int(meta.get("source_partition", -1) or -1),
            source_offset=int(meta.get("source_offset", -1) or -1),
            field=meta.get("field") or None,
            key=key,
            source_index=int(meta.get("source_index", 0) or 0),
        )
