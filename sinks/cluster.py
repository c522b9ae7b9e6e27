"""Cluster form of the migrations: the single-node DDL rendered for a replicated ClickHouse cluster.

The migrations in ``sinks/migrations`` stay the one source. ``on_cluster(statement, cluster)`` turns
one of their statements into its cluster form, a pure text transformation:

- every ``CREATE`` / ``ALTER`` / ``DROP`` / ``TRUNCATE`` / ``RENAME`` / ``EXCHANGE`` of a database,
  table, view or materialized view carries ``ON CLUSTER <cluster>`` (run on every host of the
  cluster; ClickHouse waits for them, ``distributed_ddl_task_timeout``);
- every ``ENGINE = <X>MergeTree[(args)]`` becomes
  ``Replicated<X>MergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}'[, args])``
  (the server's ``macros`` fill in shard and replica);
- ``non_replicated_deduplication_window = N`` becomes ``replicated_deduplication_window = N``: a
  replicated table keeps the hashes (and ``insert_deduplication_token``) of its last N insert
  blocks in Keeper, shared by every replica, so a worker's retried batch is dropped whichever
  replica it lands on, as the single-node window drops it on one server;
- ``INSERT`` / ``SELECT`` (the migrations' guarded backfills) are left alone: they run on the one
  replica ``runlens migrate`` is connected to, and replication copies what they write.

No Distributed tables: the cluster has one shard and N replicas (``docker-compose.cluster.yml``),
so every replica holds every row and reads go to the local replicated tables and views of
whichever replica they reach. (Several shards would need a ``Distributed`` table per read
table and per insert target, and sharding by (account, run) so that a run's events meet in
one shard's views; not done.)

On crash or retry: the statements keep their ``IF NOT EXISTS`` / ``OR REPLACE``, so ``runlens migrate``
re-run after a crash repeats nothing harmful; an ``ON CLUSTER`` statement is queued in Keeper
(``distributed_ddl``) and run by every host, one that is down when it returns (``migrate`` then
fails with a timeout naming the host, and the re-run finds the tables existing).

Outside the migrations: ``runlens retention``'s ``ALTER TABLE ... MODIFY TTL`` needs no ``ON CLUSTER``
(a Replicated table's metadata changes replicate through Keeper); tenant users and row policies
come from ``users.d`` files every replica mounts (``sinks/tenancy.py``'s SQL form would have to be
run on each replica, or kept in a replicated access storage: not done).

``single_node(statement)`` is the inverse, so tests can check that rendering loses nothing:
``single_node(on_cluster(s, c)) == s`` for every migration statement. A statement of a kind
the renderer does not know (``SYSTEM``, ``OPTIMIZE``, ...) raises ``ClusterDDLError`` instead of
being run on one host only.
"""

from __future__ import annotations

import re

ZOOKEEPER_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
_REPLICATED_ARGS = f"'{ZOOKEEPER_PATH}', '{REPLICA_NAME}'"

_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NAME = r"(?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?"
_FLAGS = re.IGNORECASE | re.DOTALL

# Where ON CLUSTER goes: right after the object's name (group "head").
_AFTER_NAME = [
    re.compile(rf"^(?P<head>\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?"
               rf"(?:TABLE|VIEW|MATERIALIZED\s+VIEW|LIVE\s+VIEW|DICTIONARY|DATABASE)\s+"
               rf"(?:IF\s+NOT\s+EXISTS\s+)?{_NAME})", _FLAGS),
    re.compile(rf"^(?P<head>\s*ALTER\s+TABLE\s+{_NAME})", _FLAGS),
    re.compile(rf"^(?P<head>\s*(?:DROP|TRUNCATE)\s+(?:TEMPORARY\s+)?(?:TABLE|VIEW|DICTIONARY|DATABASE)\s+"
               rf"(?:IF\s+EXISTS\s+)?{_NAME})", _FLAGS),
]
# Where ON CLUSTER goes at the end of the statement.
_AT_END = re.compile(r"^\s*(?:RENAME\s+(?:TABLE|DICTIONARY|DATABASE)|EXCHANGE\s+(?:TABLES|DICTIONARIES))\b", _FLAGS)
# Statements that are data, not schema: replicated by the tables they write to.
_DATA = re.compile(r"^\s*(?:INSERT|SELECT|WITH)\b", _FLAGS)

_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<family>[A-Za-z]*)MergeTree\b", re.IGNORECASE)
_REPLICATED_ENGINE = re.compile(
    r"\bENGINE\s*=\s*Replicated(?P<family>[A-Za-z]*)MergeTree\b", re.IGNORECASE)
_ON_CLUSTER = re.compile(r"\s+ON\s+CLUSTER\s+(?:`[^`]+`|'[^']*'|\w+)", re.IGNORECASE)
_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\b", re.IGNORECASE)
_REPLICATED_WINDOW = re.compile(r"(?<![A-Za-z_])replicated_deduplication_window\b", re.IGNORECASE)


class ClusterDDLError(ValueError):
    """A statement the cluster renderer cannot put in cluster form."""


def check_cluster(name: str) -> str:
    """A cluster name safe to place in DDL, or ValueError."""
    if not _CLUSTER_NAME.match(name):
        raise ValueError(f"invalid cluster name {name!r}: use letters, digits and underscores")
    return name


def _balanced(text: str, start: int) -> int:
    """Index just past the parenthesis closing the one at ``start`` (quotes respected)."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ClusterDDLError(f"unbalanced parentheses in {text[start:start + 80]!r}")


def _replicated_engines(statement: str) -> str:
    out, pos = [], 0
    for match in _ENGINE.finditer(statement):
        if match.group("family").lower().startswith("replicated"):
            raise ClusterDDLError(f"already replicated: {match.group(0)!r}")
        out.append(statement[pos:match.start("family")])     # "ENGINE = " as written
        engine = f"Replicated{match.group('family')}MergeTree"
        end = match.end()
        rest = statement[end:]
        stripped = rest.lstrip()
        if stripped.startswith("("):
            open_at = end + len(rest) - len(stripped)
            close_at = _balanced(statement, open_at)
            args = statement[open_at + 1:close_at - 1].strip()
            out.append(f"{engine}({_REPLICATED_ARGS}{', ' + args if args else ''})")
            pos = close_at
        else:
            out.append(f"{engine}({_REPLICATED_ARGS})")
            pos = end
    out.append(statement[pos:])
    return "".join(out)


def on_cluster(statement: str, cluster: str) -> str:
    """``statement`` (one single-node migration statement) in cluster form; see the module doc."""
    clause = f" ON CLUSTER {check_cluster(cluster)}"
    if _ON_CLUSTER.search(statement) or _REPLICATED_WINDOW.search(_WINDOW.sub("", statement)):
        raise ClusterDDLError("a single-node migration statement must not name a cluster or replication "
                              f"settings: {statement[:80]!r}")
    if _DATA.match(statement):
        return statement
    for pattern in _AFTER_NAME:
        match = pattern.match(statement)
        if match:
            head = match.group("head")
            rendered = head + clause + statement[match.end():]
            break
    else:
        if not _AT_END.match(statement):
            raise ClusterDDLError(f"no cluster form known for: {statement[:80]!r}")
        rendered = statement.rstrip().rstrip(";") + clause
    return _WINDOW.sub("replicated_deduplication_window", _replicated_engines(rendered))


def single_node(statement: str) -> str:
    """The inverse of ``on_cluster``: no ``ON CLUSTER``, plain MergeTree engines, the single-node
    deduplication window."""
    text = _ON_CLUSTER.sub("", statement)
    prefix = re.escape(_REPLICATED_ARGS)

    def plain(match: re.Match[str]) -> str:
        return f"{match.group('engine')}{match.group('family')}MergeTree"

    text = re.sub(rf"(?P<engine>\bENGINE\s*=\s*)Replicated(?P<family>[A-Za-z]*)MergeTree\({prefix}\)",
                  plain, text)
    text = re.sub(rf"(?P<engine>\bENGINE\s*=\s*)Replicated(?P<family>[A-Za-z]*)MergeTree\({prefix},\s*",
                  lambda m: plain(m) + "(", text)
    return _REPLICATED_WINDOW.sub("non_replicated_deduplication_window", text)


def replicated_engines(statement: str) -> list[str]:
    """The engine clauses of ``statement`` naming a Replicated MergeTree, with their arguments
    (for tests and reviews)."""
    found = []
    for match in _REPLICATED_ENGINE.finditer(statement):
        rest = statement[match.end():]
        if rest.startswith("("):
            found.append(statement[match.start():_balanced(statement, match.end())])
        else:
            found.append(match.group(0))
    return found
