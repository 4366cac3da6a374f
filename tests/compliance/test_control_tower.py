"""The AWS Control Tower proactive controls (Guard rules) over both compliance profiles (issue 19).

strict (`compliance: strict`, built here into a temporary directory with build_templates.py)
passes every control that applies to its resource types except the exceptions below, each argued
in docs/SECURITY.md. standard (the committed templates/) fails the controls docs/SECURITY.md lists,
and only those, so the document cannot drift from the templates.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .guard import ROOT, controls, documented, evaluate, guard_binary

pytestmark = pytest.mark.scanner  # cfn-guard / cfn-lint over a whole template set

# Control id -> (why it cannot apply to this product, the only resources it may fail on). The long
# form is in docs/SECURITY.md ("Strict profile: exceptions").
STRICT_EXCEPTIONS: dict[str, tuple[str, set[str]]] = {
    "CT.CODEBUILD.PR.4": (
        "the pipeline builds the hub image with Docker inside CodeBuild, which needs privileged mode",
        {"pipeline.template.yaml: ImageBuildProject"},
    ),
    "CT.ECS.PR.3": (
        "the hub runs as root: in shared mode it creates a Unix user per data scientist and starts each server as that user",
        {"tier.template.yaml: HubTaskDefinition"},
    ),
    "CT.ECS.PR.6": (
        "hub and servers write outside their volumes: the hub's database and users (shared mode), users' installs (pip, R, conda)",
        {"tier.template.yaml: HubTaskDefinition", "tier.template.yaml: UserServerTaskDefinition"},
    ),
    "CT.ELASTICFILESYSYSTEM.PR.4": (
        "the homes access point is mounted by a root hub that creates each user's home with that user's uid",
        {"tier.template.yaml: HomesAccessPoint", "hub-instance.template.yaml: HomesAccessPoint"},
    ),
    "CT.S3.PR.10": (
        "log destinations: ELB access logs and S3 server access logs are delivered only to SSE-S3 buckets",
        {"cluster.template.yaml: LoadBalancerLogsBucket", "storage.template.yaml: AccessLogsBucket"},
    ),
    "CT.S3.PR.2": (
        "log destinations: a log bucket's own access logs would need another log bucket, without end",
        {"cluster.template.yaml: LoadBalancerLogsBucket", "storage.template.yaml: AccessLogsBucket"},
    ),
}

MAX_EXCEPTIONS = 6  # issue 19


@pytest.fixture(scope="module")
def strict_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("strict")
    settings = work / "strict.yaml"
    settings.write_text("compliance: strict\n")
    out = work / "templates"
    result = subprocess.run(
        [sys.executable, str(ROOT / "build_templates.py"), "--settings", str(settings), "--out", str(out), "--no-package"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def strict(strict_dir, tmp_path_factory):
    return evaluate(strict_dir, tmp_path_factory.mktemp("strict-guard"))


# Optional features an operator turns on at launch; strict must pass with them on too.
OPTIONAL_FEATURES = {"RecordDataEvents": "true"}


@pytest.fixture(scope="module")
def strict_with_options(strict_dir, tmp_path_factory):
    return evaluate(strict_dir, tmp_path_factory.mktemp("strict-options-guard"), OPTIONAL_FEATURES)


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    return evaluate(ROOT / "templates", tmp_path_factory.mktemp("standard-guard"))


def _report(evaluation, ids) -> str:
    return "\n".join(f"{i} ({evaluation.applicable[i].name}): {', '.join(sorted(evaluation.failures[i]))}" for i in sorted(ids))


def test_the_pinned_rules_and_cfn_guard_are_installed():
    guard = subprocess.run([str(guard_binary()), "--version"], capture_output=True, text=True, timeout=30)
    assert guard.returncode == 0 and guard.stdout.startswith("cfn-guard 3."), (
        "run `make setup` (package.json pins @cdklabs/cdk-validator-cfnguard)"
    )
    assert len(controls()) > 200  # the package's whole Control Tower set, not a sample


def test_many_controls_apply_to_both_profiles(strict, standard):
    # The evaluation reaches the templates' resources: a broken input would make every control skip.
    assert len(strict.applicable) >= 60, sorted(strict.applicable)
    assert len(standard.applicable) >= 60, sorted(standard.applicable)


def test_strict_passes_every_applicable_control_but_the_argued_exceptions(strict):
    unexpected = strict.failing - set(STRICT_EXCEPTIONS)
    assert not unexpected, "strict fails controls that are not argued exceptions:\n" + _report(strict, unexpected)


def test_strict_with_the_optional_features_on_passes_them_too(strict_with_options, strict):
    """The data-events trail (RecordDataEvents=true) adds a trail, its bucket, log group and role."""
    assert set(strict_with_options.applicable) > set(strict.applicable)  # the trail's controls apply
    unexpected = strict_with_options.failing - set(STRICT_EXCEPTIONS)
    assert not unexpected, "strict with optional features fails:\n" + _report(strict_with_options, unexpected)
    for control, (_, allowed) in STRICT_EXCEPTIONS.items():
        assert strict_with_options.failures.get(control, set()) <= allowed, control


@pytest.mark.parametrize("control", sorted(STRICT_EXCEPTIONS))
def test_strict_exception(strict, control):
    """Each argued exception is named here, is still failed by strict (else drop it) and applies."""
    assert control in strict.applicable, f"{control} no longer applies to the strict templates: drop the exception"
    assert control in strict.failing, f"strict now passes {control}: drop the exception (code and docs/SECURITY.md)"
    reason, allowed = STRICT_EXCEPTIONS[control]
    assert strict.failures[control] <= allowed, (
        f"{control} ({reason}) fails on more than its argued resources: {sorted(strict.failures[control] - allowed)}"
    )


def test_strict_exceptions_are_few_and_documented():
    assert len(STRICT_EXCEPTIONS) <= MAX_EXCEPTIONS
    assert sorted(documented("Strict profile: exceptions")) == sorted(STRICT_EXCEPTIONS)


def test_standard_fails_exactly_the_documented_controls(standard):
    listed = set(documented("Controls the standard profile does not meet"))
    missing_from_doc = standard.failing - listed
    stale_in_doc = listed - standard.failing
    assert not missing_from_doc, "standard fails controls docs/SECURITY.md does not list:\n" + _report(standard, missing_from_doc)
    assert not stale_in_doc, f"docs/SECURITY.md lists controls standard now passes: {sorted(stale_in_doc)}"


def test_strict_meets_more_controls_than_standard(strict, standard):
    assert strict.failing < standard.failing | set(STRICT_EXCEPTIONS)
    assert len(strict.failing) < len(standard.failing)


def test_cfn_lint_finds_nothing_in_the_strict_set(strict_dir):
    """cfn-lint (errors, warnings, informational; the four regions) over the strict set, as
    tests/templates/test_build.py does over the committed standard one."""
    from lakehub.release.build import LINT_REGIONS, lint

    files = sorted(strict_dir.glob("*.template.yaml"))
    assert len(files) >= 7
    findings = lint(files, LINT_REGIONS)
    assert findings == [], "\n".join(findings)
