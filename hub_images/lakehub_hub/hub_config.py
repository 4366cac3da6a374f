"""The hub configuration: one image for every tier, configured at run time.

Every value comes from an environment variable that the tier's ECS task definition sets (secrets
through ECS Secrets). The variables, their defaults and meaning are listed in docs/HUB_ENV.md;
keep that table and this module in step.

`configure(c, env, here)` fills JupyterHub's config object `c` from the mapping `env` (the hub's
os.environ), one function per concern, in this order:

  1. read_settings: read and check the shared settings
  2. configure_hub: hub, proxy and state
  3. configure_authenticator: sign-in (cognito | oidc | ldap), tier authorization by group, and
     membership re-checks
  4. configure_spawner: user servers, one Unix user per data scientist (shared mode) or one task
     each (per-user); configure_user_credentials: users' AWS sessions
  5. configure_services: idle culler, metrics exporter (CloudWatch), stop reasons

A mistake in the settings raises HubConfigError (one line); hub_images/jupyterhub_config.py turns
it into that line on stderr and exit 2, then runs the site hooks (jupyterhub_config.d/*.py).
`here` is the folder of jupyterhub_config.py (/etc/jupyterhub in the image): the page templates,
the single-user config and the hooks live beside it.

Per-user mode hands over to lakehub_hub.fargate.configure_per_user_hub, which reads os.environ
itself: there, `env` must be os.environ.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import re
import shutil
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from lakehub_hub.contract import DEFAULT_SERVER_MODE, PER_USER, SERVER_MODES, SHARED

ENV_DOC = "docs/HUB_ENV.md"
IMAGE_CONFIG_DIR = Path("/etc/jupyterhub")
AUTH_MODES = ("cognito", "oidc", "ldap")
# API tokens a user makes (token page, REST API) live at most this long; a removed user's tokens
# are revoked at once anyway.
TOKEN_MAX_AGE_SECONDS = 7 * 24 * 3600
USER_TMP = ".tmp"  # under the home: TMPDIR of the user's server (shared mode)


class HubConfigError(Exception):
    """A mistake in the tier's settings: one line, never a traceback."""

    def __str__(self) -> str:
        return f"{self.args[0]} (see {ENV_DOC})"


def fail(message: str):
    raise HubConfigError(message)


# --------------------------------------------------------------------------------------------
# reading the environment
# --------------------------------------------------------------------------------------------
class Env:
    """Typed reads of the hub's environment; a bad value raises HubConfigError."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def required(self, name: str, meaning: str) -> str:
        value = self.environ.get(name, "").strip()
        if not value:
            fail(f"missing required environment variable {name} ({meaning}); set it in the tier's task definition")
        return value

    def optional(self, name: str, default: str = "") -> str:
        value = self.environ.get(name, "").strip()
        return value if value else default

    def as_int(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.optional(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            fail(f"{name} must be a whole number, got {raw!r}")
        if value < minimum:
            fail(f"{name} must be at least {minimum}, got {value}")
        return value

    def as_bool(self, name: str, default: bool = False) -> bool:
        raw = self.optional(name, "true" if default else "false").lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        fail(f"{name} must be true or false, got {raw!r}")


def as_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def ldap_group_list(name: str, value: str) -> list[str]:
    """LDAP groups: names (`cn=<name>,<group search base>`) and full DNs. A DN holds commas, so
    a list with DNs separates its entries with ';' ("pii-analysts; cn=ops,ou=teams,dc=example,dc=org");
    without ';' the value is comma-separated names, or one DN. A value that reads as names and a DN
    run together, or as two DNs (a cn= after dc=: domain components end a DN), is refused."""
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    groups = []
    for entry in value.split(";") if ";" in value else [value]:
        pieces = [p.strip() for p in UNESCAPED_COMMA.split(entry)]
        if not any("=" in p for p in pieces):
            groups += [p for p in pieces if p]
            continue
        if not all("=" in p for p in pieces if p):
            fail(
                f"{name} {entry.strip()!r} mixes group names and a DN; separate DNs with ';' (e.g. analysts; cn=admins,ou=groups,dc=example,dc=org)"
            )
        dn = ",".join(pieces)
        try:
            types = [attr.lower() for attr, _value, _sep in parse_dn(dn)]
        except LDAPInvalidDnError as e:
            fail(f"{name} {dn!r} is not a valid DN ({e}); write it as cn=<group>,ou=groups,dc=example,dc=org")
        after_dc = types[types.index("dc") :] if "dc" in types else []
        if any(t != "dc" for t in after_dc):
            again = next(t for t in after_dc if t != "dc")
            fail(f"{name} {dn!r} reads as more than one DN (a {again}= after dc=); separate DNs with ';'")
        groups.append(dn)
    return groups


def https_url(name: str, value: str, allow_http_loopback: bool = True) -> str:
    """An absolute URL without a trailing slash; plain http only on loopback (tests, local mode)."""
    parsed = urllib.parse.urlparse(value)
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        fail(f"{name} must be an absolute https:// URL, got {value!r}")
    if parsed.scheme == "http" and not (allow_http_loopback and loopback):
        fail(f"{name} must use https:// (plain http is only accepted on loopback), got {value!r}")
    return value.rstrip("/")


def cull_every(timeout: int) -> int:
    """The idle culler's round (seconds) for a timeout: half of it, 5 s to 5 minutes."""
    return max(5, min(300, timeout // 2))


def server_idle_timeout(timeout: int) -> int:
    """When a per-user server ends itself: after the culler would have stopped it (0: never)."""
    return timeout + 2 * cull_every(timeout) if timeout > 0 else 0


@dataclass
class Settings:
    """What more than one concern needs, read and checked once."""

    env: Env
    here: Path
    tier: str
    auth_mode: str
    allowed_groups: list[str]
    admin_groups: list[str]
    notebook_bucket: str
    notebook_prefix: str
    public_url: str
    data_bucket: str
    data_prefixes: list[str]
    hub_ip: str
    hub_port: int
    idle_timeout: int
    server_mode: str
    state_dir: Path
    s3_endpoint_url: str
    aws_region: str
    home_root: Path
    unix_user_prefix: str
    singleuser_config_dir: Path
    extra_keep_env: list[str]
    cookie_secret: str

    def user_env(self) -> dict[str, str]:
        """Non-secret settings the single-user servers need (see singleuser/jupyter_server_config.py)."""
        env = {
            "LAKEHUB_TIER": self.tier,
            "LAKEHUB_NOTEBOOK_BUCKET": self.notebook_bucket,
            "LAKEHUB_NOTEBOOK_PREFIX": self.notebook_prefix,
            "LAKEHUB_DATA_BUCKET": self.data_bucket,
            "LAKEHUB_DATA_PREFIXES": ",".join(self.data_prefixes),
            "AWS_REGION": self.aws_region,
            "AWS_DEFAULT_REGION": self.aws_region,
        }
        if self.s3_endpoint_url:
            env["LAKEHUB_S3_ENDPOINT_URL"] = self.s3_endpoint_url
            # boto3, s3fs and pandas in users' notebooks read this one (botocore's service endpoint variable).
            env["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint_url
        return env

    def refusal(self) -> str:
        return (
            f"Your account is not a member of a group allowed into the '{self.tier}' tier "
            f"({', '.join(self.allowed_groups)}). Ask your administrator to add you to one of them, "
            "or sign in to the tier you belong to."
        )


def read_settings(environ: Mapping[str, str], here: Path) -> Settings:
    """The settings every tier has, checked in this order (the first mistake is the one reported)."""
    env = Env(environ)
    tier = env.required("LAKEHUB_TIER", "the tier name, e.g. pii")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", tier):
        fail(f"LAKEHUB_TIER must be lower-case letters, digits and dashes, got {tier!r}")
    auth_mode = env.required("LAKEHUB_AUTH_MODE", "how users sign in: cognito, oidc or ldap").lower()
    if auth_mode not in AUTH_MODES:
        fail(f"LAKEHUB_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, got {auth_mode!r}")
    groups = ldap_group_list if auth_mode == "ldap" else (lambda _name, value: as_list(value))
    allowed_groups = groups(
        "LAKEHUB_ALLOWED_GROUPS", env.required("LAKEHUB_ALLOWED_GROUPS", "comma-separated groups allowed into this tier")
    )
    admin_groups = groups("LAKEHUB_ADMIN_GROUPS", env.optional("LAKEHUB_ADMIN_GROUPS"))
    notebook_bucket = env.required("LAKEHUB_NOTEBOOK_BUCKET", "the S3 bucket that holds notebooks")
    notebook_prefix = env.required("LAKEHUB_NOTEBOOK_PREFIX", "the tier's root in the notebook bucket, e.g. tiers/pii").strip("/")
    public_url = https_url(
        "LAKEHUB_PUBLIC_URL",
        env.required("LAKEHUB_PUBLIC_URL", "the tier's address, e.g. https://pii.example.com"),
    )
    data_bucket = env.optional("LAKEHUB_DATA_BUCKET")
    data_prefixes = as_list(env.optional("LAKEHUB_DATA_PREFIXES"))
    hub_ip = env.optional("LAKEHUB_HUB_IP", "0.0.0.0")
    hub_port = env.as_int("LAKEHUB_HUB_PORT", 8000, minimum=1)
    idle_timeout = env.as_int("LAKEHUB_IDLE_TIMEOUT", 3600)
    server_mode = env.optional("LAKEHUB_SERVER_MODE", DEFAULT_SERVER_MODE).lower()
    if server_mode not in SERVER_MODES:
        fail(f"LAKEHUB_SERVER_MODE must be one of {', '.join(SERVER_MODES)}, got {server_mode!r}")
    state_dir = Path(env.optional("LAKEHUB_STATE_DIR", "/srv/jupyterhub"))
    s3_endpoint_url = env.optional("LAKEHUB_S3_ENDPOINT_URL")
    aws_region = env.optional("AWS_REGION", env.optional("AWS_DEFAULT_REGION", "us-east-1"))
    home_root = Path(env.optional("LAKEHUB_HOME_ROOT", "/home"))
    unix_user_prefix = env.optional("LAKEHUB_UNIX_USER_PREFIX", "lh-")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,15}", unix_user_prefix):
        fail(f"LAKEHUB_UNIX_USER_PREFIX must start with a letter and be at most 16 characters, got {unix_user_prefix!r}")
    singleuser_config_dir = Path(env.optional("LAKEHUB_SINGLEUSER_CONFIG_DIR", str(here / "singleuser")))
    extra_keep_env = as_list(env.optional("LAKEHUB_KEEP_ENV"))
    # Any string from Secrets Manager, taken as it is (not stripped).
    cookie_secret = environ.get("LAKEHUB_COOKIE_SECRET", "")
    return Settings(
        env=env, here=here, tier=tier, auth_mode=auth_mode, allowed_groups=allowed_groups,
        admin_groups=admin_groups, notebook_bucket=notebook_bucket, notebook_prefix=notebook_prefix,
        public_url=public_url, data_bucket=data_bucket, data_prefixes=data_prefixes, hub_ip=hub_ip,
        hub_port=hub_port, idle_timeout=idle_timeout, server_mode=server_mode, state_dir=state_dir,
        s3_endpoint_url=s3_endpoint_url, aws_region=aws_region, home_root=home_root,
        unix_user_prefix=unix_user_prefix, singleuser_config_dir=singleuser_config_dir,
        extra_keep_env=extra_keep_env, cookie_secret=cookie_secret,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# hub, proxy, state
# --------------------------------------------------------------------------------------------
def configure_hub(c, s: Settings) -> None:
    c.JupyterHub.ip = s.hub_ip
    c.JupyterHub.port = s.hub_port
    # The ALB terminates TLS and forwards to the hub's port; public_url is what users (and the
    # OAuth provider's redirect) see.
    c.JupyterHub.public_url = s.public_url + "/"  # with JupyterHub's base_url, /
    # The hub's own REST API: user servers in this task reach it on loopback; per-user servers run
    # in other tasks and need it on the task's address.
    c.JupyterHub.hub_ip = "127.0.0.1" if s.server_mode == SHARED else "0.0.0.0"
    try:
        s.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create LAKEHUB_STATE_DIR {s.state_dir}: {exc.strerror}")
    c.JupyterHub.db_url = f"sqlite:///{s.state_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.pid_file = str(s.state_dir / "jupyterhub.pid")
    # A new JupyterHub release may bring a new database schema: upgrade it on start (an image
    # update is the only way a release arrives). JupyterHub first copies the SQLite file beside it
    # (jupyterhub.sqlite.<timestamp>); Litestream (lakehub_hub.hub_state) keeps replicating the
    # same file, so the replica's history also holds the pre-upgrade state. Without this a hub
    # started on an older database refuses to start ("Found database schema version ...").
    c.JupyterHub.upgrade_db = True
    if s.cookie_secret:
        # Any string from Secrets Manager; JupyterHub wants 32 random bytes.
        c.JupyterHub.cookie_secret = hashlib.sha256(s.cookie_secret.encode()).digest()
    else:
        # Development: a secret generated on first start (sessions end with the state folder). A
        # replaced hub keeps its users signed in only with LAKEHUB_COOKIE_SECRET (the tier's secret).
        c.JupyterHub.cookie_secret_file = str(s.state_dir / "jupyterhub_cookie_secret")
    # configurable-http-proxy is started by the hub (on PATH); its API stays on loopback.
    c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
    c.ConfigurableHTTPProxy.should_start = True
    # Shared mode: users' servers are processes in the hub task and cannot outlive it, so a hub
    # stop stops them. Per-user mode: configure_per_user_hub keeps them when the database persists
    # (LAKEHUB_HUB_STATE_BUCKET: restored and replicated by lakehub_hub.hub_state, the task's command).
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.template_vars = {"lakehub_tier": s.tier}
    # lakehub's page templates extend JupyterHub's (home.html: why a server stopped, per-user mode).
    c.JupyterHub.template_paths = [str(s.here / "templates")]
    c.JupyterHub.shutdown_on_logout = False


# --------------------------------------------------------------------------------------------
# sign-in and tier authorization
# --------------------------------------------------------------------------------------------
def auth_state_key(s: Settings) -> bytes:
    """32 bytes for JupyterHub's CryptKeeper (auth state holds each user's refresh token). Derived
    from the cookie secret the platform generates (HMAC-SHA256 with its own label, so neither key
    reveals the other); without one, generated once into the state folder like the cookie secret."""
    if s.cookie_secret:
        return hmac.new(s.cookie_secret.encode(), b"lakehub auth state key", hashlib.sha256).digest()
    path = s.state_dir / "jupyterhub_auth_state_key"
    try:
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex())
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        fail(f"cannot read or create the auth state key {path}: {exc}; set LAKEHUB_AUTH_STATE_SECRET")


def configure_oauth(c, s: Settings, membership_check_seconds: int, *, authorize_url, token_url, userdata_url,
                    groups_claim, username_claim, from_id_token, scopes, login_service, logout_url="") -> None:  # fmt: skip
    from lakehub_hub.membership import oauth_authenticator_class, with_membership_checks

    # Membership is re-checked with the refresh token kept (encrypted) in each user's auth state.
    c.JupyterHub.authenticator_class = with_membership_checks(oauth_authenticator_class(), membership_check_seconds)
    c.Authenticator.enable_auth_state = True
    c.CryptKeeper.keys = [auth_state_key(s)]
    a = c.GenericOAuthenticator
    a.client_id = s.env.required("LAKEHUB_OAUTH_CLIENT_ID", "the OAuth app client id")
    a.client_secret = s.env.required("LAKEHUB_OAUTH_CLIENT_SECRET", "the OAuth app client secret, an ECS Secret")
    a.oauth_callback_url = f"{s.public_url}/hub/oauth_callback"
    a.authorize_url = authorize_url
    a.token_url = token_url
    if from_id_token:
        # Groups come from the id_token the hub receives directly from the token endpoint over TLS.
        a.userdata_from_id_token = True
    else:
        a.userdata_url = userdata_url
    a.username_claim = username_claim
    a.scope = scopes
    a.login_service = login_service
    # Tier authorization: group memberships from the claim become JupyterHub groups, and only
    # members of the allowed (or admin) groups get in.
    a.manage_groups = True
    a.auth_state_groups_key = lambda auth_state: list((auth_state.get("oauth_user") or {}).get(groups_claim) or [])
    a.allowed_groups = set(s.allowed_groups)
    a.admin_groups = set(s.admin_groups)
    a.custom_403_message = s.refusal()
    if logout_url:
        a.logout_redirect_url = logout_url


def discover(issuer: str) -> dict:
    """The provider's endpoints from its discovery document (bounded wait, one-line failure)."""
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            doc = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        fail(
            f"cannot read the OpenID Connect discovery document {url}: {getattr(exc, 'reason', exc)}; "
            "check LAKEHUB_OIDC_ISSUER, or set LAKEHUB_OIDC_AUTHORIZE_URL, LAKEHUB_OIDC_TOKEN_URL "
            "and LAKEHUB_OIDC_USERINFO_URL to skip discovery"
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint") if k not in doc]
    if missing:
        fail(f"the discovery document {url} has no {', '.join(missing)}")
    return doc


def configure_cognito(c, s: Settings, membership_check_seconds: int) -> None:
    env = s.env
    domain = https_url("LAKEHUB_COGNITO_DOMAIN", env.required(
        "LAKEHUB_COGNITO_DOMAIN", "the user pool's hosted domain, https://<prefix>.auth.<region>.amazoncognito.com"))  # fmt: skip
    client_id = env.optional("LAKEHUB_OAUTH_CLIENT_ID")
    configure_oauth(
        c, s, membership_check_seconds,
        authorize_url=f"{domain}/oauth2/authorize",
        token_url=f"{domain}/oauth2/token",
        userdata_url=f"{domain}/oauth2/userInfo",
        # Cognito puts group membership in the id_token only (not in /oauth2/userInfo).
        groups_claim="cognito:groups",
        username_claim=env.optional("LAKEHUB_COGNITO_USERNAME_CLAIM", "cognito:username"),
        from_id_token=True,
        scopes=["openid", "email", "profile"],
        login_service=env.optional("LAKEHUB_LOGIN_SERVICE", "your organisation's account"),
        logout_url=(f"{domain}/logout?client_id={urllib.parse.quote(client_id)}"
                    f"&logout_uri={urllib.parse.quote(s.public_url + '/hub/login', safe='')}"),
    )  # fmt: skip


def configure_oidc(c, s: Settings, membership_check_seconds: int) -> None:
    env = s.env
    issuer = https_url("LAKEHUB_OIDC_ISSUER", env.required("LAKEHUB_OIDC_ISSUER", "the OpenID Connect issuer URL"))
    endpoints = {
        "authorization_endpoint": env.optional("LAKEHUB_OIDC_AUTHORIZE_URL"),
        "token_endpoint": env.optional("LAKEHUB_OIDC_TOKEN_URL"),
        "userinfo_endpoint": env.optional("LAKEHUB_OIDC_USERINFO_URL"),
    }
    from_id_token = env.as_bool("LAKEHUB_OIDC_USERDATA_FROM_ID_TOKEN", False)
    needed = ["authorization_endpoint", "token_endpoint"] + ([] if from_id_token else ["userinfo_endpoint"])
    if not all(endpoints[k] for k in needed):
        found = discover(issuer)
        endpoints = {k: endpoints[k] or found.get(k, "") for k in endpoints}
        if not from_id_token and not endpoints["userinfo_endpoint"]:
            fail(f"the provider at {issuer} has no userinfo_endpoint; set LAKEHUB_OIDC_USERDATA_FROM_ID_TOKEN=true")
    configure_oauth(
        c, s, membership_check_seconds,
        authorize_url=endpoints["authorization_endpoint"],
        token_url=endpoints["token_endpoint"],
        userdata_url=endpoints["userinfo_endpoint"],
        groups_claim=env.optional("LAKEHUB_OIDC_GROUPS_CLAIM", "groups"),
        username_claim=env.optional("LAKEHUB_OIDC_USERNAME_CLAIM", "preferred_username"),
        from_id_token=from_id_token,
        scopes=as_list(env.optional("LAKEHUB_OIDC_SCOPES", "openid,profile,email,groups")),
        login_service=env.optional("LAKEHUB_LOGIN_SERVICE", "your organisation's account"),
        logout_url=env.optional("LAKEHUB_OIDC_LOGOUT_URL"),
    )  # fmt: skip


def configure_ldap(c, s: Settings, membership_check_seconds: int) -> None:
    from ldapauthenticator import LDAPAuthenticator
    from tornado import web

    from lakehub_hub.membership import ldap_membership, with_membership_checks

    env = s.env
    ldap_url = urllib.parse.urlparse(
        env.required("LAKEHUB_LDAP_URL", "ldaps://host:636, or ldap://host:389 with LAKEHUB_LDAP_STARTTLS=true")
    )
    if ldap_url.scheme not in ("ldap", "ldaps") or not ldap_url.hostname:
        fail(f"LAKEHUB_LDAP_URL must look like ldaps://host:636 or ldap://host:389, got {ldap_url.geturl()!r}")
    starttls = env.as_bool("LAKEHUB_LDAP_STARTTLS", False)
    insecure = env.as_bool("LAKEHUB_LDAP_ALLOW_PLAINTEXT", False)
    if ldap_url.scheme == "ldaps":
        tls_strategy = "on_connect"
    elif starttls:
        tls_strategy = "before_bind"
    elif insecure and ldap_url.hostname in ("127.0.0.1", "localhost", "::1"):
        tls_strategy = "insecure"  # loopback tests only: passwords never cross a network
    else:
        fail("LAKEHUB_LDAP_URL is ldap:// without TLS; use ldaps://, or set LAKEHUB_LDAP_STARTTLS=true")
    group_base = env.optional("LAKEHUB_LDAP_GROUP_SEARCH_BASE")

    def group_dn(name):
        if "=" in name:
            return name  # already a DN
        if not group_base:
            fail(
                f"LAKEHUB_ALLOWED_GROUPS/LAKEHUB_ADMIN_GROUPS name {name!r} is not a DN; "
                "set LAKEHUB_LDAP_GROUP_SEARCH_BASE (e.g. ou=groups,dc=example,dc=org) or give full DNs"
            )
        return f"cn={name},{group_base}"

    allowed_dns = [group_dn(g) for g in s.allowed_groups]
    admin_dns = [group_dn(g) for g in s.admin_groups]
    refusal = s.refusal()
    bind = {}  # the service account, read below (after the server's settings, as before)

    class LakehubLDAPAuthenticator(LDAPAuthenticator):
        """LDAPAuthenticator that says why a correct password is refused, and maps admin groups."""

        async def authenticate(self, handler, data):
            model = await super().authenticate(handler, data)
            if model:
                groups = set((model.get("auth_state") or {}).get("ldap_groups") or [])
                if admin_dns:
                    model["admin"] = bool(groups & set(admin_dns))
            return model

        async def check_allowed(self, username, auth_model):
            groups = set(((auth_model or {}).get("auth_state") or {}).get("ldap_groups") or [])
            if groups & (set(allowed_dns) | set(admin_dns)):
                return True
            self.log.warning("refused %s: not in %s", username, ", ".join(allowed_dns))
            raise web.HTTPError(403, refusal)

        async def lakehub_membership(self, user):
            # The service account looks the user's groups up (the user's password is not kept).
            return await ldap_membership(self, user, bind["dn"], bind["password"], admin_dns)

    c.JupyterHub.authenticator_class = with_membership_checks(LakehubLDAPAuthenticator, membership_check_seconds)
    a = c.LakehubLDAPAuthenticator
    a.server_address = ldap_url.hostname
    a.server_port = ldap_url.port or (636 if ldap_url.scheme == "ldaps" else 389)
    a.tls_strategy = tls_strategy
    tls_kwargs = {"validate": ssl.CERT_REQUIRED}
    ca_file = env.optional("LAKEHUB_LDAP_CA_FILE")
    if ca_file:
        if not os.path.isfile(ca_file):
            fail(f"LAKEHUB_LDAP_CA_FILE {ca_file} does not exist")
        tls_kwargs["ca_certs_file"] = ca_file
    a.tls_kwargs = tls_kwargs
    template = env.optional("LAKEHUB_LDAP_BIND_DN_TEMPLATE")
    # The service account looks users up (without a template) and re-checks group membership.
    bind["dn"] = env.required("LAKEHUB_LDAP_BIND_DN", "the service account DN that looks users and their groups up")
    bind["password"] = env.required("LAKEHUB_LDAP_BIND_PASSWORD", "the service account password, an ECS Secret")
    if template:
        # Direct bind: uid={username},ou=people,dc=example,dc=org
        a.bind_dn_template = [template]
    else:
        # Look the user up with a service account (Active Directory style).
        a.lookup_dn = True
        a.user_search_base = env.required("LAKEHUB_LDAP_USER_SEARCH_BASE", "where users live, e.g. ou=people,dc=example,dc=org")
        a.user_attribute = env.optional("LAKEHUB_LDAP_USER_ATTRIBUTE", "uid")
        a.lookup_dn_search_user = bind["dn"]
        a.lookup_dn_search_password = bind["password"]
        a.lookup_dn_user_dn_attribute = env.optional("LAKEHUB_LDAP_USER_ATTRIBUTE", "uid")
        a.escape_userdn = False
    a.allowed_groups = allowed_dns + admin_dns
    # Letters, digits, . _ - (user ids and sAMAccountNames); also keeps LDAP filter syntax out.
    a.valid_username_regex = r"^[A-Za-z][.A-Za-z0-9_-]{0,63}$"
    c.Authenticator.login_service = env.optional("LAKEHUB_LOGIN_SERVICE", "your directory account")


def configure_authenticator(c, s: Settings) -> None:
    # Removing someone from the tier's groups ends their access within this many seconds:
    # sessions, tokens and servers of that one user (lakehub_hub.membership). Also the age after
    # which a request re-checks its user, and every spawn re-checks first.
    membership_check_seconds = s.env.as_int("LAKEHUB_MEMBERSHIP_CHECK_SECONDS", 900, minimum=1)
    if membership_check_seconds > 3600:
        fail(f"LAKEHUB_MEMBERSHIP_CHECK_SECONDS must be at most 3600 (one hour), got {membership_check_seconds}")
    {"cognito": configure_cognito, "oidc": configure_oidc, "ldap": configure_ldap}[s.auth_mode](c, s, membership_check_seconds)
    # No user list, password or key lives in the image: group membership decides.
    c.Authenticator.allow_all = False
    c.Authenticator.allow_existing_users = False
    # Membership re-checks (lakehub_hub.membership): a request whose user was checked longer ago
    # than the interval checks again, every spawn checks first, and a user whose check says
    # "removed" is refused on API tokens too (strict), not only on browser sessions.
    c.Authenticator.auth_refresh_age = membership_check_seconds
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_strict = True
    if s.auth_mode == "ldap":
        c.Authenticator.enable_auth_state = False  # nothing to keep: the service account re-checks
    c.JupyterHub.token_expires_in_max_seconds = TOKEN_MAX_AGE_SECONDS


# --------------------------------------------------------------------------------------------
# user servers
# --------------------------------------------------------------------------------------------
def prepare_home_as_user(home: str) -> None:
    """In the server's process after it became the user, before the server starts: the folders
    the user's packages and temporary files go to. Running as the user, a link the user made can
    only lead where the user may write anyway. A fresh temporary folder per server start (as
    systemd's PrivateTmp gives a service)."""
    for folder in (".local", "R/library"):
        try:
            os.makedirs(os.path.join(home, folder), exist_ok=True)
        except OSError:
            pass  # the server still starts; pip/R say where they cannot write
    tmp = os.path.join(home, USER_TMP)
    shutil.rmtree(tmp, ignore_errors=True)  # (imported at the top: no import after fork)
    try:
        os.mkdir(tmp, 0o700)
    except OSError:
        pass


def configure_spawner(c, s: Settings) -> None:
    # What reaches a user server's environment. The container-credential variables are kept only
    # for a hub without LAKEHUB_TIER_ROLE_ARN (development: servers share the hub's credentials);
    # with it, configure_user_credentials drops every one of them (lakehub_hub.credentials).
    c.Spawner.env_keep = [
        "PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "ECS_CONTAINER_METADATA_URI_V4",
        "AWS_STS_REGIONAL_ENDPOINTS",
    ] + s.extra_keep_env  # fmt: skip
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 60
    if s.server_mode == PER_USER:
        configure_per_user_servers(c, s)
    else:
        configure_shared_servers(c, s)


def configure_per_user_servers(c, s: Settings) -> None:
    """One Fargate task per user: lakehub_hub.fargate.FargateSpawner, configured from its own
    variables (LAKEHUB_CLUSTER, LAKEHUB_USER_*; see that module). configure_per_user_hub sets the
    spawner class, the hub API address user tasks call back, the timeouts, keeps user tasks across
    a hub restart and stops orphan tasks; a missing setting raises HubConfigError through fail()."""
    from lakehub_hub.fargate import configure_per_user_hub

    # User tasks run this image too: the single-user config is at the same path there.
    # LAKEHUB_SERVER_IDLE_TIMEOUT: the server ends itself once idle while the hub is away (nightly
    # stop, replacement), as the idle culler would (singleuser/jupyter_server_config.py). A little
    # later than the culler (its timeout plus two of its rounds): while the hub runs, the culler
    # stops an idle server, and the user is told it was culled (lakehub_hub.stop_reasons).
    c.Spawner.environment = dict(
        s.user_env(),
        JUPYTER_CONFIG_PATH=str(s.singleuser_config_dir),
        LAKEHUB_SERVER_IDLE_TIMEOUT=str(server_idle_timeout(s.idle_timeout)),
    )
    configure_per_user_hub(c, fail=fail)


def configure_shared_servers(c, s: Settings) -> None:
    """One Unix user per data scientist, their servers processes in the hub's task."""
    from jupyterhub.spawner import LocalProcessSpawner

    from lakehub_hub.accounts import stable_uid, unix_username
    from lakehub_hub.stop_reasons import StopReasonState

    run_as_root = os.geteuid() == 0
    home_root, prefix = s.home_root, s.unix_user_prefix

    class UnixUserSpawner(StopReasonState, LocalProcessSpawner):
        """Runs each user's server as their own Unix user, created on first spawn.

        The hub runs as root only to create users and switch to them; user servers never run as
        root. Without root (developer machines) servers run as the hub's own user.
        """

        def _unix_name(self):
            return unix_username(self.user.name, prefix) if run_as_root else pwd.getpwuid(os.geteuid()).pw_name

        def ensure_unix_user(self):
            name = self._unix_name()
            if not run_as_root:
                return pwd.getpwnam(name)
            home = home_root / name
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                uid = stable_uid(name)
                taken = True
                try:
                    pwd.getpwuid(uid)
                except KeyError:
                    taken = False
                cmd = ["useradd", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group",
                       "--comment", f"lakehub {self.user.name}"[:60], "--no-create-home"]  # fmt: skip
                if not taken:
                    cmd += ["--uid", str(uid)]
                subprocess.run(cmd + [name], check=True, capture_output=True, timeout=30)
                entry = pwd.getpwnam(name)
            if entry.pw_dir != str(home):
                # LAKEHUB_HOME_ROOT moved (or the user predates it): follow it.
                subprocess.run(["usermod", "--home", str(home), name], check=True, capture_output=True, timeout=30)
                entry = pwd.getpwnam(name)
            if entry.pw_uid == 0:
                raise RuntimeError(f"refusing to run {self.user.name}'s server as root")
            # A private home. Root touches the home folder only (its parent, LAKEHUB_HOME_ROOT, is
            # root's, so a user cannot put a link in its place) and never follows a link: what is
            # inside the home is the user's, and is made as the user (prepare_home_as_user).
            try:
                home.mkdir(mode=0o700)
            except FileExistsError:
                pass
            st = os.lstat(home)
            if not stat.S_ISDIR(st.st_mode):
                raise RuntimeError(f"refusing to start {self.user.name}'s server: {home} is not a folder")
            if (st.st_uid, st.st_gid) != (entry.pw_uid, entry.pw_gid):
                os.chown(home, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(home, 0o700)  # a folder, not a link (checked above)
            return entry

        async def start(self):
            entry = self.ensure_unix_user()
            self._entry = entry
            self.forget_stop()
            return await super().start()

        async def stop(self, now=False):
            # Why the hub stops it (lakehub_hub.stop_reasons): the culler's stop is kept and shown,
            # the user's own clears the message.
            if self.pid:
                self.record_stop(self.take_requested_stop_reason())
            return await super().stop(now=now)

        async def poll(self):
            running = bool(self.pid)
            status = await super().poll()
            if running and status is not None:
                # Ended without the hub asking (a crash; SIGKILL -9 is often the out-of-memory
                # killer, which a process cannot tell apart from another SIGKILL).
                self.record_stop("other", f"the server process ended with status {status}")
            return status

        def make_preexec_fn(self, name):
            if not run_as_root:
                return None
            from jupyterhub.spawner import set_user_setuid

            become_user = set_user_setuid(self._unix_name())
            home = str(home_root / self._unix_name())

            def preexec():
                become_user()
                prepare_home_as_user(home)

            return preexec

        def user_env(self, env):
            entry = getattr(self, "_entry", None) or pwd.getpwnam(self._unix_name())
            env["USER"] = entry.pw_name
            env["HOME"] = entry.pw_dir
            env["SHELL"] = entry.pw_shell or "/bin/bash"
            # Users' own packages: pip install --user -> ~/.local, R -> ~/R/library.
            env["PYTHONUSERBASE"] = f"{entry.pw_dir}/.local"
            env["R_LIBS_USER"] = f"{entry.pw_dir}/R/library"
            if run_as_root:
                # A private temporary folder (Python's tempfile, R's tempdir(), most tools): the
                # host's /tmp is shared by every user, and may not be writable by them at all.
                env["TMPDIR"] = f"{entry.pw_dir}/{USER_TMP}"
                # Jupyter's runtime files (the server's and kernels' connection files) there too,
                # not under ~/.local/share/jupyter: a user who points ~/.local somewhere they cannot
                # write (`ln -s /etc ~/.local`) must still be able to start their server and undo it.
                env["JUPYTER_RUNTIME_DIR"] = f"{entry.pw_dir}/{USER_TMP}/jupyter-runtime"
            if sys.prefix == sys.base_prefix:
                env["PIP_USER"] = "1"  # in the image: `pip install x` lands in ~/.local
            return env

    c.JupyterHub.spawner_class = UnixUserSpawner
    # The hub's own interpreter runs the single-user server (no PATH surprises).
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    c.Spawner.notebook_dir = "~"
    c.Spawner.environment = dict(
        s.user_env(),
        # The single-user server's config (S3 contents) lives beside jupyterhub_config.py / in /etc/jupyter.
        JUPYTER_CONFIG_PATH=str(s.singleuser_config_dir),
        # R's reticulate uses the same Python (boto3) to read S3.
        RETICULATE_PYTHON=sys.executable,
    )


def configure_user_credentials(c, s: Settings) -> None:
    """Users' AWS credentials (every mode): the tier's data role, one session per user
    (SourceIdentity and the `lakehub-user` session tag = the user), served by the hub at
    <hub API>/lakehub/aws-credentials and relayed on each server's loopback (lakehub_hub.credentials,
    lakehub_hub.credential_relay). The hub's own role (ECS task role, or the on-demand hub's
    instance role, which only root reaches) never reaches a server. LAKEHUB_USER_ROLE_ARN is the
    name on-demand hub stacks launched before per-user scope set: their role's trust allows no
    session tags, so their sessions carry none."""
    env = s.env
    tier_role_arn = env.optional("LAKEHUB_TIER_ROLE_ARN") or env.optional("LAKEHUB_USER_ROLE_ARN")
    tag_sessions = bool(env.optional("LAKEHUB_TIER_ROLE_ARN"))
    if tier_role_arn:
        if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}", tier_role_arn):
            fail(f"LAKEHUB_TIER_ROLE_ARN must be an IAM role ARN, got {tier_role_arn!r}")
        from lakehub_hub.credentials import configure_user_credentials as configure_sessions

        configure_sessions(c, tier_role_arn, s.aws_region, tag_sessions=tag_sessions)
    elif env.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        # On ECS without it, servers would share the hub's role, which may assume the data role for anyone.
        fail("LAKEHUB_TIER_ROLE_ARN is not set: the hub cannot give users their own AWS session (the tier stack sets it)")


# --------------------------------------------------------------------------------------------
# services: idle culler, metrics exporter
# --------------------------------------------------------------------------------------------
def configure_services(c, s: Settings) -> None:
    # Why a server stopped (lakehub_hub.stop_reasons): the culler's stops are marked "cull" from
    # the request's owner (the idle-culler service), and admins (or `lakehub deploy`) stop the
    # servers on an old image with POST /hub/api/lakehub/drain (scope admin:servers), recorded as
    # "image-update".
    from lakehub_hub.stop_reasons import configure_hub as configure_stop_reasons

    configure_stop_reasons(c, culler_service="idle-culler")

    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []
    if s.idle_timeout > 0:
        c.JupyterHub.services.append(
            {
                "name": "idle-culler",
                "command": [
                    sys.executable, "-m", "jupyterhub_idle_culler",
                    f"--timeout={s.idle_timeout}",
                    f"--cull-every={cull_every(s.idle_timeout)}",
                ],
            }
        )  # fmt: skip
        c.JupyterHub.load_roles.append(
            {
                "name": "idle-culler",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": ["idle-culler"],
            }
        )
    configure_metrics(c, s)


def configure_metrics(c, s: Settings) -> None:
    """The metrics exporter (lakehub_hub.metrics): reads /hub/metrics and the users API once a
    LAKEHUB_METRICS_INTERVAL and sends them to CloudWatch (namespace lakehub, dimensions Platform
    and Tier) with the hub's own credentials, in one PutMetricData call. On when the hub knows its
    platform (LAKEHUB_PLATFORM, which the tier template sets); LAKEHUB_METRICS=off turns it off."""
    env = s.env
    platform = env.optional("LAKEHUB_PLATFORM")
    metrics = env.optional("LAKEHUB_METRICS", "on").lower()
    if metrics not in ("on", "off"):
        fail(f"LAKEHUB_METRICS must be on or off, got {metrics!r}")
    interval = env.as_int("LAKEHUB_METRICS_INTERVAL", 60, minimum=1)
    if metrics != "on" or not platform:
        return
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", platform):
        fail(f"LAKEHUB_PLATFORM must be letters, digits and dashes, got {platform!r}")
    # A managed service gets none of the hub's environment unless named here: the hub's own AWS
    # credentials (ECS container credentials, or keys in development), region and endpoints.
    service_env = {
        k: v
        for k, v in env.environ.items()
        if k.startswith("AWS_") or k in ("PATH", "PYTHONPATH", "LANG", "HOME", "LAKEHUB_ECS_ENDPOINT_URL")
    }
    service_env.update(
        {
            "LAKEHUB_PLATFORM": platform,
            "LAKEHUB_TIER": s.tier,
            "LAKEHUB_METRICS_INTERVAL": str(interval),
            "AWS_REGION": s.aws_region,
            "PYTHONPATH": os.pathsep.join(p for p in [str(s.here), env.environ.get("PYTHONPATH", "")] if p),
        }
    )
    cloudwatch_endpoint = env.optional("LAKEHUB_CLOUDWATCH_ENDPOINT_URL")
    if cloudwatch_endpoint:
        service_env["LAKEHUB_CLOUDWATCH_ENDPOINT_URL"] = cloudwatch_endpoint
    c.JupyterHub.services.append(
        {"name": "metrics", "command": [sys.executable, "-m", "lakehub_hub.metrics"], "environment": service_env}
    )
    c.JupyterHub.load_roles.append(
        {"name": "metrics", "scopes": ["read:metrics", "list:users", "read:servers"], "services": ["metrics"]}
    )


# --------------------------------------------------------------------------------------------
# all of it, and the site hooks
# --------------------------------------------------------------------------------------------
def configure(c, environ: Mapping[str, str], here: Path = IMAGE_CONFIG_DIR) -> Settings:
    """The whole hub configuration for `environ`; raises HubConfigError on a mistake."""
    s = read_settings(environ, Path(here))
    configure_hub(c, s)
    configure_authenticator(c, s)
    configure_spawner(c, s)
    configure_user_credentials(c, s)
    configure_services(c, s)
    return s


def site_hooks(environ: Mapping[str, str], here: Path = IMAGE_CONFIG_DIR) -> list[Path]:
    """The site hooks, in the order they run: *.py in LAKEHUB_CONFIG_D (default: jupyterhub_config.d
    beside jupyterhub_config.py), by name."""
    hook_dir = Path(Env(environ).optional("LAKEHUB_CONFIG_D", str(Path(here) / "jupyterhub_config.d")))
    return sorted(hook_dir.glob("*.py")) if hook_dir.is_dir() else []


def run_site_hooks(c, environ: Mapping[str, str], here: Path = IMAGE_CONFIG_DIR) -> None:
    """Each hook runs last, with the same `c` (and get_config), and may override anything."""
    for hook in site_hooks(environ, here):
        exec(compile(hook.read_text(), str(hook), "exec"), {"c": c, "get_config": lambda: c, "__file__": str(hook)})  # noqa: S102
