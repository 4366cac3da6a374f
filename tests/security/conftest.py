"""Shared fixtures of the security tests: the generated templates and the project root."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn_template import load

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECURITY_MD = ROOT / "docs" / "SECURITY.md"


def template_paths() -> list[Path]:
    return sorted(TEMPLATES_DIR.glob("*.template.yaml"))


@pytest.fixture(scope="session")
def generated_templates() -> dict[str, dict]:
    return {p.name: load(p) for p in template_paths()}
