"""The templates use the custom resources the way the handlers read them: resource type,
property names, required properties, and the handler entry point of the functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehub.cfn.template import load

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"

# Resource type -> (properties the handler reads, properties it requires)
CONTRACT = {
    "Custom::SeedNotebooks": ({"NotebookBucket", "Tiers", "ExamplesVersion"}, {"NotebookBucket", "Tiers"}),
    "Custom::WaitForImage": (
        {"ProjectName", "RepositoryName", "ImageTag", "SourceVersion", "TimeoutSeconds"},
        {"ProjectName", "RepositoryName"},
    ),
    "Custom::ListenerPriority": ({"ListenerArn", "Preferred", "Minimum", "ClaimParameterPrefix"}, {"ListenerArn"}),
    "Custom::SecretArn": ({"SecretName"}, {"SecretName"}),
    "Custom::ImageDigest": ({"RepositoryUri", "ImageTag"}, {"RepositoryUri", "ImageTag"}),
    "Custom::ProductTemplate": (
        {"Bucket", "SourceKey", "TargetKey", "Defaults", "Pins", "Version"},
        {"Bucket", "SourceKey", "TargetKey", "Defaults"},
    ),
}
TIER_KEYS = {"Name", "NotebookPrefix", "DataBucket", "DataPrefixes"}


def _custom_resources():
    found = []
    for path in sorted(TEMPLATES.glob("*.template.yaml")):
        resources = load(path).get("Resources", {})
        for logical_id, resource in resources.items():
            rtype = resource.get("Type", "")
            if rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource":
                found.append((path.name, logical_id, resource))
    return found


def _resource_type(resource: dict) -> str:
    # troposphere puts a resource_type set after construction into Properties by mistake.
    return (
        resource["Type"]
        if resource["Type"] != "AWS::CloudFormation::CustomResource"
        else resource.get("Properties", {}).get("resource_type", "?")
    )


pytestmark = pytest.mark.skipif(not list(TEMPLATES.glob("*.template.yaml")), reason="templates/ is empty")


def test_every_custom_resource_is_one_of_ours_with_the_right_properties():
    found = _custom_resources()
    assert {_resource_type(r) for _, _, r in found} >= set(CONTRACT), "a custom resource is not used by any template"
    for filename, logical_id, resource in found:
        rtype = _resource_type(resource)
        assert rtype in CONTRACT, f"{filename} {logical_id}: unknown custom resource {rtype}"
        reads, required = CONTRACT[rtype]
        props = {k for k in resource.get("Properties", {}) if k not in ("ServiceToken", "resource_type")}
        assert "ServiceToken" in resource["Properties"], f"{filename} {logical_id}: no ServiceToken"
        assert props <= reads, f"{filename} {logical_id}: properties the handler ignores: {sorted(props - reads)}"
        assert required <= props, f"{filename} {logical_id}: missing {sorted(required - props)}"
        if rtype == "Custom::SeedNotebooks":
            tiers = resource["Properties"]["Tiers"]
            if isinstance(tiers, list):
                for tier in tiers:
                    assert set(tier) == TIER_KEYS, f"{filename} {logical_id}: tier keys {sorted(tier)}"


def test_custom_resources_are_declared_with_their_custom_type():
    """`Type: Custom::SeedNotebooks`, not AWS::CloudFormation::CustomResource with a stray
    `resource_type` property (troposphere: subclass CustomResource with a class attribute
    resource_type instead of setting it on the instance)."""
    wrong = [
        f"{filename} {logical_id}"
        for filename, logical_id, resource in _custom_resources()
        if resource["Type"] == "AWS::CloudFormation::CustomResource"
    ]
    assert not wrong, f"declared as AWS::CloudFormation::CustomResource: {wrong}"


def test_the_functions_run_index_handler():
    for path in sorted(TEMPLATES.glob("*.template.yaml")):
        resources = load(path).get("Resources", {})
        for logical_id, resource in resources.items():
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            code = resource["Properties"].get("Code", {})
            if "S3Key" in code and "functions/" in str(code["S3Key"]):
                assert resource["Properties"]["Handler"] == "index.handler", f"{path.name} {logical_id}"
                assert resource["Properties"]["Runtime"] in ("python3.12", "python3.13"), f"{path.name} {logical_id}"
                assert resource["Properties"].get("Architectures") == ["arm64"], f"{path.name} {logical_id}"


def test_the_polling_function_may_manage_the_rules_crhelper_names():
    """crhelper names its polling rule `<LogicalResourceId><8 random characters>` and adds a
    Lambda permission to the function; the role must allow exactly that."""
    found = False
    for filename, logical_id, resource in _custom_resources():
        if _resource_type(resource) != "Custom::WaitForImage":
            continue
        text = (TEMPLATES / filename).read_text()
        found = True
        assert "events:PutRule" in text
        assert f":rule/{logical_id}*" in text, (
            f"{filename}: events:PutRule/PutTargets/RemoveTargets/DeleteRule must allow rule/{logical_id}* "
            "(crhelper's rule name), or polling fails with AccessDenied"
        )
        assert "lambda:AddPermission" in text and "lambda:RemovePermission" in text
    assert found
