"""The Unix account of a hub user, one rule for every place that makes one: the hub's shared
mode (jupyterhub_config.py) and the local agent's per-user servers (lakehub.local.accounts).
Standard library only: the agent imports it without JupyterHub."""

from __future__ import annotations

import hashlib
import re

PREFIX = "lh-"


def unix_username(hub_name: str, prefix: str = PREFIX) -> str:
    """Hub user name -> Unix user name: prefix + [a-z0-9-], at most 32 characters; a short hash
    keeps names apart when cleaning changed them (alice.b@x.org and alice-b@x.org)."""
    clean = re.sub(r"[^a-z0-9-]+", "-", hub_name.lower()).strip("-") or "user"
    name = prefix + clean
    if clean != hub_name or len(name) > 32:
        digest = hashlib.sha256(hub_name.encode()).hexdigest()[:6]
        name = f"{prefix}{clean[:31 - len(prefix) - 6]}-{digest}"
    return name


def stable_uid(unix_name: str) -> int:
    """The same uid for a user on every task and machine, so a persistent home keeps its owner."""
    return 200000 + int(hashlib.sha256(unix_name.encode()).hexdigest(), 16) % 1_000_000_000


# What S3 object keys and STS session-tag values both accept (tag values: letters, digits,
# spaces and _.:/=+-@, 1..256; the design keeps spaces out and 128 characters at most).
_STORAGE_NAME = re.compile(r"[A-Za-z0-9_.:/=+\-@]{1,128}")


def storage_name(hub_name: str) -> str:
    """Hub user name -> the user's folder in S3 (`tiers/<tier>/users/<storage name>/`) and the
    `lakehub-user` session tag: the name itself when it is a valid tag value, else a cleaned
    name and a short hash (two names that clean alike stay apart)."""
    if _STORAGE_NAME.fullmatch(hub_name) and hub_name not in (".", "..") and "//" not in hub_name:
        return hub_name
    clean = re.sub(r"[^A-Za-z0-9_.=+\-@]+", "-", hub_name).strip("-.") or "user"
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:8]
    return f"{clean[:128 - 9]}-{digest}"
