"""A real OpenID Connect provider on loopback, in its own process: panva's oidc-provider (npm,
OpenID certified), configured by oidc_provider.mjs next to this file.

    handle = start_oidc({"alice": "pw1", "carol": "pw2"}, {"analysts": ["alice"], "sales": ["carol"]},
                        redirect_uris=["http://127.0.0.1:8000/hub/oauth_callback"])
    handle.issuer                          # http://127.0.0.1:<port>
    handle.client_id, handle.client_secret # a confidential client registered at start
    handle.stop()

Endpoints (from discovery): /authorize (code flow, PKCE S256), /token (client_secret_post;
refresh tokens rotate: each works once), /userinfo, /jwks (a fresh RS256 key per start); the
sign-in form at /interaction/<uid> (consent is granted for the registered client).
Claims: sub, preferred_username, name (scope profile), email (email), groups (groups); the
id_token carries them too.

Users and groups can change while it runs: `handle.set_groups({...})` / `handle.set_users({...})`
rewrite its config file, which the provider re-reads when it changes (a removed user's refresh
tokens are then refused, as a real provider refuses a disabled account's).

`start_oidc` writes that file (oidc.json in the work folder), starts `node oidc_provider.mjs
oidc.json` in its own process group and waits for discovery to answer; `python -m
lakehub.local.idp.oidc <oidc.json>` runs the same provider in the foreground.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
PROGRAM = Path(__file__).with_name("oidc_provider.mjs")
ROOT = Path(__file__).resolve().parents[3]


def provider_command(config_path: str | Path) -> list[str]:
    """The command that runs the provider on `config_path` (one line on what is missing)."""
    from lakehub.errors import LakehubError

    node = shutil.which("node")
    if not node:
        raise LakehubError("the OpenID Connect provider needs Node.js: install it (node on PATH)")
    if not (ROOT / "node_modules" / "oidc-provider").is_dir():
        raise LakehubError(f"oidc-provider is not installed in {ROOT / 'node_modules'}: run `make node-packages`")
    return [node, str(PROGRAM), str(config_path)]


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
        from lakehub.local.processes import terminate_group

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
        "users": users,
        "groups": groups,
        "clients": [{"client_id": client_id, "client_secret": client_secret, "redirect_uris": list(redirect_uris or [])}],
    }
    path = workdir / "oidc.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    command = provider_command(path)
    with open(workdir / "oidc.log", "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, stdin=subprocess.DEVNULL, cwd=str(ROOT)
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
    command = provider_command(sys.argv[1])
    os.execv(command[0], command)
