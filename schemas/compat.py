"""Backward-compatibility check between two versions of the event JSON Schema. Pure.

A change is breaking when an event valid under the old schema could be rejected by the new
one: a field that became required, a property removed while others are closed, a type or
format changed, an enum value removed, a bound tightened, an event type removed.
"""

from __future__ import annotations

from typing import Any


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return _resolve(schema, schema["$defs"][ref.split("/")[-1]])
    return node


def _variants(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Event type -> its object schema."""
    out = {}
    for option in schema.get("oneOf", schema.get("anyOf", [])):
        node = _resolve(schema, option)
        tag = node.get("properties", {}).get("type", {}).get("const")
        if tag:
            out[tag] = node
    return out


def _types(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    node = _resolve(schema, node)
    if "anyOf" in node:
        return set().union(*(_types(schema, n) for n in node["anyOf"]))
    if "enum" in node:
        return {f"enum:{v}" for v in node["enum"]}
    if "const" in node:
        return {f"const:{node['const']}"}
    kind = node.get("type", "any")
    return {f"{kind}:{node.get('format', '')}"}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` would reject events ``old`` accepts (empty when compatible)."""
    problems = []
    old_variants, new_variants = _variants(old), _variants(new)
    for tag, before in old_variants.items():
        after = new_variants.get(tag)
        if after is None:
            problems.append(f"event type {tag!r} was removed")
            continue
        for field in set(after.get("required", [])) - set(before.get("required", [])):
            problems.append(f"{tag}: field {field!r} became required")
        for field, spec in before.get("properties", {}).items():
            if field not in after.get("properties", {}):
                if after.get("additionalProperties") is False:
                    problems.append(f"{tag}: field {field!r} was removed")
                continue
            lost = _types(old, spec) - _types(new, after["properties"][field])
            if lost:
                problems.append(f"{tag}: field {field!r} no longer accepts {sorted(lost)}")
            old_node, new_node = _resolve(old, spec), _resolve(new, after["properties"][field])
            for bound in ("minimum", "minLength"):
                if new_node.get(bound, float("-inf")) > old_node.get(bound, float("-inf")):
                    problems.append(f"{tag}: field {field!r} has a tighter {bound}")
            for bound in ("maximum", "maxLength"):
                if new_node.get(bound, float("inf")) < old_node.get(bound, float("inf")):
                    problems.append(f"{tag}: field {field!r} has a tighter {bound}")
    return problems
