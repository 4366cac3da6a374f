"""A stack update in the local emulator updates its nested stacks in place, as CloudFormation
does: each nested stack keeps its id and name, goes UPDATE_IN_PROGRESS -> UPDATE_COMPLETE and
its own resources are updated; the parent's resource keeps its physical id. moto instead
deletes the nested stack and creates a new one under a new name (seen on the upgrade
rehearsal: new child stack names in CREATE_IN_PROGRESS). A value that changes only through
another resource (a nested stack parameter fed by a sibling's output) is updated too, since
CloudFormation compares resolved values, not template text.

Deployed with `lakehub.release.deploy.deploy()` and a template file, as `lakehub deploy
--template-file` does, into the local emulator server (tests/conftest.py: local_emulator).
"""

from __future__ import annotations

import pytest

from lakehub.release.deploy import deploy
from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, emulator_client

BUCKET = "lakehub-nested-update"

CHILD = """
Parameters:
  Value:
    Type: String
  Name:
    Type: String
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Ref Name
      Type: String
      Value: !Ref Value
Outputs:
  Value:
    Value: !Ref Value
"""

PARENT = """
Parameters:
  Tag:
    Type: String
    Default: one
Resources:
  Child:
    Type: AWS::CloudFormation::Stack
    Properties:
      TemplateURL: https://lakehub-nested-update.s3.amazonaws.com/child.yaml
      Parameters:
        Value: !Ref Tag
        Name: /nested-update/child
  Reader:
    Type: AWS::CloudFormation::Stack
    Properties:
      TemplateURL: https://lakehub-nested-update.s3.amazonaws.com/child.yaml
      Parameters:
        Value: !GetAtt Child.Outputs.Value
        Name: /nested-update/reader
Outputs:
  Read:
    Value: !GetAtt Reader.Outputs.Value
"""


@pytest.fixture
def env(local_emulator, monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3 = emulator_client("s3", local_emulator)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="child.yaml", Body=CHILD.encode())
    return local_emulator


def _nested(cfn, stack: str) -> dict[str, str]:
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


@pytest.mark.e2e
def test_an_update_updates_nested_stacks_in_place(env, tmp_path):
    template = tmp_path / "parent.yaml"
    template.write_text(PARENT)
    cfn, ssm = emulator_client("cloudformation", env), emulator_client("ssm", env)
    first = deploy({}, stack_name="nested-update", region="us-east-1", endpoint_url=env, template_file=template)
    assert first.status == "CREATE_COMPLETE", first
    before = _nested(cfn, "nested-update")
    ids = {name: cfn.describe_stacks(StackName=physical)["Stacks"][0]["StackId"] for name, physical in before.items()}
    stacks_before = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"}
    assert ssm.get_parameter(Name="/nested-update/reader")["Parameter"]["Value"] == "one"

    second = deploy({"Tag": "two"}, stack_name="nested-update", region="us-east-1", endpoint_url=env, template_file=template)
    assert second.status == "UPDATE_COMPLETE", second
    assert _nested(cfn, "nested-update") == before  # the parent's resources keep their physical ids
    for name, physical in before.items():
        (child,) = cfn.describe_stacks(StackName=ids[name])["Stacks"]
        assert child["StackName"] == physical and child["StackStatus"] == "UPDATE_COMPLETE", child
        statuses = [
            e["ResourceStatus"]
            for e in cfn.describe_stack_events(StackName=ids[name])["StackEvents"]
            if e["LogicalResourceId"] == physical
        ]
        assert "UPDATE_IN_PROGRESS" in statuses and "UPDATE_COMPLETE" in statuses, statuses
    assert second.outputs["Read"] == "two"
    stacks_after = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"}
    assert stacks_after == stacks_before  # no new nested stacks
    assert ssm.get_parameter(Name="/nested-update/child")["Parameter"]["Value"] == "two"
    # Changed only through the sibling's output: updated as CloudFormation does.
    assert ssm.get_parameter(Name="/nested-update/reader")["Parameter"]["Value"] == "two"


@pytest.mark.e2e
def test_a_new_image_tag_on_main_gives_the_tier_hub_a_new_task_definition_in_place(tmp_path, monkeypatch):
    """main.template.yaml deployed as `lakehub local up` does (no hubs started), then updated as
    an operator ships N+1 (`lakehub deploy --template-file` with a changed template and a new
    ImageTag): the tier stacks stay (ids, names), the hub service's task definition becomes a new
    revision of the new digest and keeps the task role, CPU and network mode. IAM enforcement is
    on, as after `up`: the functions of the custom resources an update runs (Custom::WaitForImage,
    Custom::ImageDigest) call the emulator with their execution roles, as on AWS (with the
    emulator's dummy keys they got 403)."""
    import hashlib
    import json
    import os

    from lakehub.stacks import names
    from lakehub.assets import TEMPLATES_DIR
    from lakehub.local.platform import STACK_NAME, LocalPlatform, free_base_port
    from lakehub.local.state import StateDir

    saved = dict(os.environ)
    p = LocalPlatform(StateDir(tmp_path / "state"), free_base_port(), runtime="process")
    try:
        p.start_emulator()
        p.publish_assets()
        p.start_identity_provider()
        params = p.prepare_account()
        params[names.IMAGE_TAG] = "rehearsal-n"
        p.deploy(params)
        p.secure()  # IAM enforcement on, as `up` leaves it: the custom resources run with their roles
        ecs, cfn, ecr = p.client("ecs", p.admin), p.client("cloudformation", p.admin), p.client("ecr", p.admin)
        cluster = p.outputs[names.CLUSTER_NAME]

        def hub_definition() -> dict:
            (service,) = ecs.describe_services(cluster=cluster, services=["pii-hub"])["services"]
            return ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]

        def nested() -> dict[str, str]:
            return {
                r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.describe_stack_resources(StackName=STACK_NAME)["StackResources"]
                if r["ResourceType"] == "AWS::CloudFormation::Stack"
            }

        before, stacks = hub_definition(), nested()
        sns, sqs = p.client("sns", p.admin), p.client("sqs", p.admin)
        topic = p.outputs["AlarmTopicArn"]
        queue_url = sqs.create_queue(QueueName="lakehub-upgrade-operator")["QueueUrl"]
        queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue)
        repo = p.outputs[names.IMAGE_REPOSITORY_URI]
        layer = "sha256:" + hashlib.sha256(b"lakehub-local-image:rehearsal-n1").hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": layer},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 12, "digest": layer}],
        }
        digest = ecr.put_image(repositoryName=repo.split("/", 1)[1], imageManifest=json.dumps(manifest), imageTag="rehearsal-n1")[
            "image"
        ]["imageId"]["imageDigest"]
        template = tmp_path / "main.template.yaml"
        template.write_text(
            (TEMPLATES_DIR / names.MAIN_TEMPLATE).read_text().replace("\nDescription: '", "\nDescription: '(N+1) ", 1)
        )
        result = deploy(
            {names.IMAGE_TAG: "rehearsal-n1"},
            stack_name=STACK_NAME,
            region="us-east-1",
            endpoint_url=p.endpoint,
            template_file=template,
            timeout=600,
        )
        assert result.status == "UPDATE_COMPLETE"
        assert nested() == stacks
        # What the new tag does not touch stays: the operator's subscription to the alarm topic
        # (moto's own diff counted parameters kept with UsePreviousValue as changed and replaced
        # the topic, which dropped its subscriptions).
        assert result.outputs["AlarmTopicArn"] == topic
        assert [s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]] == [queue]
        statuses = {s["StackName"]: s["StackStatus"] for s in cfn.list_stacks()["StackSummaries"]}
        assert statuses[stacks["TierPiiStack"]] == statuses[stacks["PipelineStack"]] == "UPDATE_COMPLETE"
        assert len(statuses) == len(stacks) + 1  # no new stacks
        after = hub_definition()
        assert after["containerDefinitions"][0]["image"] == f"{repo}@{digest}" != before["containerDefinitions"][0]["image"]
        assert after["revision"] == before["revision"] + 1
        for key in ("taskRoleArn", "executionRoleArn", "cpu", "memory", "networkMode", "requiresCompatibilities"):
            assert after.get(key) == before.get(key) and before.get(key), key
    finally:
        p.stop()
        os.environ.clear()
        os.environ.update(saved)
