"""Fixtures for the contents-manager tests: the session's emulator S3 (tests/conftest.py's
`moto_server`, not a second copy), one versioned notebook bucket, a fresh tier prefix per test,
the project's TierContentsManager on it, and pytest-jupyter's server fixtures (jp_fetch, ...)
for the REST tests and jupyter_server's own contract suite."""

from __future__ import annotations

import json
import urllib.request
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


@pytest.fixture
def tier_role_env(moto_server, notebook_bucket, tier_prefix, monkeypatch):
    """The user server's credentials as in the product: an identity allowed s3:DeleteObject (and
    the other object actions) only under the tier's prefix, with the emulator enforcing IAM (as
    local mode does); the test's own `s3` client gets an admin user. Enforcement is turned off
    again afterwards (the session's emulator is shared)."""
    import s3fs

    iam = boto3.client("iam", region_name="us-east-1", **_creds(moto_server))
    suffix = uuid.uuid4().hex[:8]

    def user(name, statements):
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    admin = user(f"admin-{suffix}", [{"Effect": "Allow", "Action": "*", "Resource": "*"}])
    tier = user(f"tier-{suffix}", [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": f"arn:aws:s3:::{notebook_bucket}/{tier_prefix}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{notebook_bucket}"},
    ])
    for key, value in moto_server.client_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", tier[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", tier[1])
    s3fs.S3FileSystem.clear_instance_cache()  # s3fs keeps one client per settings: take these keys
    moto_server.enforce_iam()
    try:
        yield boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server.endpoint_url,
                           aws_access_key_id=admin[0], aws_secret_access_key=admin[1])
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{moto_server.endpoint_url}/moto-api/reset-auth", data=b"inf",
                                                      method="POST", headers={"Content-Type": "text/plain"}), timeout=10).read()
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def tier_role_manager(tier_role_env, tier_mounts, notebook_bucket, moto_server):
    from lakehub_hub.contents import TierContentsManager

    return TierContentsManager(bucket=notebook_bucket, endpoint_url=moto_server.endpoint_url,
                               region_name="us-east-1", mounts=tier_mounts)


@pytest.fixture
def home_dir(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def home_config(aws_env, notebook_bucket, tier_prefix, home_dir) -> dict:
    """As hub_images/singleuser/jupyter_server_config.py configures HomeContentsManager."""
    return {"root_dir": str(home_dir), "bucket": notebook_bucket, "endpoint_url": aws_env.endpoint_url,
            "region_name": "us-east-1", "central_prefix": f"{tier_prefix}/users/{USER}",
            "shared_prefix": f"{tier_prefix}/shared"}


@pytest.fixture
def home_manager(home_config):
    from lakehub_hub.contents import HomeContentsManager

    return HomeContentsManager(**home_config)
