"""Drive a real JupyterHub (hub_images/jupyterhub_config.py) on loopback: start it, sign in through
the identity provider's own login form with a real HTTP client, wait for the user's server, talk
to the Jupyter REST and kernel APIs. Used by the tests in tests/hub and benchmarks/hub_spawn.py.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from lakehub_hub.accounts import PREFIX as UNIX_PREFIX
from lakehub_hub.accounts import unix_username

from lakehub.local import accounts
from lakehub.local.credentials import send_json
from lakehub.waiting import tries

ROOT = Path(__file__).resolve().parents[2]
HUB_CONFIG = ROOT / "hub_images" / "jupyterhub_config.py"
NODE_BIN = ROOT / "node_modules" / ".bin"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# ECS container credentials, emulated: the only way user servers get AWS credentials here
# ------------------------------------------------------------------------------------------
class CredentialsEndpoint:
    """Serves temporary credentials the way the ECS agent does (AWS_CONTAINER_CREDENTIALS_FULL_URI)."""

    def __init__(self, access_key: str, secret_key: str):
        creds = {
            "AccessKeyId": access_key,
            "SecretAccessKey": secret_key,
            "Token": "container-session-token",
            "RoleArn": "arn:aws:iam::123456789012:role/lakehub-tier-test",
        }
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                send_json(self, 200, dict(creds, Expiration=expires.strftime("%Y-%m-%dT%H:%M:%SZ")))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/v2/credentials/task"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------
# the hub
# ------------------------------------------------------------------------------------------
@dataclass
class Hub:
    process: subprocess.Popen
    port: int
    workdir: Path
    log_path: Path
    env: dict
    unix_users: set = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, grace: float = 30.0):
        # The hub's managed services (the idle culler) and user servers run in sessions of their
        # own: a hub that had to be killed leaves them running, still calling its API. Note them
        # while the hub is alive; whatever outlives it is stopped here.
        children = descendants(self.process.pid)
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the hub stops user servers and the proxy
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        stop_processes(children)
        kill_unix_user_processes(self.unix_users)


@contextlib.contextmanager
def notebook_lake(s3_endpoint: str, access_key: str, secret_key: str):
    """A fresh notebook bucket in the emulator and a container-credentials endpoint serving the
    emulator's keys (as the hub's credential relay does); as root, the interpreter's path opened to
    the tier's Unix users. Yields {bucket, creds, endpoint}; all undone afterwards."""
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id=access_key, aws_secret_access_key=secret_key
    )
    bucket = f"lakehub-notebooks-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    creds = CredentialsEndpoint(access_key, secret_key)
    changed = open_interpreter_path() if os.geteuid() == 0 else []
    try:
        yield {"bucket": bucket, "creds": creds, "endpoint": s3_endpoint}
    finally:
        creds.stop()
        restore_modes(changed)


def sales_lake(s3, regions: list[str]) -> tuple[str, str, list[tuple]]:
    """A fresh notebook bucket (versioned, as storage.template.yaml makes it) and data bucket, the
    data bucket holding pii/sales/2026.csv: one row (region, amount) per region, amounts 0, 1, ...
    Returns (notebook bucket, data bucket, the CSV file's rows with its header)."""
    run = uuid.uuid4().hex[:8]
    notebook_bucket, data_bucket = f"lakehub-notebooks-{run}", f"lakehub-data-{run}"
    for bucket in (notebook_bucket, data_bucket):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=notebook_bucket, VersioningConfiguration={"Status": "Enabled"})
    rows = [("region", "amount")] + [(r, i) for i, r in enumerate(regions)]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    s3.put_object(Bucket=data_bucket, Key="pii/sales/2026.csv", Body=buf.getvalue().encode())
    return notebook_bucket, data_bucket, rows


def base_hub_env(
    tier: str, bucket: str, prefix: str, public_port: int, workdir: Path, s3_endpoint: str, creds_url: str, extra: dict
) -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")}
    home_root = workdir / "home"
    home_root.mkdir(parents=True, exist_ok=True)
    home_root.chmod(0o755)
    env = dict(
        keep,
        PATH=os.pathsep.join(
            [str(NODE_BIN), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        ),
        LAKEHUB_TIER=tier,
        LAKEHUB_SERVER_MODE="shared",  # users' servers are this hub's processes
        LAKEHUB_NOTEBOOK_BUCKET=bucket,
        LAKEHUB_NOTEBOOK_PREFIX=prefix,
        LAKEHUB_PUBLIC_URL=f"http://{LOOPBACK}:{public_port}",
        LAKEHUB_HUB_IP=LOOPBACK,
        LAKEHUB_HUB_PORT=str(public_port),
        LAKEHUB_STATE_DIR=str(workdir / "state"),
        LAKEHUB_HOME_ROOT=str(home_root),
        LAKEHUB_S3_ENDPOINT_URL=s3_endpoint,
        LAKEHUB_IDLE_TIMEOUT="3600",
        AWS_REGION="us-east-1",
        AWS_CONTAINER_CREDENTIALS_FULL_URI=creds_url,
        # a throw-away cookie secret and a fresh proxy port per hub
        LAKEHUB_COOKIE_SECRET=uuid.uuid4().hex,
    )
    env.update(extra)
    return env


def start_hub(env: dict, workdir: Path, timeout: float = 60.0) -> Hub:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "hub.log"
    port = int(env["LAKEHUB_HUB_PORT"])
    api_port = free_port()
    hub_port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterhub",
        "-f",
        str(HUB_CONFIG),
        f"--ConfigurableHTTPProxy.api_url=http://{LOOPBACK}:{api_port}",
        f"--JupyterHub.hub_port={hub_port}",
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, cwd=str(workdir), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hub = Hub(process, port, workdir, log_path, env)
    for _ in tries(timeout, interval=0.2):
        if process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {process.returncode}:\n{hub.log()[-4000:]}")
        try:
            if requests.get(f"{hub.url}/hub/health", timeout=2).status_code == 200:
                return hub
        except requests.RequestException:
            pass
    hub.stop()
    raise RuntimeError(f"jupyterhub did not answer within {timeout:.0f} s:\n{hub.log()[-4000:]}")


def start_idp(mode: str, passwords: dict, groups: dict, hub_port: int, workdir: Path):
    """A real identity provider on loopback for a hub on `hub_port`: (provider, the hub's sign-in
    environment for it, the matching sign-in function). mode: oidc or ldap (LDAPS)."""
    if mode == "oidc":
        from lakehub.local.idp.oidc import start_oidc

        idp = start_oidc(passwords, groups, redirect_uris=[f"http://127.0.0.1:{hub_port}/hub/oauth_callback"], workdir=workdir)
        env = {
            "LAKEHUB_AUTH_MODE": "oidc",
            "LAKEHUB_OIDC_ISSUER": idp.issuer,
            "LAKEHUB_OAUTH_CLIENT_ID": idp.client_id,
            "LAKEHUB_OAUTH_CLIENT_SECRET": idp.client_secret,
        }
        return idp, env, oidc_sign_in
    from lakehub.local.idp.ldap import start_ldap

    idp = start_ldap(passwords, groups)
    env = {
        "LAKEHUB_AUTH_MODE": "ldap",
        "LAKEHUB_LDAP_URL": idp.url,
        "LAKEHUB_LDAP_CA_FILE": str(idp.ca_file),
        "LAKEHUB_LDAP_USER_SEARCH_BASE": idp.people_dn,
        "LAKEHUB_LDAP_BIND_DN": idp.bind_dn,
        "LAKEHUB_LDAP_BIND_PASSWORD": idp.bind_password,
        "LAKEHUB_LDAP_GROUP_SEARCH_BASE": idp.groups_dn,
    }
    return idp, env, ldap_sign_in


@dataclass
class TierHub:
    """A running hub with its identity provider (what tier_hub yields)."""

    hub: Hub
    idp: object
    sign_in: object
    passwords: dict
    env: dict
    work: Path


@contextlib.contextmanager
def tier_hub(
    mode: str,
    name: str,
    bucket: str,
    prefix: str,
    s3_endpoint: str,
    creds_url: str,
    users,
    groups: dict,
    extra: dict | None = None,
    edit_env=None,
):
    """A hub with the real config and a real identity provider (`mode`: oidc or ldap) on
    loopback, for `users` (random passwords) in `groups`; `extra` goes into the hub's
    environment over the provider's settings, `edit_env(env)` may change it last. Stops the hub
    and the provider, removes the hub's Unix users and the work folder afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"lakehub-{name}-"))
    work.chmod(0o755)
    port = free_port()
    passwords = {u: "pw-" + secrets.token_urlsafe(12) for u in users}
    idp, idp_env, sign_in = start_idp(mode, passwords, groups, port, work)
    env = base_hub_env(name, bucket, prefix, port, work, s3_endpoint, creds_url, {**idp_env, **(extra or {})})
    if edit_env:
        edit_env(env)
    hub = None
    try:
        hub = start_hub(env, work)
        hub.unix_users.update(unix_username_guess(u) for u in users)
        yield TierHub(hub, idp, sign_in, passwords, env, work)
    finally:
        if hub:
            hub.stop()
            if os.environ.get("LAKEHUB_KEEP_HUB_LOG"):
                shutil.copy(hub.log_path, os.environ["LAKEHUB_KEEP_HUB_LOG"])
            remove_unix_users(hub.unix_users & unix_users_with_prefix())
        idp.stop()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# signing in, tokens, waiting for servers, the user's server: the shared client
# ------------------------------------------------------------------------------------------
from hubclient import HIDDEN, UserServer, api_token, ldap_sign_in, oidc_sign_in, wait_ready, wait_stopped  # noqa: E402,F401


# ------------------------------------------------------------------------------------------
# Unix users made by the hub (tests run as root): find and remove them afterwards
# ------------------------------------------------------------------------------------------
def unix_username_guess(hub_name: str, prefix: str = UNIX_PREFIX) -> str:
    """The Unix name the hub gives a hub user (lakehub_hub.accounts)."""
    return unix_username(hub_name, prefix)


def unix_users_with_prefix(prefix: str = UNIX_PREFIX) -> set[str]:
    return {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith(prefix) and p.pw_gecos.startswith("lakehub ")}


def kill_unix_user_processes(names) -> None:
    import psutil

    uids = set()
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    if not uids:
        return
    stop_processes([p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids])


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_processes(procs) -> None:
    """SIGTERM, 5 s, then SIGKILL for those still running (psutil checks each is still the same
    process, not a later one with its pid)."""
    import psutil

    procs = [p for p in procs if p.is_running()]
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def open_interpreter_path() -> list[tuple[Path, int]]:
    """User servers run as other Unix users and must reach this Python (pyenv in /root, mode
    0700, on this machine): the local agent's traverse-only opening; returns what to restore."""
    return accounts.open_for_others(accounts.interpreter_paths())


restore_modes = accounts.restore_modes


def remove_unix_users(names) -> None:
    kill_unix_user_processes(names)
    for name in names:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], capture_output=True, timeout=30)
