"""Fixtures for the contents-manager tests: the session's emulator S3 (tests/conftest.py's
`moto_server`, not a second copy), one versioned notebook bucket, a fresh tier prefix per test,
the project's TierContentsManager on it, and pytest-jupyter's server fixtures (jp_fetch, ...)
for the REST tests and jupyter_server's own contract suite."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from lakehub.local.emulator import emulator_client

# pytest-jupyter's server fixtures and its async-test hooks, for this folder only (the plugin
# has no entry point, and a `pytest_plugins` line is only honoured in the top-level conftest).
from pytest_jupyter.jupyter_server import *  # noqa: F403 - its fixtures, by name

BUCKET = "lakehub-contents-tests"
USER = "alice"


@pytest.fixture(scope="session")
def notebook_bucket(moto_server):
    """The notebook bucket, versioned as on AWS (storage.template.yaml) and in local mode."""
    s3 = emulator_client("s3", moto_server.endpoint_url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


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
    return {"bucket": notebook_bucket, "endpoint_url": aws_env.endpoint_url, "region_name": "us-east-1", "mounts": tier_mounts}


@pytest.fixture
def tier_manager(tier_config):
    from lakehub_hub.contents import TierContentsManager

    return TierContentsManager(**tier_config)


@pytest.fixture(scope="session")
def iam_server(tmp_path_factory):
    """An emulator with the local platform's IAM evaluator (`start_moto_server(iam_evaluator=True)`:
    DeleteObjects authorized per key as AWS does, conditions, bucket policies), enforcing IAM from
    the start, with its own versioned notebook bucket (named as `notebook_bucket`). Yields the
    server and an admin S3 client (the tests' own look into the bucket)."""
    from lakehub.local.emulator import start_moto_server
    from lakehub.local.platform import create_admin_user

    server = start_moto_server(log_path=tmp_path_factory.mktemp("moto-iam") / "moto.log", iam_evaluator=True)
    try:
        key = create_admin_user(emulator_client("iam", server.endpoint_url), "contents-admin", "all")
        server.enforce_iam()
        admin = {
            "endpoint_url": server.endpoint_url,
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        s3 = boto3.client("s3", region_name="us-east-1", **admin)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield server, admin
    finally:
        server.stop()


@pytest.fixture
def tier_role_env(iam_server, tier_prefix, monkeypatch):
    """The user server's credentials as in the product: an identity allowed the object actions
    (s3:DeleteObject among them) only under the tier's prefix, on the emulator with the local
    platform's IAM evaluator (as local mode runs it). Yields a TierRoleS3: the admin's S3 client,
    and a way to deny the tier identity one key."""
    import s3fs

    server, admin = iam_server
    iam = boto3.client("iam", region_name="us-east-1", **admin)
    name = f"tier-{uuid.uuid4().hex[:8]}"
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName="tier",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "s3:GetObject",
                            "s3:GetObjectVersion",
                            "s3:PutObject",
                            "s3:DeleteObject",
                            "s3:AbortMultipartUpload",
                        ],
                        "Resource": f"{bucket_arn}/{tier_prefix}/*",
                    },
                    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"], "Resource": bucket_arn},
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    for k, v in server.client_env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # s3fs keeps one client per settings: take these keys
    client = TierRoleS3(
        boto3.client("s3", region_name="us-east-1", **admin),
        iam,
        name,
        {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
            "endpoint_url": server.endpoint_url,
        },
    )
    try:
        yield client
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


class TierRoleS3:
    """The admin's S3 client (attribute access passes through), and what a test changes about the
    tier identity: `deny_delete(key)` adds an explicit Deny of s3:DeleteObject on one key to its
    policy; `tier_client()` is an S3 client with the tier identity's own keys."""

    def __init__(self, client, iam, user, tier_keys):
        self._client, self._iam, self._user, self._tier_keys = client, iam, user, tier_keys

    def __getattr__(self, name):
        return getattr(self._client, name)

    def deny_delete(self, *keys: str) -> None:
        self._iam.put_user_policy(
            UserName=self._user,
            PolicyName="deny-one",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": [f"arn:aws:s3:::{BUCKET}/{k}" for k in keys]}
                    ],
                }
            ),
        )

    def tier_client(self):
        return boto3.client("s3", region_name="us-east-1", **self._tier_keys)


@pytest.fixture
def tier_role_manager(tier_role_env, tier_mounts, iam_server):
    from lakehub_hub.contents import TierContentsManager

    return TierContentsManager(
        bucket=BUCKET, endpoint_url=iam_server[0].endpoint_url, region_name="us-east-1", mounts=tier_mounts
    )


@pytest.fixture
def home_role_manager(tier_role_env, iam_server, tier_prefix, home_dir, monkeypatch):
    """HomeContentsManager with the tier identity's credentials on the evaluator's emulator, HOME
    the home as in the product (JupyterLab's "Move to Trash" keeps a deleted file in the home's
    trash, ~/.local/share/Trash)."""
    from lakehub_hub.contents import HomeContentsManager

    monkeypatch.setenv("HOME", str(home_dir))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)

    return HomeContentsManager(
        root_dir=str(home_dir),
        bucket=BUCKET,
        endpoint_url=iam_server[0].endpoint_url,
        region_name="us-east-1",
        central_prefix=f"{tier_prefix}/users/{USER}",
        shared_prefix=f"{tier_prefix}/shared",
    )


@pytest.fixture
def home_dir(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def home_config(aws_env, notebook_bucket, tier_prefix, home_dir) -> dict:
    """As hub_images/singleuser/jupyter_server_config.py configures HomeContentsManager."""
    return {
        "root_dir": str(home_dir),
        "bucket": notebook_bucket,
        "endpoint_url": aws_env.endpoint_url,
        "region_name": "us-east-1",
        "central_prefix": f"{tier_prefix}/users/{USER}",
        "shared_prefix": f"{tier_prefix}/shared",
    }


@pytest.fixture
def home_manager(home_config):
    from lakehub_hub.contents import HomeContentsManager

    return HomeContentsManager(**home_config)
