"""Per-user AWS credentials for users' servers, served by the hub itself (every mode).

The tier's *data role* (`LAKEHUB_TIER_ROLE_ARN`; the on-demand hub's user role is the same kind of
role) reaches the tier's data prefixes, its shared folder and `users/${aws:PrincipalTag/lakehub-user}/`
only. No server runs with it: the hub's own role (the tier's HubRole on ECS, the instance role
on an on-demand hub) assumes it once per user, and users' servers ask the hub for that session:

- the hub serves the container-credentials protocol at `<hub API URL>/lakehub/aws-credentials`
  (the hub's API address, not through the proxy: per-user tasks call the hub task's address
  across the VPC, shared-mode servers the hub's loopback address);
- a request is answered only with a valid, unexpired API token of a user whose server is
  running, and never when it came through the proxy or a load balancer (X-Forwarded-For);
- the answer is that user's session of the data role, assumed with RoleSessionName and
  SourceIdentity = session_name(user) (CloudTrail records both on every call of the session,
  S3 data events included) and the session tag `lakehub-user` = storage_name(user) (the user's
  own folder in the role's policy). The role's trust policy requires both. Sessions are cached
  per user and renewed when less than `REFRESH_MARGIN` seconds remain (more than botocore's
  15-minute advisory refresh; role chaining caps a session at one hour).

botocore accepts plain-http AWS_CONTAINER_CREDENTIALS_FULL_URI only on loopback and the ECS/EKS
agent addresses, so each user server runs a credential relay on its own loopback
(lakehub_hub.credential_relay) that fetches from here with the server's API token; the hub turns
the relay on by setting `LAKEHUB_CREDENTIAL_RELAY=1` in the server's environment.

Wired by hub_images/jupyterhub_config.py when LAKEHUB_TIER_ROLE_ARN (or its old name
LAKEHUB_USER_ROLE_ARN) is set (docs/HUB_ENV.md).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import re
import threading
import time

from lakehub_hub.accounts import storage_name

ROUTE = "/lakehub/aws-credentials"  # under the hub's prefix: /hub/lakehub/aws-credentials
SESSION_SECONDS = 3600  # role chaining (hub role -> data role) allows at most one hour
REFRESH_MARGIN = 20 * 60
USER_TAG = "lakehub-user"  # the session tag naming the user's folder (lakehub.stacks.names.USER_SESSION_TAG)
RELAY_SWITCH = "LAKEHUB_CREDENTIAL_RELAY"  # set to "1" in a server's environment: run the relay
# The hub's own credential variables, which a user server must never inherit: they are the hub
# role (which may assume the data role for *any* user) or the instance role.
INHERITED_CREDENTIAL_VARIABLES = (
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "ECS_CONTAINER_METADATA_URI",
    "ECS_CONTAINER_METADATA_URI_V4",
)
_NAME_CHARS = re.compile(r"[^\w+=,.@-]")


def session_name(user: str) -> str:
    """A hub user name as an STS RoleSessionName / SourceIdentity: 2-64 of [\\w+=,.@-]. A name
    that had to change keeps a short hash so two users never share a session name."""
    clean = _NAME_CHARS.sub("-", user)
    if clean == user and 2 <= len(user) <= 64:
        return user
    digest = hashlib.sha256(user.encode()).hexdigest()[:8]
    return f"{clean[:55]}-{digest}"


class UserRoleSessions:
    """One cached session of the data role per hub user."""

    def __init__(self, role_arn: str, region: str, sts_client=None, clock=time.time, tag_sessions: bool = True):
        self.role_arn = role_arn
        # False only for a role whose trust predates session tags (an on-demand hub stack launched
        # before them, which sets LAKEHUB_USER_ROLE_ARN): AssumeRole with Tags would be refused.
        self.tag_sessions = tag_sessions
        self.region = region
        self._sts = sts_client
        self._clock = clock
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()

    def _client(self):
        if self._sts is None:
            import boto3

            # The hub's own credentials (its task role on ECS; the instance role, through IMDS as root).
            self._sts = boto3.client("sts", region_name=self.region)  # the regional endpoint
        return self._sts

    def get(self, user: str) -> dict:
        with self._lock:
            cached = self._cache.get(user)
            if cached and cached["_expires"] - self._clock() > REFRESH_MARGIN:
                return cached
            name = session_name(user)
            tags = {"Tags": [{"Key": USER_TAG, "Value": storage_name(user)}]} if self.tag_sessions else {}
            answer = self._client().assume_role(
                RoleArn=self.role_arn, RoleSessionName=name, SourceIdentity=name, DurationSeconds=SESSION_SECONDS, **tags
            )
            creds = answer["Credentials"]
            expiration = creds["Expiration"]
            if isinstance(expiration, str):
                expiration = datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
            entry = {
                "AccessKeyId": creds["AccessKeyId"],
                "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"],
                "Expiration": expiration.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "RoleArn": self.role_arn,
                "_expires": expiration.timestamp(),
            }
            self._cache[user] = entry
            return entry

    def forget(self, user: str) -> None:
        with self._lock:
            self._cache.pop(user, None)


def make_handler(sessions: UserRoleSessions):
    """The JupyterHub handler class (JupyterHub imported here: the build side never imports it)."""
    from jupyterhub import orm
    from jupyterhub.handlers.base import BaseHandler
    from jupyterhub.utils import utcnow

    class AwsCredentialsHandler(BaseHandler):
        def check_xsrf_cookie(self):
            pass  # GET with a token header only; no cookie is ever accepted here

        def refuse(self, status: int, message: str):
            self.log.warning("lakehub credentials: refused (%s): %s", status, message)
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": message}))

        async def get(self):
            headers = self.request.headers
            if "X-Forwarded-For" in headers or "X-Forwarded-Proto" in headers:
                # Through the proxy or a load balancer: this endpoint is for loopback callers only.
                return self.refuse(404, "not found")
            raw = headers.get("Authorization", "").strip()
            token = raw.split(None, 1)[1].strip() if raw.lower().startswith(("token ", "bearer ")) else raw
            if not token:
                return self.refuse(401, "no API token")
            orm_token = orm.APIToken.find(self.db, token, kind="user")
            if orm_token is None or orm_token.user is None:
                return self.refuse(403, "not a user's API token")
            if orm_token.expires_at is not None and orm_token.expires_at < utcnow(with_tz=False):
                return self.refuse(403, "expired API token")
            user = self.users[orm_token.user]
            if not any(spawner.active for spawner in user.spawners.values()):
                sessions.forget(user.name)
                return self.refuse(403, f"{user.name} has no running server")
            try:
                creds = await asyncio.get_running_loop().run_in_executor(None, sessions.get, user.name)
            except Exception as exc:  # STS refused or unreachable: the caller retries
                self.log.error("lakehub credentials: cannot assume %s for %s: %s", sessions.role_arn, user.name, exc)
                return self.refuse(502, "the hub could not get credentials for this user")
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish(json.dumps({k: v for k, v in creds.items() if not k.startswith("_")}))

    return AwsCredentialsHandler


def configure_user_credentials(c, role_arn: str, region: str, sts_client=None, tag_sessions: bool = True) -> UserRoleSessions:
    """Serve per-user sessions of the data role to users' servers (both modes, and the on-demand
    hub): the endpoint, the relay switch in each server's environment, and none of the hub's own
    credential variables kept for servers."""
    sessions = UserRoleSessions(role_arn, region, sts_client, tag_sessions=tag_sessions)
    c.JupyterHub.extra_handlers.append((ROUTE, make_handler(sessions)))
    environment = dict(c.Spawner.environment or {})
    # Each server's relay asks <JUPYTERHUB_API_URL>/../lakehub/aws-credentials with the server's
    # own API token (JupyterHub gives every server both).
    environment[RELAY_SWITCH] = "1"
    c.Spawner.environment = environment
    c.Spawner.env_keep = [k for k in (c.Spawner.env_keep or []) if k not in INHERITED_CREDENTIAL_VARIABLES]
    return sessions
