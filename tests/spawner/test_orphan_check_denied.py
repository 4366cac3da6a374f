"""Defect 9: a hub role denied ecs:ListTasks must not start quietly, or a task left by a crashed
hub runs (and bills) forever; a passing fault still lets the hub start."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from traitlets.config import Config

from lakehub_hub import fargate


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} on ecs:ListTasks"}}, "ListTasks")


def configure_with_list_tasks_failing(code: str, hub_env: Config, monkeypatch):
    """configure_per_user_hub while ecs:ListTasks fails with `code` (it stays failing for the
    rest of the test): (its answer, the failures it reported, the messages it logged)."""

    def failing(*args, **kwargs):
        raise client_error(code)

    monkeypatch.setattr(fargate, "list_tier_tasks", failing)
    failures, messages = [], []
    answer = fargate.configure_per_user_hub(hub_env, fail=failures.append, log=messages.append)
    return answer, failures, messages


@pytest.fixture
def hub_env(ecs_world, monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEHUB_HUB_API_PORT", "8181")
    c = Config()
    c.JupyterHub.db_url = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    return c


def test_a_denied_orphan_check_stops_the_hub_with_the_fix(hub_env, monkeypatch):
    answer, failures, messages = configure_with_list_tasks_failing("AccessDeniedException", hub_env, monkeypatch)
    assert answer == []
    assert len(failures) == 1 and "ecs:ListTasks on '*'" in failures[0] and "AccessDeniedException" in failures[0]
    with pytest.raises(fargate.ConfigurationError, match="ecs:ListTasks"):
        fargate.configure_per_user_hub(Config(), log=messages.append)


def test_a_passing_fault_lets_the_hub_start_and_says_so(hub_env, monkeypatch):
    answer, failures, messages = configure_with_list_tasks_failing("ThrottlingException", hub_env, monkeypatch)
    assert answer == []
    assert failures == [] and "checked at the next start" in messages[0]
