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
        name = f"{prefix}{clean[: 31 - len(prefix) - 6]}-{digest}"
    return name


def stable_uid(unix_name: str) -> int:
    """The same uid for a user on every task and machine, so a persistent home keeps its owner."""
    return 200000 + int(hashlib.sha256(unix_name.encode()).hexdigest(), 16) % 1_000_000_000


# A user's folder name in S3 and the value of the session tag that names it (lakehub-user): what
# both S3 keys and STS tag values accept, without '/' (a name with '/' would put one user's folder
# inside another's: users/a/ holds users/a/b/) and without the characters IAM policy variables
# treat specially. Anything else is cleaned and keeps a short hash, so two users never share one.
_STORAGE_OK = re.compile(r"[A-Za-z0-9_.:=+@-]{1,128}")
_STORAGE_BAD = re.compile(r"[^A-Za-z0-9_.:=+@-]+")


def storage_name(hub_name: str) -> str:
    """Hub user name -> the user's folder (tiers/<tier>/users/<this>/) and session tag value:
    the name itself when it is 1-128 of [A-Za-z0-9_.:=+@-] and not only dots, else a cleaned
    name and 8 hex characters of its hash."""
    if _STORAGE_OK.fullmatch(hub_name) and hub_name.strip("."):
        return hub_name
    clean = _STORAGE_BAD.sub("-", hub_name).strip(".-")[:100] or "user"
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:8]
    return f"{clean}-{digest}"
