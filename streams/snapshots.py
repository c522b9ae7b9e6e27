"""A detector partition's snapshot in the detector-state table: chunks under a manifest.

A snapshot is written as chunks under the keys of the generation not in use, then the manifest
that makes it current; a crash midway leaves the previous, complete generation current, and a
snapshot that is not whole reads as none (its partition is then rebuilt from the topic).
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import orjson

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 2.0
"""How often (at most) a detector partition's state is written to the detector-state table."""
SNAPSHOT_CHUNK_BYTES = 512 * 1024
"""A snapshot is written in table values of at most this size (a Kafka record must stay under
the producer's and broker's 1 MB defaults)."""


def write_snapshot(table: Any, partition: int, blob: bytes) -> None:
    """Write ``blob`` as detector partition ``partition``'s snapshot: in chunks under keys of the
    generation not in use, then the manifest (key ``str(partition)``: generation, chunk count,
    CRC32) that makes it current. Called within stream iteration, so every value goes to that
    partition of the changelog. A crash midway leaves the manifest on the previous, complete
    generation."""
    manifest = table.get(str(partition))
    generation = 1 - int(orjson.loads(manifest)["generation"]) if manifest else 0
    chunks = [blob[i:i + SNAPSHOT_CHUNK_BYTES] for i in range(0, max(len(blob), 1), SNAPSHOT_CHUNK_BYTES)]
    for index, chunk in enumerate(chunks):
        table[f"{partition}:{generation}:{index}"] = chunk
    table[str(partition)] = orjson.dumps({"generation": generation, "chunks": len(chunks),
                                         "crc32": zlib.crc32(blob), "bytes": len(blob)})


def read_snapshot(table: Any, partition: int) -> bytes | None:
    """The current snapshot of detector partition ``partition`` (None: none, or not whole)."""
    manifest = table.get(str(partition))
    if not manifest:
        return None
    found = orjson.loads(manifest)
    chunks = [table.get(f"{partition}:{found['generation']}:{i}") for i in range(int(found["chunks"]))]
    blob = b"".join(chunk for chunk in chunks if chunk)
    if any(not chunk for chunk in chunks) or zlib.crc32(blob) != found["crc32"]:
        log.warning("detector partition %d: its snapshot is not whole; starting from the topic", partition)
        return None
    return blob
