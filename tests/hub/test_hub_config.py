"""The hub configuration (lakehub_hub.hub_config) with sample environments.

`configure(c, env)` runs in this process on a fresh traitlets Config, and tests/hub/load_hub_config.py
describes what JupyterHub makes of it. The 12 environments of tests/hub/hub_config_snapshot.py give
exactly the settings recorded from the whole-file jupyterhub_config.py (hub_config_golden.json).
Missing or wrong settings raise HubConfigError, one line; the real `jupyterhub -f` command (a
subprocess, where a real process matters) turns it into that line on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from traitlets.config import Config

import hub_config_snapshot as snapshots
from lakehub_hub.hub_config import HubConfigError, configure, run_site_hooks
from load_hub_config import describe

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "hub_images"
CONFIG = HUB / "jupyterhub_config.py"
GOLDEN = json.loads(Path(__file__).with_name("hub_config_golden.json").read_text())

CONTAINER_CREDENTIAL_VARS = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"}


def base_env(tmp_path: Path, **extra) -> dict:
    """The snapshot tool's base environment (a shared-mode pii tier), with `extra` over it."""
    return {**snapshots.base_env(tmp_path), **extra}


# The sign-in modes' sample variables: the snapshot tool's, so the golden cases and these tests agree.
COGNITO, OIDC, LDAP = snapshots.COGNITO, snapshots.OIDC, snapshots.LDAP


def without_urls(mode: dict) -> dict:
    return {k: v for k, v in mode.items() if not k.endswith("_URL")}


def configured(env: dict, hooks: bool = False) -> Config:
    c = Config()
    if env.get("LAKEHUB_SERVER_MODE") == "per-user":
        # lakehub_hub.fargate reads os.environ itself
        with mock.patch.dict(os.environ, env, clear=True):
            configure(c, os.environ, here=HUB)
    else:
        configure(c, env, here=HUB)
    if hooks:
        run_site_hooks(c, env, here=HUB)
    return c


def load(env: dict, sample_auth_state: dict | None = None, hooks: bool = False) -> dict:
    """What JupyterHub makes of configure(c, env) (and the single-user config it leads to)."""
    return json.loads(json.dumps(describe(configured(env, hooks), sample_auth_state), default=str))


def config_error(env: dict) -> str:
    """The one line a wrong environment gives."""
    with pytest.raises(HubConfigError) as caught:
        configured(env)
    line = f"lakehub hub: {caught.value}"
    assert "\n" not in line and "docs/HUB_ENV.md" in line, line
    return line


def run_jupyterhub(env: dict) -> subprocess.CompletedProcess:
    """The real command: `jupyterhub -f hub_images/jupyterhub_config.py`."""
    return subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )


def assert_common(cfg: dict):
    # kept env variables: the task role's credentials must reach user servers
    assert CONTAINER_CREDENTIAL_VARS <= set(cfg["env_keep"])
    assert not {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "LAKEHUB_OAUTH_CLIENT_SECRET",
        "LAKEHUB_LDAP_BIND_PASSWORD",
        "LAKEHUB_COOKIE_SECRET",
    } & set(cfg["env_keep"])
    assert not any("SECRET" in k or "PASSWORD" in k for k in cfg["spawner_environment"])
    # the culler, as a hub service with the timeout from the environment, and its role
    (culler,) = [s for s in cfg["services"] if s["name"] == "idle-culler"]
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"]
    assert "--timeout=1800" in culler["command"]
    (role,) = [r for r in cfg["roles"] if r["name"] == "idle-culler"]
    assert {"delete:servers", "read:users:activity"} <= set(role["scopes"])
    # the file browser: the home (jupyter_server's file manager) with the tier's shared folder from
    # S3, and the central copies of the user's files under the tier prefix
    assert cfg["contents_manager"].endswith("HomeContentsManager")
    assert "jupyter_server.services.contents.largefilemanager.LargeFileManager" in cfg["contents_manager_bases"]
    assert cfg["contents_root"] is True
    assert (cfg["contents_central_prefix"], cfg["contents_shared_prefix"]) == ("tiers/pii/users/alice", "tiers/pii/shared")
    assert cfg["default_url"] == "/lab"
    assert cfg["user_packages"] == {"PYTHONUSERBASE": "~/.local", "R_LIBS_USER": "~/R/library", "PIP_CACHE_DIR": "~/.cache/pip"}
    assert cfg["contents_bucket"] == "acme-lakehub-notebooks"
    assert cfg["contents_endpoint"] == "https://s3.eu-west-1.amazonaws.com"
    # shared mode: one Unix user per data scientist, servers run by the hub's Python
    assert cfg["spawner"].endswith("UnixUserSpawner")
    assert cfg["spawner_cmd"][1:] == ["-m", "jupyterhub.singleuser"]
    assert cfg["public_url"] == "https://pii.example.com/"
    assert (cfg["ip"], cfg["port"], cfg["hub_ip"]) == ("0.0.0.0", 8000, "127.0.0.1")
    assert cfg["allow_all"] is False
    # membership is re-checked: every 15 minutes by default, before every spawn, and a removed
    # user is refused on API tokens too; tokens users make live at most a week
    assert cfg["has_membership_check"]
    assert cfg["auth_refresh_age"] == 900
    assert cfg["refresh_pre_spawn"] is True and cfg["auth_refresh_strict"] is True
    assert 0 < cfg["token_expires_in_max_seconds"] <= 7 * 24 * 3600


def test_cognito_mode_uses_generic_oauth_with_cognito_groups_claim(tmp_path):
    cfg = load(base_env(tmp_path, **COGNITO), {"oauth_user": {"cognito:groups": ["pii-analysts", "x"], "groups": ["ignored"]}})
    assert "oauthenticator.generic.GenericOAuthenticator" in cfg["authenticator_bases"]
    assert cfg["allowed_groups"] == ["pii-analysts", "pii-engineers"]
    assert cfg["manage_groups"] is True
    assert cfg["groups_from_sample"] == ["pii-analysts", "x"]
    assert cfg["authorize_url"] == "https://acme-lakehub.auth.eu-west-1.amazoncognito.com/oauth2/authorize"
    assert cfg["token_url"] == "https://acme-lakehub.auth.eu-west-1.amazoncognito.com/oauth2/token"
    assert cfg["userdata_from_id_token"] is True  # cognito:groups is only in the id_token
    assert cfg["username_claim"] == "cognito:username"
    assert cfg["oauth_callback_url"] == "https://pii.example.com/hub/oauth_callback"
    assert cfg["logout_redirect_url"].startswith("https://acme-lakehub.auth.eu-west-1.amazoncognito.com/logout?client_id=")
    assert "'pii' tier" in cfg["custom_403_message"]
    assert_common(cfg)


def test_oidc_mode_with_explicit_endpoints_and_custom_groups_claim(tmp_path):
    cfg = load(
        base_env(tmp_path, **OIDC, LAKEHUB_ADMIN_GROUPS="platform-admins"),
        {"oauth_user": {"roles": ["pii-engineers"], "groups": ["ignored"]}},
    )
    assert "oauthenticator.generic.GenericOAuthenticator" in cfg["authenticator_bases"]
    assert cfg["allowed_groups"] == ["pii-analysts", "pii-engineers"]
    assert cfg["admin_groups"] == ["platform-admins"]
    assert cfg["groups_from_sample"] == ["pii-engineers"]
    assert cfg["userdata_url"] == "https://login.example.com/realms/acme/userinfo"
    assert cfg["userdata_from_id_token"] is False
    assert cfg["username_claim"] == "preferred_username"
    assert cfg["client_id"] == "oidc-client-id"
    assert_common(cfg)


def test_oidc_mode_discovers_endpoints_from_a_real_provider(tmp_path):
    from lakehub.local.idp.oidc import start_oidc

    idp = start_oidc({"alice": "x"}, {"pii-analysts": ["alice"]}, workdir=tmp_path)
    try:
        env = base_env(tmp_path, **dict(without_urls(OIDC), LAKEHUB_OIDC_ISSUER=idp.issuer))
        cfg = load(env)
    finally:
        idp.stop()
    assert cfg["authorize_url"] == f"{idp.issuer}/authorize"
    assert cfg["token_url"] == f"{idp.issuer}/token"
    assert cfg["userdata_url"] == f"{idp.issuer}/userinfo"


def test_ldap_mode_uses_ldaps_with_certificate_checks_and_group_dns(tmp_path):
    cfg = load(base_env(tmp_path, **LDAP))
    assert cfg["authenticator"].endswith("LakehubLDAPAuthenticator")
    assert "ldapauthenticator.ldapauthenticator.LDAPAuthenticator" in cfg["authenticator_bases"]
    assert cfg["allowed_groups"] == [
        "cn=pii-analysts,ou=groups,dc=example,dc=com",
        "cn=pii-engineers,ou=groups,dc=example,dc=com",
    ]
    assert (cfg["server_address"], cfg["server_port"], cfg["tls_strategy"]) == ("ldap.example.com", 636, "on_connect")
    assert cfg["tls_kwargs"]["validate"] in ("2", "VerifyMode.CERT_REQUIRED")  # ssl.CERT_REQUIRED
    assert cfg["lookup_dn"] is True
    assert cfg["user_search_base"] == "ou=people,dc=example,dc=com"
    assert_common(cfg)


def test_ldap_group_dns_keep_their_commas(tmp_path):
    """A full DN holds commas: it is one group, not four (an admin group given as a DN used to be
    split into cn=admins, ou=groups, dc=example, dc=com, and its members were never admins)."""
    admins = "cn=admins,ou=groups,dc=example,dc=com"
    cfg = load(
        base_env(
            tmp_path,
            **dict(
                LDAP, LAKEHUB_ALLOWED_GROUPS="pii-analysts; cn=pii-ops,ou=teams,dc=example,dc=com", LAKEHUB_ADMIN_GROUPS=admins
            ),
        )
    )
    assert sorted(cfg["allowed_groups"]) == sorted(
        ["cn=pii-analysts,ou=groups,dc=example,dc=com", "cn=pii-ops,ou=teams,dc=example,dc=com", admins]
    )


@pytest.mark.parametrize(
    "value,words",
    [
        # two DNs with only a comma between them: dc= ends a DN, so a cn= after it starts another
        ("cn=a,ou=groups,dc=example,dc=com,cn=b,ou=groups,dc=example,dc=com", "separate DNs with ';'"),
        ("pii-analysts,cn=admins,ou=groups,dc=example,dc=com", "separate DNs with ';'"),
        ("cn=admins,,dc=com", "not a valid DN"),
    ],
)
def test_ldap_group_lists_that_cannot_be_read_are_one_clear_line(tmp_path, value, words):
    assert words in config_error(base_env(tmp_path, **dict(LDAP, LAKEHUB_ADMIN_GROUPS=value)))


def test_ldap_starttls_and_bind_template(tmp_path):
    env = base_env(
        tmp_path,
        **dict(
            LDAP,
            LAKEHUB_LDAP_URL="ldap://ldap.example.com",
            LAKEHUB_LDAP_STARTTLS="true",
            LAKEHUB_LDAP_BIND_DN_TEMPLATE="uid={username},ou=people,dc=example,dc=com",
        ),
    )
    cfg = load(env)
    assert (cfg["server_port"], cfg["tls_strategy"]) == (389, "before_bind")
    assert cfg["bind_dn_template"] == ["uid={username},ou=people,dc=example,dc=com"]
    assert cfg["lookup_dn"] is False


PER_USER = snapshots.PER_USER  # the snapshot tool's per-user variables, as the sign-in modes'


def test_per_user_mode_hands_over_to_the_fargate_spawner(tmp_path, moto_server):
    # the spawner's start-up reconciliation lists this tier's tasks: on the emulator, none
    env = base_env(tmp_path, **COGNITO, **PER_USER, LAKEHUB_ECS_ENDPOINT_URL=moto_server.endpoint_url, **moto_server.client_env())
    env.pop("AWS_ENDPOINT_URL")
    cfg = load(env)
    assert cfg["spawner"] == "lakehub_hub.fargate.FargateSpawner"
    assert cfg["hub_ip"] == "127.0.0.1"  # emulator; 0.0.0.0 on AWS
    assert cfg["spawner_environment"]["JUPYTER_CONFIG_PATH"].endswith("singleuser")
    assert CONTAINER_CREDENTIAL_VARS <= set(cfg["env_keep"])


def test_per_user_mode_without_the_spawner_settings_is_one_clear_line(tmp_path):
    env = base_env(tmp_path, **COGNITO, **dict(PER_USER, LAKEHUB_CLUSTER=""))
    assert "LAKEHUB_CLUSTER" in config_error(env)


def test_cookie_secret_is_hashed_to_32_bytes_and_state_dir_holds_the_database(tmp_path):
    cfg = load(base_env(tmp_path, **COGNITO, LAKEHUB_COOKIE_SECRET="any string from secrets manager"))
    assert cfg["cookie_secret_len"] == 32
    assert cfg["db_url"] == f"sqlite:///{tmp_path / 'state' / 'jupyterhub.sqlite'}"


def test_emulator_endpoint_reaches_user_servers(tmp_path):
    cfg = load(
        base_env(
            tmp_path,
            **COGNITO,
            LAKEHUB_S3_ENDPOINT_URL="http://127.0.0.1:5000",
            LAKEHUB_DATA_BUCKET="acme-lake",
            LAKEHUB_DATA_PREFIXES="pii/,shared/",
        )
    )
    env = cfg["spawner_environment"]
    assert env["LAKEHUB_S3_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:5000"
    assert env["LAKEHUB_DATA_BUCKET"] == "acme-lake"
    assert env["LAKEHUB_DATA_PREFIXES"] == "pii/,shared/"
    assert cfg["contents_endpoint"] == "http://127.0.0.1:5000"


def test_idle_timeout_zero_turns_the_culler_off(tmp_path):
    cfg = load(base_env(tmp_path, **COGNITO, LAKEHUB_IDLE_TIMEOUT="0"))
    assert cfg["services"] == []


def test_metrics_exporter_runs_as_a_service_with_read_only_scopes_when_the_platform_is_known(tmp_path):
    cfg = load(base_env(tmp_path, **COGNITO, LAKEHUB_PLATFORM="acme", LAKEHUB_METRICS_INTERVAL="30"))
    (service,) = [s for s in cfg["services"] if s["name"] == "metrics"]
    assert service["command"][1:] == ["-m", "lakehub_hub.metrics"]
    env = service["environment"]
    assert env["LAKEHUB_PLATFORM"] == "acme" and env["LAKEHUB_METRICS_INTERVAL"] == "30"
    assert not any("SECRET" in k and k.startswith("LAKEHUB") for k in env)
    (role,) = [r for r in cfg["roles"] if r["name"] == "metrics"]
    assert sorted(role["scopes"]) == ["list:users", "read:metrics", "read:servers"]
    # without the platform (a hub outside a tier stack), or turned off: no exporter
    assert not [s for s in load(base_env(tmp_path, **COGNITO))["services"] if s["name"] == "metrics"]
    off = load(base_env(tmp_path, **COGNITO, LAKEHUB_PLATFORM="acme", LAKEHUB_METRICS="off"))
    assert not [s for s in off["services"] if s["name"] == "metrics"]


def test_hooks_in_config_d_run_last_in_name_order(tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "10-first.py").write_text("c.Spawner.start_timeout = 11\n")
    (hooks / "20-second.py").write_text("c.Spawner.environment['SITE_FLAG'] = str(c.Spawner.start_timeout)\n")
    cfg = load(base_env(tmp_path, **COGNITO, LAKEHUB_CONFIG_D=str(hooks)), hooks=True)
    assert cfg["spawner_environment"]["SITE_FLAG"] == "11"


REQUIRED = [
    "LAKEHUB_TIER",
    "LAKEHUB_AUTH_MODE",
    "LAKEHUB_ALLOWED_GROUPS",
    "LAKEHUB_NOTEBOOK_BUCKET",
    "LAKEHUB_NOTEBOOK_PREFIX",
    "LAKEHUB_PUBLIC_URL",
]


@pytest.mark.parametrize("missing", REQUIRED + ["LAKEHUB_COGNITO_DOMAIN", "LAKEHUB_OAUTH_CLIENT_SECRET"])
def test_missing_required_variable_is_one_clear_line(tmp_path, missing):
    env = base_env(tmp_path, **COGNITO)
    del env[missing]
    assert missing in config_error(env)


@pytest.mark.slow
def test_the_jupyterhub_command_ends_with_the_one_line_and_exit_2(tmp_path):
    env = base_env(tmp_path, **COGNITO)
    del env["LAKEHUB_OAUTH_CLIENT_SECRET"]
    result = run_jupyterhub(env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lakehub hub: missing required environment variable LAKEHUB_OAUTH_CLIENT_SECRET")
    assert lines[0].endswith("(see docs/HUB_ENV.md)")
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "name,value,words",
    [
        ("LAKEHUB_AUTH_MODE", "saml", "cognito, oidc, ldap"),
        ("LAKEHUB_PUBLIC_URL", "http://pii.example.com", "https://"),
        ("LAKEHUB_IDLE_TIMEOUT", "an hour", "whole number"),
        ("LAKEHUB_SERVER_MODE", "dedicated", "shared, per-user"),
        ("LAKEHUB_METRICS", "sometimes", "on or off"),
        ("LAKEHUB_METRICS_INTERVAL", "a minute", "whole number"),
    ],
)
def test_wrong_values_are_one_clear_line(tmp_path, name, value, words):
    assert words in config_error(base_env(tmp_path, **dict(COGNITO, **{name: value})))


def test_ldap_without_tls_is_refused(tmp_path):
    assert "LAKEHUB_LDAP_STARTTLS" in config_error(base_env(tmp_path, **dict(LDAP, LAKEHUB_LDAP_URL="ldap://ldap.example.com")))


def test_unreachable_oidc_issuer_is_one_clear_line(tmp_path):
    from lakehub.local.emulator import free_port

    env = base_env(tmp_path, **dict(without_urls(OIDC), LAKEHUB_OIDC_ISSUER=f"http://127.0.0.1:{free_port()}"))
    assert "discovery document" in config_error(env)


def test_oauth_modes_keep_encrypted_auth_state_with_a_key_derived_from_the_cookie_secret(tmp_path):
    """The refresh token that re-checks membership lives in auth state, encrypted with a 32-byte
    key; the key comes from the platform's cookie secret (never the cookie secret itself)."""
    cfg = load(base_env(tmp_path, LAKEHUB_COOKIE_SECRET="sample-cookie-secret", **OIDC))
    assert cfg["enable_auth_state"] is True and cfg["crypt_key_lens"] == [32]
    ldap = load(base_env(tmp_path, **LDAP))
    assert ldap["enable_auth_state"] is False  # the service account re-checks; nothing to keep
    env = base_env(tmp_path, **COGNITO)  # no cookie secret: a key generated once into the state folder
    assert load(env)["crypt_key_lens"] == [32]
    key_file = tmp_path / "state" / "jupyterhub_auth_state_key"
    assert oct(key_file.stat().st_mode & 0o777) == oct(0o600)
    first = key_file.read_text()
    load(env)
    assert key_file.read_text() == first


@pytest.mark.parametrize("value,words", [("0", "at least 1"), ("7200", "at most 3600"), ("soon", "whole number")])
def test_membership_interval_out_of_range_is_one_clear_line(tmp_path, value, words):
    line = config_error(base_env(tmp_path, **dict(COGNITO, LAKEHUB_MEMBERSHIP_CHECK_SECONDS=value)))
    assert "LAKEHUB_MEMBERSHIP_CHECK_SECONDS" in line and words in line


def test_ldap_bind_template_still_needs_the_service_account_to_re_check_groups(tmp_path):
    env = base_env(tmp_path, **dict(LDAP, LAKEHUB_LDAP_BIND_DN_TEMPLATE="uid={username},ou=people,dc=example,dc=com"))
    del env["LAKEHUB_LDAP_BIND_DN"]
    assert "LAKEHUB_LDAP_BIND_DN" in config_error(env)


# --------------------------------------------------------------------------------------------
# the same settings as the whole-file configuration gave (hub_config_golden.json)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(snapshots.CASES))
def test_configure_gives_the_recorded_settings(tmp_path, case, request):
    emulator, aws_env = "", {}
    if case in snapshots.PER_USER_CASES:
        moto_server = request.getfixturevalue("moto_server")
        emulator, aws_env = moto_server.endpoint_url, moto_server.client_env()
    c = configured(snapshots.case_env(case, tmp_path, emulator, aws_env))
    assert snapshots.snapshot(c, tmp_path, emulator) == GOLDEN[case]


@pytest.mark.slow
def test_the_entry_file_as_jupyterhub_loads_it_gives_the_same_settings_then_runs_the_hooks(tmp_path):
    """A real process: `jupyterhub -f`'s loader on hub_images/jupyterhub_config.py."""
    env = snapshots.case_env("cognito-shared", tmp_path)
    hooks = Path(env["LAKEHUB_CONFIG_D"])
    hooks.mkdir()
    (hooks / "50-site.py").write_text("c.Spawner.start_timeout = 7\n")
    got = snapshots.load_in_subprocess(env, tmp_path)
    assert got["Spawner"].pop("start_timeout") == 7
    expected = json.loads(json.dumps(GOLDEN["cognito-shared"]))
    expected["Spawner"].pop("start_timeout")
    assert got == expected
