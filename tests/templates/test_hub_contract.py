"""The tier template and the hub image agree on the hub's environment (docs/HUB_ENV.md)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def documented() -> set[str]:
    text = (ROOT / "docs" / "HUB_ENV.md").read_text()
    return set(re.findall(r"`((?:LAKEHUB|AWS|JUPYTER)_[A-Z0-9_]+)`", text))


def read_by_hub() -> set[str]:
    names = set()
    for path in [ROOT / "hub_images" / "jupyterhub_config.py", *sorted((ROOT / "hub_images" / "lakehub_hub").glob("*.py")), ROOT / "hub_images" / "singleuser" / "jupyter_server_config.py"]:
        names |= set(re.findall(r"LAKEHUB_[A-Z0-9_]+", path.read_text()))
    return names


def container_env(templates, logical_id):
    td = templates["tier.template.yaml"]["Resources"][logical_id]["Properties"]
    return {e["Name"] for c in td["ContainerDefinitions"] for e in c.get("Environment", [])}, {
        s["Name"] if isinstance(s, dict) and "Name" in s else s["Fn::If"][1]["Name"]
        for c in td["ContainerDefinitions"]
        for s in c.get("Secrets", [])
    }


def test_every_hub_variable_the_tier_sets_is_documented_and_read(templates):
    env, secrets = container_env(templates, "HubTaskDefinition")
    lakehub_vars = {n for n in env | secrets if n.startswith("LAKEHUB_")}
    assert lakehub_vars
    assert lakehub_vars - documented() == set(), "set by the tier template but not in docs/HUB_ENV.md"
    assert lakehub_vars - read_by_hub() == set(), "set by the tier template but read by nothing in the hub image"


def test_required_hub_variables_are_all_set_by_the_tier(templates):
    env, _ = container_env(templates, "HubTaskDefinition")
    for required in ("LAKEHUB_TIER", "LAKEHUB_AUTH_MODE", "LAKEHUB_ALLOWED_GROUPS", "LAKEHUB_NOTEBOOK_BUCKET", "LAKEHUB_NOTEBOOK_PREFIX", "LAKEHUB_PUBLIC_URL"):
        assert required in env


def test_secrets_named_in_the_doc_arrive_as_ecs_secrets(templates):
    _, secrets = container_env(templates, "HubTaskDefinition")
    assert secrets == {"LAKEHUB_COOKIE_SECRET", "LAKEHUB_OAUTH_CLIENT_SECRET", "LAKEHUB_LDAP_BIND_PASSWORD"}
    assert secrets <= documented()
