"""The hub image beyond what tests/hub/test_image_files.py checks (hadolint clean, no plaintext
credentials in hub_images/ and buildspec.yml, pinned requirements): the base images resolve to
pinned versions (the argument behind the CKV_DOCKER_7 skip), and users' servers never run as
root (per-user task definition; shared mode is covered end to end by
tests/hub/test_hub_image_e2e.py::test_tier_member_signs_in_and_gets_own_server_as_own_unix_user)."""

from __future__ import annotations

import pytest

from lakehub.checks import dockerfile, iam, rules
from lakehub.cfn.template import Resolver

from .conftest import ROOT

DOCKERFILE = ROOT / "hub_images" / "Dockerfile"
BUILDSPEC = ROOT / "buildspec.yml"


def test_every_base_image_resolves_to_a_version_tag():
    text = DOCKERFILE.read_text()
    assert dockerfile.dockerfile_base_images_pinned(text) == []
    assert sum(1 for instr, _ in dockerfile.dockerfile_instructions(text) if instr == "FROM") >= 2


def test_the_build_pins_base_images_by_digest():
    spec = BUILDSPEC.read_text()
    for arg in ("PYTHON_IMAGE", "NODE_IMAGE"):
        assert f'--build-arg {arg}="${{{arg}}}"' in spec, arg
    assert "@${PYTHON_DIGEST}" in spec and "@${NODE_DIGEST}" in spec


@pytest.mark.parametrize(
    "text, problem",
    [
        ("FROM python\n", "no version tag"),
        ("FROM python:latest\n", "no version tag"),
        ("ARG BASE\nFROM ${BASE}\n", "ARG without a default"),
        ("ARG BASE=python:latest\nFROM ${BASE} AS build\nFROM build\n", "no version tag"),
        ("FROM python:3.12-slim\n", "no digest"),
    ],
)
def test_unpinned_bases_are_caught(text, problem):
    found = dockerfile.dockerfile_base_images_pinned(text, require_digest=True)
    assert found and problem in found[0]


def test_digest_and_earlier_stages_count_as_pinned():
    text = "FROM python:3.12-slim@sha256:" + "a" * 64 + " AS build\nFROM build\nUSER 1000\n"
    assert dockerfile.dockerfile_base_images_pinned(text, require_digest=True) == []
    assert dockerfile.dockerfile_final_user(text) == "1000"
    assert dockerfile.is_root_user(dockerfile.dockerfile_final_user("FROM x:1\nUSER 1000\nFROM y:1\n"))


def test_per_user_servers_run_as_a_non_root_user(generated_templates):

    tier = generated_templates["tier.template.yaml"]
    params = iam.plausible_parameters(tier, {"ServerMode": "per-user"})
    resources = Resolver(tier, params).resources()
    [container] = resources["UserServerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert not dockerfile.is_root_user(container.get("User"))
    # and only the hub container is allowed root, with its reason
    assert set(rules.ROOT_CONTAINERS) == {("HubTaskDefinition", "hub")}
