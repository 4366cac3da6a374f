"""IAM enforcement in the local emulator with lakehub.local.iam_eval instead of moto's own check.

moto's enforcement (moto.iam.access_control) ignores most Conditions (it knows StringEquals on
trust policies only, and treats an operator it does not know as true, so a conditional Deny
such as the TLS-only bucket policy denies everything), ignores session policies, session tags,
SourceIdentity and policy variables, never reads bucket policies for signed requests, and
authorizes DeleteObjects once against the bucket. This module, installed by
lakehub.local.emulator_server, changes that for S3 and STS:

- Every AssumeRole is recorded by the new access key id: role ARN, session name, SourceIdentity
  (given, or inherited from the calling session: it cannot change along a role chain), session
  tags (given, plus the caller's transitive tags) and the session policy (Policy and PolicyArns).
  Recording happens whether or not enforcement is on, since the local platform assumes its
  roles before turning it on.
- Once enforcement is on, S3 and STS requests are decided by iam_eval with the caller's identity
  policies (inline and attached; a user's groups), the session's policy, and the target
  bucket's policy as the resource policy. The request context carries what AWS gives the
  product's requests: aws:PrincipalArn, aws:PrincipalAccount, aws:PrincipalType, aws:userid,
  aws:username (users), aws:SourceIdentity, aws:PrincipalTag/* (the role's or user's tags,
  overridden by session tags), aws:TokenIssueTime (sessions), aws:CurrentTime, aws:EpochTime,
  aws:SecureTransport, and for S3 listings s3:prefix, s3:delimiter, s3:max-keys.
- AssumeRole is checked as AWS does: sts:AssumeRole, plus sts:TagSession when tags are passed
  (or the caller has transitive tags) and sts:SetSourceIdentity when a source identity is set
  (or carried along), each against the caller's policies and the role's trust policy, with
  sts:SourceIdentity, sts:RoleSessionName, sts:ExternalId, aws:RequestTag/*, aws:TagKeys and
  sts:TransitiveTagKeys in the context. The trust policy must allow the caller itself.
- CopyObject (and UploadPartCopy) also needs s3:GetObject (s3:GetObjectVersion with a version
  id) on the source object, as AWS checks; moto checks only the destination.
- DeleteObjects is authorized per key as s3:DeleteObject (s3:DeleteObjectVersion for a key
  given with a VersionId); a refused key is an AccessDenied entry in the 200 answer, as in the
  S3 API reference (DeleteObjects), and the others are deleted.
- aws:SecureTransport is "true" for every request: the emulator listens on plain HTTP on
  loopback only, and the product's clients reach S3 and STS over HTTPS on AWS (botocore's
  default endpoints). The buckets' TLS-only Deny stays in the templates unchanged; its meaning
  is checked by the evaluator's own tests (aws:SecureTransport false is denied).

Other services keep moto's action-only check (lakehub.local.emulator_server, point 4). A request
the evaluator cannot read (an operator it does not know) is refused, and the reason logged.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from lakehub.local.iam_eval import Decision, Principal, Request, evaluate

log = logging.getLogger("lakehub.local.iam")


@dataclass
class Session:
    role_arn: str
    session_name: str
    account: str
    source_identity: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    transitive_keys: set[str] = field(default_factory=set)
    session_policies: list[dict] | None = None
    issued: float = field(default_factory=time.time)


class Sessions:
    def __init__(self):
        self._lock = threading.Lock()
        self._by_key: dict[str, Session] = {}

    def put(self, access_key_id: str, session: Session) -> None:
        with self._lock:
            self._by_key[access_key_id] = session

    def get(self, access_key_id: str) -> Session | None:
        with self._lock:
            return self._by_key.get(access_key_id)


SESSIONS = Sessions()
_local = threading.local()


def _first(data: dict, key: str) -> str | None:
    value = (data or {}).get(key)
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _members(data: dict, prefix: str) -> dict[int, dict[str, str]]:
    """`Tags.member.1.Key=...` -> {1: {"Key": ...}}."""
    out: dict[int, dict[str, str]] = {}
    pattern = re.compile(re.escape(prefix) + r"\.member\.(\d+)(?:\.(\w+))?$")
    for key in data or {}:
        m = pattern.match(key)
        if m:
            out.setdefault(int(m.group(1)), {})[m.group(2) or ""] = _first(data, key) or ""
    return out


def _policy_json(policy) -> dict:
    """A policy as moto hands it out (Policy object, JSON text, dict with policy_document, or a
    (name, document) pair) -> the document as a dict."""
    from moto.iam.models import Policy

    if isinstance(policy, Policy):
        policy = next(v for v in policy.versions if v.is_default).document
    if isinstance(policy, tuple):
        policy = policy[1]
    if isinstance(policy, dict) and "policy_document" in policy:
        policy = policy["policy_document"]
    if isinstance(policy, str):
        policy = json.loads(policy)
    return policy


def _iam(account: str, partition: str = "aws"):
    from moto.iam.models import iam_backends

    return iam_backends[account][partition]


def _managed_policy(account: str, arn: str) -> dict | None:
    try:
        return _policy_json(_iam(account).get_policy(arn))
    except Exception:  # noqa: BLE001 - a missing managed policy grants nothing
        return None


def _session_of(access_key) -> Session | None:
    """The recorded session of moto's AssumedRoleAccessKey, or one made from moto's record."""
    key_id = access_key._access_key_id
    found = SESSIONS.get(key_id)
    if found:
        return found
    from moto.sts.models import sts_backends

    for role in sts_backends[access_key.account_id][access_key.partition].assumed_roles:
        if role.access_key_id == key_id:
            policies = [json.loads(role.policy)] if role.policy else None
            return Session(role.role_arn, role.session_name, access_key.account_id, session_policies=policies)
    return None


def _tags_dict(tags) -> dict[str, str]:
    if isinstance(tags, dict):
        return {k: (v["Value"] if isinstance(v, dict) else v) for k, v in tags.items()}
    return {t["Key"]: t["Value"] for t in tags or []}


@dataclass
class Caller:
    principal: Principal
    identity_policies: list[dict]
    session_policies: list[dict] | None
    context: dict
    session: Session | None = None


def caller_of(iam_request) -> Caller:
    from moto.iam.access_control import AssumedRoleAccessKey

    key = iam_request._access_key
    account = iam_request.account_id
    identity = [_policy_json(p) for p in key.collect_policies()]
    now = time.time()
    context: dict = {
        "aws:SecureTransport": "true",
        "aws:PrincipalAccount": account,
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "aws:EpochTime": str(int(now)),
    }
    if isinstance(key, AssumedRoleAccessKey):
        session = _session_of(key)
        role_arn = session.role_arn if session else f"arn:aws:iam::{account}:role/{key._owner_role_name}"
        name = session.session_name if session else key._session_name
        principal = Principal.session(role_arn, name, account)
        tags: dict[str, str] = {}
        role_id = "AROA"
        try:
            role = _iam(account).get_role_by_arn(role_arn)
            tags.update(_tags_dict(role.tags))
            role_id = role.id
        except Exception:  # noqa: BLE001 - a role moto does not know has no tags
            pass
        if session:
            tags.update(session.tags)
            if session.source_identity:
                context["aws:SourceIdentity"] = session.source_identity
            context["aws:TokenIssueTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.issued))
        context.update({"aws:PrincipalArn": role_arn, "aws:PrincipalType": "AssumedRole", "aws:userid": f"{role_id}:{name}"})
        context.update({f"aws:PrincipalTag/{k}": v for k, v in tags.items()})
        return Caller(principal, identity, session.session_policies if session else None, context, session)
    user_name = key._owner_user_name
    principal = Principal.user(key.arn)
    iam = _iam(account)
    user = iam.get_user(user_name)
    context.update({"aws:PrincipalArn": key.arn, "aws:PrincipalType": "User", "aws:username": user_name, "aws:userid": user.id})
    try:
        context.update({f"aws:PrincipalTag/{t['Key']}": t["Value"] for t in iam.list_user_tags(user_name)})
    except Exception:  # noqa: BLE001
        pass
    return Caller(principal, identity, None, context)


# S3 operation names moto sets -> the IAM action AWS authorizes.
S3_ACTIONS = {
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
}


def _bucket_policy(account: str, resource: str) -> dict | None:
    from moto.s3.models import s3_backends

    bucket_name = resource.split(":::", 1)[-1].split("/", 1)[0]
    if not bucket_name or bucket_name == "*":
        return None
    try:
        bucket = s3_backends[account]["aws"].get_bucket(bucket_name)
    except Exception:  # noqa: BLE001 - no such bucket: S3 answers NoSuchBucket later
        return None
    policy = getattr(bucket, "policy", None)
    if not policy:
        return None
    return json.loads(policy.decode() if isinstance(policy, bytes) else policy)


def _s3_context(iam_request, action: str) -> dict:
    query = parse_qs(urlsplit(iam_request._path).query, keep_blank_values=True)
    ctx = {}
    if action in ("s3:ListBucket", "s3:ListBucketVersions"):
        for name in ("prefix", "delimiter", "max-keys"):
            if name in query:
                ctx[f"s3:{name}"] = query[name][0]
    if "versionId" in query:
        ctx["s3:versionid"] = query["versionId"][0]
    return ctx


def _copy_source(headers) -> tuple[str, str] | None:
    """x-amz-copy-source ("/bucket/key?versionId=v", URL-encoded) -> (object ARN, version id)."""
    from urllib.parse import unquote

    raw = next((v for k, v in (headers or {}).items() if k.lower() == "x-amz-copy-source"), None)
    if not raw:
        return None
    path, _, query = raw.partition("?")
    version = (parse_qs(query).get("versionId") or [""])[0]
    return f"arn:aws:s3:::{unquote(path).lstrip('/')}", version


def decide_s3(iam_request, action: str, resource: str, caller: Caller | None = None) -> Decision:
    caller = caller or caller_of(iam_request)
    context = dict(caller.context, **_s3_context(iam_request, action))
    return evaluate(
        Request(action, resource, caller.principal, context),
        caller.identity_policies,
        caller.session_policies,
        _bucket_policy(iam_request.account_id, resource),
    )


def _assume_role_checks(iam_request, caller: Caller, role_arn: str) -> Decision:
    data = iam_request._data
    role = _iam(iam_request.account_id).get_role_by_arn(role_arn)
    trust = _policy_json(role.assume_role_policy_document)
    tags = {m.get("Key", ""): m.get("Value", "") for m in _members(data, "Tags").values()}
    transitive = [m.get("", "") for m in _members(data, "TransitiveTagKeys").values()]
    inherited_identity = caller.session.source_identity if caller.session else ""
    source_identity = _first(data, "SourceIdentity") or inherited_identity
    if inherited_identity and source_identity != inherited_identity:
        return Decision(False, "a source identity cannot change along a role chain")
    inherited = {
        k: v
        for k, v in (caller.session.tags if caller.session else {}).items()
        if caller.session and k in caller.session.transitive_keys
    }
    context = dict(caller.context)
    context["sts:RoleSessionName"] = _first(data, "RoleSessionName")
    if _first(data, "ExternalId"):
        context["sts:ExternalId"] = _first(data, "ExternalId")
    if source_identity:
        context["sts:SourceIdentity"] = source_identity
    all_tags = dict(inherited, **tags)
    context.update({f"aws:RequestTag/{k}": v for k, v in all_tags.items()})
    if all_tags:
        context["aws:TagKeys"] = sorted(all_tags)
    if transitive:
        context["sts:TransitiveTagKeys"] = transitive
    actions = ["sts:AssumeRole"]
    if all_tags:
        actions.append("sts:TagSession")
    if source_identity:
        actions.append("sts:SetSourceIdentity")
    for action in actions:
        decision = evaluate(
            Request(action, role_arn, caller.principal, context),
            caller.identity_policies,
            caller.session_policies,
            trust,
            resource_required=True,
        )
        if not decision:
            return Decision(False, f"{action}: {decision.reason}")
    return Decision(True, "trust policy and caller allow it")


# Signing names that differ from the IAM service prefix, for the services the platform calls.
SIGNING_NAMES = {"monitoring": "cloudwatch"}


def check_action_permitted(self, resource: str) -> None:
    """Replacement for moto's IAMRequestBase.check_action_permitted (see the module docstring)."""
    service, _, name = self._action.partition(":")
    if service in SIGNING_NAMES:
        # moto names the action after the request's signing name (CloudWatch signs as
        # "monitoring"), IAM after the service prefix: cloudwatch:PutMetricData, which is what
        # the hub role allows (its metrics exporter, lakehub_hub.metrics).
        service = SIGNING_NAMES[service]
        self._action = f"{service}:{name}"
    if service not in ("s3", "sts"):
        return _ORIGINAL["check"](self, resource)
    if self._action == "sts:GetCallerIdentity":  # AWS answers it whatever the policies say
        return None
    try:
        if service == "s3":
            action = "s3:" + S3_ACTIONS.get(name, name)
            if action == "s3:DeleteObject" and "/" not in resource.split(":::", 1)[-1]:
                # DeleteObjects: authorized per key by _delete_keys below, as AWS does.
                _local.bulk_delete = (self, self._headers.get("Authorization"))
                return None
            decision = decide_s3(self, action, resource)
            source = _copy_source(self._headers)
            if decision and action == "s3:PutObject" and source:
                # CopyObject / UploadPartCopy: AWS also authorizes reading the source object.
                src_resource, version = source
                decision = decide_s3(self, "s3:GetObjectVersion" if version else "s3:GetObject", src_resource)
        else:
            caller = caller_of(self)
            role_arn = _first(self._data, "RoleArn") if name == "AssumeRole" else None
            if role_arn:
                decision = _assume_role_checks(self, caller, role_arn)
            else:
                decision = evaluate(
                    Request(self._action, "*", caller.principal, caller.context),
                    caller.identity_policies,
                    caller.session_policies,
                )
    except Exception as exc:  # noqa: BLE001 - fail closed, say why in the emulator's log
        log.exception("iam: cannot evaluate %s on %s", self._action, resource)
        decision = Decision(False, f"evaluation error: {exc}")
    if not decision:
        log.info("iam: denied %s on %s for %s: %s", self._action, resource, self._access_key.arn, decision.reason)
        self._raise_access_denied()
    return None


def _record_assume_role(self, original):
    """Wraps moto's STSResponse.assume_role: records the new session (see the docstring)."""
    data = self.querystring
    caller_key = (self.headers.get("Authorization") or "").partition("Credential=")[2].partition("/")[0]
    caller = SESSIONS.get(caller_key)
    result = original(self)
    role = result.result["Credentials"]
    tags = {m.get("Key", ""): m.get("Value", "") for m in _members(data, "Tags").values()}
    transitive = {m.get("", "") for m in _members(data, "TransitiveTagKeys").values()}
    if caller:
        for key in caller.transitive_keys:
            if key in caller.tags:
                tags.setdefault(key, caller.tags[key])
                transitive.add(key)
    policies: list[dict] = []
    if _first(data, "Policy"):
        policies.append(json.loads(_first(data, "Policy")))
    for member in _members(data, "PolicyArns").values():
        managed = _managed_policy(role.account_id, member.get("arn", ""))
        if managed:
            policies.append(managed)
    has_session_policy = bool(_first(data, "Policy") or _members(data, "PolicyArns"))
    SESSIONS.put(
        role.access_key_id,
        Session(
            role_arn=role.role_arn,
            session_name=role.session_name,
            account=role.account_id,
            source_identity=(
                caller.source_identity if caller and caller.source_identity else _first(data, "SourceIdentity") or ""
            ),
            tags=tags,
            transitive_keys=transitive,
            session_policies=policies if has_session_policy else None,
        ),
    )
    return result


def _delete_keys(self, bucket_name: str, authenticated: bool = True):
    """Wraps moto's S3Response._bucket_response_delete_keys: each key is authorized on its own."""
    pending = getattr(_local, "bulk_delete", None)
    _local.bulk_delete = None
    if not pending or pending[1] != self.headers.get("Authorization"):
        return _ORIGINAL["delete_keys"](self, bucket_name, authenticated)
    import xmltodict

    iam_request = pending[0]
    caller = caller_of(iam_request)
    objects = xmltodict.parse(self.body, strip_whitespace=False).get("Delete", {}).get("Object", [])
    objects = objects if isinstance(objects, list) else [objects]
    refused: set[str] = set()
    for obj in objects:
        resource = f"arn:aws:s3:::{bucket_name}/{obj.get('Key', '')}"
        action = "s3:DeleteObjectVersion" if obj.get("VersionId") else "s3:DeleteObject"
        try:
            decision = decide_s3(iam_request, action, resource, caller)
        except Exception as exc:  # noqa: BLE001 - fail closed
            decision = Decision(False, f"evaluation error: {exc}")
        if not decision:
            log.info("iam: denied %s on %s for %s: %s", action, resource, caller.principal.arn, decision.reason)
            refused.add(obj.get("Key", ""))
    _local.refused_keys = (bucket_name, refused)
    try:
        return _ORIGINAL["delete_keys"](self, bucket_name, authenticated)
    finally:
        _local.refused_keys = None


def get_permission(self, action: str, resource: str):
    """Replacement for moto's FakeBucket.get_permission, which reads bucket policies with moto's
    evaluator (a conditional Deny counts as unconditional). Signed requests are decided by
    check_action_permitted (bucket policy included); inside DeleteObjects it answers per key."""
    from moto.iam.access_control import PermissionResult

    refused = getattr(_local, "refused_keys", None)
    if refused and refused[0] == self.name:
        key = resource.split(":::", 1)[-1].split("/", 1)[-1]
        if key in refused[1]:
            return PermissionResult.DENIED
    return PermissionResult.NEUTRAL


_ORIGINAL: dict = {}


def install_iam_evaluator() -> None:
    from moto.iam.access_control import IAMRequestBase
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response
    from moto.sts.responses import TokenResponse

    if _ORIGINAL:
        return
    _ORIGINAL["check"] = IAMRequestBase.check_action_permitted
    _ORIGINAL["delete_keys"] = S3Response._bucket_response_delete_keys
    _ORIGINAL["assume_role"] = TokenResponse.assume_role
    IAMRequestBase.check_action_permitted = check_action_permitted
    S3Response._bucket_response_delete_keys = _delete_keys
    FakeBucket.get_permission = get_permission
    TokenResponse.assume_role = lambda self: _record_assume_role(self, _ORIGINAL["assume_role"])


def main(argv: list[str] | None = None) -> int:
    """`python -m lakehub.local.emulator_iam -H 127.0.0.1 -p PORT`: moto_server with this
    evaluator deciding S3 and STS (lakehub.local.emulator.start_moto_server(iam_evaluator=True))."""
    from moto.server import main as moto_main

    install_iam_evaluator()
    moto_main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
