"""IAM: every policy of every template analysed with parliament (its default and community
auditors), each resolved to plausible literal ARNs first; zero findings beyond the argued
ignores of tests/security/parliament.yaml. The structural IAM rules (no wildcard actions,
PassRole scoped with iam:PassedToService, named trust principals) are in lakehub/checks/rules.py and
run in test_rules.py."""

from __future__ import annotations

import re

import pytest

from lakehub.checks import iam

from . import parliament_support as ps
from .conftest import SECURITY_MD

pytest.importorskip("parliament", reason="parliament is a dev dependency (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def analysis(generated_templates):
    return ps.run(generated_templates)


@pytest.mark.scanner
def test_parliament_finds_nothing_in_any_policy(analysis):
    assert analysis.policies >= 20 and analysis.statements >= 100, "too few policies analysed"
    assert not analysis.findings, "\n".join(ps.describe(p, f) for p, f in analysis.findings)


def test_every_policy_bearing_resource_is_analysed(generated_templates, analysis):
    """Conditions must not hide a policy from the analysis: every role, policy and resource
    policy appears under at least one parameter scenario."""
    for tname, template in generated_templates.items():
        for doc in iam.policy_documents(template.get("Resources", {})):
            if doc.kind != "trust":
                assert (tname, doc.resource) in analysis.analysed, f"{tname}:{doc.resource} was never analysed"


def test_every_parliament_ignore_is_used_and_documented(analysis):
    used = [entry for _, _, entry in analysis.ignored]
    entries = ps.ignore_entries()
    stale = [(issue, e) for issue, e in entries if e not in used]
    assert not stale, f"parliament.yaml entries that match no finding (remove them): {stale}"
    # each entry carries a reason "# P<n>:" and docs/SECURITY.md has a row for every P<n>
    text = ps.CONFIG.read_text()
    reasons = set(re.findall(r"#\s*(P\d+):", text))
    assert len(reasons) >= 1
    security = SECURITY_MD.read_text()
    for ref in reasons:
        assert re.search(rf"^\|\s*{ref}\s*\|", security, re.M), f"{ref} has no row in docs/SECURITY.md"


def test_resolved_policies_hold_no_unresolved_placeholders(generated_templates):
    """The resolver must turn every Ref/GetAtt into a literal, or parliament would judge
    "<X.Arn>" instead of an ARN."""
    for tname, template in generated_templates.items():
        for _, doc in iam.resolved_policies(template):
            text = repr(doc.document)
            assert "<" not in text and "Fn::" not in text and "'Ref'" not in text, f"{tname}:{doc.resource}: {text[:300]}"


def test_parliament_really_reports_a_bad_policy():
    """The harness is live: a wildcard admin statement is reported."""
    bad = {
        "Resources": {
            "Admin": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Sid": "Everything", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]},
                            {"Sid": "Typo", "Effect": "Allow", "Action": ["s3:GetObjekt"], "Resource": ["arn:aws:s3:::b/*"]},
                        ],
                    }
                },
            }
        }
    }
    result = ps.run({"bad.template.yaml": bad})
    issues = {f.issue for _, f in result.findings}
    assert {"RESOURCE_STAR", "UNKNOWN_ACTION"} <= issues
