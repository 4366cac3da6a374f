"""Browser-like sign-in through the loopback OpenID Connect provider, and a user server's REST
and kernel APIs (kept small here so the local-environment tests depend only on the product)."""

from __future__ import annotations

import html
import json
import re
import time
import urllib.parse
import uuid

import requests

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def sign_in(hub_url: str, username: str, password: str) -> requests.Session:
    s = requests.Session()
    form = s.get(f"{hub_url}/hub/oauth_login", timeout=30)
    form.raise_for_status()
    fields = {k: html.unescape(v) for k, v in HIDDEN.findall(form.text)}
    r = s.post(urllib.parse.urljoin(form.url, "/authorize"), data=dict(fields, username=username, password=password), timeout=120)
    r.raise_for_status()
    return s


def api_token(session: requests.Session, hub_url: str, username: str) -> str:
    session.get(f"{hub_url}/hub/token", timeout=30)
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")
    r = session.post(f"{hub_url}/hub/api/users/{username}/tokens", json={"note": "local e2e", "expires_in": 3600},
                     headers={"X-XSRFToken": xsrf or "", "Referer": f"{hub_url}/hub/token"}, timeout=30)
    r.raise_for_status()
    return r.json()["token"]


def wait_ready(hub_url: str, username: str, token: str, timeout: float = 120.0) -> dict:
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = requests.get(f"{hub_url}/hub/api/users/{username}", headers=headers, timeout=10).json()
        server = (last.get("servers") or {}).get("")
        if server and server.get("ready"):
            return server
        if not server and not last.get("pending"):
            requests.post(f"{hub_url}/hub/api/users/{username}/server", headers=headers, timeout=60)
        time.sleep(0.3)
    raise TimeoutError(f"{username}'s server was not ready within {timeout:.0f} s: {last}")


class UserServer:
    def __init__(self, hub_url: str, username: str, token: str):
        self.base = f"{hub_url}/user/{username}"
        self.headers = {"Authorization": f"token {token}"}
        self.token = token

    def api(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/api/{path.lstrip('/')}", headers=self.headers,
                                timeout=kw.pop("timeout", 60), **kw)

    def save_notebook(self, path: str, source: str) -> dict:
        nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}],
              "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        r = self.api("PUT", f"contents/{path}", json={"type": "notebook", "format": "json", "content": nb})
        r.raise_for_status()
        return r.json()

    def run(self, code: str, kernel: str = "python3", timeout: float = 120.0) -> str:
        import websocket

        r = self.api("POST", "kernels", json={"name": kernel})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        try:
            ws = websocket.create_connection(self.base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels",
                                             header=[f"Authorization: token {self.token}"], timeout=timeout)
            try:
                msg_id = uuid.uuid4().hex
                ws.send(json.dumps({
                    "header": {"msg_id": msg_id, "username": "e2e", "session": uuid.uuid4().hex,
                               "msg_type": "execute_request", "version": "5.3"},
                    "parent_header": {}, "metadata": {}, "channel": "shell",
                    "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                "allow_stdin": False, "stop_on_error": True},
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
                    elif kind == "error":
                        errors.append(msg["content"].get("evalue", ""))
                    elif kind == "status" and msg["content"]["execution_state"] == "idle":
                        break
                if errors:
                    raise AssertionError("kernel error: " + "; ".join(errors))
                return "".join(out)
            finally:
                ws.close()
        finally:
            self.api("DELETE", f"kernels/{kernel_id}")


def user_server(tier: dict, user: dict) -> UserServer:
    session = sign_in(tier["url"], user["username"], user["password"])
    token = api_token(session, tier["url"], user["username"])
    wait_ready(tier["url"], user["username"], token)
    return UserServer(tier["url"], user["username"], token)
