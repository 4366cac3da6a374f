"""Run parliament over every policy document of the generated templates.

Each statement is analysed on its own, named `<template>:<resource>:<policy>:<Sid>` (or `#<n>`
without a Sid), so an ignore entry in parliament.yaml names exactly one statement; each whole
policy is analysed as well for what only shows across statements (privilege-escalation
combinations, duplicate Sids), named `<template>:<resource>:<policy>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lakehub.checks import iam

CONFIG = Path(__file__).resolve().parent / "parliament.yaml"
WHOLE_POLICY_ISSUES = {"PRIVILEGE_ESCALATION", "DUPLICATE_SID"}


@dataclass
class Result:
    policies: int = 0
    statements: int = 0
    findings: list = field(default_factory=list)  # (place, finding) not ignored
    ignored: list = field(default_factory=list)  # (place, finding, ignore entry)
    analysed: set = field(default_factory=set)  # (template, resource) pairs analysed


def _configure():
    import parliament

    community = Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml"
    parliament.override_config(str(community))
    parliament.override_config(str(CONFIG))


def ignore_entries() -> list[tuple[str, dict]]:
    data = yaml.safe_load(CONFIG.read_text()) or {}
    return [(issue, entry) for issue, spec in data.items() for entry in (spec or {}).get("ignore_locations", [])]


def _analyse(text: str, place: str):
    from parliament import analyze_policy_string, enhance_finding

    policy = analyze_policy_string(text, filepath=place, include_community_auditors=True)
    return [enhance_finding(f) for f in policy.findings]


def _analyse_whole(text: str, place: str):
    """Findings only the whole policy shows. parliament stops before its community auditors
    when any statement is invalid (a RESOURCE_MISMATCH, even an ignored one), so the
    privilege-escalation auditor is run on the parsed policy directly as well."""
    from parliament import analyze_policy_string, enhance_finding
    from parliament.community_auditors import privilege_escalation

    policy = analyze_policy_string(text, filepath=place, include_community_auditors=True)
    if not policy.is_valid:
        privilege_escalation.permissions_on_other_users(policy, policy.get_allowed_actions(raise_exceptions=False))
    return [enhance_finding(f) for f in policy.findings if f.issue in WHOLE_POLICY_ISSUES]


def location_matches(finding, entry: dict) -> bool:
    """parliament's ignore_locations semantics (parliament.cli.is_finding_filtered): every key
    of the entry must match the finding's location field (re.fullmatch, lower case), any of
    the key's values may. Reimplemented because in parliament 1.6.4 is_finding_filtered never
    matches a YAML-loaded entry: parliament.misc.make_list returns [] for plain Python strings
    and lists (it expects jsoncfg nodes)."""
    for key, patterns in entry.items():
        values = patterns if isinstance(patterns, list) else [patterns]
        actual = str(finding.location.get(key, "")).lower()
        if not any(re.fullmatch(str(p).lower(), actual) for p in values):
            return False
    return True


def _matching_entry(finding, entries):
    for issue, entry in entries:
        if issue == finding.issue and location_matches(finding, entry):
            return entry
    return None


def run(templates: dict[str, dict]) -> Result:
    """Every identity and resource policy (trust policies have no Resource element: parliament
    does not apply; lakehub's iam-trust-named-principals rule checks them)."""
    _configure()
    entries = ignore_entries()
    result = Result()
    seen: set = set()
    for tname, template in sorted(templates.items()):
        for _scenario, doc in iam.resolved_policies(template):
            if doc.kind == "trust":
                continue
            result.policies += 1
            result.analysed.add((tname, doc.resource))
            base = f"{tname}:{doc.resource}:{doc.name}"
            found = []
            document = doc.document if isinstance(doc.document, dict) else {}
            for i, statement in enumerate(iam.statements(document)):
                result.statements += 1
                place = f"{base}:{statement.get('Sid') or f'#{i}'}"
                one = {"Version": document.get("Version", "2012-10-17"), "Statement": [statement]}
                found += [(place, f) for f in _analyse(json.dumps(one), place)]
            found += [(base, f) for f in _analyse_whole(json.dumps(document), base)]
            for place, f in found:
                key = (
                    place,
                    f.issue,
                    json.dumps(f.detail, sort_keys=True, default=str),
                    json.dumps(f.location, sort_keys=True, default=str),
                )
                if key in seen:
                    continue
                seen.add(key)
                entry = _matching_entry(f, entries)
                if entry is None:
                    result.findings.append((place, f))
                else:
                    result.ignored.append((place, f, entry))
    return result


def describe(place: str, finding) -> str:
    return f"{place}: {finding.issue} ({finding.severity}) {finding.detail} {finding.location}"
