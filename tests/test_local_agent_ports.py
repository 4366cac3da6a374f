"""The local agent's port for a new task (lakehub.local.agent.unused_port): never one it gave a
task that is still starting, even when the kernel offers it again. No platform is started."""

from __future__ import annotations

import pytest

from lakehub.errors import LakehubError
from lakehub.local import agent


def test_a_port_given_to_a_task_still_starting_is_not_given_again():
    offered = iter([41141, 41141, 41141, 50123])  # the kernel's answers: the first port is not bound yet
    assert agent.unused_port({41141, 40000}, pick=lambda: next(offered)) == 50123


def test_the_agent_launches_each_task_on_a_port_no_live_task_holds(monkeypatch, tmp_path):
    """_launch asks for a port outside those of the agent's live tasks (the load benchmark saw
    two tasks on one port when it did not)."""
    seen = {}

    def fake_unused_port(taken, **_):
        seen["taken"] = set(taken)
        raise RuntimeError("stop here")

    monkeypatch.setattr(agent, "unused_port", fake_unused_port)
    local = agent.LocalAgent.__new__(agent.LocalAgent)
    local.tasks = {"a": type("T", (), {"port": 41141})(), "b": type("T", (), {"port": 41142})()}
    local.work_dir = tmp_path
    local._task_definition = lambda arn: {"containerDefinitions": [{"name": "notebook"}]}
    with pytest.raises(RuntimeError, match="stop here"):
        local._launch("cluster", {"taskArn": "arn:aws:ecs:us-east-1:1:task/c/abc", "taskDefinitionArn": "td"})
    assert seen["taken"] == {41141, 41142}


def test_no_port_left_is_one_clear_error():
    with pytest.raises(LakehubError, match="no free loopback port"):
        agent.unused_port({1}, pick=lambda: 1, attempts=3)
