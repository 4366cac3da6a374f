"""buildspec.yml run as CodeBuild runs it (its phases' commands in one bash, `shell: bash`),
with docker, aws, hadolint and uname replaced by stubs that record their arguments. What the
image build does in a real account, minus the registry: defects 2, 7 and 10 of issue 13."""

from __future__ import annotations

import shlex
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from lakehub.release import packaging

ROOT = Path(__file__).resolve().parents[2]
BUILDSPEC = yaml.safe_load((ROOT / "buildspec.yml").read_text())
REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/lakehub/hub"
BUILD_ID = "lakehub-hub-image:0b6e4f2a-1c9d-4e55-9a0e-3f1c2d4b5a6e"

STUBS = {
    "docker": """#!/bin/bash
printf '%s\\n' "docker $*" >> "$STUB_LOG"
case "$1 $2 $3" in
  "buildx imagetools inspect") echo '{"digest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}' ;;
  "buildx inspect lakehub") exit 1 ;;
  "login --username AWS") cat >/dev/null ;;
esac
exit 0
""",
    # ECR DescribeImages answers for the tags in EXISTING_TAGS only (ImageNotFoundException: 254).
    "aws": """#!/bin/bash
printf '%s\\n' "aws $*" >> "$STUB_LOG"
if [ "$1 $2" = "ecr describe-images" ]; then
  for arg in "$@"; do
    case "$arg" in imageTag=*) case " ${EXISTING_TAGS:-} " in *" ${arg#imageTag=} "*) exit 0 ;; esac ;; esac
  done
  echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation" >&2
  exit 254
fi
echo not-a-real-token
""",
    "hadolint": "#!/bin/bash\nexit 0\n",
    "uname": "#!/bin/bash\necho aarch64\n",
}


def rehearse(tmp_path: Path, source: str = "s3", version_file: bool = True, **env) -> tuple[subprocess.CompletedProcess, list[str]]:
    src = tmp_path / "src"
    src.mkdir()
    if version_file:
        with zipfile.ZipFile(packaging.build_source_zip(tmp_path / "zip")) as zf:
            zf.extract(packaging.SOURCE_VERSION_FILE, src)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    variables = {k: str(v) for k, v in BUILDSPEC["env"]["variables"].items()}
    full_env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        # what CodeBuild sets for every source type ...
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CODEBUILD_BUILD_ID": BUILD_ID,
        "CODEBUILD_SRC_DIR": str(src),
        # ... and what the pipeline stack sets on the project
        "REPOSITORY_URI": REPO,
        "IMAGE_TAG": "v0.1.0",
        **variables,
        **env,
    }
    if source == "codecommit":
        full_env["CODEBUILD_RESOLVED_SOURCE_VERSION"] = "4f2c1e9b7a3d5f6e8c0b1a2d3e4f5a6b7c8d9e0f"
    script = ["set -euo pipefail"]
    for phase in ("pre_build", "build", "post_build"):
        script += BUILDSPEC["phases"][phase]["commands"]
    script.append('echo "EXPORTED IMAGE_URI=${IMAGE_URI} IMAGE_TAG=${IMAGE_TAG} VERSION_TAG=${VERSION_TAG}"')
    proc = subprocess.run(["bash", "-c", "\n".join(script)], env=full_env, cwd=src, capture_output=True, text=True, timeout=60)
    return proc, log.read_text().splitlines()


def pushed_tags(calls: list[str]) -> set[str]:
    builds = [c for c in calls if c.startswith("docker buildx build ")]
    if not builds:
        return set()
    [build] = builds
    words = shlex.split(build)
    return {words[i + 1] for i, w in enumerate(words) if w == "--tag"}


def test_the_first_build_from_the_s3_source_succeeds_with_the_published_version(tmp_path):
    # Defect 2: CodeBuild sets no CODEBUILD_RESOLVED_SOURCE_VERSION for an S3 source.
    proc, calls = rehearse(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = (tmp_path / "src" / packaging.SOURCE_VERSION_FILE).read_text().strip()
    assert version.startswith("src-")
    assert pushed_tags(calls) == {f"{REPO}:{version}", f"{REPO}:v0.1.0"}


def test_no_build_pushes_latest(tmp_path):
    # Issue 18: images are promoted by tag, never rolled through a moving `latest`.
    proc, calls = rehearse(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not any(t.endswith(":latest") for t in pushed_tags(calls))
    assert ":latest" not in "\n".join(calls)


def test_a_tag_already_in_the_immutable_repository_is_not_pushed_again(tmp_path):
    # The repository's tags are IMMUTABLE: pushing v0.1.0 again would fail the build.
    proc, calls = rehearse(tmp_path, EXISTING_TAGS="v0.1.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = (tmp_path / "src" / packaging.SOURCE_VERSION_FILE).read_text().strip()
    assert pushed_tags(calls) == {f"{REPO}:{version}"}


def test_a_source_already_built_under_both_tags_builds_nothing(tmp_path):
    version_zip = packaging.build_source_zip(tmp_path / "zip0")
    with zipfile.ZipFile(version_zip) as zf:
        version = zf.read(packaging.SOURCE_VERSION_FILE).decode().strip()
    proc, calls = rehearse(tmp_path, EXISTING_TAGS=f"v0.1.0 {version}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [c for c in calls if c.startswith("docker buildx build ")]
    assert "nothing to build" in proc.stdout


def test_a_source_without_a_version_file_is_tagged_with_the_build_id(tmp_path):
    proc, calls = rehearse(tmp_path, version_file=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{REPO}:lakehub-hub-image-0b6e4f2a-1c9d-4e55-9a0e-3f1c2d4b5a6e" in pushed_tags(calls)


def test_a_codecommit_build_is_tagged_with_the_commit(tmp_path):
    proc, calls = rehearse(tmp_path, source="codecommit", version_file=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{REPO}:4f2c1e9b7a3d5f6e8c0b1a2d3e4f5a6b7c8d9e0f" in pushed_tags(calls)


def test_the_tag_the_project_asks_for_is_pushed(tmp_path):
    # Defect 7: ImageTag other than latest: FirstImage and the tier services wait for it.
    proc, calls = rehearse(tmp_path, IMAGE_TAG="v1.4.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{REPO}:v1.4.0" in pushed_tags(calls)
    assert "IMAGE_TAG=v1.4.0" in proc.stdout


def test_an_invalid_tag_fails_with_one_line(tmp_path):
    proc, _ = rehearse(tmp_path, IMAGE_TAG="no spaces")
    assert proc.returncode == 2 and "is not a valid image tag" in proc.stdout


@pytest.mark.parametrize("platforms", ["linux/arm64", "linux/arm64,linux/amd64"])
def test_the_build_pulls_nothing_from_docker_hub(tmp_path, platforms):
    # Defect 10: Docker Hub rate-limits unauthenticated pulls from shared build hosts.
    proc, calls = rehearse(tmp_path, IMAGE_PLATFORM=platforms)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [c for c in calls if c.startswith("docker run ")]
    creates = [c for c in calls if c.startswith("docker buildx create ")]
    if platforms == "linux/arm64":  # native: the default builder, nothing pulled
        assert not runs and not creates and "docker buildx use default" in calls
    else:
        assert len(runs) == 1 and " public.ecr.aws/" in runs[0] and runs[0].endswith("--install amd64")
        assert len(creates) == 1 and "image=public.ecr.aws/" in creates[0]
    # every image reference in any docker command: from ECR Public, or the project's repository
    words = [part for c in calls if c.startswith("docker ") for w in shlex.split(c) for part in w.split("=", 1)[-1].split()]
    images = [w for w in words if "/" in w and ":" in w and not w.startswith(("registry,ref=" + REPO, REPO)) and "://" not in w]
    assert images and all(i.startswith("public.ecr.aws/") for i in images), images
