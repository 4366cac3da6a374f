"""`up` waits for each hub to answer; a hub that exits first is started again, as an ECS
service replaces a task that stops (lakehub.local.platform.LocalPlatform.wait_hub).

A clean-clone CI rehearsal saw a hub exit at its first start on a loaded machine: JupyterHub gives
its proxy a fixed 10 s to answer ("Server at 127.0.0.1:N didn't respond in 10 seconds"), and
`up` failed although the supervisor would have started the hub again a second later. Real
processes: the first start exits, the second serves /hub/health on loopback.
"""

from __future__ import annotations

import sys

import pytest

from lakehub.local.emulator import free_port
from lakehub.errors import LakehubError
from lakehub.local.platform import LocalPlatform, Tier
from lakehub.local.state import StateDir

SERVE_HEALTH = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/hub/health" else 404); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _platform(tmp_path, starts: list[list[str]]):
    import subprocess

    lines: list[str] = []
    p = LocalPlatform(StateDir(tmp_path / "state"), say=lines.append)
    port = free_port()
    tier = Tier("pii", ["pii-users"], 0, port=port)
    launched: list[subprocess.Popen] = []

    def relaunch():
        cmd = starts[min(len(launched), len(starts) - 1)]
        launched.append(subprocess.Popen([sys.executable, "-c", *[c.replace("PORT", str(port)) for c in cmd]]))
        return launched[-1]

    p.add_part("pii hub", relaunch(), f"{tier.url}/hub/health", relaunch)
    return p, tier, lines, launched


def test_a_hub_that_exits_at_its_first_start_is_started_again(tmp_path):
    p, tier, lines, launched = _platform(tmp_path, [["raise SystemExit(1)"], [SERVE_HEALTH, "PORT"]])
    try:
        p.wait_hub(tier, lambda: tmp_path / "hub.log")
        assert len(launched) == 2
        assert p.parts["pii hub"].restarts == 1
        assert any("exited at start with code 1" in line and "starting it again (2 of 3)" in line for line in lines), lines
        assert lines[-1] == f"the pii hub answers on {tier.url}"
    finally:
        for proc in launched:
            proc.kill()
            proc.wait()


def test_a_hub_that_keeps_exiting_fails_up_with_one_line(tmp_path):
    p, tier, lines, launched = _platform(tmp_path, [["raise SystemExit(3)"]])
    with pytest.raises(LakehubError) as caught:
        p.wait_hub(tier, lambda: tmp_path / "hub.log")
    assert len(launched) == 3
    assert str(caught.value) == f"the pii hub exited at start with code 3; see {tmp_path / 'hub.log'} (started 3 times)"
    for proc in launched:
        proc.wait()
