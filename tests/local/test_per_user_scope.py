"""Per-user scope, end to end on `lakehub local up` (per-user mode: the real templates in the
emulator with IAM enforcement on, the real hub config, each server a task run by the local
agent with the template's UserTaskRole, its kernels on the credential relay).

Two users of one tier, each in their own kernel: each writes their own folder and the shared
folder; neither can list, read or write the other's; the other tier's data is refused; and
`get_caller_identity` in the kernel names the user (the session the hub assumed for them).

DEPENDS ON THE EMULATOR'S POLICY EVALUATOR (issue 15, "Local enforcement": lakehub.local.iam_eval).
moto alone ignores session tags and policy variables (the tier role's user folder
`users/${aws:PrincipalTag/lakehub-user}/` would match nothing, so even a user's own folder is
refused) and does not match an assumed-role caller (the hub's HubRole session) to the role
principal of the tier role's trust policy (the hub could not assume it at all).

Shared mode runs in tests/hub/test_per_user_scope_shared.py (`lakehub local up --server-mode
shared` refuses to run as root, which CI is).
"""

from __future__ import annotations

import json

import pytest
from scope_probe import assert_two_users_scoped

from lakehub.local.platform import free_base_port

from .helpers import Platform, user_server


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("lakehub-scope"), free_base_port())
    proc = p.up()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield p
    p.down()


def test_two_users_of_one_tier_reach_their_own_and_the_shared_folder_only(platform):
    tier = platform.tier("pii")
    alice, bob = tier["users"][:2]
    servers = {u["username"]: user_server(tier, u) for u in (alice, bob)}
    a, b = alice["username"], bob["username"]
    outputs = platform.state()["outputs"]
    notebooks, lake = outputs["NotebookBucketName"], outputs["DataBucketName"]
    assert_two_users_scoped(servers, outputs["TierPiiRoleArn"], notebooks, lake, ("pii/customers.csv", "nonpii/sales.csv"))
    # nothing of bob's was overwritten by alice's attempts (read with the platform's admin keys)
    s3 = platform.admin_s3()
    bucket = platform.state()["outputs"]["NotebookBucketName"]
    assert s3.get_object(Bucket=bucket, Key=f"tiers/pii/users/{b}/scope.txt")["Body"].read() == b.encode()
    assert s3.get_object(Bucket=bucket, Key=f"tiers/pii/users/{a}/scope.txt")["Body"].read() == a.encode()


def test_a_kernel_holds_none_of_the_task_roles_keys(platform):
    tier = platform.tier("pii")
    server = user_server(tier, tier["users"][0])
    env = json.loads(server.run("python3", "import os, json; print(json.dumps(dict(os.environ)))").strip().splitlines()[-1])
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert not {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    } & set(env)
