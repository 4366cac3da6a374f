"""IAM enforcement in the local emulator (lakehub.local.emulator_iam + iam_eval) against a real
server, next to moto's own enforcement on the same set-up.

The set-up is issue 15's per-user data scope, written by hand here (not lakehub/stacks/tier.py): a hub
role that may assume a tier role with a SourceIdentity and the session tag `lakehub-user`, and a
tier role whose S3 statements name `users/${aws:PrincipalTag/lakehub-user}/`.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import boto3
import pytest
from botocore.exceptions import ClientError

from lakehub.local.emulator import start_emulator_server, start_moto_server
from lakehub.local import control

REGION = "us-east-1"
BUCKET = "lakehub-iam-notebooks"
USERS = "tiers/pii/users"
ACCOUNT = "123456789012"


def _policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


TIER_POLICY = _policy(
    {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        "Resource": f"arn:aws:s3:::{BUCKET}/{USERS}/${{aws:PrincipalTag/lakehub-user}}/*",
    },
    {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{BUCKET}",
        "Condition": {"StringLike": {"s3:prefix": [f"{USERS}/${{aws:PrincipalTag/lakehub-user}}/*"]}},
    },
)


def _client(endpoint, service, creds=None):
    creds = creds or {"AccessKeyId": "testing", "SecretAccessKey": "testing"}
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
    )


@contextmanager
def _bucket_policy(admin, *statements):
    """The bucket's policy is these statements for the block's duration."""
    admin.put_bucket_policy(Bucket=BUCKET, Policy=_policy(*statements))
    try:
        yield
    finally:
        admin.delete_bucket_policy(Bucket=BUCKET)


def _deny_to_alice(action, resource):
    """A bucket policy statement refusing `action` on `resource` to sessions with alice's source identity."""
    return {
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": resource,
        "Condition": {"StringEquals": {"aws:SourceIdentity": "alice"}},
    }


def _creds(c):
    return {k: c[k] for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}


def set_up(endpoint: str) -> dict:
    """Bucket, an admin user, the hub role and the tier role; sessions assumed before
    enforcement as the local platform does. Returns the credentials."""
    iam, s3 = _client(endpoint, "iam"), _client(endpoint, "s3")
    s3.create_bucket(Bucket=BUCKET)
    for user in ("alice", "bob"):
        s3.put_object(Bucket=BUCKET, Key=f"{USERS}/{user}/notes.txt", Body=user.encode())
    iam.create_user(UserName="iam-admin")
    iam.put_user_policy(
        UserName="iam-admin", PolicyName="all", PolicyDocument=_policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    )
    key = iam.create_access_key(UserName="iam-admin")["AccessKey"]
    admin = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    admin_arn = iam.get_user(UserName="iam-admin")["User"]["Arn"]
    hub = iam.create_role(
        RoleName="iam-hub",
        AssumeRolePolicyDocument=_policy({"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}),
    )["Role"]["Arn"]
    tier_arn = f"arn:aws:iam::{ACCOUNT}:role/iam-tier"
    iam.put_role_policy(
        RoleName="iam-hub",
        PolicyName="assume-tier",
        PolicyDocument=_policy(
            {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"], "Resource": tier_arn}
        ),
    )
    iam.create_role(
        RoleName="iam-tier",
        AssumeRolePolicyDocument=_policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": hub},
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                "Condition": {"Null": {"sts:SourceIdentity": "false", "aws:RequestTag/lakehub-user": "false"}},
            }
        ),
    )
    iam.put_role_policy(RoleName="iam-tier", PolicyName="data", PolicyDocument=TIER_POLICY)
    # The hub's metrics exporter (issue 18), as lakehub/stacks/tier.py grants it.
    iam.put_role_policy(
        RoleName="iam-hub",
        PolicyName="publish-hub-metrics",
        PolicyDocument=_policy(
            {
                "Effect": "Allow",
                "Action": "cloudwatch:PutMetricData",
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": "lakehub"}},
            }
        ),
    )
    sts = _client(endpoint, "sts", admin)
    hub_creds = _creds(sts.assume_role(RoleArn=hub, RoleSessionName="hub")["Credentials"])
    # alice's tier session, assumed before enforcement (moto's own check could not do it after:
    # it does not match a session to its role in a trust policy).
    alice = _creds(
        _client(endpoint, "sts", hub_creds).assume_role(
            RoleArn=tier_arn, RoleSessionName="alice", SourceIdentity="alice", Tags=[{"Key": "lakehub-user", "Value": "alice"}]
        )["Credentials"]
    )
    return {"admin": admin, "hub": hub_creds, "alice": alice, "tier_arn": tier_arn, "hub_arn": hub}


def _denied(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


@pytest.fixture(scope="module")
def moto_plain(tmp_path_factory):
    server = start_moto_server(log_path=tmp_path_factory.mktemp("moto-iam") / "moto.log")
    creds = set_up(server.endpoint_url)
    control.control_request(
        server.endpoint_url, "/moto-api/reset-auth", None, data=b"0", method="POST", content_type="text/plain"
    )
    yield server.endpoint_url, creds
    server.stop()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    server = start_emulator_server(tmp_path_factory.mktemp("emulator-iam"))
    endpoint, token = server.endpoint_url, server.control_token
    creds = set_up(endpoint)
    control.control_request(endpoint, "/moto-api/reset-auth", token, data=b"0", method="POST", content_type="text/plain")
    yield endpoint, creds
    server.stop()


def test_moto_enforcement_lets_a_user_list_another_users_folder(moto_plain):
    """The old enforcement's gap (issue 15): the s3:prefix condition is ignored."""
    endpoint, creds = moto_plain
    s3 = _client(endpoint, "s3", creds["alice"])
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{USERS}/bob/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"{USERS}/bob/notes.txt"]


def test_the_emulator_refuses_listing_another_users_folder(emulator):
    endpoint, creds = emulator
    s3 = _client(endpoint, "s3", creds["alice"])
    assert _denied(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{USERS}/bob/"))
    assert _denied(lambda: s3.list_objects_v2(Bucket=BUCKET))
    own = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{USERS}/alice/")
    assert [o["Key"] for o in own["Contents"]] == [f"{USERS}/alice/notes.txt"]


def test_the_principal_tag_in_the_resource_scopes_objects_to_the_user(emulator):
    endpoint, creds = emulator
    s3 = _client(endpoint, "s3", creds["alice"])
    assert s3.get_object(Bucket=BUCKET, Key=f"{USERS}/alice/notes.txt")["Body"].read() == b"alice"
    s3.put_object(Bucket=BUCKET, Key=f"{USERS}/alice/new.txt", Body=b"x")
    assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key=f"{USERS}/bob/notes.txt"))
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key=f"{USERS}/bob/evil.txt", Body=b"x"))


def test_copying_needs_read_access_to_the_source(emulator):
    """S3 API reference, CopyObject: the caller needs read access to the source object."""
    endpoint, creds = emulator
    s3 = _client(endpoint, "s3", creds["alice"])
    assert _denied(
        lambda: s3.copy_object(
            Bucket=BUCKET, Key=f"{USERS}/alice/stolen.txt", CopySource={"Bucket": BUCKET, "Key": f"{USERS}/bob/notes.txt"}
        )
    )
    s3.copy_object(Bucket=BUCKET, Key=f"{USERS}/alice/copy.txt", CopySource={"Bucket": BUCKET, "Key": f"{USERS}/alice/notes.txt"})
    assert s3.get_object(Bucket=BUCKET, Key=f"{USERS}/alice/copy.txt")["Body"].read() == b"alice"


def test_the_hub_assumes_the_tier_role_per_user_only_with_source_identity_and_tag(emulator):
    endpoint, creds = emulator
    sts = _client(endpoint, "sts", creds["hub"])
    bob = sts.assume_role(
        RoleArn=creds["tier_arn"], RoleSessionName="bob", SourceIdentity="bob", Tags=[{"Key": "lakehub-user", "Value": "bob"}]
    )
    s3 = _client(endpoint, "s3", _creds(bob["Credentials"]))
    assert s3.get_object(Bucket=BUCKET, Key=f"{USERS}/bob/notes.txt")["Body"].read() == b"bob"
    assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key=f"{USERS}/alice/notes.txt"))
    assert _denied(lambda: sts.assume_role(RoleArn=creds["tier_arn"], RoleSessionName="bob", SourceIdentity="bob"))
    assert _denied(
        lambda: sts.assume_role(RoleArn=creds["tier_arn"], RoleSessionName="bob", Tags=[{"Key": "lakehub-user", "Value": "bob"}])
    )
    # The tier session itself is not trusted to assume the tier role (only the hub role is).
    alice_sts = _client(endpoint, "sts", creds["alice"])
    assert _denied(
        lambda: alice_sts.assume_role(
            RoleArn=creds["tier_arn"],
            RoleSessionName="xx",
            SourceIdentity="alice",
            Tags=[{"Key": "lakehub-user", "Value": "bob"}],
        )
    )


def test_a_source_identity_cannot_change_along_a_role_chain(emulator):
    """IAM user guide, "Monitor and control actions taken with assumed roles": once set, the
    source identity persists across chained sessions and cannot be changed."""
    endpoint, creds = emulator
    iam = _client(endpoint, "iam", creds["admin"])
    iam.put_role_policy(
        RoleName="iam-tier",
        PolicyName="rechain",
        PolicyDocument=_policy(
            {
                "Effect": "Allow",
                "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
                "Resource": creds["tier_arn"],
            }
        ),
    )
    doc = iam.get_role(RoleName="iam-tier")["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(doc) if isinstance(doc, str) else doc
    trust["Statement"][0]["Principal"]["AWS"] = [creds["hub_arn"], creds["tier_arn"]]
    iam.update_assume_role_policy(RoleName="iam-tier", PolicyDocument=json.dumps(trust))
    try:
        sts = _client(endpoint, "sts", creds["alice"])
        tag = [{"Key": "lakehub-user", "Value": "alice"}]
        assert _denied(
            lambda: sts.assume_role(RoleArn=creds["tier_arn"], RoleSessionName="again", SourceIdentity="bob", Tags=tag)
        )
        again = sts.assume_role(RoleArn=creds["tier_arn"], RoleSessionName="again", Tags=tag)
        who = _client(endpoint, "sts", _creds(again["Credentials"])).get_caller_identity()
        assert who["Arn"].endswith(":assumed-role/iam-tier/again")
        # It still carries alice's source identity: a bucket policy on aws:SourceIdentity sees it.
        admin = _client(endpoint, "s3", creds["admin"])
        with _bucket_policy(admin, _deny_to_alice("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*")):
            s3 = _client(endpoint, "s3", _creds(again["Credentials"]))
            assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key=f"{USERS}/alice/notes.txt"))
    finally:
        trust["Statement"][0]["Principal"]["AWS"] = creds["hub_arn"]
        iam.update_assume_role_policy(RoleName="iam-tier", PolicyDocument=json.dumps(trust))
        iam.delete_role_policy(RoleName="iam-tier", PolicyName="rechain")


def test_a_session_policy_narrows_the_tier_role(emulator):
    endpoint, creds = emulator
    read_only = _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    session = _client(endpoint, "sts", creds["hub"]).assume_role(
        RoleArn=creds["tier_arn"],
        RoleSessionName="carol",
        SourceIdentity="carol",
        Policy=read_only,
        Tags=[{"Key": "lakehub-user", "Value": "alice"}],
    )
    s3 = _client(endpoint, "s3", _creds(session["Credentials"]))
    assert s3.get_object(Bucket=BUCKET, Key=f"{USERS}/alice/notes.txt")["Body"].read() == b"alice"
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key=f"{USERS}/alice/x.txt", Body=b"x"))


def test_delete_objects_is_authorized_per_key(emulator, moto_plain):
    endpoint, creds = emulator
    s3 = _client(endpoint, "s3", creds["alice"])
    s3.put_object(Bucket=BUCKET, Key=f"{USERS}/alice/gone.txt", Body=b"x")
    answer = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": f"{USERS}/alice/gone.txt"}, {"Key": f"{USERS}/bob/notes.txt"}]}
    )
    assert [d["Key"] for d in answer.get("Deleted", [])] == [f"{USERS}/alice/gone.txt"]
    assert [(e["Key"], e["Code"]) for e in answer.get("Errors", [])] == [(f"{USERS}/bob/notes.txt", "AccessDenied")]
    admin = _client(endpoint, "s3", creds["admin"])
    assert admin.get_object(Bucket=BUCKET, Key=f"{USERS}/bob/notes.txt")["Body"].read() == b"bob"
    # moto alone authorizes DeleteObjects against the bucket: the user's own key is refused too.
    old_endpoint, old_creds = moto_plain
    old = _client(old_endpoint, "s3", old_creds["alice"]).delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": f"{USERS}/alice/notes.txt"}]}
    )
    assert [e["Code"] for e in old.get("Errors", [])] == ["AccessDenied"]


def test_bucket_policies_count_and_the_tls_deny_does_not_block_the_emulators_http(emulator):
    endpoint, creds = emulator
    admin = _client(endpoint, "s3", creds["admin"])
    tls_only = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    with _bucket_policy(admin, tls_only, _deny_to_alice("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{USERS}/*/frozen/*")):
        s3 = _client(endpoint, "s3", creds["alice"])
        assert s3.get_object(Bucket=BUCKET, Key=f"{USERS}/alice/notes.txt")["Body"].read() == b"alice"
        assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key=f"{USERS}/alice/frozen/x.txt", Body=b"x"))


def test_the_session_carries_the_users_identity(emulator):
    endpoint, creds = emulator
    who = _client(endpoint, "sts", creds["alice"]).get_caller_identity()
    assert who["Arn"].endswith(":assumed-role/iam-tier/alice")


def test_the_hub_role_publishes_its_metrics_and_the_tier_role_does_not(emulator):
    """CloudWatch signs its requests as "monitoring": moto named the action monitoring:PutMetricData
    and refused the hub's cloudwatch:PutMetricData grant, so no hub metric reached the local
    emulator (seen: 403 on every PutMetricData of a local platform's hubs)."""
    endpoint, creds = emulator
    datum = [
        {
            "MetricName": "HubUp",
            "Value": 1.0,
            "Dimensions": [{"Name": "Platform", "Value": "iam"}, {"Name": "Tier", "Value": "pii"}],
        }
    ]
    _client(endpoint, "cloudwatch", creds["hub"]).put_metric_data(Namespace="lakehub", MetricData=datum)
    assert _denied(lambda: _client(endpoint, "cloudwatch", creds["alice"]).put_metric_data(Namespace="lakehub", MetricData=datum))
    listed = _client(endpoint, "cloudwatch", creds["admin"]).list_metrics(Namespace="lakehub", MetricName="HubUp")["Metrics"]
    assert any({"Name": "Platform", "Value": "iam"} in m["Dimensions"] for m in listed)
