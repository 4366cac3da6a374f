"""A JupyterHub client for the end-to-end tests and benchmarks: sign in through the identity
provider's own login form with a real HTTP client, make an API token, wait for the user's
server, and talk to the Jupyter REST and kernel APIs. Shared by tests/hub (hub image),
tests/local (local environment) and benchmarks/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid

import requests

from lakehub.waiting import tries

# ------------------------------------------------------------------------------------------
# signing in (the identity provider's real login form) and waiting for the server
# ------------------------------------------------------------------------------------------
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def oidc_sign_in(hub_url: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """Browser-like: /hub/oauth_login -> provider's form -> post it -> back to the hub's callback."""
    import html

    s = requests.Session()
    form_page = s.get(f"{hub_url}/hub/oauth_login", timeout=30)
    form_page.raise_for_status()
    fields = {k: html.unescape(v) for k, v in HIDDEN.findall(form_page.text)}
    action = urllib.parse.urljoin(form_page.url, html.unescape(FORM_ACTION.search(form_page.text).group(1)))
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
    r = session.post(
        f"{hub_url}/hub/api/users/{username}/tokens",
        json={"note": "e2e", "expires_in": 3600},
        headers={"X-XSRFToken": xsrf or "", "Referer": f"{hub_url}/hub/token"},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["token"]


def wait_ready(
    hub_url: str, username: str, token: str, timeout: float = 90.0, retry_failed: bool = True, interval: float = 0.1
) -> dict:
    """The user's ready server. With no server and none pending, ask for one: again after each
    failure, or (retry_failed=False, a load test counting failures) once, and a server that is
    gone again after that is a failed spawn (RuntimeError)."""
    headers = {"Authorization": f"token {token}"}
    last = None
    asked = False
    for _ in tries(timeout, interval):
        r = requests.get(f"{hub_url}/hub/api/users/{username}", headers=headers, timeout=30)
        r.raise_for_status()
        last = r.json()
        server = (last.get("servers") or {}).get("")
        if server and server.get("ready"):
            return server
        if not server and not last.get("pending"):
            if asked and not retry_failed:
                raise RuntimeError(f"{username}'s server stopped while starting: {last}")
            # sign-in did not start a server (or it failed): ask for one
            answer = requests.post(f"{hub_url}/hub/api/users/{username}/server", headers=headers, timeout=60)
            if not retry_failed and answer.status_code not in (201, 202, 400):  # 400: already running or pending
                answer.raise_for_status()
            asked = True
    raise TimeoutError(f"{username}'s server was not ready within {timeout:.0f} s: {last}")


def wait_stopped(hub_url: str, username: str, token: str, timeout: float = 60.0) -> None:
    headers = {"Authorization": f"token {token}"}

    for _ in tries(timeout, interval=0.2):
        info = requests.get(f"{hub_url}/hub/api/users/{username}", headers=headers, timeout=10).json()
        if not info.get("servers") and not info.get("pending"):
            return
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
        return requests.request(
            method, f"{self.base}/api/{path.lstrip('/')}", headers=self.headers, timeout=kw.pop("timeout", 60), **kw
        )

    def save_notebook(self, path: str, cells: list[str] | str) -> dict:
        """Save a notebook of code cells (one source string, or a list of them)."""
        import nbformat

        cells = [cells] if isinstance(cells, str) else cells
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
                ws.send(
                    json.dumps(
                        {
                            "header": {
                                "msg_id": msg_id,
                                "username": "e2e",
                                "session": uuid.uuid4().hex,
                                "msg_type": "execute_request",
                                "version": "5.3",
                            },
                            "parent_header": {},
                            "metadata": {},
                            "channel": "shell",
                            "content": {
                                "code": code,
                                "silent": False,
                                "store_history": False,
                                "user_expressions": {},
                                "allow_stdin": False,
                                "stop_on_error": True,
                            },
                        }
                    )
                )
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
