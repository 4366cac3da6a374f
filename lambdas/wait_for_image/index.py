"""Custom::WaitForImage: make sure the hub image exists in ECR before the tier services start.

Properties
  ProjectName      the CodeBuild project that builds and pushes the image
  RepositoryName   the ECR repository
  ImageTag         the tag to wait for (default `latest`)
  SourceVersion    optional; changing it on Update starts a new build (it is a trigger only: it
                   is not passed to CodeBuild, the project builds its configured source)
  TimeoutSeconds   bound on the wait (default 1800, at most 3300 so CloudFormation's own one
                   hour limit is never the one that fires)

Create: if the tag is already in ECR, answer at once. Otherwise start the build (or wait for the
project's build already in progress, when the role may call codebuild:ListBuildsForProject) and poll (crhelper
polling, once a minute) until the tag appears, the build fails (FAILED/FAULT/STOPPED/TIMED_OUT:
the reason names the build id and links its log), or the timeout passes.
Update: build again only when SourceVersion, ImageTag, ProjectName or RepositoryName changed;
otherwise answer at once with the current image. A change of ImageTag alone to a tag already in
ECR is a promotion (immutable tags): answered at once, nothing built. During UPDATE_ROLLBACK_IN_PROGRESS (read with
cloudformation:DescribeStacks, best effort) it keeps the image in ECR rather than build again.
Delete: nothing to undo (the image belongs to the repository); succeeds.
Data: ImageUri (repository URI:tag), ImageUriDigest (repository URI@digest), ImageDigest, BuildId.
"""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import quote

from botocore.exceptions import ClientError
from lakehub_cr import Failure, clients, dns_suffix, error_code, new_helper, nothing_to_delete, properties, serve

logger = logging.getLogger(__name__)

helper = new_helper(polling=True)

ecr, codebuild, cloudformation = clients(helper, "ecr", "codebuild", "cloudformation")

DEFAULT_TIMEOUT = 1800
MAX_TIMEOUT = 3300
MIN_TIMEOUT = 60
FAILED_STATUSES = {"FAILED", "FAULT", "STOPPED", "TIMED_OUT"}
TRIGGERS = ("SourceVersion", "ImageTag", "ProjectName", "RepositoryName")
# Internal state carried between polls in crhelper's CrHelperData; removed before answering.
_STATE_KEYS = ("WaitDeadline", "WaitPreviousDigest", "WaitTimeout")


def _now() -> float:
    return time.time()


def _props(event) -> dict:
    props = properties(event)
    out = {}
    for name in ("ProjectName", "RepositoryName"):
        value = props.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Failure(f"Invalid property {name}: a name is required")
        out[name] = value.strip()
    tag = props.get("ImageTag", "latest")
    if not isinstance(tag, str) or not tag.strip():
        raise Failure("Invalid property ImageTag: a non-empty tag is required")
    out["ImageTag"] = tag.strip()
    out["SourceVersion"] = str(props.get("SourceVersion", ""))
    raw = props.get("TimeoutSeconds", DEFAULT_TIMEOUT)
    try:
        timeout = int(str(raw).strip())
    except ValueError:
        raise Failure(f"Invalid property TimeoutSeconds: {str(raw)[:40]!r} is not a whole number") from None
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise Failure(f"Invalid property TimeoutSeconds: {timeout} is outside {MIN_TIMEOUT}-{MAX_TIMEOUT}")
    out["TimeoutSeconds"] = timeout
    return out


def _physical_id(p: dict) -> str:
    return f"image/{p['RepositoryName']}:{p['ImageTag']}"


def _image(p: dict) -> dict | None:
    """{'digest', 'uri'} of the tag in ECR, or None when the tag is not there."""
    repo = p["RepositoryName"]
    try:
        images = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": p["ImageTag"]}])["imageDetails"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "ImageNotFoundException":
            return None
        if code == "RepositoryNotFoundException":
            raise Failure(f"ECR repository {repo} does not exist") from exc
        raise Failure(f"ECR DescribeImages on {repo} failed: {code}") from exc
    if not images:
        return None
    # The repository URI from the registry id (spares the role ecr:DescribeRepositories).
    repo_uri = f"{images[0]['registryId']}.dkr.ecr.{ecr.meta.region_name}.{dns_suffix(ecr)}/{repo}"
    digest = images[0]["imageDigest"]
    return {"digest": digest, "uri": f"{repo_uri}:{p['ImageTag']}", "digest_uri": f"{repo_uri}@{digest}"}


def _answer(p: dict, image: dict, build_id: str) -> str:
    for key in _STATE_KEYS:
        helper.Data.pop(key, None)
    helper.Data.update(
        {
            "ImageUri": image["uri"],
            "ImageUriDigest": image["digest_uri"],
            "ImageDigest": image["digest"],
            "BuildId": build_id,
        }
    )
    return _physical_id(p)


def _running_build(project: str) -> str:
    """The newest build of the project still in progress, or "" (also when the role may not
    list builds: codebuild:ListBuildsForProject is optional)."""
    try:
        ids = codebuild.list_builds_for_project(projectName=project, sortOrder="DESCENDING").get("ids", [])[:5]
        builds = codebuild.batch_get_builds(ids=ids).get("builds", []) if ids else []
    except ClientError as exc:
        logger.info("not reusing a running build of %s: %s", project, exc)
        return ""
    running = [b for b in builds if b.get("buildStatus") == "IN_PROGRESS"]
    return running[0]["id"] if running else ""


def _start_build(p: dict, previous: dict | None, reuse_running: bool = False) -> None:
    build_id = _running_build(p["ProjectName"]) if reuse_running else ""
    if build_id:
        logger.info("build %s is already running: waiting for it instead of starting another", build_id)
        build = {"id": build_id}
    else:
        build = _start(p)
    logger.info("waiting up to %d s for %s (build %s)", p["TimeoutSeconds"], _physical_id(p), build["id"])
    helper.Data.update(
        {
            "BuildId": build["id"],
            "WaitDeadline": int(_now()) + p["TimeoutSeconds"],
            "WaitTimeout": p["TimeoutSeconds"],
            "WaitPreviousDigest": previous["digest"] if previous else "",
        }
    )


def _start(p: dict) -> dict:
    try:
        return codebuild.start_build(projectName=p["ProjectName"])["build"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            raise Failure(f"CodeBuild project {p['ProjectName']} does not exist") from exc
        raise Failure(f"CodeBuild StartBuild on {p['ProjectName']} failed: {code}: {exc}") from exc


def _log_link(build: dict) -> str:
    logs = build.get("logs") or {}
    group, stream = logs.get("groupName"), logs.get("streamName")
    region = build.get("arn", "::::").split(":")[3] or os.environ.get("AWS_REGION", "")
    if group and stream and region:
        # The console's short form of CloudWatch Logs deep links.
        return (
            f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEvent:group={quote(group, safe='')};stream={quote(stream, safe='')}"
        )
    return logs.get("deepLink") or "(no log link)"


def create(event):
    p = _props(event)
    image = _image(p)
    if image:
        logger.info("%s already in ECR: nothing to build", image["uri"])
        helper.answer_now()
        return _answer(p, image, "")
    # A repeated Create (or a build already started by a commit) is waited for, not duplicated.
    _start_build(p, None, reuse_running=True)
    return _physical_id(p)


def _stack_status(stack_id: str) -> str:
    """The stack's status, or "" when it cannot be read (no permission, emulator)."""
    try:
        return cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
    except Exception as exc:  # noqa: BLE001 - only an optimisation for rollbacks
        logger.info("could not read the stack status of %s: %s", stack_id, exc)
        return ""


def update(event):
    p = _props(event)
    old = event.get("OldResourceProperties") or {}
    old_p = {key: str(old.get(key, "latest" if key == "ImageTag" else "")) for key in TRIGGERS}
    new_p = {key: str(p[key]) for key in TRIGGERS}
    image = _image(p)
    if old_p == new_p and image:
        logger.info("nothing that triggers a build changed; %s is in ECR", image["uri"])
        helper.answer_now()
        return _answer(p, image, "")
    if image and {k for k in TRIGGERS if old_p[k] != new_p[k]} == {"ImageTag"}:
        # A promotion: the new tag is already in ECR (tags are immutable: it names that image
        # for ever) and the source did not change, so there is nothing to build.
        logger.info("promoting %s, already in ECR: nothing to build", image["uri"])
        helper.answer_now()
        return _answer(p, image, "")
    if image and _stack_status(event.get("StackId", "")) == "UPDATE_ROLLBACK_IN_PROGRESS":
        # Rolling back after a failed update (often: this very build failed). Building again
        # would likely fail the rollback too; the image in ECR is what the old stack used.
        logger.info("stack is rolling back; keeping %s without a build", image["uri"])
        helper.answer_now()
        return _answer(p, image, "")
    _start_build(p, image)
    return _physical_id(p)


def poll(event):
    p = _props(event)
    data = helper.Data
    build_id = data.get("BuildId", "")
    image = _image(p)
    previous = data.get("WaitPreviousDigest", "")
    if image and image["digest"] != previous:
        return _answer(p, image, build_id)
    builds = codebuild.batch_get_builds(ids=[build_id]).get("builds", []) if build_id else []
    if not builds:
        raise Failure(f"CodeBuild build {build_id or '(none)'} not found while waiting for {_physical_id(p)}")
    build = builds[0]
    status = build.get("buildStatus", "IN_PROGRESS")
    if status in FAILED_STATUSES:
        raise Failure(f"Image build {status}: {build_id} logs: {_log_link(build)}")
    if status == "SUCCEEDED":
        if image:
            return _answer(p, image, build_id)
        raise Failure(
            f"Build {build_id} SUCCEEDED but {p['RepositoryName']}:{p['ImageTag']} is not in ECR; "
            "check that the buildspec pushes this tag"
        )
    if _now() > float(data.get("WaitDeadline", 0)):
        raise Failure(
            f"Timed out after {data.get('WaitTimeout', p['TimeoutSeconds'])} s waiting for image "
            f"{p['RepositoryName']}:{p['ImageTag']}; build {build_id} is {status}. logs: {_log_link(build)}"
        )
    logger.info("build %s is %s (%s); polling again", build_id, status, build.get("currentPhase"))
    return None


handler = serve(helper, create=create, update=update, poll=poll, delete=nothing_to_delete("the image belongs to the repository"))
