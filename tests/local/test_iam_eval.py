"""Known answers for the local IAM evaluator (lakehub.local.iam_eval), each taken from a page of
the AWS IAM User Guide (named in the test). Pure: no emulator."""

from __future__ import annotations

import pytest

from lakehub.local.iam_eval import Decision, PolicyError, Principal, Request, evaluate

ACCOUNT = "123456789012"
USER = Principal.user(f"arn:aws:iam::{ACCOUNT}:user/carlossalazar")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lakehub-tier"
SESSION = Principal.session(ROLE, "alice")


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decide(action, resource, principal=USER, context=None, **kw) -> Decision:
    return evaluate(Request(action, resource, principal, context or {}), **kw)


# --- "Policy evaluation for requests within a single account" ---------------------------------

CARLOS = policy(
    {"Sid": "AllowS3ListRead", "Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListAllMyBuckets"], "Resource": "*"},
    {
        "Sid": "AllowS3Self",
        "Effect": "Allow",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"],
    },
    {"Sid": "DenyS3Logs", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::*log*"},
)
LOGS_BUCKET_POLICY = policy(
    {"Effect": "Allow", "Principal": {"AWS": USER.arn}, "Action": "s3:*", "Resource": "arn:aws:s3:::carlossalazar-logs/*"}
)


def test_single_account_identity_allow_is_enough():
    """IAM User Guide: "Policy evaluation for requests within a single account"."""
    assert decide("s3:PutObject", "arn:aws:s3:::carlossalazar/report.csv", identity_policies=[CARLOS])


def test_single_account_explicit_deny_beats_a_bucket_policy_allow():
    """IAM User Guide: "Policy evaluation for requests within a single account (Carlos's DenyS3Logs)"."""
    d = decide(
        "s3:PutObject", "arn:aws:s3:::carlossalazar-logs/x.log", identity_policies=[CARLOS], resource_policy=LOGS_BUCKET_POLICY
    )
    assert not d and "explicit deny" in d.reason


def test_single_account_resource_policy_naming_the_principal_allows_alone():
    """IAM User Guide: "Policy evaluation for requests within a single account (either policy type may allow)"."""
    other = policy(
        {"Effect": "Allow", "Principal": {"AWS": USER.arn}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared-bucket/*"}
    )
    assert decide("s3:GetObject", "arn:aws:s3:::shared-bucket/a", identity_policies=[], resource_policy=other)
    assert not decide("s3:GetObject", "arn:aws:s3:::other-bucket/a", identity_policies=[], resource_policy=other)


def test_single_account_resource_policy_naming_the_account_delegates_to_identity_policies():
    """IAM User Guide: "AWS JSON policy elements: Principal (AWS account principals)"."""
    # "AWS account principals": naming the account delegates to its identity-based policies.
    acct = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::shared-bucket/*",
        }
    )
    assert not decide("s3:GetObject", "arn:aws:s3:::shared-bucket/a", identity_policies=[], resource_policy=acct)


def test_nothing_allows_is_implicit_deny():
    """IAM User Guide: "Policy evaluation logic (implicit deny)"."""
    d = decide("s3:GetObject", "arn:aws:s3:::x/y", identity_policies=[policy(allow("s3:ListBucket"))])
    assert not d and "implicit" in d.reason


# --- "IAM JSON policy elements: Action / NotAction / Resource / NotResource" ---------------------


def test_action_wildcards_are_case_insensitive_and_resource_wildcards_are_not():
    """IAM User Guide: "IAM JSON policy elements: Action; IAM JSON policy elements: Resource"."""
    p = policy(allow("S3:get*", "arn:aws:s3:::Bucket/*"))
    assert decide("s3:GetObject", "arn:aws:s3:::Bucket/k", identity_policies=[p])
    assert not decide("s3:GetObject", "arn:aws:s3:::bucket/k", identity_policies=[p])
    assert decide("s3:GetObjectVersion", "arn:aws:s3:::Bucket/k", identity_policies=[p])
    single = policy(allow("s3:GetObject", "arn:aws:s3:::b/file?.txt"))
    assert decide("s3:GetObject", "arn:aws:s3:::b/file1.txt", identity_policies=[single])
    assert not decide("s3:GetObject", "arn:aws:s3:::b/file10.txt", identity_policies=[single])


def test_notaction_with_allow_grants_everything_else():
    """IAM User Guide: "IAM JSON policy elements: NotAction"."""
    # "NotAction with Allow": everything in S3 except deleting a bucket.
    p = policy({"Effect": "Allow", "NotAction": "s3:DeleteBucket", "Resource": "arn:aws:s3:::*"})
    assert decide("s3:PutObject", "arn:aws:s3:::b/k", identity_policies=[p])
    assert not decide("s3:DeleteBucket", "arn:aws:s3:::b", identity_policies=[p])


def test_notresource_deny_refuses_all_but_the_listed_resource():
    """IAM User Guide: "IAM JSON policy elements: NotResource"."""
    p = policy(
        allow("s3:*"), {"Effect": "Deny", "Action": "s3:*", "NotResource": ["arn:aws:s3:::hr-bucket", "arn:aws:s3:::hr-bucket/*"]}
    )
    assert decide("s3:GetObject", "arn:aws:s3:::hr-bucket/a", identity_policies=[p])
    assert not decide("s3:GetObject", "arn:aws:s3:::other/a", identity_policies=[p])


# --- "IAM policy elements: Variables and tags" --------------------------------------------------

HOME = policy(
    allow("s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket", Condition={"StringLike": {"s3:prefix": ["${aws:username}/*"]}}),
    allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::amzn-s3-demo-bucket/${aws:username}/*"),
)


def test_username_variable_in_resource_and_prefix_condition():
    """IAM User Guide: "IAM policy elements: Variables and tags (Introduction)"."""
    ctx = {"aws:username": "carlossalazar"}
    assert decide("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/carlossalazar/a.txt", context=ctx, identity_policies=[HOME])
    assert not decide("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/maria/a.txt", context=ctx, identity_policies=[HOME])
    assert decide(
        "s3:ListBucket",
        "arn:aws:s3:::amzn-s3-demo-bucket",
        context=dict(ctx, **{"s3:prefix": "carlossalazar/"}),
        identity_policies=[HOME],
    )
    # The case moto's enforcement got wrong: listing another user's folder.
    assert not decide(
        "s3:ListBucket",
        "arn:aws:s3:::amzn-s3-demo-bucket",
        context=dict(ctx, **{"s3:prefix": "maria/"}),
        identity_policies=[HOME],
    )
    assert not decide("s3:ListBucket", "arn:aws:s3:::amzn-s3-demo-bucket", context=ctx, identity_policies=[HOME])


def test_variable_with_no_value_matches_nothing():
    """IAM User Guide: "IAM policy elements: Variables and tags (Policy variables with no value)"."""
    # "Policy variables with no value": aws:username exists only for IAM users; a role session's
    # request has none, so the Resource entry matches nothing (not "amzn-s3-demo-bucket//*").
    assert not decide(
        "s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket//a.txt", principal=SESSION, context={}, identity_policies=[HOME]
    )


def test_principal_tag_variable_in_resource():
    """IAM User Guide: "IAM policy elements: Variables and tags (Tags as policy variables)"."""
    # "Tags as policy variables" / the tier role of issue 15: ${aws:PrincipalTag/lakehub-user}.
    p = policy(
        allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::notebooks/tiers/pii/users/${aws:PrincipalTag/lakehub-user}/*")
    )
    alice = {"aws:PrincipalTag/lakehub-user": "alice"}
    assert decide("s3:PutObject", "arn:aws:s3:::notebooks/tiers/pii/users/alice/n.ipynb", SESSION, alice, identity_policies=[p])
    assert not decide("s3:PutObject", "arn:aws:s3:::notebooks/tiers/pii/users/bob/n.ipynb", SESSION, alice, identity_policies=[p])
    # Condition key names are case-insensitive.
    assert decide(
        "s3:GetObject",
        "arn:aws:s3:::notebooks/tiers/pii/users/alice/n",
        SESSION,
        {"AWS:principaltag/LAKEHUB-USER": "alice"},
        identity_policies=[p],
    )
    assert not decide("s3:GetObject", "arn:aws:s3:::notebooks/tiers/pii/users/alice/n", SESSION, {}, identity_policies=[p])


def test_substituted_values_are_literal_not_wildcards():
    """IAM User Guide: "IAM policy elements: Variables and tags (Using variables in policies)"."""
    p = policy(allow("s3:GetObject", "arn:aws:s3:::b/${aws:PrincipalTag/u}/*"))
    assert not decide("s3:GetObject", "arn:aws:s3:::b/bob/x", SESSION, {"aws:PrincipalTag/u": "*"}, identity_policies=[p])
    assert decide("s3:GetObject", "arn:aws:s3:::b/*/x", SESSION, {"aws:PrincipalTag/u": "*"}, identity_policies=[p])


def test_special_characters_escapes():
    """IAM User Guide: "IAM policy elements: Variables and tags (Special characters)"."""
    # "Special characters": ${*} ${?} ${$} are the literal characters.
    p = policy(allow("s3:GetObject", "arn:aws:s3:::b/${*}${?}${$}/*"))
    assert decide("s3:GetObject", "arn:aws:s3:::b/*?$/x", identity_policies=[p])
    assert not decide("s3:GetObject", "arn:aws:s3:::b/ab$/x", identity_policies=[p])


def test_default_value_of_a_variable():
    """IAM User Guide: "IAM policy elements: Variables and tags (Specifying default values)"."""
    # "Specifying default values": ${aws:PrincipalTag/team, 'company-wide'}.
    p = policy(allow("s3:GetObject", "arn:aws:s3:::b/${aws:PrincipalTag/team, 'company-wide'}/*"))
    assert decide("s3:GetObject", "arn:aws:s3:::b/company-wide/x", SESSION, {}, identity_policies=[p])
    assert decide("s3:GetObject", "arn:aws:s3:::b/red/x", SESSION, {"aws:PrincipalTag/team": "red"}, identity_policies=[p])
    assert not decide(
        "s3:GetObject", "arn:aws:s3:::b/company-wide/x", SESSION, {"aws:PrincipalTag/team": "red"}, identity_policies=[p]
    )


# --- "IAM JSON policy elements: Condition operators" ---------------------------------------------


def cond(condition: dict, context: dict) -> bool:
    return bool(
        decide(
            "s3:GetObject",
            "arn:aws:s3:::b/k",
            context=context,
            identity_policies=[policy(allow("s3:GetObject", "*", Condition=condition))],
        )
    )


def test_string_operators():
    """IAM User Guide: "IAM JSON policy elements: Condition operators (String condition operators)"."""
    c = {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}}
    assert cond(c, {"aws:PrincipalTag/job-category": "iamuser-admin"})
    assert not cond(c, {"aws:PrincipalTag/job-category": "IAMUSER-ADMIN"})
    assert not cond(c, {})
    assert cond(
        {"StringEqualsIgnoreCase": {"aws:PrincipalTag/job-category": "iamuser-admin"}},
        {"aws:PrincipalTag/job-category": "IAMUser-Admin"},
    )
    assert cond(
        {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/*"]}},
        {"s3:prefix": "home/david/x", "aws:username": "david"},
    )
    assert not cond(
        {"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}}, {"s3:prefix": "home/maria/x", "aws:username": "david"}
    )


def test_negated_operator_is_nor_of_its_values_and_true_when_the_key_is_absent():
    """IAM User Guide: "IAM JSON policy elements: Condition operators; Create a condition with multiple context keys or values"."""
    c = {"StringNotEquals": {"aws:PrincipalTag/team": ["red", "blue"]}}
    assert cond(c, {"aws:PrincipalTag/team": "green"})
    assert not cond(c, {"aws:PrincipalTag/team": "blue"})
    assert cond(c, {})
    assert not cond({"StringNotLike": {"s3:prefix": "home/*"}}, {"s3:prefix": "home/x"})


def test_bool_secure_transport_deny():
    """IAM User Guide: "IAM JSON policy elements: Condition operators (Boolean condition operators)"."""
    # The TLS-only bucket policy every lakehub bucket carries.
    tls = policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    ident = [policy(allow("s3:GetObject"))]
    assert not decide(
        "s3:GetObject", "arn:aws:s3:::b/k", context={"aws:SecureTransport": "false"}, identity_policies=ident, resource_policy=tls
    )
    assert decide(
        "s3:GetObject", "arn:aws:s3:::b/k", context={"aws:SecureTransport": "true"}, identity_policies=ident, resource_policy=tls
    )


def test_numeric_date_ip_and_arn_operators():
    """IAM User Guide: "IAM JSON policy elements: Condition operators (Numeric, Date, IP address, ARN)"."""
    assert cond({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"})
    assert not cond({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"})
    assert not cond({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"})
    assert cond({"DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"}}, {"aws:CurrentTime": "2026-12-01T10:00:00Z"})
    assert not cond({"DateLessThan": {"aws:CurrentTime": "2020-06-30T00:00:00Z"}}, {"aws:CurrentTime": "2026-12-01T10:00:00Z"})
    assert cond({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.7"})
    assert cond({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "198.51.100.7"})
    arn = {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/lakehub-*"}}
    assert cond(arn, {"aws:PrincipalArn": ROLE})
    assert not cond(arn, {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/lakehub-x"})
    assert not cond(
        {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:*:123456789012:topic"}},
        {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:other"},
    )


def test_ifexists_and_null():
    """IAM User Guide: "IAM JSON policy elements: Condition operators (...IfExists; Null)"."""
    # "...IfExists condition operators": StringLikeIfExists ec2:InstanceType.
    c = {"StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}}
    assert cond(c, {})
    assert cond(c, {"ec2:InstanceType": "t2.micro"})
    assert not cond(c, {"ec2:InstanceType": "p4d.24xlarge"})
    # "Condition operator to check existence of condition keys": Null aws:TokenIssueTime.
    assert cond({"Null": {"aws:TokenIssueTime": "true"}}, {})
    assert not cond({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "2026-12-01T00:00:00Z"})
    assert cond({"Null": {"aws:TokenIssueTime": "false"}}, {"aws:TokenIssueTime": "2026-12-01T00:00:00Z"})


def test_multiple_keys_are_anded_and_multiple_values_ored():
    """IAM User Guide: "Create a condition with multiple context keys or values"."""
    # "Create a condition with multiple context keys or values".
    c = {
        "StringEquals": {
            "aws:PrincipalTag/department": ["finance", "hr", "legal"],
            "aws:PrincipalTag/role": ["audit", "security"],
        }
    }
    assert cond(c, {"aws:PrincipalTag/department": "hr", "aws:PrincipalTag/role": "security"})
    assert not cond(c, {"aws:PrincipalTag/department": "hr", "aws:PrincipalTag/role": "dev"})
    assert not cond(c, {"aws:PrincipalTag/department": "hr"})


def test_set_qualifiers_on_multivalued_keys():
    """IAM User Guide: "Set operators for multivalued context keys"."""
    # "Set operators for multivalued context keys".
    all_of = {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}
    assert cond(all_of, {"aws:TagKeys": ["environment"]})
    assert not cond(all_of, {"aws:TagKeys": ["environment", "owner"]})
    assert cond(all_of, {})  # ForAllValues is true on an absent key
    any_of = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}
    assert cond(any_of, {"aws:TagKeys": ["owner", "cost-center"]})
    assert not cond(any_of, {"aws:TagKeys": ["owner"]})
    assert not cond(any_of, {})
    # A negated operator under ForAnyValue: some request value matches none of the policy's.
    any_not = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["DataClass", "Owner"]}}
    assert cond(any_not, {"aws:TagKeys": ["Dept", "DataClass"]})
    assert not cond(any_not, {"aws:TagKeys": ["DataClass", "Owner"]})
    assert not cond(any_not, {})
    all_not = {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["DataClass", "Owner"]}}
    assert cond(all_not, {"aws:TagKeys": ["Dept", "SIC"]})
    assert not cond(all_not, {"aws:TagKeys": ["Dept", "DataClass"]})


def test_an_unknown_operator_is_an_error_not_a_silent_match():
    """IAM User Guide: "IAM JSON policy elements: Condition operators (the operators IAM defines)"."""
    with pytest.raises(PolicyError):
        cond({"StringSomething": {"aws:username": "x"}}, {"aws:username": "x"})


# --- "Session policies" --------------------------------------------------------------------------

ROLE_POLICY = policy(allow("s3:*", ["arn:aws:s3:::lake", "arn:aws:s3:::lake/*"]))


def test_session_policy_intersects_with_the_identity_policy():
    """IAM User Guide: "Policies and permissions in IAM (Session policies)"."""
    session = policy(allow("s3:GetObject", "arn:aws:s3:::lake/public/*"))
    assert decide(
        "s3:GetObject", "arn:aws:s3:::lake/public/a", SESSION, identity_policies=[ROLE_POLICY], session_policies=[session]
    )
    assert not decide(
        "s3:PutObject", "arn:aws:s3:::lake/public/a", SESSION, identity_policies=[ROLE_POLICY], session_policies=[session]
    )
    assert not decide(
        "s3:GetObject", "arn:aws:s3:::lake/private/a", SESSION, identity_policies=[ROLE_POLICY], session_policies=[session]
    )
    # The session policy alone grants nothing the role lacks.
    wide = policy(allow("s3:*"))
    assert not decide(
        "s3:GetObject", "arn:aws:s3:::elsewhere/a", SESSION, identity_policies=[ROLE_POLICY], session_policies=[wide]
    )


def test_resource_policy_naming_the_session_is_not_limited_by_the_session_policy():
    """IAM User Guide: "Policies and permissions in IAM (Session policies)"."""
    session = policy(allow("s3:GetObject", "arn:aws:s3:::lake/public/*"))
    names_session = policy(
        {"Effect": "Allow", "Principal": {"AWS": SESSION.arn}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::drop/*"}
    )
    names_role = policy(
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::drop/*"}
    )
    assert decide(
        "s3:PutObject",
        "arn:aws:s3:::drop/a",
        SESSION,
        identity_policies=[],
        session_policies=[session],
        resource_policy=names_session,
    )
    assert not decide(
        "s3:PutObject",
        "arn:aws:s3:::drop/a",
        SESSION,
        identity_policies=[],
        session_policies=[session],
        resource_policy=names_role,
    )
    assert decide("s3:PutObject", "arn:aws:s3:::drop/a", SESSION, identity_policies=[], resource_policy=names_role)


def test_session_policy_deny_wins():
    """IAM User Guide: "Policies and permissions in IAM (Session policies)"."""
    session = policy(allow("s3:*"), deny("s3:DeleteObject"))
    assert not decide(
        "s3:DeleteObject", "arn:aws:s3:::lake/a", SESSION, identity_policies=[ROLE_POLICY], session_policies=[session]
    )


# --- "AWS JSON policy elements: Principal / NotPrincipal" and role trust ------------------------

HUB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/lakehub-hub"
HUB = Principal.session(HUB_ROLE, "hub")
TRUST = policy(
    {
        "Effect": "Allow",
        "Principal": {"AWS": HUB_ROLE},
        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"],
        "Condition": {"Null": {"sts:SourceIdentity": "false", "aws:RequestTag/lakehub-user": "false"}},
    }
)


def test_trust_policy_must_name_the_caller_and_its_conditions_hold():
    """IAM User Guide: "Passing session tags in AWS STS; Monitor and control actions taken with assumed roles"."""
    ctx = {"sts:SourceIdentity": "alice", "aws:RequestTag/lakehub-user": "alice"}
    assert decide("sts:AssumeRole", ROLE, HUB, ctx, identity_policies=[], resource_policy=TRUST, resource_required=True)
    assert not decide(
        "sts:AssumeRole",
        ROLE,
        HUB,
        {"sts:SourceIdentity": "alice"},
        identity_policies=[],
        resource_policy=TRUST,
        resource_required=True,
    )
    other = Principal.session(f"arn:aws:iam::{ACCOUNT}:role/other", "x")
    # Even an administrator cannot assume a role whose trust policy does not name it.
    assert not decide(
        "sts:AssumeRole", ROLE, other, ctx, identity_policies=[policy(allow("*"))], resource_policy=TRUST, resource_required=True
    )
    assert decide("sts:TagSession", ROLE, HUB, ctx, identity_policies=[], resource_policy=TRUST, resource_required=True)


def test_trust_policy_naming_the_account_needs_an_identity_allow():
    """IAM User Guide: "Grant a user permissions to switch roles; AWS JSON policy elements: Principal"."""
    acct = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"})
    assert not decide("sts:AssumeRole", ROLE, HUB, identity_policies=[], resource_policy=acct, resource_required=True)
    assert decide(
        "sts:AssumeRole",
        ROLE,
        HUB,
        identity_policies=[policy(allow("sts:AssumeRole", ROLE))],
        resource_policy=acct,
        resource_required=True,
    )


def test_service_principal_never_matches_a_user_or_session():
    """IAM User Guide: "AWS JSON policy elements: Principal (AWS service principals)"."""
    ecs = policy({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"})
    assert not decide(
        "sts:AssumeRole", ROLE, HUB, identity_policies=[policy(allow("*"))], resource_policy=ecs, resource_required=True
    )


def test_notprincipal_deny_exempts_only_a_fully_listed_session():
    """IAM User Guide: "AWS JSON policy elements: NotPrincipal"."""
    # "NotPrincipal": to exempt a role session, list the session ARN, the role ARN and the account.
    listed = policy(
        allow("s3:*"),
        {
            "Effect": "Deny",
            "NotPrincipal": {"AWS": [SESSION.arn, ROLE, f"arn:aws:iam::{ACCOUNT}:root"]},
            "Action": "s3:*",
            "Resource": "*",
        },
    )
    assert decide(
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        SESSION,
        identity_policies=[policy(allow("s3:*"))],
        resource_policy=policy(listed["Statement"][1]),
    )
    role_only = policy({"Effect": "Deny", "NotPrincipal": {"AWS": [ROLE]}, "Action": "s3:*", "Resource": "*"})
    assert not decide(
        "s3:GetObject", "arn:aws:s3:::b/k", SESSION, identity_policies=[policy(allow("s3:*"))], resource_policy=role_only
    )
