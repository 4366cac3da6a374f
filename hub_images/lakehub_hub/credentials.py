"""AWS credentials for users' servers on an on-demand (EC2) hub, served by the hub itself.

On the EC2 hub the hub container runs with host networking, and users' servers are processes
in it (shared mode). The instance role (reached through IMDS) holds what the hub needs: the hub's
secrets, the image, the logs. Users' servers must not hold it. Instead:

- the instance's firewall lets only root reach IMDS (hub_instance.py's user data);
- the hub serves the container-credentials protocol on its loopback API address
  (`<hub API URL>/lakehub/aws-credentials`). Each user server gets
  `AWS_CONTAINER_CREDENTIALS_FULL_URI` (botocore accepts plain http there only for a loopback
  address, `localhost` or the ECS/EKS agent addresses) and `AWS_CONTAINER_AUTHORIZATION_TOKEN`
  (`token <its JupyterHub API token>`, sent verbatim as the Authorization header);
- a request is answered only with a valid, unexpired API token of a user whose server is
  running, and never when it came through the proxy or a load balancer (X-Forwarded-For);
- the answer is that user's session of the hub's *user role* (`LAKEHUB_USER_ROLE_ARN`, the tier's
  data access only), assumed with RoleSessionName and SourceIdentity set from the user name, so
  CloudTrail attributes every S3 call to a person. Sessions are cached per user and renewed when
  less than `REFRESH_MARGIN` seconds remain (more than botocore's 15-minute advisory refresh, so
  a client never gets back credentials it already considers stale).

Wired by hub_images/jupyterhub_config.py when LAKEHUB_USER_ROLE_ARN is set (docs/HUB_ENV.md).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import re
import threading
import time

ROUTE = "/lakehub/aws-credentials"  # under the hub's prefix: /hub/lakehub/aws-credentials
SESSION_SECONDS = 3600  # role chaining (instance role -> user role) allows at most one hour
REFRESH_MARGIN = 20 * 60
# The container-credential variables a user server must not inherit from the hub's environment:
# botocore prefers RELATIVE_URI (the ECS agent) and a token file over what the hub sets.
INHERITED_CREDENTIAL_VARIABLES = (
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
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
    """One cached session of the user role per hub user."""

    def __init__(self, role_arn: str, region: str, sts_client=None, clock=time.time):
        self.role_arn = role_arn
        self.region = region
        self._sts = sts_client
        self._clock = clock
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()

    def _client(self):
        if self._sts is None:
            import boto3

            # The hub's own credentials (the instance role, through IMDS as root).
            self._sts = boto3.client("sts", region_name=self.region)  # the regional endpoint
        return self._sts

    def get(self, user: str) -> dict:
        with self._lock:
            cached = self._cache.get(user)
            if cached and cached["_expires"] - self._clock() > REFRESH_MARGIN:
                return cached
            name = session_name(user)
            answer = self._client().assume_role(
                RoleArn=self.role_arn, RoleSessionName=name, SourceIdentity=name, DurationSeconds=SESSION_SECONDS
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


def configure_user_credentials(c, role_arn: str, region: str, sts_client=None) -> UserRoleSessions:
    """Serve the user role's credentials to users' servers (shared mode on an EC2 hub)."""
    sessions = UserRoleSessions(role_arn, region, sts_client)
    c.JupyterHub.extra_handlers = [(ROUTE, make_handler(sessions))]
    environment = dict(c.Spawner.environment or {})
    # Where and how each server asks: the hub API on loopback, with the server's own token.
    environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = lambda spawner: spawner.hub.url.rstrip("/") + ROUTE
    environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = lambda spawner: f"token {spawner.api_token}"
    c.Spawner.environment = environment
    c.Spawner.env_keep = [k for k in (c.Spawner.env_keep or []) if k not in INHERITED_CREDENTIAL_VARIABLES]
    return sessions
