"""Fixtures for the contents-manager tests: the session's emulator S3 (tests/conftest.py's
`moto_server`, not a second copy), one versioned notebook bucket, a fresh tier prefix per test,
the project's TierContentsManager on it, and pytest-jupyter's server fixtures (jp_fetch, ...)
for the REST tests and jupyter_server's own contract suite."""

from __future__ import annotations

import uuid

import boto3
import pytest

# pytest-jupyter's server fixtures and its async-test hooks, for this folder only (the plugin
# has no entry point, and a `pytest_plugins` line is only honoured in the top-level conftest).
from pytest_jupyter.jupyter_server import *

BUCKET = "lakehub-contents-tests"
USER = "alice"


@pytest.fixture(scope="session")
def notebook_bucket(moto_server):
    """The notebook bucket, versioned as on AWS (storage.template.yaml) and in local mode."""
    s3 = boto3.client("s3", region_name="us-east-1", **_creds(moto_server))
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


def _creds(moto_server) -> dict:
    env = moto_server.client_env()
    return {"endpoint_url": moto_server.endpoint_url, "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}


@pytest.fixture
def s3(aws_env, notebook_bucket):
    return boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env.endpoint_url)


@pytest.fixture
def tier_prefix(notebook_bucket) -> str:
    return f"tiers/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tier_mounts(tier_prefix) -> dict:
    """As hub_images/singleuser/jupyter_server_config.py lays them out."""
    return {"shared": f"{tier_prefix}/shared", USER: f"{tier_prefix}/users/{USER}"}


@pytest.fixture
def tier_config(aws_env, notebook_bucket, tier_mounts) -> dict:
    return {"bucket": notebook_bucket, "endpoint_url": aws_env.endpoint_url, "region_name": "us-east-1",
            "mounts": tier_mounts}


@pytest.fixture
def tier_manager(tier_config):
    from lakehub_hub.contents import TierContentsManager

    return TierContentsManager(**tier_config)
