"""The taskcat configuration: it lints, and its parameters match the templates it tests."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lakehub.cfn.template import load

ROOT = Path(__file__).resolve().parents[1]
TASKCAT = ROOT / ".venv-taskcat" / "bin" / "taskcat"
CONFIG = ROOT / ".taskcat.yml"


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def template_parameters(path: str) -> dict:
    return load(ROOT / path).get("Parameters", {})


@pytest.mark.scanner
def test_taskcat_lint_passes():
    if not TASKCAT.exists():
        pytest.skip(".venv-taskcat is missing: run `make scanners` (CI installs it)")
    # No AWS credentials: lint must not need an account.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    proc = subprocess.run([str(TASKCAT), "lint"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    for test in config()["tests"].values():
        assert (
            f"Linting passed for file: {ROOT / test['template']}" in output or f"issues in: {ROOT / test['template']}" in output
        ), output[-3000:]
    assert "[ERROR" not in output, output[-3000:]


def test_scenarios_cover_new_and_existing_vpc_in_at_least_two_regions():
    cfg = config()
    tests = cfg["tests"]
    templates = {name: t["template"] for name, t in tests.items()}
    assert templates["new-vpc-two-tier"] == "templates/main.template.yaml"
    assert templates["existing-vpc-one-tier"] == "templates/main-existing-vpc.template.yaml"
    for name, test in tests.items():
        regions = test.get("regions", cfg["project"]["regions"])
        assert len(set(regions)) >= 2, f"{name} runs in fewer than two regions"


@pytest.mark.parametrize("test_name", ["new-vpc-two-tier", "existing-vpc-one-tier"])
def test_parameters_match_the_template(test_name):
    cfg = config()
    test = cfg["tests"][test_name]
    params = {**cfg["project"].get("parameters", {}), **test.get("parameters", {})}
    declared = template_parameters(test["template"])
    unknown = set(params) - set(declared)
    assert not unknown, f"{test_name}: parameters not in {test['template']}: {sorted(unknown)}"
    required = {name for name, spec in declared.items() if "Default" not in spec}
    missing = required - set(params)
    assert not missing, f"{test_name}: required parameters not given: {sorted(missing)}"
    for name, value in params.items():
        value = str(value)
        if "$[" in value:
            assert re.fullmatch(r"([^$]|\$\[taskcat_[a-z_/A-Z0-9.-]+\])*", value), f"{name}: {value}"
            continue
        spec = declared[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], f"{name}={value} not allowed"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), f"{name}={value} breaks {spec['AllowedPattern']}"


def test_assets_point_at_taskcats_upload_of_the_published_layout():
    params = config()["project"]["parameters"]
    assert params["AssetsBucketName"] == "$[taskcat_autobucket]"
    # taskcat uploads the project folder under "<project name>/"; the staged folder is the
    # published layout (templates/, functions/, source/), so that is the AssetsKeyPrefix.
    assert params["AssetsKeyPrefix"] == "$[taskcat_project_name]/"
    assert config()["project"]["s3_regional_buckets"] is True
    # A random PlatformName must fit the template's pattern (20 random letters).
    pattern = template_parameters("templates/main.template.yaml")["PlatformName"]["AllowedPattern"]
    assert params["PlatformName"] == "$[taskcat_random-string]" and re.fullmatch(pattern, "a" * 20)
