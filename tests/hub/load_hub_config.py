"""What a hub configuration amounts to, as JSON-able facts: `describe(cfg)` builds the
JupyterHub app and its authenticator from the Config and reports what they got, and loads the
single-user server config (hub_images/singleuser/jupyter_server_config.py) with the environment
the hub gives a user server, to report the contents manager.

tests/hub/test_hub_config.py calls it in-process on lakehub_hub.hub_config.configure(c, env).
Run as a script, `python load_hub_config.py hub_images/jupyterhub_config.py` loads the entry
file exactly as `jupyterhub -f` does (JupyterHub's own Application.load_config_file) with this
process's environment and prints the facts (SAMPLE_AUTH_STATE: an auth state for the groups claim).
"""

import json
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

from jupyterhub.app import JupyterHub
from traitlets.config import PyFileConfigLoader


def describe(cfg, sample_auth_state: dict | None = None) -> dict:
    hub = JupyterHub(config=cfg)
    out = _hub_facts(cfg, hub, sample_auth_state or {})
    # The user server side: its config, loaded with the environment the hub gives it.
    singleuser_dir = out["spawner_environment"].get("JUPYTER_CONFIG_PATH")
    if singleuser_dir:
        with mock.patch.dict(os.environ, out["spawner_environment"]):
            out.update(_singleuser_facts(singleuser_dir))
    return out


def _hub_facts(cfg, hub, sample_auth_state: dict) -> dict:
    auth_cls = hub.authenticator_class
    auth = auth_cls(parent=hub)
    spawner_cls = cfg.JupyterHub.get("spawner_class", None)
    spawner_name = spawner_cls if isinstance(spawner_cls, str) else f"{spawner_cls.__module__}.{spawner_cls.__qualname__}"

    out = {
        "authenticator": f"{auth_cls.__module__}.{auth_cls.__qualname__}",
        "authenticator_bases": [f"{b.__module__}.{b.__qualname__}" for b in auth_cls.__mro__],
        "allowed_groups": sorted(auth.allowed_groups or []),
        "admin_groups": sorted(getattr(auth, "admin_groups", None) or []),
        "allow_all": auth.allow_all,
        "spawner": spawner_name,
        "env_keep": list(cfg.Spawner.env_keep),
        "spawner_environment": dict(cfg.Spawner.get("environment", {})),
        "spawner_cmd": list(cfg.Spawner.get("cmd", [])),
        "services": [dict(s) for s in cfg.JupyterHub.get("services", [])],
        "roles": [dict(r) for r in cfg.JupyterHub.get("load_roles", [])],
        "public_url": cfg.JupyterHub.public_url,
        "ip": cfg.JupyterHub.ip,
        "port": cfg.JupyterHub.port,
        "hub_ip": cfg.JupyterHub.hub_ip,
        "db_url": cfg.JupyterHub.db_url,
        "cookie_secret_len": len(cfg.JupyterHub.cookie_secret) if "cookie_secret" in cfg.JupyterHub else None,
        "enable_auth_state": auth.enable_auth_state,
        "auth_refresh_age": auth.auth_refresh_age,
        "refresh_pre_spawn": auth.refresh_pre_spawn,
        "auth_refresh_strict": auth.auth_refresh_strict,
        "crypt_key_lens": [len(k) for k in cfg.CryptKeeper.get("keys", [])],
        "token_expires_in_max_seconds": hub.token_expires_in_max_seconds,
        "has_membership_check": callable(getattr(auth, "lakehub_membership", None)),
    }
    if hasattr(auth, "oauth_callback_url"):
        out.update(
            oauth_callback_url=auth.oauth_callback_url,
            authorize_url=auth.authorize_url,
            token_url=auth.token_url,
            userdata_url=auth.userdata_url,
            userdata_from_id_token=auth.userdata_from_id_token,
            username_claim=auth.username_claim if isinstance(auth.username_claim, str) else "<callable>",
            manage_groups=auth.manage_groups,
            client_id=auth.client_id,
            custom_403_message=auth.custom_403_message,
            logout_redirect_url=auth.logout_redirect_url,
            groups_from_sample=sorted(auth.auth_state_groups_key(sample_auth_state)),
        )
    if hasattr(auth, "server_address"):
        out.update(
            server_address=auth.server_address,
            server_port=auth.server_port,
            tls_strategy=auth.tls_strategy.name,
            tls_kwargs={k: str(v) for k, v in auth.tls_kwargs.items()},
            lookup_dn=auth.lookup_dn,
            user_search_base=auth.user_search_base,
            bind_dn_template=auth.bind_dn_template,
        )

    return out


def _singleuser_facts(singleuser_dir: str) -> dict:
    out = {}
    os.environ["JUPYTERHUB_USER"] = "alice"
    os.environ["LAKEHUB_HOME"] = tempfile.mkdtemp(prefix="lakehub-home-")  # the config makes folders there
    su = PyFileConfigLoader("jupyter_server_config.py", path=singleuser_dir).load_config()
    cm = su.ServerApp.contents_manager_class
    out["contents_manager"] = f"{cm.__module__}.{cm.__qualname__}"
    out["contents_manager_bases"] = [f"{b.__module__}.{b.__qualname__}" for b in cm.__mro__]
    out["contents_root"] = su.HomeContentsManager.root_dir == os.environ["LAKEHUB_HOME"] == su.ServerApp.root_dir
    out["contents_central_prefix"] = su.HomeContentsManager.central_prefix
    out["contents_shared_prefix"] = su.HomeContentsManager.shared_prefix
    out["contents_bucket"] = su.HomeContentsManager.bucket
    out["contents_endpoint"] = su.HomeContentsManager.endpoint_url
    out["default_url"] = su.ServerApp.default_url
    out["user_packages"] = {
        k: os.environ[k].replace(os.environ["LAKEHUB_HOME"], "~") for k in ("PYTHONUSERBASE", "R_LIBS_USER", "PIP_CACHE_DIR")
    }
    return out


if __name__ == "__main__":
    app = JupyterHub()
    app.load_config_file(str(Path(sys.argv[1])))
    facts = describe(app.config, json.loads(os.environ.get("SAMPLE_AUTH_STATE", "{}")))
    print("LAKEHUB-CONFIG " + json.dumps(facts, default=str))
