"""What a user runs in a kernel to probe per-user scope (issue 15), shared by the per-user mode
test on `lakehub local up` (tests/local/test_per_user_scope.py) and the shared mode one
(tests/hub/test_per_user_scope_shared.py): every attempt's outcome, "ok", the object's text, or
the S3 error code."""

from __future__ import annotations

import json

from lakehub_hub.credentials import session_name

PROBE = """
import json, boto3, botocore
s3 = boto3.client("s3")
NB, LAKE, TIER, ME, OTHER = {notebooks!r}, {lake!r}, {tier!r}, {me!r}, {other!r}
OWN_DATA, OTHER_DATA = {own_data!r}, {other_data!r}
ROOT = "tiers/" + TIER + "/"
MINE, THEIRS = ROOT + "users/" + ME + "/", ROOT + "users/" + OTHER + "/"
def attempt(call):
    try:
        result = call()
        return result["Body"].read().decode() if isinstance(result, dict) and "Body" in result else "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
out = {{
    "arn": boto3.client("sts").get_caller_identity()["Arn"],
    "write_own": attempt(lambda: s3.put_object(Bucket=NB, Key=MINE + "scope.txt", Body=ME.encode())),
    "read_own": attempt(lambda: s3.get_object(Bucket=NB, Key=MINE + "scope.txt")),
    "list_own": attempt(lambda: s3.list_objects_v2(Bucket=NB, Prefix=MINE, Delimiter="/")),
    "write_shared": attempt(lambda: s3.put_object(Bucket=NB, Key=ROOT + "shared/scope-" + ME + ".txt", Body=ME.encode())),
    "read_shared": attempt(lambda: s3.get_object(Bucket=NB, Key=ROOT + "shared/scope-" + ME + ".txt")),
    "list_other": attempt(lambda: s3.list_objects_v2(Bucket=NB, Prefix=THEIRS, Delimiter="/")),
    "read_other": attempt(lambda: s3.get_object(Bucket=NB, Key=THEIRS + "scope.txt")),
    "write_other": attempt(lambda: s3.put_object(Bucket=NB, Key=THEIRS + "scope.txt", Body=b"overwritten")),
    "list_users": attempt(lambda: s3.list_objects_v2(Bucket=NB, Prefix=ROOT + "users/", Delimiter="/")),
    "own_tier_data": attempt(lambda: s3.get_object(Bucket=LAKE, Key=OWN_DATA)) != "AccessDenied",
    "other_tier_data": attempt(lambda: s3.get_object(Bucket=LAKE, Key=OTHER_DATA)),
}}
print(json.dumps(out))
"""


def probe(server, *, notebooks: str, lake: str, tier: str, me: str, other: str, own_data: str, other_data: str) -> dict:
    code = PROBE.format(notebooks=notebooks, lake=lake, tier=tier, me=me, other=other, own_data=own_data, other_data=other_data)
    return json.loads(server.run("python3", code).strip().splitlines()[-1])


def assert_scoped(out: dict, user: str, role_name: str) -> None:
    """One user's probe: their own session, their own and the shared folder, nothing of the other's."""
    assert out["arn"].endswith(f":assumed-role/{role_name}/{session_name(user)}"), out["arn"]
    assert out["write_own"] == "ok" and out["read_own"] == user and out["list_own"] == "ok", out
    assert out["write_shared"] == "ok" and out["read_shared"] == user, out
    assert out["list_other"] == out["read_other"] == out["write_other"] == "AccessDenied", out
    assert out["list_users"] == "AccessDenied", out
    assert out["own_tier_data"] is True and out["other_tier_data"] == "AccessDenied", out


def assert_two_users_scoped(servers: dict, role_arn: str, notebooks: str, lake: str, data_keys: tuple[str, str]) -> None:
    """Two users of the pii tier (`servers`: {user: their server}, in order) probe in their own
    kernels, the first, the second, then the first again (the second's object exists now), and
    each probe is scoped to the user's session of `role_arn`. `data_keys`: an object of the pii
    tier in the `lake` bucket, and one of the other tier."""
    (a, b), (own_data, other_data) = servers, data_keys
    where = dict(notebooks=notebooks, lake=lake, tier="pii", own_data=own_data, other_data=other_data)
    results = [(me, probe(servers[me], me=me, other=other, **where)) for me, other in ((a, b), (b, a), (a, b))]
    for me, out in results:
        assert_scoped(out, me, role_arn.rsplit("/", 1)[-1])
