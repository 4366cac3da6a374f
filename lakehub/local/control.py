"""The local emulator's control plane and the token that guards it.

moto in server mode answers a control API beside the AWS APIs: ``/moto-api/reset-auth`` (turns
IAM enforcement off), ``/moto-api/reset`` (forgets everything), ``/moto-api/data.json`` (every
resource, secrets included), state transitions, recordings to replay. Anything that reaches the
emulator's port could call it, including code in a user's kernel. The local emulator
(lakehub.local.emulator_server) therefore answers that API, and moto's own CloudFormation
``cfnresponse`` endpoint, only to requests that carry the supervisor's token in the
``X-Lakehub-Control-Token`` header; everything else gets 403. AWS API calls are not affected
(signed, IAM-enforced once enforcement is on).

The token is generated at ``lakehub local up`` and kept in ``<state>/control-token`` (0600, in
the 0700 state folder); the supervisor, the local agent and the tests' helpers send it.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import urllib.request
from pathlib import Path
from urllib.parse import unquote

HEADER = "X-Lakehub-Control-Token"
TOKEN_FILE = "control-token"
_WSGI_HEADER = "HTTP_" + HEADER.upper().replace("-", "_")


def new_token(path: Path) -> str:
    """Write a new random token to `path` (0600, replacing any old one) and return it."""
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def read_token(path: Path) -> str:
    return Path(path).read_text().strip()


def is_control_request(environ: dict) -> bool:
    """A request moto would route to its control API (or to its own cfnresponse endpoint)."""
    path = environ.get("PATH_INFO") or ""
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    path = re.sub(r"/+", "/", unquote(path)).lower()
    host = (environ.get("HTTP_HOST") or "").lower()
    return (
        path.startswith("/moto-api")
        or path == "/favicon.ico"  # also moto's control app
        or host.startswith("motoapi.")
        or bool(re.search(r"/cloudformation_[^/]+/cfnresponse$", path))
    )


def guard(app, token: str):
    """WSGI middleware: control requests without the token get 403; the rest go to `app`."""
    expected = token.encode()

    def guarded(environ, start_response):
        if is_control_request(environ):
            given = (environ.get(_WSGI_HEADER) or "").encode()
            if not given or not hmac.compare_digest(given, expected):
                body = b'{"message": "the emulator\'s control API needs the supervisor\'s token"}'
                start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
        return app(environ, start_response)

    return guarded


def control_request(
    endpoint_url: str,
    path: str,
    token: str | None,
    data: bytes | None = None,
    method: str | None = None,
    content_type: str | None = None,
    timeout: float = 10,
) -> bytes:
    """Call the emulator's control API (`path` like "/moto-api/reset-auth") with the token.
    A plain moto server (some tests) ignores the header."""
    headers = {"Content-Type": content_type} if content_type else {}
    if token:
        headers[HEADER] = token
    req = urllib.request.Request(f"{endpoint_url}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()
