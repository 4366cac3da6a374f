from __future__ import annotations

import pytest

from lakehub.cfn.template import Resolver, load
from lakehub.stacks.tier import TIER_SSM_PARAMS

# Values the tier stack would read from SSM, for resolving it in tests.
PLATFORM_VALUES = {name: f"<ssm:{name}>" for name in TIER_SSM_PARAMS}
PLATFORM_VALUES.update(
    {
        "DataBucketName": "example-lake",
        "NotebookBucketName": "example-notebooks",
        "DataKmsKeyArn": "none",
        "AuthMode": "cognito",
        "ClusterName": "lakehub",
        "DomainName": "lakehub.example.com",
        "VpcCidr": "10.20.0.0/16",
    }
)


def tier_params(**overrides) -> dict:
    params = {
        **PLATFORM_VALUES,
        "TierName": "pii",
        "DataPrefixes": "pii/",
        "AllowedGroups": "pii-users",
        "HostName": "pii",
    }
    params.update(overrides)
    return params


@pytest.fixture(scope="session")
def templates() -> dict[str, dict]:
    from lakehub.assets import TEMPLATES_DIR

    return {p.name: load(p) for p in sorted(TEMPLATES_DIR.glob("*.template.yaml"))}


@pytest.fixture
def resolve_tier(templates):
    def make(**overrides) -> Resolver:
        return Resolver(templates["tier.template.yaml"], tier_params(**overrides))

    return make
