"""Values typed in at build time or at launch must not widen a tier's reach: IAM reads '*' and
'?' in resource ARNs as wildcards, so a data prefix "*/" would give a tier every prefix of the
lake, PII included. (Rule iam-arn-parameters-admit-no-wildcards checks every template parameter
that ends up in an ARN; these tests pin the two ways a tier is declared.)"""

from __future__ import annotations

import re

import pytest

from lakehub.settings import SettingsError, parse_settings

WILDCARD_PREFIXES = ["*/", "pii*/", "pii/*/", "p?i/", "*"]


def tier(prefix: str) -> dict:
    return {"tiers": [{"name": "wide", "data_prefixes": [prefix], "allowed_groups": ["g"]}]}


@pytest.mark.parametrize("prefix", WILDCARD_PREFIXES)
def test_build_settings_refuse_a_wildcard_prefix(prefix):
    with pytest.raises(SettingsError, match=r"data_prefixes\[0\]"):
        parse_settings(tier(prefix))


def test_build_settings_accept_plain_prefixes():
    assert parse_settings(tier("pii/claims/")).tiers[0].data_prefixes == ("pii/claims/",)


@pytest.mark.parametrize("prefix", WILDCARD_PREFIXES)
def test_tier_template_refuses_a_wildcard_prefix_at_launch(generated_templates, prefix):
    """A team launching the tier product (Service Catalog) types DataPrefixes: CloudFormation
    checks each item against the AllowedPattern."""
    from lakehub.stacks import names

    pattern = generated_templates["tier.template.yaml"]["Parameters"][names.TIER_DATA_PREFIXES]["AllowedPattern"]
    assert not re.fullmatch(pattern, prefix)
    assert re.fullmatch(pattern, "pii/claims/")
