"""Shared fixtures of the security tests: the generated templates and the project root."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import load

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECURITY_MD = ROOT / "docs" / "SECURITY.md"


def template_paths() -> list[Path]:
    return sorted(TEMPLATES_DIR.glob("*.template.yaml"))


@pytest.fixture(scope="session")
def generated_templates() -> dict[str, dict]:
    return {p.name: load(p) for p in template_paths()}


def build_strict(out: Path) -> list[Path]:
    """The strict compliance profile's set (`compliance: strict`, issue 19), written into out."""
    from lakehub.release.build import render_all, write_all
    from lakehub.settings import parse_settings

    write_all(render_all(parse_settings({"compliance": "strict"})), out)
    return sorted(out.glob("*.template.yaml"))


@pytest.fixture(scope="session")
def strict_template_paths(tmp_path_factory) -> list[Path]:
    return build_strict(tmp_path_factory.mktemp("strict-templates"))


@pytest.fixture(scope="session")
def strict_templates(strict_template_paths) -> dict[str, dict]:
    return {p.name: load(p) for p in strict_template_paths}


def flagged(violations) -> set[str]:
    # IAM rules name "<Resource> (<policy>)": the logical id is the first word.
    return {v.resource.split(" ")[0] for v in violations}


def assert_rule_meets_fixture(rule_name: str, rule_fn, template: dict) -> None:
    """A rule over its bad fixture flags every resource the fixture's Metadata.Expect.Violations
    names, none of its Expect.Clean ones, and names itself with a message on each violation."""
    expect = template["Metadata"]["Expect"]
    violations = rule_fn(template)
    got = flagged(violations)
    missing = set(expect["Violations"]) - got
    assert not missing, f"{rule_name} did not flag {sorted(missing)}; it reported: {[str(v) for v in violations]}"
    wrongly = got & set(expect.get("Clean", []))
    assert not wrongly, f"{rule_name} flagged compliant resources {sorted(wrongly)}: {[str(v) for v in violations]}"
    for v in violations:
        assert v.rule == rule_name and v.message
