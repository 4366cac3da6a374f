"""build_templates.py: deterministic output, drift check, lint, refusal of bad settings."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from lakehub.assets import TEMPLATES_DIR
from lakehub.release.build import LINT_REGIONS, drift, lint, render_all
from lakehub.settings import load_settings

ROOT = TEMPLATES_DIR.parent


def run_build(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "build_templates.py"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def snapshot() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns) for p in sorted(TEMPLATES_DIR.iterdir())}


def test_output_is_deterministic():
    settings = load_settings(None)
    assert render_all(settings) == render_all(settings)


def test_committed_templates_equal_what_the_code_generates():
    assert drift(render_all(load_settings(None))) == []
    result = run_build("--check")
    assert result.returncode == 0, result.stderr


def test_build_leaves_git_clean():
    result = run_build("--no-package")
    assert result.returncode == 0, result.stderr
    status = subprocess.run(["git", "status", "--porcelain", "--", "templates"], cwd=ROOT, capture_output=True, text=True)
    assert status.stdout == "", f"templates/ changed after a build:\n{status.stdout}"


def test_check_names_the_files_that_differ(tmp_path):
    settings = tmp_path / "one-tier.yaml"
    settings.write_text("tiers:\n  - name: research\n    data_prefixes: [research/]\n    allowed_groups: [research]\n")
    result = run_build("--check", "--settings", str(settings))
    assert result.returncode == 1
    assert "main.template.yaml" in result.stderr and "main-existing-vpc.template.yaml" in result.stderr
    assert "tier.template.yaml," not in result.stderr  # the tier template does not depend on the tiers


def test_check_prints_a_unified_diff_of_each_stale_file(tmp_path, capsys):
    from lakehub.cli.build import main

    out = tmp_path / "t"
    assert main(["--no-package", "--out", str(out)]) == 0
    tier = out / "tier.template.yaml"
    text = tier.read_text()
    line = next(l for l in text.splitlines() if "AWSTemplateFormatVersion" in l)
    tier.write_text(text.replace(line, "AWSTemplateFormatVersion: '1999-01-01'"))
    (out / "storage.template.yaml").unlink()
    (out / "stray.template.yaml").write_text("Resources: {}\n")
    capsys.readouterr()

    assert main(["--check", "--out", str(out)]) == 1
    shown = capsys.readouterr()
    assert "tier.template.yaml" in shown.err and "storage.template.yaml" in shown.err and "stray.template.yaml" in shown.err
    diff = shown.out.splitlines()
    assert f"--- {tier} (on disk)" in diff and "+++ tier.template.yaml (generated)" in diff
    assert "-AWSTemplateFormatVersion: '1999-01-01'" in diff and f"+{line}" in diff
    assert any(l.startswith("@@ -") for l in diff)
    assert "+++ storage.template.yaml (generated)" in diff  # a missing file: all of it is added
    assert "-Resources: {}" in diff  # a file the code does not generate: all of it goes


@pytest.mark.scanner
def test_cfn_lint_finds_nothing_in_any_region():
    files = sorted(TEMPLATES_DIR.glob("*.template.yaml"))
    assert len(files) >= 7
    findings = lint(files, LINT_REGIONS)
    assert findings == [], "\n".join(findings)


def test_lint_settings_include_informational_checks_and_four_regions():
    rc = (ROOT / ".cfnlintrc").read_text()
    assert "- I" in rc
    for region in ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"):
        assert region in rc


BAD_SETTINGS = {
    "unknown field": ("tiers:\n  - name: pii\n    data_prefixes: [pii/]\n    allowed_groups: [g]\n    colour: red\n", "tiers[0].colour"),
    "duplicate tier name": (
        "tiers:\n  - {name: pii, data_prefixes: [a/], allowed_groups: [g]}\n  - {name: pii, data_prefixes: [b/], allowed_groups: [g]}\n",
        "tiers[1].name",
    ),
    "invalid cpu/memory pair": ("tiers:\n  - {name: pii, data_prefixes: [a/], allowed_groups: [g], cpu: 1024, memory: 512}\n", "tiers[0].memory"),
    "overlapping prefixes": (
        "tiers:\n  - {name: pii, data_prefixes: [data/], allowed_groups: [g]}\n  - {name: open, data_prefixes: [data/public/], allowed_groups: [h]}\n",
        "tiers[1].data_prefixes",
    ),
    "top-level unknown field": ("platform: x\n", "platform"),
    "unknown cpu": ("tiers:\n  - {name: pii, data_prefixes: [a/], allowed_groups: [g], cpu: 3000, memory: 8192}\n", "tiers[0].cpu"),
    "prefix without slash": ("tiers:\n  - {name: pii, data_prefixes: [pii], allowed_groups: [g]}\n", "tiers[0].data_prefixes[0]"),
    "not yaml": ("tiers: [\n", "line"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_bad_settings_give_one_line_and_change_nothing(tmp_path, case):
    text, field = BAD_SETTINGS[case]
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    before = snapshot()
    result = run_build("--settings", str(path))
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert field in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert snapshot() == before


def test_missing_settings_file_is_one_line(tmp_path):
    result = run_build("--settings", str(tmp_path / "nope.yaml"))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1 and "not found" in result.stderr


def test_overlap_is_refused_whichever_tier_comes_first(tmp_path):
    from lakehub.settings import SettingsError, parse_settings

    with pytest.raises(SettingsError, match="overlaps"):
        parse_settings({"tiers": [
            {"name": "a", "data_prefixes": ["x/y/"], "allowed_groups": ["g"]},
            {"name": "b", "data_prefixes": ["x/"], "allowed_groups": ["h"]},
        ]})
    # siblings that only share leading characters are fine
    parse_settings({"tiers": [
        {"name": "a", "data_prefixes": ["pii/"], "allowed_groups": ["g"]},
        {"name": "b", "data_prefixes": ["pii2/"], "allowed_groups": ["h"]},
    ]})


def test_example_settings_file_is_valid(tmp_path):
    settings = load_settings(ROOT / "settings.example.yaml")
    assert [t.name for t in settings.tiers] == ["pii", "nonpii"]
    assert render_all(settings) == render_all(load_settings(None))
