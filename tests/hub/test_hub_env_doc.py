"""docs/HUB_ENV.md lists exactly the LAKEHUB_* variables the hub image reads (the hub
configuration: jupyterhub_config.py and lakehub_hub.hub_config; in per-user mode lakehub_hub.fargate, the task's command lakehub_hub.hub_state and
the metrics exporter lakehub_hub.metrics)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hub_images" / "jupyterhub_config.py"
HUB_CONFIG = ROOT / "hub_images" / "lakehub_hub" / "hub_config.py"
SPAWNER = ROOT / "hub_images" / "lakehub_hub" / "fargate.py"
HUB_STATE = ROOT / "hub_images" / "lakehub_hub" / "hub_state.py"
METRICS = ROOT / "hub_images" / "lakehub_hub" / "metrics.py"
DOC = ROOT / "docs" / "HUB_ENV.md"
READERS = r"(?:required|optional|as_int|as_bool|environ\.get|environ\[)\(?\s*\"(LAKEHUB_[A-Z0-9_]+)\""


def documented() -> set[str]:
    return set(re.findall(r"^\| `(LAKEHUB_[A-Z0-9_]+)` \|", DOC.read_text(), re.M))


def test_every_variable_the_config_reads_is_documented_and_nothing_else():
    read = set(re.findall(READERS, CONFIG.read_text() + HUB_CONFIG.read_text()))
    read |= set(re.findall(r"(?:environ\.get|_env_int|_env_list|_env_bool)\(\"(LAKEHUB_[A-Z0-9_]+)\"", SPAWNER.read_text()))
    read |= set(re.findall(r"(?:environ\.get|env\.get)\(\"(LAKEHUB_[A-Z0-9_]+)\"", HUB_STATE.read_text()))
    read |= set(re.findall(r"(?:environ\.get|env_int)\(\"(LAKEHUB_[A-Z0-9_]+)\"", METRICS.read_text()))
    assert {"LAKEHUB_TIER", "LAKEHUB_AUTH_MODE", "LAKEHUB_OAUTH_CLIENT_SECRET"} <= read
    assert read - documented() == set(), "read by the config but missing from docs/HUB_ENV.md"
    assert documented() - read == set(), "documented but no longer read by the config"


def test_secrets_are_marked_as_ecs_secrets():
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(LAKEHUB_[A-Z0-9_]+)` \|.*$", DOC.read_text(), re.M)}
    for name in ("LAKEHUB_OAUTH_CLIENT_SECRET", "LAKEHUB_LDAP_BIND_PASSWORD", "LAKEHUB_COOKIE_SECRET"):
        assert "**yes**" in rows[name], f"{name} must be listed as an ECS Secret"
    assert "**yes**" not in rows["LAKEHUB_TIER"]
