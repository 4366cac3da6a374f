"""Custom::ImageDigest driven with CloudFormation events against the emulator (ECR): a tier's
ImageTag becomes the immutable `<repository URI>@sha256:...` its task definitions run."""

from __future__ import annotations

import hashlib
import json

import pytest

FUNCTION = "lakehub-image-digest"
TYPE = "Custom::ImageDigest"
REPO = "lakehub/hub"


def _manifest(label: str) -> str:
    """An image manifest whose one layer is `label` (moto makes the digest from the layers' digests;
    ECR from the manifest's bytes: either way another label is another digest)."""
    layer = "sha256:" + hashlib.sha256(label.encode()).hexdigest()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(label),
                "digest": "sha256:" + hashlib.sha256(label.encode()).hexdigest(),
            },
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(label), "digest": layer}],
        }
    )


@pytest.fixture
def ecr(client):
    return client("ecr")


@pytest.fixture
def repo_uri(ecr):
    return ecr.create_repository(repositoryName=REPO, imageTagMutability="IMMUTABLE")["repository"]["repositoryUri"]


@pytest.fixture
def resolve(load_handler, make_event, invoke, repo_uri):
    module = load_handler("image_digest")

    def run(request_type, tag, uri=None, **kwargs):
        event = make_event(
            request_type,
            TYPE,
            {"RepositoryUri": uri or repo_uri, "ImageTag": tag},
            function=FUNCTION,
            logical_id="HubImage",
            **kwargs,
        )
        return invoke(module, event, function=FUNCTION)

    return run


def test_a_tag_resolves_to_its_digest(resolve, ecr, repo_uri):
    digest = ecr.put_image(repositoryName=REPO, imageManifest=_manifest("v1"), imageTag="v1")["image"]["imageId"]["imageDigest"]
    answer = resolve("Create", "v1")
    assert answer["Status"] == "SUCCESS", answer
    assert answer["Data"]["ImageDigest"] == digest and digest.startswith("sha256:")
    assert answer["Data"]["ImageUri"] == f"{repo_uri}@{digest}"
    assert answer["PhysicalResourceId"] == f"{repo_uri}@{digest}"


def test_a_new_tag_gives_a_new_image_and_the_same_tag_the_same(resolve, ecr):
    ecr.put_image(repositoryName=REPO, imageManifest=_manifest("v1"), imageTag="v1")
    ecr.put_image(repositoryName=REPO, imageManifest=_manifest("v2"), imageTag="v2")
    first = resolve("Create", "v1")
    again = resolve("Update", "v1", old_properties={"ImageTag": "v1"}, physical_id=first["PhysicalResourceId"])
    newer = resolve("Update", "v2", old_properties={"ImageTag": "v1"}, physical_id=first["PhysicalResourceId"])
    assert again["Data"]["ImageUri"] == first["Data"]["ImageUri"]
    assert newer["Status"] == "SUCCESS", newer
    assert newer["Data"]["ImageUri"] != first["Data"]["ImageUri"]


def test_a_tag_not_in_the_repository_fails_in_one_line_naming_it(resolve, failed):
    answer = resolve("Create", "v9")
    failed(answer, f"Image tag v9 is not in ECR repository {REPO}", "set ImageTag to a tag listed by")
    assert "\n" not in answer["Reason"] and "Traceback" not in answer["Reason"]


def test_a_missing_repository_fails_in_one_line(resolve, repo_uri, failed):
    answer = resolve("Create", "v1", uri=repo_uri.rsplit("/", 2)[0] + "/other/hub")
    failed(answer, "ECR repository other/hub does not exist")


def test_delete_leaves_the_image(resolve, ecr):
    ecr.put_image(repositoryName=REPO, imageManifest=_manifest("v1"), imageTag="v1")
    assert resolve("Delete", "v1", physical_id="x")["Status"] == "SUCCESS"
    assert ecr.describe_images(repositoryName=REPO)["imageDetails"]
