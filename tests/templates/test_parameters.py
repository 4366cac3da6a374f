"""Shared parameters are defined once (lakehub.stacks.parameters): every template that takes one
declares it with the same constraint, and the copies that must live elsewhere (the Lambda
functions, packaged alone) keep the same pattern."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lakehub import settings
from lakehub.stacks import names, parameters

LAMBDAS = Path(__file__).resolve().parents[2] / "lambdas"


def compiled_pattern(function: str, constant: str) -> str:
    """The pattern of `CONSTANT = re.compile(r"...")` in lambdas/<function>/index.py."""
    tree = ast.parse((LAMBDAS / function / "index.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == constant for t in node.targets):
            call = node.value
            assert isinstance(call, ast.Call) and call.func.attr == "compile", f"{function}.{constant} is not a re.compile"
            return call.args[0].value
    raise AssertionError(f"lambdas/{function}/index.py defines no {constant}")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        (names.PLATFORM_NAME, parameters.PLATFORM_NAME_PATTERN),
        (names.IMAGE_TAG, parameters.IMAGE_TAG_PATTERN),
        (names.ASSETS_BUCKET_NAME, parameters.BUCKET_NAME_PATTERN),
        (names.ASSETS_KEY_PREFIX, parameters.ASSETS_KEY_PREFIX.properties["AllowedPattern"]),
    ],
)
def test_every_template_constrains_a_shared_parameter_alike(templates, name, pattern):
    taking = {f: t["Parameters"][name] for f, t in templates.items() if name in t.get("Parameters", {})}
    assert len(taking) > 1, f"{name} is taken by {sorted(taking)} only"
    assert {f: p.get("AllowedPattern") for f, p in taking.items()} == dict.fromkeys(taking, pattern)


def test_settings_and_templates_accept_the_same_names():
    assert parameters.PLATFORM_NAME_PATTERN == settings.PLATFORM_NAME_RE.pattern
    assert parameters.TIER_NAME_PATTERN == settings.TIER_NAME_RE.pattern
    assert parameters.KEY_PREFIX_PATTERN == settings.PREFIX_RE.pattern


@pytest.mark.parametrize(
    ("function", "constant", "pattern"),
    [
        ("secret_arn", "PLATFORM_NAME", parameters.PLATFORM_NAME_PATTERN),
        ("image_digest", "IMAGE_TAG", parameters.IMAGE_TAG_PATTERN),
        ("seed_notebooks", "BUCKET_NAME", parameters.BUCKET_NAME_PATTERN),
        ("seed_notebooks", "TIER_NAME", parameters.TIER_NAME_PATTERN),
    ],
)
def test_a_function_checks_a_value_with_the_templates_pattern(function, constant, pattern):
    assert compiled_pattern(function, constant) == pattern


def test_a_shared_parameter_can_be_worded_for_one_template():
    p = parameters.PLATFORM_NAME.but(group="Tier", Description="joins", MinLength=None)
    assert (p.title, p.label, p.group) == (names.PLATFORM_NAME, "Platform name", "Tier")
    assert p.properties["Description"] == "joins" and "MinLength" not in p.properties
    assert p.properties["AllowedPattern"] == parameters.PLATFORM_NAME_PATTERN
    assert parameters.PLATFORM_NAME.properties["MinLength"] == 2  # the definition is unchanged
