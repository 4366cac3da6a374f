"""Issue 16: the local supervisor keeps its parts running (as an ECS service keeps its desired
count), `lakehub local status` tells each part's real state, and nothing the platform started is
left behind after `down`, a crashed supervisor or SIGHUP.

One `up` is shared by the module's tests, in order: status, a stopped hub, a killed identity
provider, a killed hub, a killed supervisor (`down` cleans up, `up` works again on the same
ports), then on the new platform a killed emulator and SIGHUP to the supervisor.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import requests
from waiting import http_ok, wait_for

from lakehub.local.platform import check_ports, free_base_port, plan_ports, tiers_from_template

from .helpers import Platform, lakehub, running, sign_in, user_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    yield from running(Platform(tmp_path_factory.mktemp("lakehub-supervision"), free_base_port()), log_tail=None)


def status(p: Platform, fmt: str = "json"):
    proc = lakehub("local", "status", "--state-dir", str(p.state_dir), "--format", fmt, timeout=60)
    return proc.returncode, (json.loads(proc.stdout) if fmt == "json" else proc.stdout), proc.stderr


def part(p: Platform, name: str) -> dict:
    return next(r for r in status(p)[1]["parts"] if r["name"] == name)


def answering(p: Platform, name: str, not_pid: int):
    row = part(p, name)
    return row if row["state"] == "answering" and row["pid"] != not_pid else None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (None when gone or a zombie): the test's own reading."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """{pid: start time} of every process below `pid` (children of children...)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = open(f"/proc/{entry.name}/stat").read()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = start_time(child)
                todo.append(child)
    return {k: v for k, v in found.items() if v is not None}


def still_running(procs: dict[int, int]) -> list[int]:
    return [pid for pid, start in procs.items() if start_time(pid) == start]


def carrying(token: str) -> list[int]:
    """Processes whose environment holds the run's marker (read here, not through the product)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                env = open(f"/proc/{entry.name}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if f"LAKEHUB_LOCAL_RUN={token}".encode() in env and start_time(int(entry.name)) is not None:
                out.append(int(entry.name))
    return out


def test_status_reports_each_part_answering(platform):
    code, st, err = status(platform)
    assert code == 0, err
    assert {"tiers", "emulator_endpoint", "parts", "healthy"} <= set(st)
    names = {r["name"] for r in st["parts"]}
    assert {"emulator", "identity provider", "pii hub", "nonpii hub", "agent", "credentials endpoint"} <= names
    assert [r["name"] for r in st["parts"] if r["state"] != "answering"] == []
    assert st["healthy"] is True


def test_status_exits_non_zero_and_names_a_hub_that_does_not_answer(platform):
    hub = part(platform, "nonpii hub")
    os.kill(hub["pid"], signal.SIGSTOP)  # alive but not answering: nothing to restart
    try:
        code, st, err = status(platform)
        assert code == 1
        assert st["healthy"] is False
        assert {r["name"]: r["state"] for r in st["parts"]}["nonpii hub"] == "not answering"
        assert "nonpii hub (not answering" in err
        code, table, _ = status(platform, "table")
        assert code == 1 and re.search(r"nonpii hub\s+.*\d+\s+.*not answering", table), table
    finally:
        os.kill(hub["pid"], signal.SIGCONT)
    wait_for(lambda: status(platform)[0] == 0, timeout=30, interval=1)


def test_a_killed_identity_provider_is_restarted_and_signs_users_in(platform):
    idp = part(platform, "identity provider")
    os.kill(idp["pid"], signal.SIGKILL)
    row = wait_for(lambda: answering(platform, "identity provider", idp["pid"]), timeout=60, interval=0.5)
    assert row["restarts"] == 1
    tier = platform.tier("pii")
    sign_in(tier["url"], tier["users"][0]["username"], tier["users"][0]["password"])


def test_a_killed_hub_is_restarted_with_one_log_line_and_leaves_nothing_behind(platform):
    hub = part(platform, "pii hub")
    tier = platform.tier("pii")
    sign_in(tier["url"], tier["users"][1]["username"], tier["users"][1]["password"])  # a user in its database
    # The hub's proxy and culler (JupyterHub starts both in sessions of their own).
    children = wait_for(lambda: len(descendants(hub["pid"])) >= 2 and descendants(hub["pid"]), timeout=30)
    os.kill(hub["pid"], signal.SIGKILL)
    row = wait_for(lambda: answering(platform, "pii hub", hub["pid"]), timeout=150, interval=1)
    assert row["restarts"] == 1
    assert requests.get(f"{tier['url']}/hub/health", timeout=10).status_code == 200
    lines = [line for line in platform.supervisor_log().splitlines() if "pii hub" in line and "restarting it" in line]
    assert len(lines) == 1, lines
    assert f"(pid {hub['pid']}) killed by SIGKILL (exit code 137)" in lines[0]
    assert still_running(children) == []  # the old proxy and culler are gone
    sign_in(tier["url"], tier["users"][1]["username"], tier["users"][1]["password"])
    assert status(platform)[0] == 0


def test_down_after_a_killed_supervisor_ends_everything_and_up_works_again(platform):
    tier = platform.tier("nonpii")
    user_server(tier, tier["users"][0])  # an agent task: recorded, and ended too
    state = wait_for(lambda: (st := platform.state())["tasks"] and st, timeout=10)
    supervisor, token = state["pid"], state["run_token"]
    procs = descendants(supervisor)
    assert len(procs) >= 7, procs  # emulator, provider, 2 hubs with proxy and culler, a user's server
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: start_time(supervisor) is None, timeout=10)
    code, _, err = status(platform)
    assert code == 1 and "supervisor (not running" in err
    down = platform.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "cleaned up after a crashed supervisor" in down.stdout
    assert still_running(procs) == []
    assert carrying(token) == []
    check_ports(plan_ports(platform.base, tiers_from_template()))  # every port free again
    platform.up_ok(log_tail=None)
    assert status(platform)[0] == 0


def test_a_killed_emulator_is_restarted_and_status_says_its_state_was_lost(platform):
    emulator = part(platform, "emulator")
    os.kill(emulator["pid"], signal.SIGKILL)
    row = wait_for(lambda: answering(platform, "emulator", emulator["pid"]), timeout=90, interval=1)
    assert row["restarts"] == 1
    code, st, err = wait_for(lambda: (r := status(platform))[0] == 1 and "state lost" in r[2] and r, timeout=30)
    assert "lakehub local down" in next(r for r in st["parts"] if r["name"] == "emulator")["note"]
    assert "emulator (answering; restarted with its state lost" in err


def test_sighup_to_the_supervisor_ends_everything(platform):
    state = platform.state()
    supervisor, token = state["pid"], state["run_token"]
    procs = descendants(supervisor)
    assert len(procs) >= 5, procs
    os.kill(supervisor, signal.SIGHUP)
    wait_for(lambda: start_time(supervisor) is None, timeout=120, interval=0.5)
    assert still_running(procs) == []
    assert carrying(token) == []
    assert platform.state()["phase"] == "stopped"
    check_ports(plan_ports(platform.base, tiers_from_template()))
    assert not http_ok(f"http://127.0.0.1:{platform.base + 10}/hub/health")
