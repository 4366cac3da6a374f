"""The hub upgrades its database schema on start (c.JupyterHub.upgrade_db in
hub_images/jupyterhub_config.py): a hub image with a newer JupyterHub started on the state of an
older one keeps its users and tokens instead of refusing to start.

The older database is made with this JupyterHub's own alembic migrations: created at head with a
user and an API token, then downgraded to JupyterHub 5's last revision (4621fec11365, manage
roles), as a hub of the previous release left it.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
import requests

from tests.hub import hub_harness as H

OLD_REVISION = "4621fec11365"  # JupyterHub 5.x's head (alembic/versions/4621fec11365_manage_roles.py)
TIER_GROUP = "db-upgrade-members"


def _revision(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("select version_num from alembic_version").fetchone()[0]


def _old_database(db: Path, user: str, token: str) -> str:
    """Returns the head revision (this JupyterHub's)."""
    from jupyterhub import dbutil, orm

    url = f"sqlite:///{db}"
    session = orm.new_session_factory(url)()  # creates the tables and stamps head
    person = orm.User(name=user)
    person.roles.append(orm.Role(name="user", scopes=["self"]))  # JupyterHub's default role of every user
    session.add(person)
    session.add(orm.OAuthClient(identifier="jupyterhub"))  # the hub's own client: tokens belong to it
    session.commit()
    orm.APIToken.new(token=token, user=person)  # scopes: "inherit" (the user's)
    session.close()
    head = _revision(db)
    with dbutil._temp_alembic_ini(url) as ini:
        import subprocess
        import sys

        alembic = str(Path(sys.executable).parent / "alembic")
        subprocess.run([alembic, "-c", ini, "downgrade", OLD_REVISION], check=True, capture_output=True, timeout=120)
    return head


def test_hub_upgrades_an_older_database_on_start_and_keeps_its_users(moto_server):
    from lakehub.local.idp.oidc import start_oidc

    work = Path(tempfile.mkdtemp(prefix="lakehub-db-upgrade-"))
    work.chmod(0o755)
    state = work / "state"
    state.mkdir()
    db = state / "jupyterhub.sqlite"
    token = secrets.token_hex(16)
    head = _old_database(db, "erin", token)
    assert head != OLD_REVISION and _revision(db) == OLD_REVISION

    port = H.free_port()
    idp = start_oidc(
        {"erin": "pw-" + secrets.token_urlsafe(12)},
        {TIER_GROUP: ["erin"]},
        redirect_uris=[f"http://127.0.0.1:{port}/hub/oauth_callback"],
        workdir=work,
    )
    env = H.base_hub_env(
        "db-upgrade",
        "lakehub-notebooks-db-upgrade",
        "tiers/db-upgrade",
        port,
        work,
        moto_server.endpoint_url,
        "http://127.0.0.1:9/creds",
        {
            "LAKEHUB_AUTH_MODE": "oidc",
            "LAKEHUB_OIDC_ISSUER": idp.issuer,
            "LAKEHUB_OAUTH_CLIENT_ID": idp.client_id,
            "LAKEHUB_OAUTH_CLIENT_SECRET": idp.client_secret,
            "LAKEHUB_ALLOWED_GROUPS": TIER_GROUP,
        },
    )
    hub = None
    try:
        try:
            hub = H.start_hub(env, work, timeout=90)
        except RuntimeError as exc:
            pytest.fail(f"the hub did not start on a database at revision {OLD_REVISION}: {str(exc)[-1500:]}")
        assert _revision(db) == head, "the schema was not upgraded to this JupyterHub's revision"
        backups = sorted(p.name for p in state.glob("jupyterhub.sqlite.*"))
        assert backups, (
            f"JupyterHub made no backup of the SQLite file before upgrading: {sorted(p.name for p in state.iterdir())}"
        )
        # The user and their token outlived the upgrade, in the database the running hub uses.
        with sqlite3.connect(db) as conn:
            assert [r[0] for r in conn.execute("select name from users")] == ["erin"]
            users = dict(conn.execute("select id, name from users").fetchall())
            tokens = conn.execute("select prefix, user_id from api_tokens").fetchall()
            assert (token[:4], next(i for i, n in users.items() if n == "erin")) in tokens
        assert requests.get(f"{hub.url}/hub/health", timeout=10).status_code == 200
    finally:
        if hub:
            hub.stop()
        idp.stop()
        shutil.rmtree(work, ignore_errors=True)
