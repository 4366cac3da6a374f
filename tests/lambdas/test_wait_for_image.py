"""Custom::WaitForImage driven with CloudFormation events against the emulator.

crhelper polls through a CloudWatch Events rule that invokes the function once a minute with the
original event plus CrHelperPoll/CrHelperData. Here the first call really creates that rule, its
target and the Lambda permission in the emulator; each "minute" is the test reading the rule's
target Input back from the emulator and calling the handler with it, as EventBridge would.

moto's CodeBuild marks a build SUCCEEDED on the first BatchGetBuilds and has no way to fail one,
so the `builds` fixture replaces that one backend method (in this process, where the threaded
emulator runs) with one that reports the status the test sets: IN_PROGRESS until told otherwise,
then FAILED, STOPPED, ... or SUCCEEDED. Everything else is moto's own API over HTTP.
"""

from __future__ import annotations

import hashlib
import json

import pytest

FUNCTION = "lakehub-wait-for-image"
TYPE = "Custom::WaitForImage"
REPO = "lakehub-hub"
PROJECT = "lakehub-hub-image"
ACCOUNT = "123456789012"
REPO_URI = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{REPO}"


@pytest.fixture
def builds(monkeypatch, emulator):
    from moto.codebuild.models import CodeBuildBackend, codebuild_backends

    def batch_get_builds(self, ids):
        return [b for history in self.build_metadata_history.values() for b in history if b["id"] in ids]

    monkeypatch.setattr(CodeBuildBackend, "batch_get_builds", batch_get_builds)

    class Builds:
        @staticmethod
        def all() -> list[dict]:
            backend = codebuild_backends[ACCOUNT]["us-east-1"]
            return [b for history in backend.build_metadata_history.values() for b in history]

        def set_status(self, build_id: str, status: str) -> None:
            for build in self.all():
                if build["id"] == build_id:
                    build["buildStatus"] = status
                    build["currentPhase"] = "COMPLETED" if status != "IN_PROGRESS" else "BUILD"
                    project, _, stream = build_id.partition(":")
                    build["logs"] = dict(build.get("logs") or {}, groupName=f"/aws/codebuild/{project}", streamName=stream)
                    return
            raise AssertionError(f"no build {build_id}")

    return Builds()


@pytest.fixture
def aws(client, lambda_function, builds):
    ecr, codebuild = client("ecr"), client("codebuild")
    ecr.create_repository(repositoryName=REPO)
    role = client("iam").create_role(RoleName="codebuild-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    codebuild.create_project(
        name=PROJECT,
        source={"type": "S3", "location": "lakehub-assets/hub-image-source.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "ARM_CONTAINER",
            "image": "aws/codebuild/amazonlinux2-aarch64-standard:3.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole=role,
    )
    lambda_function(FUNCTION)

    class Aws:
        pass

    a = Aws()
    a.ecr, a.codebuild, a.events, a.lambda_ = ecr, codebuild, client("events"), client("lambda")
    return a


def push_image(ecr, tag="latest", content="v1") -> str:
    """Push a manifest (as `docker push` would) and return the digest ECR reports."""
    layer = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100, "digest": layer},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 100, "digest": layer}],
    }
    ecr.put_image(repositoryName=REPO, imageManifest=json.dumps(manifest), imageTag=tag)
    return ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": tag}])["imageDetails"][0]["imageDigest"]


def props(**overrides) -> dict:
    base = {
        "ProjectName": PROJECT,
        "RepositoryName": REPO,
        "ImageTag": "latest",
        "SourceVersion": "src-1",
        "TimeoutSeconds": "1800",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def wait(load_handler, make_event, invoke, aws):
    module = load_handler("wait_for_image")

    def run(request_type, properties=None, **kwargs):
        event = make_event(request_type, TYPE, properties if properties is not None else props(), function=FUNCTION, **kwargs)
        return event, invoke(module, event, function=FUNCTION)

    def poll(event):
        """Call the handler as the scheduled rule would: with the target's Input."""
        return invoke(module, next_poll_event(event), function=FUNCTION)

    def next_poll_event(event):
        rules = [r for r in aws.events.list_rules()["Rules"] if r["Name"].startswith(event["LogicalResourceId"])]
        assert len(rules) == 1, f"expected one polling rule, found {rules}"
        assert rules[0]["ScheduleExpression"] == "rate(1 minute)"
        targets = aws.events.list_targets_by_rule(Rule=rules[0]["Name"])["Targets"]
        assert targets[0]["Arn"].endswith(f":function:{FUNCTION}")
        polled = json.loads(targets[0]["Input"])
        assert polled["CrHelperPoll"] is True and polled["RequestId"] == event["RequestId"]
        return polled

    run.module, run.poll, run.next_poll_event = module, poll, next_poll_event
    return run


def polling_rules(aws) -> list[dict]:
    return aws.events.list_rules()["Rules"]


def assert_image_answer(answer, digest: str, build_id: str) -> None:
    """A SUCCESS answer for the latest tag's image with this digest, built by `build_id` ("" for none)."""
    assert answer["Status"] == "SUCCESS", answer
    assert answer["PhysicalResourceId"] == f"image/{REPO}:latest"
    assert answer["Data"] == {
        "ImageUri": f"{REPO_URI}:latest",
        "ImageUriDigest": f"{REPO_URI}@{digest}",
        "ImageDigest": digest,
        "BuildId": build_id,
    }


def test_create_answers_at_once_when_the_image_is_already_there(wait, aws):
    digest = push_image(aws.ecr)
    _, answer = wait("Create")
    assert_image_answer(answer, digest, build_id="")
    assert aws.codebuild.list_builds()["ids"] == []  # nothing built
    assert polling_rules(aws) == []  # nothing scheduled


def test_create_starts_the_build_and_polls_until_the_image_exists(wait, aws, builds):
    event, answer = wait("Create")
    assert answer is None  # no answer yet: polling
    [build_id] = aws.codebuild.list_builds()["ids"]
    assert build_id.startswith(f"{PROJECT}:")
    policy = json.loads(aws.lambda_.get_policy(FunctionName=FUNCTION)["Policy"])
    assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}

    assert wait.poll(event) is None  # a minute later: still building
    digest = push_image(aws.ecr)  # the build pushes the image
    answer = wait.poll(event)

    assert_image_answer(answer, digest, build_id)
    assert polling_rules(aws) == []  # crhelper removed its rule ...
    with pytest.raises(aws.lambda_.exceptions.ResourceNotFoundException):
        aws.lambda_.get_policy(FunctionName=FUNCTION)  # ... and the permission


@pytest.mark.parametrize("status", ["FAILED", "FAULT", "STOPPED", "TIMED_OUT"])
def test_a_failed_build_fails_the_resource_with_build_id_and_log_link(wait, aws, builds, failed, status):
    event, _ = wait("Create")
    [build_id] = aws.codebuild.list_builds()["ids"]
    builds.set_status(build_id, status)
    answer = wait.poll(event)
    stream = build_id.split(":")[1]
    failed(
        answer,
        f"Image build {status}",
        build_id,
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEvent:group=%2Faws%2Fcodebuild%2Flakehub-hub-image;stream="
        + stream,
    )
    assert polling_rules(aws) == []


def test_the_wait_is_bounded_by_timeout_seconds(wait, aws, monkeypatch, failed):
    event, _ = wait("Create", props(TimeoutSeconds="600"))
    [build_id] = aws.codebuild.list_builds()["ids"]
    deadline = wait.next_poll_event(event)["CrHelperData"]["WaitDeadline"]
    monkeypatch.setattr(wait.module, "_now", lambda: deadline + 1)  # eleven minutes later
    failed(wait.poll(event), "Timed out after 600 s", f"{REPO}:latest", build_id)
    assert polling_rules(aws) == []


def test_a_long_project_name_still_leaves_the_cause_and_build_id_in_the_reason(wait, aws, builds, client, failed):
    long_project = "lakehub-" + "x" * 80
    role = client("iam").get_role(RoleName="codebuild-role")["Role"]["Arn"]
    aws.codebuild.create_project(
        name=long_project,
        source={"type": "S3", "location": "lakehub-assets/hub-image-source.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={"type": "ARM_CONTAINER", "image": "i", "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole=role,
    )
    event, _ = wait("Create", props(ProjectName=long_project))
    [build_id] = aws.codebuild.list_builds()["ids"]
    builds.set_status(build_id, "FAILED")
    failed(wait.poll(event), "Image build FAILED", build_id)


def test_build_succeeded_without_the_tag_fails_with_the_cause(wait, aws, builds, failed):
    event, _ = wait("Create")
    [build_id] = aws.codebuild.list_builds()["ids"]
    builds.set_status(build_id, "SUCCEEDED")
    failed(wait.poll(event), build_id, "SUCCEEDED but lakehub-hub:latest is not in ECR")


def test_update_with_the_same_properties_changes_nothing(wait, aws):
    digest = push_image(aws.ecr)
    _, answer = wait("Update", props(), old_properties=props(), physical_id=f"image/{REPO}:latest")
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == f"image/{REPO}:latest"
    assert answer["Data"]["ImageDigest"] == digest
    assert aws.codebuild.list_builds()["ids"] == []


def test_update_with_a_new_source_version_builds_and_waits_for_the_new_image(wait, aws, builds):
    push_image(aws.ecr, content="old")
    event, answer = wait("Update", props(SourceVersion="src-2"), old_properties=props(), physical_id=f"image/{REPO}:latest")
    assert answer is None  # the old image is there, but a new one is being built
    [build_id] = aws.codebuild.list_builds()["ids"]
    assert wait.poll(event) is None  # still the old digest, build running
    new_digest = push_image(aws.ecr, content="new")
    answer = wait.poll(event)
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == f"image/{REPO}:latest"
    assert answer["Data"]["ImageDigest"] == new_digest and answer["Data"]["BuildId"] == build_id


def test_update_whose_build_produces_the_same_digest_succeeds_when_the_build_does(wait, aws, builds):
    digest = push_image(aws.ecr)
    event, _ = wait("Update", props(SourceVersion="src-2"), old_properties=props(), physical_id=f"image/{REPO}:latest")
    [build_id] = aws.codebuild.list_builds()["ids"]
    builds.set_status(build_id, "SUCCEEDED")
    answer = wait.poll(event)
    assert answer["Status"] == "SUCCESS" and answer["Data"]["ImageDigest"] == digest


def test_update_to_a_tag_already_in_ecr_promotes_it_without_a_build(wait, aws):
    # Issue 18: images are promoted by tag; the repository's tags are immutable.
    digest = push_image(aws.ecr, tag="v2")
    _, answer = wait("Update", props(ImageTag="v2"), old_properties=props(), physical_id=f"image/{REPO}:latest")
    assert answer["Status"] == "SUCCESS" and answer["Data"]["ImageDigest"] == digest
    assert answer["PhysicalResourceId"] == f"image/{REPO}:v2"
    assert aws.codebuild.list_builds()["ids"] == []


def test_update_during_rollback_keeps_the_image_without_building(wait, aws, monkeypatch):
    push_image(aws.ecr)
    monkeypatch.setattr(wait.module, "_stack_status", lambda stack_id: "UPDATE_ROLLBACK_IN_PROGRESS")
    _, answer = wait(
        "Update", props(SourceVersion="src-1"), old_properties=props(SourceVersion="src-2"), physical_id=f"image/{REPO}:latest"
    )
    assert answer["Status"] == "SUCCESS"
    assert aws.codebuild.list_builds()["ids"] == []


def test_update_fails_with_the_cause_when_the_repository_is_gone(wait, aws, failed):
    aws.ecr.delete_repository(repositoryName=REPO, force=True)
    _, answer = wait("Update", props(SourceVersion="src-2"), old_properties=props(), physical_id=f"image/{REPO}:latest")
    failed(answer, f"ECR repository {REPO} does not exist")
    assert answer["PhysicalResourceId"] == f"image/{REPO}:latest"


@pytest.mark.parametrize(
    "properties, cause",
    [
        (props(ProjectName=None), "Invalid property ProjectName"),
        (props(RepositoryName=""), "Invalid property RepositoryName"),
        (props(ImageTag=""), "Invalid property ImageTag"),
        (props(TimeoutSeconds="soon"), "Invalid property TimeoutSeconds: 'soon'"),
        (props(TimeoutSeconds="99999"), "Invalid property TimeoutSeconds: 99999 is outside 60-3300"),
        (props(RepositoryName="no-such-repo"), "ECR repository no-such-repo does not exist"),
        (props(ProjectName="no-such-project"), "CodeBuild project no-such-project does not exist"),
    ],
)
def test_create_fails_with_the_cause(wait, aws, failed, properties, cause):
    _, answer = wait("Create", properties)
    failed(answer, cause)
    assert polling_rules(aws) == []  # a failed Create schedules no polling


def test_delete_succeeds_and_leaves_the_image(wait, aws):
    push_image(aws.ecr)
    _, answer = wait("Delete", physical_id=f"image/{REPO}:latest")
    assert answer["Status"] == "SUCCESS" and answer["PhysicalResourceId"] == f"image/{REPO}:latest"
    assert aws.ecr.describe_images(repositoryName=REPO)["imageDetails"]


def test_delete_succeeds_when_repository_and_project_are_gone(wait, aws):
    aws.ecr.delete_repository(repositoryName=REPO, force=True)
    aws.codebuild.delete_project(name=PROJECT)
    _, answer = wait("Delete", physical_id=f"image/{REPO}:latest")
    assert answer["Status"] == "SUCCESS"


def test_delete_after_a_failed_create_succeeds(wait):
    _, created = wait("Create", props(TimeoutSeconds="0"))
    assert created["Status"] == "FAILED"
    _, answer = wait("Delete", props(TimeoutSeconds="0"), physical_id=created["PhysicalResourceId"])
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == created["PhysicalResourceId"]


def test_create_twice_waits_for_the_running_build_instead_of_starting_another(wait, aws):
    first_event, _ = wait("Create")
    [build_id] = aws.codebuild.list_builds()["ids"]
    second_event, answer = wait("Create", logical_id="FirstImage")
    assert answer is None
    assert aws.codebuild.list_builds()["ids"] == [build_id]  # still one build
    polled = wait.next_poll_event(second_event)
    assert polled["CrHelperData"]["BuildId"] == build_id


def test_a_role_that_may_not_list_builds_just_starts_one(wait, aws, monkeypatch):
    from botocore.exceptions import ClientError

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListBuildsForProject")

    monkeypatch.setattr(wait.module.codebuild, "list_builds_for_project", denied)
    _, answer = wait("Create")
    assert answer is None
    assert len(aws.codebuild.list_builds()["ids"]) == 1
