"""Walking a loaded template (`lakehub.cfn.template.load`: long-form intrinsics): its resources,
properties, every branch of an `Fn::If`, the names a value refers to, its literal strings.

The checks, the cost model and the emulator's unmodelled parts read templates through these.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

NO_VALUE = {"Ref": "AWS::NoValue"}


def resources_of(template: dict, *types: str) -> Iterator[tuple[str, dict]]:
    for name, res in (template.get("Resources") or {}).items():
        if not types or res.get("Type") in types:
            yield name, res


def props(res: dict) -> dict:
    p = res.get("Properties") or {}
    return p if isinstance(p, dict) else {}


def alternatives(value: Any) -> list[Any]:
    """The values `value` may take: both branches of an Fn::If (recursively); AWS::NoValue is
    dropped. Other intrinsics are returned as they are."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        _, a, b = value["Fn::If"]
        return alternatives(a) + alternatives(b)
    if value == NO_VALUE:
        return []
    return [value]


def items(value: Any) -> list[Any]:
    """The elements a list property may hold, Fn::If inside and around it expanded."""
    out: list[Any] = []
    for alt in alternatives(value):
        if isinstance(alt, list):
            for element in alt:
                out += alternatives(element)
        elif alt is not None:
            out.append(alt)
    return out


def get(value: Any, *path: str) -> list[Any]:
    """Values at `path` below `value`, following every Fn::If branch (missing -> [])."""
    current = alternatives(value)
    for key in path:
        nxt: list[Any] = []
        for v in current:
            if isinstance(v, dict) and key in v:
                nxt += alternatives(v[key])
        current = nxt
    return current


def refs(value: Any) -> set[str]:
    """Logical names a value refers to: Ref, GetAtt, and ${X} / ${X.Attr} inside Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= refs(v)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
            elif key == "Fn::Sub":
                text, variables = arg if isinstance(arg, list) else (arg, {})
                for m in re.finditer(r"\$\{([^}!][^}]*)\}", text):
                    name = m.group(1).split(".", 1)[0]
                    if name not in variables:
                        found.add(name)
                found |= refs(variables)
            else:
                found |= refs(arg)
    return found


def strings(value: Any) -> Iterator[str]:
    """Every literal string inside a value (Fn::Sub text included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def literal_values(template: dict, value: Any) -> list[Any]:
    """Literal values a property may take: Fn::If branches, and for a Ref to a parameter its
    default and allowed values (an unconstrained parameter adds None: "unknown")."""
    out: list[Any] = []
    for alt in alternatives(value):
        if isinstance(alt, dict) and set(alt) == {"Ref"} and alt["Ref"] in (template.get("Parameters") or {}):
            spec = template["Parameters"][alt["Ref"]]
            if "Default" in spec:
                out.append(spec["Default"])
            out += list(spec.get("AllowedValues", []))
            if "AllowedValues" not in spec:
                out.append(None)
        else:
            out.append(alt)
    return out
