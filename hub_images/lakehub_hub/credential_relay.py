"""The credential relay: a user's AWS session, served to that user's kernels on loopback.

Every user server (per-user task, shared-mode process, on-demand hub) runs this as a Jupyter
server extension when the hub turns it on (`LAKEHUB_CREDENTIAL_RELAY=1`, set by
lakehub_hub.credentials.configure_user_credentials). Why a relay: the hub serves each user's
session of the tier's data role (`<hub API URL>/lakehub/aws-credentials`), but botocore accepts a
plain-http AWS_CONTAINER_CREDENTIALS_FULL_URI only on loopback and the ECS/EKS agent addresses,
and in per-user mode the hub is across the VPC. So each server:

- starts a small HTTP server on 127.0.0.1:<free port> in a thread, which answers only requests
  carrying its random token (other Unix users of a shared task reach the same loopback);
- fetches the user's session from the hub with the server's own JupyterHub API token, caches it
  and fetches again when less than REFRESH_MARGIN (20 minutes) remains (role chaining caps a
  session at one hour; botocore refreshes 15 minutes before expiry, so it never gets back a
  session it already considers stale);
- points the server's environment at itself (AWS_CONTAINER_CREDENTIALS_FULL_URI and
  AWS_CONTAINER_AUTHORIZATION_TOKEN) and removes every variable botocore would prefer
  (static keys, a profile, the task role's RELATIVE_URI, a token file), before the contents
  manager makes its S3 clients and before any kernel or terminal starts: they inherit it.

Standard library only.
"""

from __future__ import annotations

import datetime
import hmac
import json
import logging
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, urlunsplit

ROUTE = "/lakehub/aws-credentials"  # the hub's endpoint, under its prefix (lakehub_hub.credentials)
RELAY_PATH = "/aws-credentials"
RELAY_SWITCH = "LAKEHUB_CREDENTIAL_RELAY"
REFRESH_MARGIN = 20 * 60
FETCH_TIMEOUT = 10.0
LOOPBACK = "127.0.0.1"
# What botocore prefers over AWS_CONTAINER_CREDENTIALS_FULL_URI (its provider chain: environment
# keys, profiles and shared files, then the container provider, where RELATIVE_URI wins over
# FULL_URI and a token file over the token). On a per-user task RELATIVE_URI is the task role's.
REMOVED_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)

log = logging.getLogger("lakehub.credential_relay")


class RelayError(Exception):
    """The hub did not give this server a session (the message says why)."""


def hub_credentials_url(api_url: str) -> str:
    """JUPYTERHUB_API_URL (http://host:port/<prefix>hub/api) -> the hub's credential endpoint
    (http://host:port/<prefix>hub/lakehub/aws-credentials)."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RelayError(f"JUPYTERHUB_API_URL is not an http(s) URL: {api_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/api"):
        raise RelayError(f"JUPYTERHUB_API_URL does not end in /api: {api_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, path[: -len("/api")] + ROUTE, "", ""))


def _expires(expiration: str) -> float:
    return datetime.datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp()


class CredentialRelay:
    """One user's session, fetched from the hub and served on loopback with a random token."""

    def __init__(self, upstream_url: str, api_token: str, clock=time.time, timeout: float = FETCH_TIMEOUT):
        self.upstream_url = upstream_url
        self._api_token = api_token
        self._clock = clock
        self._timeout = timeout
        self.token = secrets.token_urlsafe(32)
        self._cached: dict | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.fetches = 0

    # -- upstream ------------------------------------------------------------------------------
    def credentials(self) -> dict:
        """The cached session, or a new one from the hub when less than REFRESH_MARGIN remains."""
        with self._lock:
            if self._cached and _expires(self._cached["Expiration"]) - self._clock() > REFRESH_MARGIN:
                return self._cached
            request = urllib.request.Request(self.upstream_url, headers={"Authorization": f"token {self._api_token}"})
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310 - the hub's URL
                    body = json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                try:
                    message = json.loads(exc.read()).get("message", "")
                except (ValueError, AttributeError):
                    message = ""
                raise RelayError(f"the hub refused credentials ({exc.code}{': ' + message if message else ''})") from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise RelayError(f"the hub's credential endpoint is unreachable: {exc}") from exc
            missing = [k for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration") if not body.get(k)]
            if missing:
                raise RelayError(f"the hub's answer lacks {', '.join(missing)}")
            self.fetches += 1
            self._cached = {k: body[k] for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn") if k in body}
            return self._cached

    # -- loopback server -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}{RELAY_PATH}"

    def start(self) -> CredentialRelay:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                log.debug("credential relay: " + fmt, *args)

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path != RELAY_PATH:
                    return self._send(404, {"message": "not found"})
                if not hmac.compare_digest(self.headers.get("Authorization", "").encode(), relay.token.encode()):
                    return self._send(403, {"message": "wrong or missing authorization token"})
                try:
                    return self._send(200, relay.credentials())
                except RelayError as exc:
                    log.error("lakehub credential relay: %s", exc)
                    return self._send(502, {"message": str(exc)})

        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="lakehub-credential-relay", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


_RELAY: CredentialRelay | None = None


def start(environ=None) -> CredentialRelay | None:
    """Start this server's relay once and point `environ` (default os.environ) at it. Does
    nothing unless the hub set LAKEHUB_CREDENTIAL_RELAY=1. When the hub turned it on but this
    server lacks what it needs, the variables are still removed (no fallback to the task role)
    and the reason goes to stderr: kernels then have no AWS credentials rather than wrong ones."""
    global _RELAY
    env = os.environ if environ is None else environ
    if env.get(RELAY_SWITCH) != "1":
        return None
    if _RELAY is not None and environ is None:
        return _RELAY
    for name in REMOVED_VARIABLES + ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        env.pop(name, None)
    api_url, api_token = env.get("JUPYTERHUB_API_URL", ""), env.get("JUPYTERHUB_API_TOKEN", "")
    try:
        if not api_url or not api_token:
            raise RelayError("JUPYTERHUB_API_URL or JUPYTERHUB_API_TOKEN is not set (the hub sets both)")
        relay = CredentialRelay(hub_credentials_url(api_url), api_token).start()
    except RelayError as exc:
        print(f"lakehub credential relay: not started, kernels get no AWS credentials: {exc}", file=sys.stderr)
        return None
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = relay.url
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = relay.token
    if environ is None:
        _RELAY = relay
    return relay


# -- Jupyter server extension -------------------------------------------------------------------
def _jupyter_server_extension_points():
    return [{"module": "lakehub_hub.credential_relay"}]


def _link_jupyter_server_extension(serverapp):
    # Linking runs before the server makes its contents manager (whose S3 clients resolve
    # credentials when they are made) and long before any kernel: the environment is set here.
    start()


def _load_jupyter_server_extension(serverapp):
    relay = start()
    if relay is not None:
        serverapp.log.info("lakehub credential relay on %s (from %s)", relay.url, relay.upstream_url)
