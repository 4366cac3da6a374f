"""Why did my server stop (issue 18), as a person sees it in a real browser (Playwright, Debian's
chromium) on the local platform (per-user mode, the container runtime: each user's server a
podman container of the hub image with its task's memory and CPU enforced).

- a member signs in, leaves, and the idle culler stops the server: the hub's home page says it
  was stopped for being idle (the culler's request, known by its owner: lakehub_hub.stop_reasons);
- a colleague sees the memory/CPU meter (jupyter-resource-usage) against the size's memory in
  JupyterLab's status bar, then from a notebook makes the *server* the out-of-memory killer's
  choice (raises its oom_score_adj, which the same user may) and allocates past the task's
  memory: the container is OOM-killed, the agent reports ECS's "OutOfMemoryError: Container killed
  due to memory usage" (exit code 137), and the home page says the server ran out of memory and
  to pick a bigger size.

One platform for the module (`lakehub local up --runtime container`, LAKEHUB_IDLE_TIMEOUT and one
small size through LAKEHUB_LOCAL_USER_PROFILES). Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from lakehub.local.platform import free_base_port

from .lab import Lab

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
IDLE_TIMEOUT = 60  # the hubs' culler: culls after 60 s, every 30 s
SIZE = "small:1024:2048"  # 1 vCPU, 2 GiB: little to allocate past
SIZE_MIB = 2048

OOM_CELL = """import os
server = os.getppid()  # the kernel's parent: the user's Jupyter server
print(open(f"/proc/{server}/cmdline").read().replace(chr(0), " "))
with open(f"/proc/{server}/oom_score_adj", "w") as f:
    f.write("1000")  # the out-of-memory killer picks the server first
hog = []
for i in range(80):  # 5 GiB at most, far past the task's 2 GiB
    hog.append(b"x" * (64 << 20))
print("still alive")"""


@pytest.fixture(scope="module")
def platform():
    from local.helpers import Platform

    from lakehub.local.images import podman_problem

    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    state_dir = ROOT / "build" / f"browser-stops-{uuid.uuid4().hex[:8]}"
    platform = Platform(
        state_dir,
        free_base_port(),
        runtime="container",
        env={"LAKEHUB_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "LAKEHUB_LOCAL_USER_PROFILES": SIZE},
    )
    proc = platform.up()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    try:
        tier = platform.tier("pii")
        yield tier
    finally:
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("stop-reasons-shots")


@pytest.fixture(scope="module")
def idle_member(platform, chromium, shots):
    """The first member signs in (their server starts, JupyterLab opens) and leaves: nothing keeps
    the server active any more."""
    user = platform["users"][0]
    lab = Lab(chromium, platform["url"], user["username"], shots)
    lab.sign_in(user["password"])
    lab.page.goto("about:blank")
    yield lab, time.monotonic()
    lab.close()


def last_stop(lab: Lab, timeout_s: float, reason: str):
    """The hub's home page, reloaded (bounded) until it says why the server stopped."""
    page = lab.page
    deadline = time.monotonic() + timeout_s
    while True:
        page.goto(f"{lab.hub_url}/hub/home")
        notice = page.locator("#lakehub-last-stop")
        if notice.count():
            lab.shot(f"home-{reason}")
            assert notice.get_attribute("data-reason") == reason, notice.inner_text()
            return notice.inner_text()
        if time.monotonic() > deadline:
            lab.shot(f"home-no-{reason}-FAILED")
            raise AssertionError(f"the home page does not say why the server stopped after {timeout_s} s")
        page.wait_for_timeout(5000)


@pytest.mark.usefixtures("idle_member")
def test_the_meter_then_an_out_of_memory_server_is_told_to_pick_a_bigger_size(platform, chromium, shots):
    user = platform["users"][1]
    lab = Lab(chromium, platform["url"], user["username"], shots)
    try:
        lab.sign_in(user["password"])
        page = lab.page
        with lab.step("resource-meter"):
            bar = page.locator("#jp-main-statusbar")
            expect(bar).to_contain_text("Mem:", timeout=60_000)
            expect(bar).to_contain_text("CPU:", timeout=30_000)
            # memory against the size's memory (MEM_LIMIT from the task size), not the host's
            expect(bar).to_contain_text(re.compile(r"Mem:\s*[\d.]+\s*/\s*(2048(\.0+)?\s*MB|2(\.0+)?\s*GB)"), timeout=30_000)
        lab.new_notebook_from_launcher("")
        with lab.step("oom-cell"):
            editor = lab.current_panel().locator(".jp-Cell").last.locator(".cm-content")
            editor.click()
            page.keyboard.insert_text(OOM_CELL)
            page.keyboard.press("Shift+Enter")
            page.wait_for_timeout(5000)
        text = last_stop(lab, 180, "oom")
        assert "ran out of memory" in text and "bigger size" in text, text
        assert "2 GB" in text, text  # the size the user had
    finally:
        lab.close()


def test_a_culled_server_is_said_to_have_been_stopped_for_being_idle(idle_member):
    lab, since = idle_member
    # the timeout, a culler round (30 s), the stop, the page's reloads
    text = last_stop(lab, max(IDLE_TIMEOUT + 150 - (time.monotonic() - since), 60), "cull")
    assert "1 minute without activity" in text and "start your server again" in text, text
