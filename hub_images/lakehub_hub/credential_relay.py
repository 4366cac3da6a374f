"""The credential relay: a user's AWS session, served to that user's kernels on loopback.

Every user server (per-user task, shared-mode process, on-demand hub) runs this as a Jupyter
server extension when the hub turns it on (`LAKEHUB_CREDENTIAL_RELAY=1`, set by
lakehub_hub.credentials.configure_user_credentials). Why a relay: the hub serves each user's
session of the tier's data role (`<hub API URL>/lakehub/aws-credentials`), but botocore accepts a
plain-http AWS_CONTAINER_CREDENTIALS_FULL_URI only on loopback and the ECS/EKS agent addresses,
and in per-user mode the hub is across the VPC. So each server:

- starts a small HTTP server on 127.0.0.1:<free port> in a thread, which answers only requests
  carrying its random token (other Unix users of a shared task reach the same loopback);
- fetches the user's session from the hub with the server's own JupyterHub API token as soon as
  it starts (server start waits for it, bounded: START_WAIT), one fetch at a time (requests
  arriving meanwhile wait for it), retrying an unreachable, slow or busy hub with back-off;
  caches it and fetches again when less than REFRESH_MARGIN (20 minutes) remains (role chaining caps a
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
FETCH_TIMEOUT = 30.0  # one request to the hub (a busy hub has taken 12.7 s to answer)
FETCH_DEADLINE = 90.0  # one fetch retries unreachable/timed-out/5xx answers with back-off until then
REQUEST_WAIT = 60.0  # a request to the relay waits this long for the fetch in flight
START_WAIT = 45.0  # server start waits this long for the first session (below the hub's http_timeout)
EXPIRY_SLACK = 60.0  # a cached session is still served when a refresh fails, until a minute before expiry
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


class _Transient(RelayError):
    """A failure worth trying again (hub unreachable, timed out, busy)."""


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

    def __init__(
        self,
        upstream_url: str,
        api_token: str,
        clock=time.time,
        timeout: float = FETCH_TIMEOUT,
        deadline: float = FETCH_DEADLINE,
        wait: float = REQUEST_WAIT,
    ):
        self.upstream_url = upstream_url
        self._api_token = api_token
        self._clock = clock
        self._timeout = timeout
        self._deadline = deadline
        self._wait = wait
        self.token = secrets.token_urlsafe(32)
        self._cached: dict | None = None
        self._error: str | None = None
        self._inflight: threading.Event | None = None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.fetches = 0

    # -- upstream ------------------------------------------------------------------------------
    def credentials(self) -> dict:
        """The cached session, or a new one from the hub when less than REFRESH_MARGIN remains.

        Single-flight: one fetch at a time; a caller arriving while one is in flight waits for it
        (up to `wait` seconds) instead of starting another. When a refresh fails but the cached
        session has not expired yet, that session is still served."""
        with self._lock:
            if self._fresh():
                return self._cached
            inflight = self._begin_fetch()
        inflight.wait(self._wait)
        with self._lock:
            if self._fresh() or (self._cached and _expires(self._cached["Expiration"]) - self._clock() > EXPIRY_SLACK):
                return self._cached
            if not inflight.is_set():
                raise RelayError(f"the hub has not answered within {self._wait:.0f} s (still trying)")
            raise RelayError(self._error or "the hub gave no session")

    def warm(self) -> threading.Event:
        """Start fetching the session in the background (no-op while one is fresh or in flight)."""
        with self._lock:
            if self._fresh():
                done = threading.Event()
                done.set()
                return done
            return self._begin_fetch()

    def wait_ready(self, timeout: float) -> bool:
        """Wait (bounded) until a session is cached or the current fetch has given up."""
        done = self.warm()
        done.wait(timeout)
        with self._lock:
            return self._cached is not None

    def _fresh(self) -> bool:
        return bool(self._cached) and _expires(self._cached["Expiration"]) - self._clock() > REFRESH_MARGIN

    def _begin_fetch(self) -> threading.Event:
        # Caller holds self._lock.
        if self._inflight is None:
            self._inflight = threading.Event()
            threading.Thread(
                target=self._fetch_until_deadline, args=(self._inflight,), name="lakehub-credential-fetch", daemon=True
            ).start()
        return self._inflight

    def _fetch_until_deadline(self, done: threading.Event) -> None:
        """Fetch from the hub, retrying what may pass (unreachable, timed out, 5xx) with back-off
        until FETCH_DEADLINE; a refusal (4xx) or a malformed answer is final."""
        deadline = time.monotonic() + self._deadline
        delay, error, body = 0.5, None, None
        while True:
            remaining = deadline - time.monotonic()
            try:
                body = self._fetch_once(max(1.0, min(self._timeout, remaining)))
                error = None
                break
            except _Transient as exc:
                error = str(exc)
            except RelayError as exc:
                error = str(exc)
                break
            if time.monotonic() + delay >= deadline:
                break
            log.warning("lakehub credential relay: %s; trying again in %.1f s", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        with self._lock:
            if body is not None:
                self.fetches += 1
                self._cached = body
            self._error = error
            self._inflight = None
            done.set()

    def _fetch_once(self, timeout: float) -> dict:
        request = urllib.request.Request(self.upstream_url, headers={"Authorization": f"token {self._api_token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the hub's URL
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", "")
            except (ValueError, AttributeError):
                message = ""
            reason = f"the hub refused credentials ({exc.code}{': ' + message if message else ''})"
            if exc.code >= 500 or exc.code == 429:
                raise _Transient(reason) from exc
            raise RelayError(reason) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise _Transient(f"the hub's credential endpoint is unreachable: {exc}") from exc
        except ValueError as exc:
            raise RelayError(f"the hub's answer is not JSON: {exc}") from exc
        missing = [k for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration") if not body.get(k)]
        if missing:
            raise RelayError(f"the hub's answer lacks {', '.join(missing)}")
        return {k: body[k] for k in ("AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn") if k in body}

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


def start(environ=None, wait: float = START_WAIT) -> CredentialRelay | None:
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
    # The first session is fetched now, and server start waits for it (bounded): the contents
    # manager's S3 clients resolve credentials as soon as they are made, through botocore's
    # container provider, which gives up after 3 attempts of 2 s (fixed in botocore, not
    # configurable) -- less than a busy hub can take to answer.
    if not relay.wait_ready(wait):
        print(
            f"lakehub credential relay: no session from the hub after {wait:.0f} s; still trying "
            f"({relay._error or 'no answer yet'})",
            file=sys.stderr,
        )
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
