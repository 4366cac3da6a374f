"""Read generated templates back and resolve them for given parameters.

Used by the tests (to check what a tier role can reach for real parameter values) and by the
cost estimate (which reads the templates, not a copy of their settings). Only the intrinsic
functions lakehub's templates use are resolved; a reference to a resource or an attribute
stays symbolic (`{"Ref": "X"}` -> "<X>", GetAtt -> "<X.Attr>").
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from lakehub.assets import TEMPLATES_DIR
from lakehub.errors import LakehubError

# cfn-lint's decoder logs some parse failures as well as returning them; the TemplateError raised
# here says it once.
logging.getLogger("cfnlint.decode").addHandler(logging.NullHandler())


class TemplateError(LakehubError):
    """A file or text that is not a CloudFormation template: the problem and, for a syntax
    error, where (1-based line and column, as editors count)."""

    def __init__(self, source: str, problem: str, line: int | None = None, column: int | None = None):
        self.source, self.problem, self.line, self.column = source, problem, line, column
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"{source} is not a CloudFormation template: {problem}{where}")


def loads(text: str, source: str = "the text") -> dict:
    """CloudFormation YAML or JSON as plain dicts and lists, short-form tags (!Ref, !Sub,
    !GetAtt ...) in their long form ({"Ref": ...}, {"Fn::Sub": ...}), read by cfn-lint's decoder.
    TemplateError when it is not valid YAML/JSON (duplicate keys included) or not a mapping."""
    from cfnlint.decode import decode_str  # here: importing cfn-lint takes 1-4 s (sympy, networkx)

    data, matches = decode_str(text)
    if matches:
        first = matches[0]
        raise TemplateError(source, " ".join(str(first.message).split()), first.linenumber or None, first.columnnumber or None)
    if not isinstance(data, dict):
        raise TemplateError(source, f"its top level is a {type(data).__mro__[1].__name__}, not a mapping")
    return _plain(data)


def load(path: str | Path) -> dict:
    """A template file (a bare name: one of the generated templates) as `loads` reads it."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = TEMPLATES_DIR / p
    try:
        text = p.read_text()
    except UnicodeDecodeError as exc:
        raise TemplateError(str(p), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return loads(text, str(p))


def _plain(node: Any) -> Any:
    """cfn-lint's nodes (dict, list and str subclasses carrying their position) as the plain
    types, so a caller may dump or compare them like anything yaml.safe_load returns."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stack",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/id",
    "AWS::NoValue": None,
}

_NOVALUE = object()


class Resolver:
    """Resolve a template's intrinsics for given parameter values."""

    def __init__(self, template: dict, parameters: dict[str, Any] | None = None, pseudo: dict | None = None):
        self.template = template
        self.params: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            value = (parameters or {}).get(name, spec.get("Default"))
            if value is None:
                raise KeyError(f"parameter {name} has no value and no default")
            if spec.get("Type") in ("CommaDelimitedList",) or spec.get("Type", "").startswith("List<"):
                if isinstance(value, str):
                    value = value.split(",") if value else [""]
            elif not isinstance(value, str):
                value = str(value)
            self.params[name] = value
        self.pseudo = {**PSEUDO, **(pseudo or {})}
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resolve(self, node: Any) -> Any:
        value = self._resolve(node)
        return None if value is _NOVALUE else value

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self._resolve(n) for n in node]
            return [v for v in out if v is not _NOVALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg in self.params:
                    return self.params[arg]
                if arg in self.pseudo:
                    v = self.pseudo[arg]
                    return _NOVALUE if v is None else v
                return f"<{arg}>"
            if key == "Fn::GetAtt":
                return f"<{arg[0]}.{arg[1]}>"
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    text, variables = arg
                    variables = {k: self.resolve(v) for k, v in variables.items()}
                else:
                    text, variables = arg, {}
                return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub_var(m.group(1), variables), text)
            if key == "Fn::Join":
                sep, items = arg
                items = self.resolve(items)
                return sep.join(str(i) for i in items)
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::Select":
                index, items = arg
                found, i = self.resolve(items), int(self.resolve(index))
                if i >= len(found):  # a part of a symbolic value (an ARN) stays symbolic
                    return "<" + ":".join(str(f).strip("<>") for f in found) + f"[{i}]>"
                return found[i]
            if key == "Fn::If":
                name, a, b = arg
                return self._resolve(a if self.condition(name) else b)
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAZs":
                region = self.pseudo["AWS::Region"]
                return [f"{region}{z}" for z in "abc"]
            if key == "Fn::Cidr":
                block, count, bits = (self.resolve(a) for a in arg)
                return [f"<cidr {i} of {block}/{bits}>" for i in range(int(count))]
            if key == "Fn::Base64":
                return self.resolve(arg)
        return {k: v for k, v in ((k, self._resolve(v)) for k, v in node.items()) if v is not _NOVALUE}

    def _sub_var(self, name: str, variables: dict) -> str:
        if name.startswith("!"):
            return "${" + name[1:] + "}"  # Fn::Sub's escape: "${!x}" is the literal "${x}"
        if name in variables:
            return str(variables[name])
        if "." in name:
            return f"<{name}>"
        v = self._resolve({"Ref": name})
        return "" if v is _NOVALUE else str(v)

    def resources(self) -> dict[str, dict]:
        """Resources whose Condition holds, with their properties resolved."""
        out = {}
        for name, res in self.template.get("Resources", {}).items():
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            out[name] = {**res, "Properties": self.resolve(res.get("Properties", {}))}
        return out
