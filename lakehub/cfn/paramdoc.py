"""The parameter reference, generated from the templates (docs/PARAMETERS.md).

`python build_templates.py` rewrites it with the templates and `--check` reports it when it
is stale, so the reference never drifts from what the templates accept.
"""

from __future__ import annotations

from troposphere import Template

HEADER = """# Parameter reference

Generated from the templates by `python build_templates.py`; do not edit by hand.
Each template's parameters are listed in their console groups, in order.
"""


def _cell(value) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text


def _constraint(p: dict) -> str:
    if "AllowedValues" in p:
        values = [str(v) for v in p["AllowedValues"]]
        return ", ".join(f"`{v}`" for v in values[:8]) + (f" … ({len(values)} values)" if len(values) > 8 else "")
    if "AllowedPattern" in p:
        return _cell(p.get("ConstraintDescription", ""))
    if "MinValue" in p or "MaxValue" in p:
        return f"{p.get('MinValue', '')}–{p.get('MaxValue', '')}"
    return ""


def render(templates: dict[str, Template]) -> str:
    out = [HEADER]
    for fname, t in templates.items():
        d = t.to_dict()
        params = d.get("Parameters", {})
        if not params:
            continue
        iface = d.get("Metadata", {}).get("AWS::CloudFormation::Interface", {})
        labels = {k: v["default"] for k, v in iface.get("ParameterLabels", {}).items()}
        out.append(f"\n## {fname}\n\n{_cell(d.get('Description', ''))}\n")
        for group in iface.get("ParameterGroups", [{"Label": {"default": "Parameters"}, "Parameters": list(params)}]):
            out.append(f"\n### {group['Label']['default']}\n")
            out.append("| Parameter | Label | Default | Allowed | Description |")
            out.append("|---|---|---|---|---|")
            for name in group["Parameters"]:
                p = params[name]
                if "Default" not in p:
                    default = "(required)"
                elif p["Default"] == "":
                    default = "(empty)"
                else:
                    default = "`" + _cell(p["Default"]) + "`"
                out.append(
                    f"| `{name}` | {_cell(labels.get(name, ''))} | {default} | {_constraint(p)} | {_cell(p.get('Description', ''))} |"
                )
    return "\n".join(out) + "\n"
