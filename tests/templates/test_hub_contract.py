"""The build side and the hub image agree (lakehub_hub.contract): the hub's environment
(docs/HUB_ENV.md), the server modes and their default, the Fargate sizes, the size profiles."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from lakehub_hub import contract

from lakehub.cfn.template import Resolver

ROOT = Path(__file__).resolve().parents[2]
HUB_CONFIG_SOURCES = [
    ROOT / "hub_images" / "jupyterhub_config.py",
    ROOT / "hub_images" / "lakehub_hub" / "hub_config.py",
    *sorted((ROOT / "hub_images" / "jupyterhub_config.d").glob("*.py")),
]


def documented() -> set[str]:
    text = (ROOT / "docs" / "HUB_ENV.md").read_text()
    return set(re.findall(r"`((?:LAKEHUB|AWS|JUPYTER)_[A-Z0-9_]+)`", text))


def read_by_hub() -> set[str]:
    names = set()
    # contract.py names every variable: it declares them, the others read them.
    modules = [p for p in sorted((ROOT / "hub_images" / "lakehub_hub").glob("*.py")) if p.name != "contract.py"]
    for path in [*HUB_CONFIG_SOURCES, *modules, ROOT / "hub_images" / "singleuser" / "jupyter_server_config.py"]:
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
    assert set(contract.REQUIRED) <= env  # the hub config stops without them


def test_secrets_named_in_the_doc_arrive_as_ecs_secrets(templates):
    _, secrets = container_env(templates, "HubTaskDefinition")
    assert secrets == set(contract.HUB_SECRETS)
    assert secrets <= documented()


# ---- names ------------------------------------------------------------------------------------
def instance_env(templates) -> dict:
    """The on-demand hub's environment as its template writes it (name -> unresolved value)."""
    user_data = templates["hub-instance.template.yaml"]["Resources"]["Instance"]["Properties"]["UserData"]
    text, variables = user_data["Fn::Base64"]["Fn::Sub"]
    block = text.split("<<'LAKEHUB_ENV'\n", 1)[1].split("\nLAKEHUB_ENV\n", 1)[0]
    return {name: variables[ref[2:-1]] for name, ref in (line.split("=", 1) for line in block.splitlines())}


def test_every_variable_the_templates_set_is_a_contract_name(templates):
    tier_env, _ = container_env(templates, "HubTaskDefinition")
    names = set(contract.HUB_ENV.values())
    assert tier_env - names == set(), "the tier template sets a variable lakehub_hub.contract does not name"
    instance = set(instance_env(templates))
    assert instance - names == set(), "the on-demand hub sets a variable lakehub_hub.contract does not name"
    assert set(contract.REQUIRED) <= tier_env & instance
    # What a tier sets and the on-demand (shared-mode) hub does not: per-user mode's, and the
    # metrics exporter's platform (tier hubs only).
    assert tier_env - instance == set(contract.PER_USER_ONLY) | {contract.ENV_PLATFORM}


def test_every_contract_name_is_documented():
    # Not in docs/HUB_ENV.md (the table of what the image's hub config reads): botocore's, and
    # the local platform's hooks' (lakehub/local/hub_config.d).
    local_or_botocore = {
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_STS",
        "LAKEHUB_LOCAL_HUB_API_PORT",
        "LAKEHUB_LOCAL_PROXY_API_PORT",
    }
    assert set(contract.HUB_ENV.values()) - local_or_botocore - documented() == set()


def test_hub_environment_names_its_mistakes():
    env = contract.hub_environment(overrides=True, hub_port=8000, server_mode="shared", user_profiles="s:1024:4096")
    assert env == {"LAKEHUB_HUB_PORT": "8000", "LAKEHUB_SERVER_MODE": "shared", "LAKEHUB_USER_PROFILES": "s:1024:4096"}
    with pytest.raises(contract.ContractError, match="no variable for hub_prot"):
        contract.hub_environment(overrides=True, hub_prot=8000)
    with pytest.raises(contract.ContractError, match="LAKEHUB_AUTH_MODE, LAKEHUB_ALLOWED_GROUPS.* missing"):
        contract.hub_environment(tier="pii", notebook_bucket="b", notebook_prefix="p", public_url="u")
    with pytest.raises(contract.ContractError, match="server mode 'dedicated' is not one of shared, per-user"):
        contract.hub_environment(overrides=True, server_mode="dedicated")
    with pytest.raises(contract.ContractError, match="profile 's': Fargate has no 999 MiB size with 1024 CPU units"):
        contract.hub_environment(overrides=True, user_profiles="s:1024:999")


# ---- server modes -------------------------------------------------------------------------------
def test_server_modes_and_their_default_agree(templates):
    from lakehub import settings
    from lakehub.local.platform import LocalPlatform

    param = templates["tier.template.yaml"]["Parameters"]["ServerMode"]
    assert set(param["AllowedValues"]) == set(contract.SERVER_MODES)
    assert param["Default"] == contract.DEFAULT_SERVER_MODE
    assert set(settings.SERVER_MODES) == set(contract.SERVER_MODES)
    assert settings.TierSettings("x", ("x/",), ("g",)).server_mode == contract.DEFAULT_SERVER_MODE
    assert inspect.signature(LocalPlatform).parameters["server_mode"].default == contract.DEFAULT_SERVER_MODE
    assert instance_env(templates)["LAKEHUB_SERVER_MODE"] == contract.SHARED  # the on-demand hub's servers are its processes


def test_the_hub_config_takes_the_modes_and_their_default_from_the_contract():
    text = "\n".join(p.read_text() for p in HUB_CONFIG_SOURCES)
    assert not re.search(r"SERVER_MODES\s*=\s*\(", text), "the hub config restates the server modes"
    assert "DEFAULT_SERVER_MODE" in text, "the hub config's default is not the contract's"


# ---- Fargate sizes and size profiles ----------------------------------------------------------
def test_the_tier_template_offers_the_contracts_tier_task_sizes(templates):
    tier = templates["tier.template.yaml"]
    assert [int(c) for c in tier["Parameters"]["TaskCpu"]["AllowedValues"]] == list(contract.FARGATE_TIER_SIZES)
    memories = sorted({m for ms in contract.FARGATE_TIER_SIZES.values() for m in ms})
    assert [int(m) for m in tier["Parameters"]["TaskMemory"]["AllowedValues"]] == memories
    assert max(contract.FARGATE_TIER_SIZES) == contract.TIER_TASK_MAX_CPU


def test_the_image_the_settings_and_the_cost_estimate_accept_the_same_sizes():
    from lakehub_hub import fargate

    from lakehub import settings
    from lakehub.cost.model import CostError, check_server_size
    from lakehub.settings import SettingsError

    assert settings.FARGATE_USER_SIZES == contract.FARGATE_USER_SIZES
    assert settings.FARGATE_SIZES == contract.FARGATE_TIER_SIZES
    for cpu in (128, 256, 512, 1024, 2048, 3000, 4096, 8192, 16384, 32768):
        for memory in range(0, 131072 + 1, 512):
            valid = memory in contract.FARGATE_USER_SIZES.get(cpu, ())
            for check, error in (
                (fargate.validate_fargate_size, fargate.ConfigurationError),
                (lambda c, m: check_server_size(c, m, f"{c}/{m}"), CostError),
                (lambda c, m: settings.check_fargate_size(c, m, "t", settings.FARGATE_USER_SIZES), SettingsError),
            ):
                try:
                    check(cpu, memory)
                    accepted = True
                except error:
                    accepted = False
                assert accepted == valid, (check, cpu, memory)


def test_the_tier_templates_default_sizes_are_the_images(templates):
    from lakehub_hub import fargate

    param = templates["tier.template.yaml"]["Parameters"]["UserServerSizes"]
    parsed = contract.parse_profiles(param["Default"])
    assert [(p["name"], p["cpu"], p["memory"]) for p in parsed] == [
        (p["name"], p["cpu"], p["memory"]) for p in fargate.DEFAULT_PROFILES
    ]
    assert re.fullmatch(param["AllowedPattern"], contract.format_profiles(parsed))


@pytest.mark.parametrize(
    "text, says",
    [
        ("small:1024", "'small:1024' is not name:cpu:memory"),
        (
            "small:1024:999",
            "profile 'small': Fargate has no 999 MiB size with 1024 CPU units; use 2048-8192 MiB in steps of 1024",
        ),
        ("small:3000:4096", "profile 'small': Fargate has no size of 3000 CPU units"),
        ("small:1024:4096,small:2048:8192", "profile name 'small' appears twice"),
        ("small:one:4096", "profile 'small': cpu and memory must be whole numbers"),
        ("[{", "not valid JSON"),
        ("", "none given"),
    ],
)
def test_a_bad_profile_is_one_clear_error(text, says):
    with pytest.raises(contract.ContractError) as caught:
        contract.parse_profiles(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_the_cost_estimate_reads_profiles_with_the_contracts_parser():
    from lakehub.cost.model import CostError, parse_profiles

    assert parse_profiles("small:1024:4096,big:8192:32768") == {"small": (1024, 4096), "big": (8192, 32768)}
    assert parse_profiles("") == {}
    with pytest.raises(CostError, match="tier pii: LAKEHUB_USER_PROFILES: profile 'x': Fargate has no 100 MiB size"):
        parse_profiles("x:1024:100", "pii")
