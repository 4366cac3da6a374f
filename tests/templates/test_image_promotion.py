"""Images are promoted, not rolled (issue 18): the repository's tags are immutable, no template
defaults to `latest`, and tiers and on-demand hubs run the digest their ImageTag resolves to."""

from __future__ import annotations

import pytest

from lakehub.stacks import names


def test_the_image_repository_tags_are_immutable(templates):
    repo = templates["pipeline.template.yaml"]["Resources"]["ImageRepository"]["Properties"]
    assert repo["ImageTagMutability"] == "IMMUTABLE"


@pytest.mark.parametrize("name", ["main.template.yaml", "main-existing-vpc.template.yaml", "pipeline.template.yaml",
                                  "tier.template.yaml", "hub-instance.template.yaml"])
def test_no_template_defaults_the_image_tag_to_latest(templates, name):
    param = templates[name]["Parameters"][names.IMAGE_TAG]
    assert param["Default"] != "latest"
    assert param["Default"].startswith("v")


def test_the_tier_resolves_its_image_tag_to_a_digest_with_the_platform_function(templates):
    res = templates["tier.template.yaml"]["Resources"]
    image = res["HubImage"]
    assert image["Type"] == "Custom::ImageDigest"
    props = image["Properties"]
    assert props["ServiceToken"] == {"Ref": names.IMAGE_DIGEST_FUNCTION_ARN}
    assert props["ImageTag"] == {"Ref": names.IMAGE_TAG}
    assert props["RepositoryUri"] == {"Ref": names.IMAGE_REPOSITORY_URI}


@pytest.mark.parametrize("definition", ["HubTaskDefinition", "UserServerTaskDefinition"])
def test_task_definitions_run_the_digest_not_the_tag(templates, definition):
    td = templates["tier.template.yaml"]["Resources"][definition]["Properties"]
    for container in td["ContainerDefinitions"]:
        assert container["Image"] == {"Fn::GetAtt": ["HubImage", "ImageUri"]}, container["Image"]


def test_the_on_demand_hub_pulls_the_digest(templates):
    res = templates["hub-instance.template.yaml"]["Resources"]
    assert res["HubImage"]["Type"] == "Custom::ImageDigest"
    user_data = res["Instance"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    assert "IMAGE='${HubImage.ImageUri}'" in user_data
    assert "${ImageTag}" not in user_data


def test_the_digest_function_may_only_describe_the_platforms_hub_repository(templates):
    res = templates["cluster.template.yaml"]["Resources"]
    stmts = [s for p in res["ImageDigestFunctionRole"]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    describe = [s for s in stmts if "ecr:DescribeImages" in s["Action"]]
    assert describe and all(s["Action"] == ["ecr:DescribeImages"] for s in describe)
    assert describe[0]["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${PlatformName}/hub"}]
    # The tiers find it through the platform's SSM values.
    assert f"Platform{names.IMAGE_DIGEST_FUNCTION_ARN}Parameter" in res
