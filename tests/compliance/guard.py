"""Evaluate lakehub's templates with the AWS Control Tower proactive controls (CloudFormation Guard).

The controls come from the npm package @cdklabs/cdk-validator-cfnguard (pinned in package.json,
installed by `make setup`): its rules/control-tower/cfn-guard/*/*.guard are the Guard rules the
Control Tower hooks run, rules/control-tower/metadata the control ids and the resource types each
control evaluates, and bin/ the cfn-guard binary the rules are written for.

A control *applies* when a template of the set holds a resource of a type it evaluates. A hook
sees a stack's resolved properties; the templates are evaluated as launched with their parameter
defaults (a `Ref` to a parameter is replaced by its default or, without one, a stand-in; a `Fn::Sub`
of parameters becomes its string; conditions the defaults decide are
applied: a resource whose condition is false is not created and is not evaluated), everything
else as written (references to resources stay references, which the rules follow).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import PSEUDO, load

ROOT = TEMPLATES_DIR.parent
PACKAGE = ROOT / "node_modules" / "@cdklabs" / "cdk-validator-cfnguard"
RULES_DIR = PACKAGE / "rules" / "control-tower" / "cfn-guard"
METADATA_DIR = PACKAGE / "rules" / "control-tower" / "metadata"
CONTROL_ID = re.compile(r"CT\.[A-Z0-9]+\.PR\.\d+")


def guard_binary() -> Path:
    system = "macos" if sys.platform == "darwin" else "ubuntu"
    arch = {"arm64": "aarch64", "amd64": "x86_64"}.get(platform.machine().lower(), platform.machine().lower())
    return PACKAGE / "bin" / system / arch / "cfn-guard"


@dataclass(frozen=True)
class Control:
    id: str
    rule: str  # the Guard rule's name, as cfn-guard reports it
    path: Path
    resource_types: frozenset[str]
    name: str


@cache
def controls() -> dict[str, Control]:
    """Every Control Tower proactive control in the package, by rule name."""
    found = {}
    for path in sorted(RULES_DIR.glob("*/*.guard")):
        meta = json.loads((METADATA_DIR / path.parent.name / f"{path.stem}.metadata.json").read_text())
        rule = re.search(r"^rule (\w+) when", path.read_text(), re.M).group(1)
        found[rule] = Control(meta["Id"], rule, path, frozenset(meta["EvaluatedResourceTypes"]), meta["DisplayName"])
    return found


UNKNOWN = object()


def _with_defaults(node, defaults: dict, conditions: dict):
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in defaults:
            return defaults[node["Ref"]]
        if set(node) == {"Fn::Sub"}:
            return _sub(node, defaults, conditions)
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            value = conditions.get(name, UNKNOWN)
            if value is not UNKNOWN:
                chosen = _with_defaults(yes if value else no, defaults, conditions)
                return None if chosen == {"Ref": "AWS::NoValue"} else chosen
        return {k: v for k, v in ((k, _with_defaults(v, defaults, conditions)) for k, v in node.items()) if v is not None}
    if isinstance(node, list):
        return [v for v in (_with_defaults(v, defaults, conditions) for v in node) if v is not None]
    return node


SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


def _sub(node: dict, defaults: dict, conditions: dict):
    """A Fn::Sub whose variables are all parameters, pseudo parameters or resolved values of its
    own map becomes the string a hook sees; one naming a resource's attribute stays as it is."""
    arg = node["Fn::Sub"]
    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
    values = {**{k: v for k, v in PSEUDO.items() if v is not None}, **defaults}
    for k, v in variables.items():
        v = _with_defaults(v, defaults, conditions)
        values[k] = v
    names = SUB_VAR.findall(text)
    if all(isinstance(values.get(n), (str, int)) for n in names):
        return SUB_VAR.sub(lambda m: str(values[m.group(1)]), text)
    return {
        "Fn::Sub": text if not variables else [text, {k: _with_defaults(v, defaults, conditions) for k, v in variables.items()}]
    }


def _condition(node, conditions: dict, template: dict, defaults: dict):
    """A condition's value for the parameter defaults, or UNKNOWN (pseudo parameters, imports...)."""
    if isinstance(node, dict) and len(node) == 1:
        ((fn, arg),) = node.items()
        if fn == "Condition":
            if arg not in conditions:
                conditions[arg] = _condition(template["Conditions"][arg], conditions, template, defaults)
            return conditions[arg]
        if fn == "Fn::Equals":
            a, b = (_with_defaults(x, defaults, {}) for x in arg)
            return UNKNOWN if isinstance(a, (dict, list)) or isinstance(b, (dict, list)) else str(a) == str(b)
        parts = [_condition(x, conditions, template, defaults) for x in arg]
        if UNKNOWN in parts:
            return UNKNOWN
        if fn == "Fn::Not":
            return not parts[0]
        if fn == "Fn::And":
            return all(parts)
        if fn == "Fn::Or":
            return any(parts)
    return UNKNOWN


def as_launched(template: dict, values: dict | None = None) -> dict:
    """The template as a stack launched with the parameter defaults gives it to a hook: parameter
    references replaced by their defaults, conditions that the defaults decide applied (resources
    not created dropped, `Fn::If` branches chosen)."""
    # A parameter without a default gets a stand-in value (an operator must give one at launch).
    defaults = {name: p.get("Default", f"example-{name.lower()}") for name, p in template.get("Parameters", {}).items()}
    for name, p in template.get("Parameters", {}).items():
        if p.get("Type") == "Number" and "Default" in p:
            defaults[name] = float(p["Default"]) if "." in str(p["Default"]) else int(p["Default"])
    defaults.update({k: v for k, v in (values or {}).items() if k in defaults})
    conditions: dict = {}
    for name in template.get("Conditions", {}):
        _condition({"Condition": name}, conditions, template, defaults)
    resources = {
        name: _with_defaults(r, defaults, conditions)
        for name, r in template["Resources"].items()
        if conditions.get(r.get("Condition"), True) is not False
    }
    return {**template, "Resources": resources}


@dataclass
class Evaluation:
    applicable: dict[str, Control]  # by control id
    failures: dict[str, set[str]]  # control id -> "file: resource" that break it

    @property
    def failing(self) -> set[str]:
        return set(self.failures)


def _documents(text: str) -> list[dict]:
    decoder, i, docs = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def _resources(node, out: set[str]) -> None:
    if isinstance(node, dict):
        path = node.get("path")
        if isinstance(path, str) and path.startswith("/Resources/"):
            out.add(path.split("/")[2])
        for v in node.values():
            _resources(v, out)
    elif isinstance(node, list):
        for v in node:
            _resources(v, out)


def evaluate(template_dir: Path, work_dir: Path, values: dict | None = None) -> Evaluation:
    """Run every applicable control over every template in template_dir with cfn-guard, launched
    with the parameter defaults, or `values` for the parameters it names."""
    work_dir.mkdir(parents=True, exist_ok=True)
    types: set[str] = set()
    for path in sorted(template_dir.glob("*.template.yaml")):
        template = as_launched(load(path), values)
        types |= {r["Type"] for r in template["Resources"].values()}
        (work_dir / f"{path.name}.json").write_text(json.dumps(template))
    applicable = {c.rule: c for c in controls().values() if c.resource_types & types}
    cmd = [str(guard_binary()), "validate", "-o", "json", "-S", "none", "-d", str(work_dir)]
    for control in applicable.values():
        cmd += ["-r", str(control.path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    # 0: all pass, 19: some rule failed; anything else: cfn-guard could not evaluate
    assert proc.returncode in (0, 19), f"cfn-guard failed ({proc.returncode}): {proc.stderr[-2000:]}"
    failures: dict[str, set[str]] = {}
    for doc in _documents(proc.stdout):
        name = Path(doc["name"]).name.removesuffix(".json")
        for entry in doc["not_compliant"]:
            rule = entry["Rule"]["name"]
            assert rule in applicable, f"cfn-guard reported {rule}, which is not an applicable control"
            where: set[str] = set()
            _resources(entry, where)
            failures.setdefault(applicable[rule].id, set()).update(f"{name}: {r}" for r in where or {"?"})
    return Evaluation({c.id: c for c in applicable.values()}, failures)


def documented(section: str) -> list[str]:
    """Control ids in the table under the docs/SECURITY.md heading `section` (first column)."""
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    start = text.index(f"### {section}")
    end = text.find("\n#", start + 4)
    ids = []
    for line in text[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells and CONTROL_ID.fullmatch(cells[0].strip("`")):
            ids.append(cells[0].strip("`"))
    return ids
