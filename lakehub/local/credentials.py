"""A local container-credentials endpoint: what ECS gives a task for its task role.

Each tier hub gets AWS_CONTAINER_CREDENTIALS_FULL_URI = http://127.0.0.1:<port>/role/<name> and
its own AWS_CONTAINER_AUTHORIZATION_TOKEN; botocore (the hub, the spawner, s3contents, users'
kernels) fetches the role's temporary credentials from there exactly as on ECS. A request
without the path's token gets 403. The credentials were issued by the emulator's STS before
IAM enforcement was turned on (the roles trust ecs-tasks.amazonaws.com, which no local caller
can be); each answer carries an Expiration an hour ahead, so botocore refreshes from here.
"""

from __future__ import annotations

import datetime
import hmac
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lakehub.local.emulator import LOOPBACK


def send_json(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
    """Answer `handler`'s request with `status` and `body` as JSON (what credential endpoints send)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class CredentialsServer:
    def __init__(self, port: int = 0):
        self._roles: dict[str, tuple[str, dict]] = {}  # name -> (token, credentials)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                name = self.path.rstrip("/").rsplit("/", 1)[-1]
                entry = server._roles.get(name)
                token = self.headers.get("Authorization", "")
                if not self.path.startswith("/role/") or entry is None or not hmac.compare_digest(token, entry[0]):
                    return send_json(self, 403, {"message": "unknown role or wrong authorization token"})
                creds = entry[1]
                expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
                return send_json(
                    self,
                    200,
                    {
                        "AccessKeyId": creds["AccessKeyId"],
                        "SecretAccessKey": creds["SecretAccessKey"],
                        "Token": creds.get("SessionToken", ""),
                        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "RoleArn": creds.get("RoleArn", ""),
                    },
                )

        self.httpd = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="container-credentials", daemon=True)

    def start(self) -> "CredentialsServer":
        self._thread.start()
        return self

    def add_role(self, name: str, credentials: dict, role_arn: str = "") -> dict:
        """Serve `credentials` at /role/<name>; returns the environment a process needs."""
        token = secrets.token_urlsafe(24)
        self._roles[name] = (token, dict(credentials, RoleArn=role_arn))
        return {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{LOOPBACK}:{self.port}/role/{name}",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
        }

    def remove_role(self, name: str) -> None:
        """Stop serving /role/<name> (its token answers 403 from now on)."""
        self._roles.pop(name, None)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
