"""What the hub configuration sets, as plain JSON, for sample environments.

`snapshot(config)` turns a traitlets Config (every section, every value) into JSON-able data:
classes by name and base names, bytes as hex, lazy values (`.append` on an unset list) as their
operations, callables by name (the groups-claim lambda also by what it returns for a sample).
Paths and addresses that differ from run to run are replaced by placeholders.

CASES are representative environments (shared/per-user, cognito/oidc/ldap, AWS/emulator).
`hub_config_golden.json` holds their snapshots as recorded from the hub configuration before it
became functions (the whole-file jupyterhub_config.py, loaded by JupyterHub's own loader):

    python tests/hub/hub_config_snapshot.py record tests/hub/hub_config_golden.json

`python tests/hub/hub_config_snapshot.py load CASE` prints one case's snapshot as the real entry
file gives it (a subprocess, as `jupyterhub -f` loads it).
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "hub_images" / "jupyterhub_config.py"

SAMPLE_AUTH_STATE = {"oauth_user": {"cognito:groups": ["from-cognito"], "groups": ["from-groups"], "roles": ["from-roles"]}}
# A fixed auth state key in the state folder, so the no-cookie-secret case is reproducible.
FIXED_AUTH_STATE_KEY = "ab" * 32
PER_USER_CASES = {"per-user-emulator", "per-user-kept"}

COGNITO = {
    "LAKEHUB_AUTH_MODE": "cognito",
    "LAKEHUB_COGNITO_DOMAIN": "https://acme-lakehub.auth.eu-west-1.amazoncognito.com",
    "LAKEHUB_OAUTH_CLIENT_ID": "cognito-client-id",
    "LAKEHUB_OAUTH_CLIENT_SECRET": "sample-not-a-secret",
}
OIDC = {
    "LAKEHUB_AUTH_MODE": "oidc",
    "LAKEHUB_OIDC_ISSUER": "https://login.example.com/realms/acme",
    "LAKEHUB_OIDC_AUTHORIZE_URL": "https://login.example.com/realms/acme/auth",
    "LAKEHUB_OIDC_TOKEN_URL": "https://login.example.com/realms/acme/token",
    "LAKEHUB_OIDC_USERINFO_URL": "https://login.example.com/realms/acme/userinfo",
    "LAKEHUB_OAUTH_CLIENT_ID": "oidc-client-id",
    "LAKEHUB_OAUTH_CLIENT_SECRET": "sample-not-a-secret",
    "LAKEHUB_OIDC_GROUPS_CLAIM": "roles",
}
LDAP = {
    "LAKEHUB_AUTH_MODE": "ldap",
    "LAKEHUB_LDAP_URL": "ldaps://ldap.example.com:636",
    "LAKEHUB_LDAP_USER_SEARCH_BASE": "ou=people,dc=example,dc=com",
    "LAKEHUB_LDAP_BIND_DN": "cn=jupyterhub,ou=services,dc=example,dc=com",
    "LAKEHUB_LDAP_BIND_PASSWORD": "sample-not-a-secret",
    "LAKEHUB_LDAP_GROUP_SEARCH_BASE": "ou=groups,dc=example,dc=com",
}
PER_USER = {
    "LAKEHUB_SERVER_MODE": "per-user",
    "LAKEHUB_CLUSTER": "lakehub-cluster",
    "LAKEHUB_USER_TASK_DEFINITION": "lakehub-pii-user",
    "LAKEHUB_USER_SUBNETS": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "LAKEHUB_USER_SECURITY_GROUPS": "sg-0123456789abcdef0",
}
COOKIE = {"LAKEHUB_COOKIE_SECRET": "any string from secrets manager"}

# name -> the variables on top of base_env(); "{emulator}" is the moto server's address.
CASES: dict[str, dict] = {
    "cognito-shared": {**COGNITO, **COOKIE},
    "cognito-no-cookie-secret": {**COGNITO, "LAKEHUB_IDLE_TIMEOUT": "0", "LAKEHUB_KEEP_ENV": "EXTRA_ONE, EXTRA_TWO"},
    "cognito-emulator-s3-metrics": {
        **COGNITO,
        **COOKIE,
        "LAKEHUB_S3_ENDPOINT_URL": "http://127.0.0.1:5000",
        "LAKEHUB_DATA_BUCKET": "acme-lake",
        "LAKEHUB_DATA_PREFIXES": "pii/, shared/",
        "LAKEHUB_PLATFORM": "acme",
        "LAKEHUB_METRICS_INTERVAL": "30",
        "LAKEHUB_CLOUDWATCH_ENDPOINT_URL": "http://127.0.0.1:5001",
        "LAKEHUB_HUB_PORT": "9000",
        "LAKEHUB_HUB_IP": "127.0.0.1",
        "LAKEHUB_MEMBERSHIP_CHECK_SECONDS": "60",
        "AWS_ACCESS_KEY_ID": "testing",
        "LAKEHUB_UNIX_USER_PREFIX": "u_",
        "LAKEHUB_COGNITO_USERNAME_CLAIM": "email",
    },
    "cognito-tier-role": {
        **COGNITO,
        **COOKIE,
        "LAKEHUB_TIER_ROLE_ARN": "arn:aws:iam::123456789012:role/lakehub-pii-data",
        "LAKEHUB_PLATFORM": "acme",
        "LAKEHUB_METRICS": "off",
    },
    "cognito-old-user-role": {**COGNITO, **COOKIE, "LAKEHUB_USER_ROLE_ARN": "arn:aws:iam::123456789012:role/old-user"},
    "oidc-explicit": {
        **OIDC,
        **COOKIE,
        "LAKEHUB_ADMIN_GROUPS": "platform-admins, ops",
        "LAKEHUB_OIDC_LOGOUT_URL": "https://login.example.com/logout",
        "LAKEHUB_LOGIN_SERVICE": "Acme SSO",
    },
    "oidc-id-token": {
        **{k: v for k, v in OIDC.items() if k != "LAKEHUB_OIDC_USERINFO_URL"},
        **COOKIE,
        "LAKEHUB_OIDC_USERDATA_FROM_ID_TOKEN": "yes",
        "LAKEHUB_OIDC_SCOPES": "openid, email",
        "LAKEHUB_OIDC_USERNAME_CLAIM": "email",
    },
    "ldap-lookup": {
        **LDAP,
        **COOKIE,
        "LAKEHUB_ADMIN_GROUPS": "cn=admins,ou=groups,dc=example,dc=com",
        "LAKEHUB_LDAP_USER_ATTRIBUTE": "sAMAccountName",
    },
    "ldap-starttls-template": {
        **LDAP,
        "LAKEHUB_LDAP_URL": "ldap://ldap.example.com",
        "LAKEHUB_LDAP_STARTTLS": "true",
        "LAKEHUB_LDAP_BIND_DN_TEMPLATE": "uid={username},ou=people,dc=example,dc=com",
        "LAKEHUB_LDAP_CA_FILE": "{ca_file}",
        "LAKEHUB_LOGIN_SERVICE": "Acme LDAP",
    },
    "ldap-loopback-plaintext": {**LDAP, "LAKEHUB_LDAP_URL": "ldap://127.0.0.1:3890", "LAKEHUB_LDAP_ALLOW_PLAINTEXT": "1"},
    "per-user-emulator": {
        **COGNITO,
        **COOKIE,
        **PER_USER,
        "LAKEHUB_ECS_ENDPOINT_URL": "{emulator}",
        "LAKEHUB_HUB_CONNECT_URL": "http://10.0.0.5:8081",
        "LAKEHUB_PLATFORM": "acme",
    },
    "per-user-kept": {
        **OIDC,
        **COOKIE,
        **PER_USER,
        "LAKEHUB_ECS_ENDPOINT_URL": "{emulator}",
        "LAKEHUB_HUB_STATE_BUCKET": "acme-hub-state",
        "LAKEHUB_IDLE_TIMEOUT": "600",
        "LAKEHUB_TIER_ROLE_ARN": "arn:aws:iam::123456789012:role/lakehub-pii-data",
    },
}


def base_env(tmp: Path) -> dict:
    return {
        "PATH": os.environ["PATH"],
        "LAKEHUB_TIER": "pii",
        "LAKEHUB_SERVER_MODE": "shared",
        "LAKEHUB_ALLOWED_GROUPS": "pii-analysts, pii-engineers",
        "LAKEHUB_NOTEBOOK_BUCKET": "acme-lakehub-notebooks",
        "LAKEHUB_NOTEBOOK_PREFIX": "tiers/pii/",
        "LAKEHUB_PUBLIC_URL": "https://pii.example.com/",
        "LAKEHUB_STATE_DIR": str(tmp / "state"),
        "LAKEHUB_IDLE_TIMEOUT": "1800",
        "AWS_REGION": "eu-west-1",
        "LAKEHUB_CONFIG_D": str(tmp / "no-hooks"),
    }


def case_env(name: str, tmp: Path, emulator: str = "", aws_env: dict | None = None) -> dict:
    """The environment of case `name` in the folder `tmp` (its state folder gets the fixed key)."""
    (tmp / "state").mkdir(parents=True, exist_ok=True)
    (tmp / "state" / "jupyterhub_auth_state_key").write_text(FIXED_AUTH_STATE_KEY)
    ca_file = tmp / "ca.pem"
    ca_file.write_text("not a real certificate\n")
    env = base_env(tmp)
    for key, value in CASES[name].items():
        env[key] = value.replace("{emulator}", emulator).replace("{ca_file}", str(ca_file))
    if name in PER_USER_CASES:
        env.update({k: v for k, v in (aws_env or {}).items() if k != "AWS_ENDPOINT_URL"})
    return env


# --------------------------------------------------------------------------------------------
# serialising a Config
# --------------------------------------------------------------------------------------------
def _class(cls: type) -> dict:
    return {"class": cls.__name__, "bases": [b.__name__ for b in cls.__mro__[1:] if b is not object]}


def _value(value, placeholders):
    from traitlets.config import Config
    from traitlets.config.loader import LazyConfigValue

    if isinstance(value, (Config, dict)):
        return {str(k): _value(v, placeholders) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, LazyConfigValue):
        return {"<lazy>": _value(value.to_dict(), placeholders)}
    if isinstance(value, (list, tuple)):
        return [_value(v, placeholders) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_value(v, placeholders) for v in value)
    if isinstance(value, bytes):
        return "bytes:" + value.hex()
    if isinstance(value, type):
        return _class(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, str):
        for real, placeholder in placeholders:
            value = value.replace(real, placeholder)
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if callable(value):
        name = getattr(value, "__name__", type(value).__name__)
        if name == "<lambda>":
            return {"callable": name, "sample": _value(value(SAMPLE_AUTH_STATE), placeholders)}
        return {"callable": name}
    return {"repr": type(value).__name__}


def snapshot(config, tmp: Path, emulator: str = "") -> dict:
    """Every section and value of `config`, with run-dependent strings replaced."""
    placeholders = [(str(tmp), "<tmp>"), (str(ROOT), "<root>"), (sys.executable, "<python>"), (os.environ["PATH"], "<PATH>")]
    if emulator:
        placeholders.insert(0, (emulator, "<emulator>"))
    placeholders.sort(key=lambda p: -len(p[0]))
    return _value(config, placeholders)


# --------------------------------------------------------------------------------------------
# the entry file, loaded as `jupyterhub -f` loads it (in this process: run it in a subprocess)
# --------------------------------------------------------------------------------------------
def load_entry_file(config_file: Path = CONFIG):
    from jupyterhub.app import JupyterHub

    app = JupyterHub()
    app.load_config_file(str(config_file))
    return app.config


def load_in_subprocess(env: dict, tmp: Path, emulator: str = "") -> dict:
    """The entry file's snapshot for `env`, from a fresh process."""
    env = dict(env, SNAPSHOT_TMP=str(tmp), SNAPSHOT_EMULATOR=emulator)
    result = subprocess.run(
        [sys.executable, __file__, "load-env"], env=env, capture_output=True, text=True, timeout=120, cwd=str(ROOT)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("SNAPSHOT ")][-1]
    return json.loads(line.split(" ", 1)[1])


def record(out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from lakehub.local.emulator import start_moto_server

    golden = {}
    with tempfile.TemporaryDirectory(prefix="hub-config-golden-") as work:
        server = start_moto_server(log_path=Path(work) / "moto.log")
        try:
            for name in CASES:
                tmp = Path(work) / name
                tmp.mkdir()
                env = case_env(name, tmp, server.endpoint_url, server.client_env())
                started = time.monotonic()
                golden[name] = load_in_subprocess(env, tmp, server.endpoint_url)
                print(f"recorded {name} in {time.monotonic() - started:.1f} s", file=sys.stderr)
        finally:
            server.stop()
    out.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "record":
        record(Path(sys.argv[2]))
    elif command == "load-env":
        tmp, emulator = Path(os.environ.pop("SNAPSHOT_TMP")), os.environ.pop("SNAPSHOT_EMULATOR")
        print("SNAPSHOT " + json.dumps(snapshot(load_entry_file(), tmp, emulator)))
    else:
        sys.exit(f"unknown command {command!r}: record OUT | load-env")
