"""Custom::ImageDigest: the immutable digest of a hub image tag, for task definitions and hubs.

Images are promoted, not rolled: a tier (or an on-demand hub) names its image by tag in its
`ImageTag` parameter, and runs it by digest (`<repository URI>@sha256:...`). A new tag gives a
new digest, a new task definition and a rolling deployment; the same tag changes nothing; a tag
pushed again elsewhere (the repository's tags are IMMUTABLE anyway) cannot change what runs.

Properties
  RepositoryUri  the platform's ECR repository URI (<registry>/<repository name>)
  ImageTag       the tag to resolve

Create/Update: ecr:DescribeImages of the tag; a tag (or repository) that does not exist fails the
stack with one line naming it and how to fix it.
Delete: nothing (the image belongs to the repository).
Data: ImageUri (<repository URI>@<digest>), ImageDigest.
PhysicalResourceId: ImageUri.
"""

from __future__ import annotations

import logging
import re

from botocore.exceptions import ClientError
from lakehub_cr import Failure, clients, error_code, new_helper, nothing_to_delete, properties, serve

logger = logging.getLogger(__name__)

helper = new_helper()

(ecr,) = clients(helper, "ecr")

# <registry host>/<repository name>; repository names: lower-case, digits, . _ - and /.
REPOSITORY_URI = re.compile(r"^(?P<registry>[A-Za-z0-9.:-]+)/(?P<name>[a-z0-9][a-z0-9._/-]{1,255})$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # lakehub.stacks.parameters.IMAGE_TAG_PATTERN


def _props(event) -> tuple[str, str, str]:
    props = properties(event)
    uri = str(props.get("RepositoryUri", "")).strip()
    match = REPOSITORY_URI.match(uri)
    if not match:
        raise Failure(f"Invalid property RepositoryUri {uri[:120]!r}: an ECR repository URI is required")
    tag = str(props.get("ImageTag", "")).strip()
    if not IMAGE_TAG.match(tag):
        raise Failure(f"Invalid property ImageTag {tag[:130]!r}: an image tag is required")
    return uri, match.group("name"), tag


def resolve(uri: str, repository: str, tag: str) -> str:
    """The digest of repository:tag."""
    try:
        images = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "ImageNotFoundException":
            images = []
        elif code == "RepositoryNotFoundException":
            raise Failure(f"ECR repository {repository} does not exist: deploy the platform's main stack first") from None
        else:
            raise Failure(f"ECR DescribeImages of {repository}:{tag} failed: {code}") from None
    if not images:
        raise Failure(
            f"Image tag {tag} is not in ECR repository {repository}: build and push it (CodeBuild project "
            f"<platform>-hub-image), or set ImageTag to a tag listed by `aws ecr describe-images --repository-name {repository}`"
        )
    return images[0]["imageDigest"]


def _answer(event) -> str:
    uri, repository, tag = _props(event)
    digest = resolve(uri, repository, tag)
    image = f"{uri}@{digest}"
    helper.Data.update({"ImageUri": image, "ImageDigest": digest})
    logger.info("%s:%s is %s", repository, tag, digest)
    return image


handler = serve(helper, create=_answer, update=_answer, delete=nothing_to_delete("the image belongs to the repository"))
