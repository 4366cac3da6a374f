"""Drive a real JupyterHub (hub_images/jupyterhub_config.py) on loopback: start it, sign in through
the identity provider's own login form with a real HTTP client, wait for the user's server, talk
to the Jupyter REST and kernel APIs. Used by tests/hub/test_e2e.py and benchmarks/hub_spawn.py.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
HUB_CONFIG = ROOT / "hub_images" / "jupyterhub_config.py"
NODE_BIN = ROOT / "node_modules" / ".bin"
LOOPBACK = "127.0.0.1"
UNIX_PREFIX = "lh-"


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
        creds = {"AccessKeyId": access_key, "SecretAccessKey": secret_key, "Token": "container-session-token",
                 "RoleArn": "arn:aws:iam::123456789012:role/lakehub-tier-test"}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                body = json.dumps(dict(creds, Expiration=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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

    def stop(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # the hub stops user servers and the proxy
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        kill_unix_user_processes(self.unix_users)


def base_hub_env(tier: str, bucket: str, prefix: str, public_port: int, workdir: Path, s3_endpoint: str,
                 creds_url: str, extra: dict) -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")}
    home_root = workdir / "home"
    home_root.mkdir(parents=True, exist_ok=True)
    home_root.chmod(0o755)
    env = dict(
        keep,
        PATH=os.pathsep.join([str(NODE_BIN), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin",
                              "/usr/sbin", "/sbin"]),
        LAKEHUB_TIER=tier,
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
    cmd = [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG),
           f"--ConfigurableHTTPProxy.api_url=http://{LOOPBACK}:{api_port}",
           f"--JupyterHub.hub_port={hub_port}"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, cwd=str(workdir), env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    hub = Hub(process, port, workdir, log_path, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {process.returncode}:\n{hub.log()[-4000:]}")
        try:
            if requests.get(f"{hub.url}/hub/health", timeout=2).status_code == 200:
                return hub
        except requests.RequestException:
            pass
        time.sleep(0.2)
    hub.stop()
    raise RuntimeError(f"jupyterhub did not answer within {timeout:.0f} s:\n{hub.log()[-4000:]}")


# ------------------------------------------------------------------------------------------
# signing in (the identity provider's real login form) and waiting for the server
# ------------------------------------------------------------------------------------------
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def oidc_sign_in(hub_url: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Browser-like: /hub/oauth_login -> provider's form -> post it -> back to the hub's callback."""
    import html

    s = requests.Session()
    form_page = s.get(f"{hub_url}/hub/oauth_login", timeout=30)
    form_page.raise_for_status()
    fields = {k: html.unescape(v) for k, v in HIDDEN.findall(form_page.text)}
    action = urllib.parse.urljoin(form_page.url, "/authorize")
    response = s.post(action, data=dict(fields, username=username, password=password), timeout=60)
    return s, response


def ldap_sign_in(hub_url: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    page = s.get(f"{hub_url}/hub/login", timeout=30)
    page.raise_for_status()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    data = {"username": username, "password": password}
    if xsrf:
        data["_xsrf"] = xsrf.group(1)
    response = s.post(f"{hub_url}/hub/login?next=", data=data, timeout=60)
    return s, response


def api_token(session: requests.Session, hub_url: str, username: str) -> str:
    """A token for the REST APIs, made with the browser session (as the token page does)."""
    session.get(f"{hub_url}/hub/token", timeout=30)
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")
    r = session.post(f"{hub_url}/hub/api/users/{username}/tokens", json={"note": "e2e", "expires_in": 3600},
                     headers={"X-XSRFToken": xsrf or "", "Referer": f"{hub_url}/hub/token"}, timeout=30)
    r.raise_for_status()
    return r.json()["token"]


def wait_ready(hub_url: str, username: str, token: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {token}"}
    last = None
    while time.monotonic() < deadline:
        r = requests.get(f"{hub_url}/hub/api/users/{username}", headers=headers, timeout=10)
        r.raise_for_status()
        last = r.json()
        server = (last.get("servers") or {}).get("")
        if server and server.get("ready"):
            return server
        if not server and not last.get("pending"):
            # sign-in did not start a server (or it failed): ask for one
            requests.post(f"{hub_url}/hub/api/users/{username}/server", headers=headers, timeout=30)
        time.sleep(0.1)
    raise TimeoutError(f"{username}'s server was not ready within {timeout:.0f} s: {last}")


def wait_stopped(hub_url: str, username: str, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"token {token}"}
    while time.monotonic() < deadline:
        info = requests.get(f"{hub_url}/hub/api/users/{username}", headers=headers, timeout=10).json()
        if not info.get("servers") and not info.get("pending"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{username}'s server did not stop within {timeout:.0f} s")


# ------------------------------------------------------------------------------------------
# the user's server
# ------------------------------------------------------------------------------------------
class UserServer:
    def __init__(self, hub_url: str, username: str, token: str):
        self.base = f"{hub_url}/user/{username}"
        self.headers = {"Authorization": f"token {token}"}
        self.token = token

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/api/{path.lstrip('/')}", headers=self.headers,
                                timeout=kw.pop("timeout", 60), **kw)

    def save_notebook(self, path: str, cells: list[str]) -> dict:
        import nbformat

        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
        r = self.api("PUT", f"contents/{path}", json={"type": "notebook", "format": "json", "content": nb})
        r.raise_for_status()
        return r.json()

    def run(self, kernel_name: str, code: str, timeout: float = 90.0) -> str:
        """Start a kernel, run code over the kernel websocket, return its stdout; shut it down."""
        import websocket

        r = self.api("POST", "kernels", json={"name": kernel_name})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        try:
            ws_url = self.base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels"
            ws = websocket.create_connection(ws_url, header=[f"Authorization: token {self.token}"], timeout=timeout)
            try:
                msg_id = uuid.uuid4().hex
                ws.send(json.dumps({
                    "header": {"msg_id": msg_id, "username": "e2e", "session": uuid.uuid4().hex,
                               "msg_type": "execute_request", "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell",
                    "content": {"code": code, "silent": False, "store_history": False,
                                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
                }))
                out, errors = [], []
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    msg = json.loads(ws.recv())
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = msg["msg_type"]
                    if kind == "stream":
                        out.append(msg["content"]["text"])
                    elif kind in ("execute_result", "display_data"):
                        out.append(msg["content"]["data"].get("text/plain", ""))
                    elif kind == "error":
                        errors.append("\n".join(msg["content"].get("traceback", [])) or msg["content"].get("evalue", ""))
                    elif kind == "status" and msg["content"]["execution_state"] == "idle":
                        break
                if errors:
                    raise AssertionError(f"{kernel_name} kernel error:\n" + "\n".join(errors))
                return "".join(out)
            finally:
                ws.close()
        finally:
            self.api("DELETE", f"kernels/{kernel_id}")


# ------------------------------------------------------------------------------------------
# Unix users made by the hub (tests run as root): find and remove them afterwards
# ------------------------------------------------------------------------------------------
def unix_username_guess(hub_name: str, prefix: str = UNIX_PREFIX) -> str:
    """The Unix name hub_images/jupyterhub_config.py gives a plain lower-case hub user name."""
    return prefix + hub_name


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
    procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]
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
    """User servers run as other Unix users and must reach this Python. On machines where it lives
    under a private home (pyenv in /root, mode 0700), add traverse-only permission (o+x, no listing)
    to the folders on the way, and return what to restore. In the image Python is in /usr/local."""
    changed = []
    for target in {Path(os.path.realpath(sys.executable)), Path(os.path.realpath(sys.prefix))}:
        for folder in reversed(target.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)
                changed.append((folder, mode))
    return changed


def restore_modes(changed) -> None:
    for folder, mode in reversed(changed):
        folder.chmod(mode & 0o7777)


def remove_unix_users(names) -> None:
    kill_unix_user_processes(names)
    for name in names:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], capture_output=True, timeout=30)
