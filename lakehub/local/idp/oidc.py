"""A small, real OpenID Connect provider on loopback, in its own process.

    handle = start_oidc({"alice": "pw1", "carol": "pw2"}, {"analysts": ["alice"], "sales": ["carol"]},
                        redirect_uris=["http://127.0.0.1:8000/hub/oauth_callback"])
    handle.issuer                          # http://127.0.0.1:<port>
    handle.client_id, handle.client_secret # a confidential client registered at start
    handle.stop()

What it speaks (enough for any standard relying party, e.g. OAuthenticator):
  GET  /.well-known/openid-configuration   discovery
  GET  /jwks                               the RS256 signing key
  GET  /authorize                          authorization code flow: shows a login form
  POST /authorize                          checks the password, redirects with ?code&state
  POST /token                              code -> access_token + refresh_token + signed id_token
                                           (client_secret_basic or client_secret_post; PKCE S256);
                                           refresh_token -> fresh tokens with the user's current
                                           groups (the refresh token rotates: each works once)
  GET  /userinfo                           claims for a bearer access token
Claims: sub, preferred_username, email, name, groups (the user's groups).

Users and groups can change while it runs: `handle.set_groups({...})` / `handle.set_users({...})`
rewrite its config file, which the provider re-reads when it changes (a removed user's refresh
tokens are then refused, as a real provider refuses a disabled account's).

Run as `python -m lakehub.local.idp.oidc <config.json>`; `start_oidc` writes that file, starts the
process in its own process group and waits for discovery to answer.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LOOPBACK = "127.0.0.1"
CODE_TTL = 120
TOKEN_TTL = 3600
REFRESH_TTL = 86400


# ------------------------------------------------------------------------------------------
# the provider (runs in the child process)
# ------------------------------------------------------------------------------------------
class Provider:
    def __init__(self, config: dict):
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.issuer = config["issuer"]
        self.users = config["users"]  # name -> password
        self.groups = config["groups"]  # group -> [names]
        self.path = config.get("path")  # the config file, re-read when it changes
        self.mtime = os.stat(self.path).st_mtime_ns if self.path else None
        self.refresh_tokens: dict[str, dict] = {}
        self.clients = {c["client_id"]: c for c in config["clients"]}
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}
        self.lock = threading.Lock()

    def reload(self) -> None:
        """Pick up users and groups changed by the handle (set_groups, set_users)."""
        if not self.path:
            return
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime == self.mtime:
                return
            config = json.loads(Path(self.path).read_text())
        except (OSError, ValueError):
            return
        with self.lock:
            self.users, self.groups, self.mtime = config["users"], config["groups"], mtime

    def claims(self, name: str) -> dict:
        return {
            "sub": hashlib.sha256(name.encode()).hexdigest()[:24],
            "preferred_username": name,
            "name": name.title(),
            "email": f"{name}@lakehub.test",
            "email_verified": True,
            "groups": sorted(g for g, members in self.groups.items() if name in members),
        }

    def discovery(self) -> dict:
        i = self.issuer
        return {
            "issuer": i,
            "authorization_endpoint": f"{i}/authorize",
            "token_endpoint": f"{i}/token",
            "userinfo_endpoint": f"{i}/userinfo",
            "jwks_uri": f"{i}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "claims_supported": ["sub", "preferred_username", "name", "email", "groups"],
        }

    def jwks(self) -> dict:
        from jwt.algorithms import RSAAlgorithm

        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def id_token(self, name: str, client_id: str, nonce: str | None) -> str:
        import jwt

        now = int(time.time())
        payload = dict(self.claims(name), iss=self.issuer, aud=client_id, iat=now, exp=now + TOKEN_TTL)
        if nonce:
            payload["nonce"] = nonce
        return jwt.encode(payload, self.key, algorithm="RS256", headers={"kid": self.kid})


LOGIN_PAGE = """<!doctype html><html><head><title>lakehub test sign-in</title></head><body>
<h1>Sign in</h1>{error}
<form method="post" action="/authorize">
{hidden}
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>"""

AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                    "code_challenge", "code_challenge_method")


class Handler(BaseHTTPRequestHandler):
    provider: Provider  # set on the class by serve()
    server_version = "lakehub-test-oidc/1"

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("%s %s\n" % (self.command, fmt % args))

    # -- helpers ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | str, ctype="application/json", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict, headers=None):
        self._send(status, json.dumps(obj), headers=headers)

    def _form(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def _check_authorize(self, params: dict):
        client = self.provider.clients.get(params.get("client_id", ""))
        if not client:
            return "unknown client_id"
        if params.get("redirect_uri") not in client["redirect_uris"]:
            return "redirect_uri is not registered for this client"
        if params.get("response_type") != "code":
            return "only response_type=code is supported"
        return None

    # -- routes -----------------------------------------------------------------------------
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        p = self.provider
        p.reload()
        if url.path == "/.well-known/openid-configuration":
            return self._json(200, p.discovery())
        if url.path == "/jwks":
            return self._json(200, p.jwks())
        if url.path == "/authorize":
            params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            problem = self._check_authorize(params)
            if problem:
                return self._send(400, f"invalid request: {html.escape(problem)}", "text/plain")
            return self._login_form(params, "")
        if url.path == "/userinfo":
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            with p.lock:
                grant = p.tokens.get(token)
            if not grant or grant["exp"] < time.time():
                return self._json(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return self._json(200, p.claims(grant["user"]))
        if url.path == "/health":
            return self._json(200, {"ok": True})
        return self._send(404, "not found", "text/plain")

    def _login_form(self, params: dict, error: str, status=200):
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(params[k], quote=True)}">'
            for k in AUTHORIZE_PARAMS if params.get(k)
        )
        err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return self._send(status, LOGIN_PAGE.format(error=err, hidden=hidden), "text/html; charset=utf-8")

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        self.provider.reload()
        if url.path == "/authorize":
            return self._login(self._form())
        if url.path == "/token":
            return self._token(self._form())
        return self._send(404, "not found", "text/plain")

    def _login(self, form: dict):
        p = self.provider
        problem = self._check_authorize(form)
        if problem:
            return self._send(400, f"invalid request: {html.escape(problem)}", "text/plain")
        user, password = form.get("username", ""), form.get("password", "")
        expected = p.users.get(user)
        if expected is None or not secrets.compare_digest(expected.encode(), password.encode()):
            return self._login_form(form, "Invalid username or password.", status=401)
        code = secrets.token_urlsafe(24)
        with p.lock:
            p.codes[code] = {
                "user": user, "client_id": form["client_id"], "redirect_uri": form["redirect_uri"],
                "nonce": form.get("nonce"), "scope": form.get("scope", "openid"),
                "challenge": form.get("code_challenge"), "method": form.get("code_challenge_method", "plain"),
                "exp": time.time() + CODE_TTL,
            }
        query = {"code": code}
        if form.get("state"):
            query["state"] = form["state"]
        sep = "&" if "?" in form["redirect_uri"] else "?"
        self.send_response(302)
        self.send_header("Location", form["redirect_uri"] + sep + urllib.parse.urlencode(query))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _token(self, form: dict):
        p = self.provider
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            decoded = base64.b64decode(auth[6:]).decode()
            cid, _, secret = decoded.partition(":")
            client_id, client_secret = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
        client = p.clients.get(client_id)
        if not client or not secrets.compare_digest(client["client_secret"].encode(), client_secret.encode()):
            return self._json(401, {"error": "invalid_client"})
        if form.get("grant_type") == "refresh_token":
            return self._refresh(client_id, form)
        if form.get("grant_type") != "authorization_code":
            return self._json(400, {"error": "unsupported_grant_type"})
        with p.lock:
            grant = p.codes.pop(form.get("code", ""), None)
        if not grant or grant["exp"] < time.time() or grant["client_id"] != client_id:
            return self._json(400, {"error": "invalid_grant"})
        if form.get("redirect_uri") and form["redirect_uri"] != grant["redirect_uri"]:
            return self._json(400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
        if grant["challenge"]:
            verifier = form.get("code_verifier", "")
            if grant["method"] == "S256":
                computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            else:
                computed = verifier
            if not secrets.compare_digest(computed, grant["challenge"]):
                return self._json(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
        return self._issue(grant["user"], client_id, grant["scope"], grant["nonce"])

    def _refresh(self, client_id: str, form: dict):
        p = self.provider
        with p.lock:
            grant = p.refresh_tokens.pop(form.get("refresh_token", ""), None)
        if not grant or grant["client_id"] != client_id or grant["exp"] < time.time():
            return self._json(400, {"error": "invalid_grant"})
        if grant["user"] not in p.users:  # the account is gone
            return self._json(400, {"error": "invalid_grant", "error_description": "the account no longer exists"})
        return self._issue(grant["user"], client_id, grant["scope"], None)

    def _issue(self, user: str, client_id: str, scope: str, nonce: str | None):
        p = self.provider
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with p.lock:
            p.tokens[access] = {"user": user, "exp": time.time() + TOKEN_TTL}
            p.refresh_tokens[refresh] = {"user": user, "client_id": client_id, "scope": scope,
                                         "exp": time.time() + REFRESH_TTL}
        return self._json(200, {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL,
            "refresh_token": refresh,
            "scope": scope,
            "id_token": p.id_token(user, client_id, nonce),
        })


def serve(config: dict) -> None:
    Handler.provider = Provider(config)
    server = ThreadingHTTPServer((LOOPBACK, config["port"]), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


# ------------------------------------------------------------------------------------------
# the handle (in the caller's process)
# ------------------------------------------------------------------------------------------
@dataclass
class OidcServer:
    port: int
    process: subprocess.Popen
    client_id: str
    client_secret: str
    workdir: Path
    users: dict
    groups: dict

    @property
    def issuer(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    url = issuer

    def set_groups(self, groups: dict[str, list[str]]) -> None:
        """Change group membership while the provider runs (it re-reads its config file)."""
        self.groups = {g: list(m) for g, m in groups.items()}
        self._rewrite()

    def set_users(self, users: dict[str, str]) -> None:
        """Change the accounts (a missing one can no longer sign in or refresh its tokens)."""
        self.users = dict(users)
        self._rewrite()

    def _rewrite(self) -> None:
        path = self.workdir / "oidc.json"
        config = json.loads(path.read_text())
        config.update(users=self.users, groups=self.groups)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.chmod(0o600)
        os.replace(tmp, path)
        # make sure the change is seen even when it lands within the file system's mtime resolution
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    def stop(self) -> None:
        from lakehub.local.processes import terminate_group  # here: this file also runs as the provider itself

        terminate_group(self.process, timeout=10)
        config = self.workdir / "oidc.json"
        config.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_oidc(
    users: dict[str, str],
    groups: dict[str, list[str]],
    port: int | None = None,
    redirect_uris: list[str] | None = None,
    client_id: str | None = None,
    client_secret: str | None = None,
    workdir: Path | None = None,
    timeout: float = 20.0,
) -> OidcServer:
    """Start the provider on 127.0.0.1:<port> and wait until discovery answers."""
    from lakehub.errors import LakehubError

    port = port or _free_port()
    workdir = Path(workdir or tempfile.mkdtemp(prefix="lakehub-oidc-"))
    client_id = client_id or "lakehub-" + secrets.token_hex(4)
    client_secret = client_secret or secrets.token_urlsafe(24)
    config = {
        "issuer": f"http://{LOOPBACK}:{port}",
        "port": port,
        "path": str(workdir / "oidc.json"),
        "users": users,
        "groups": groups,
        "clients": [{"client_id": client_id, "client_secret": client_secret,
                     "redirect_uris": list(redirect_uris or [])}],
    }
    path = workdir / "oidc.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    log = open(workdir / "oidc.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehub.local.idp.oidc", str(path)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[3]),
    )
    server = OidcServer(port, process, client_id, client_secret, workdir, dict(users), dict(groups))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LakehubError(f"the OpenID Connect provider exited with code {process.returncode}; see {workdir / 'oidc.log'}")
        try:
            urllib.request.urlopen(f"{server.issuer}/.well-known/openid-configuration", timeout=1).read()
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise LakehubError(f"the OpenID Connect provider did not answer on port {port} within {timeout:.0f} s")


if __name__ == "__main__":
    serve(json.loads(Path(sys.argv[1]).read_text()))
