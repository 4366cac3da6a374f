"""Tier membership, re-checked while people use the hub.

Sign-in checks the tier's groups once. Without more, someone removed from the group keeps their
session cookie, their API tokens and their running server (with the tier's role) for as long as
those live. This module re-checks each user with the identity provider and ends the access of
that one user when they are no longer allowed in:

- in the background, every `interval` seconds (LAKEHUB_MEMBERSHIP_CHECK_SECONDS), for every user
  with a running server, an unexpired API token, or activity recent enough that a session cookie
  may still be valid;
- on requests (JupyterHub's `auth_refresh_age` = the interval) and before every spawn
  (`refresh_pre_spawn`), through the authenticator's `refresh_user`.

A removed user: their session cookies stop working (JupyterHub's per-user cookie id is replaced),
their API and OAuth tokens are deleted, their stored sign-in (auth state, refresh token) is
cleared, and their servers are stopped; a new sign-in is refused by the group check. Nobody
else is touched.

An identity provider that does not answer (connection refused, timeout, HTTP 5xx) decides
nothing: the user keeps access until the next round, and each failure is a warning in the log.
A provider that answers "no" (the group is gone, the account is gone, or it refuses the refresh
token: HTTP 4xx) ends access.

How each sign-in mode checks (the authenticator's `lakehub_membership(user)`):
- OAuth (cognito, oidc): `LakehubOAuthenticator` exchanges the refresh token kept in the user's
  encrypted auth state for fresh tokens and reads the groups claim from them, exactly as at
  sign-in. Needs `enable_auth_state` and a CryptKeeper key (jupyterhub_config.py derives it).
- ldap: `ldap_membership` looks the user and the allowed groups up with the service account.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

MEMBER, REMOVED, UNKNOWN = "member", "removed", "unknown"
CHECK_TIMEOUT = 30  # seconds one user's check may take before it counts as "provider did not answer"
PARALLEL_CHECKS = 8
MAX_INTERVAL = 3600


@dataclass
class Verdict:
    state: str  # MEMBER, REMOVED or UNKNOWN
    reason: str = ""
    model: dict | None = None  # MEMBER: the refreshed auth model (auth_state, groups), saved like a sign-in's


class MembershipWatcher:
    """One per hub: the background rounds, the per-request refresh, and revocation."""

    def __init__(self, authenticator, interval: int):
        self.authenticator = authenticator
        self.interval = interval
        self.log = authenticator.log
        self.app = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._revoked: set[str] = set()
        self._task = None
        self._stopping: set = set()  # stops started from requests (kept so they are not collected)

    # -- lifecycle ------------------------------------------------------------------------
    def attach(self, app) -> None:
        """Called with the JupyterHub app while it initializes (inside its event loop)."""
        self.app = app
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self.log.info("membership: re-checking tier membership every %d s", self.interval)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_all()
            except Exception:  # a round must never end the loop
                self.log.exception("membership: a check round failed; next round in %d s", self.interval)

    # -- who is checked ---------------------------------------------------------------------
    def candidates(self) -> list:
        from jupyterhub import orm
        from jupyterhub.utils import utcnow

        app = self.app
        now = utcnow(with_tz=False)
        session_window = now - timedelta(days=app.cookie_max_age_days)
        users = []
        for orm_user in app.db.query(orm.User).all():
            user = app.users[orm_user]
            live_token = any(t.expires_at is None or t.expires_at > now for t in orm_user.api_tokens)
            recent = orm_user.last_activity is not None and orm_user.last_activity > session_window
            maybe_session = recent and orm_user.name not in self._revoked
            if user.active or live_token or maybe_session:
                users.append(user)
        return users

    async def check_all(self) -> None:
        gate = asyncio.Semaphore(PARALLEL_CHECKS)

        async def one(user):
            async with gate:
                await self.refresh(user, background=True)

        await asyncio.gather(*(one(u) for u in self.candidates()))

    # -- one user ---------------------------------------------------------------------------
    async def refresh(self, user, background: bool = False):
        """The answer for Authenticator.refresh_user: a dict or True keeps the user, False ends
        their access (and revokes it here)."""
        lock = self._locks.setdefault(user.name, asyncio.Lock())
        async with lock:  # one check at a time per user: a refresh token is used once
            try:
                verdict = await asyncio.wait_for(self.authenticator.lakehub_membership(user), CHECK_TIMEOUT)
            except asyncio.TimeoutError:
                verdict = Verdict(UNKNOWN, f"no answer within {CHECK_TIMEOUT} s")
            except Exception as exc:  # unreachable provider, TLS failure, ...: decide nothing
                verdict = Verdict(UNKNOWN, f"{type(exc).__name__}: {exc}")
            if verdict.state == UNKNOWN:
                self.log.warning(
                    "membership: cannot check %s with the identity provider (%s); access stays until the next check in %d s",
                    user.name,
                    verdict.reason,
                    self.interval,
                )
                # requests do not ask again before the next round: an outage must not slow every request
                user._auth_refreshed = time.monotonic()
                return True
            if verdict.state == REMOVED:
                if background:
                    await self.revoke(user, verdict.reason)
                else:  # in a request: cut sessions and tokens now, stop servers without holding the request
                    await self.end_sessions(user, verdict.reason)
                    stopping = asyncio.ensure_future(self.stop_servers(user))
                    self._stopping.add(stopping)
                    stopping.add_done_callback(self._stopping.discard)
                return False
            self._revoked.discard(user.name)
            if verdict.model:
                # Saved before the lock is released: a rotated refresh token must be stored before
                # the next check of this user reads it (JupyterHub would save it only later).
                await self._save(user, verdict.model)
            user._auth_refreshed = time.monotonic()
            return True

    async def _save(self, user, model: dict) -> None:
        """Keep what the refresh returned (new tokens, groups, admin), as a sign-in would."""
        from jupyterhub import roles

        if "auth_state" in model:
            await user.save_auth_state(model["auth_state"])
        if self.authenticator.manage_groups and model.get("groups") is not None:
            user.sync_groups(model["groups"])
        if model.get("admin") is not None and model["admin"] != user.admin:
            user.admin = model["admin"]
            roles.assign_default_roles(user.db, entity=user)
            user.db.commit()

    async def revoke(self, user, reason: str) -> None:
        await self.end_sessions(user, reason)
        await self.stop_servers(user)

    async def end_sessions(self, user, reason: str) -> None:
        """Sessions (cookies) and tokens of this one user stop working."""
        from jupyterhub.utils import new_token

        db = self.app.db if self.app is not None else user.db
        orm_user = user.orm_user
        orm_user.cookie_id = new_token()  # every cookie carries the old id: all sessions end
        tokens = list(orm_user.api_tokens)  # API tokens and OAuth tokens (user servers, services)
        for token in tokens:
            db.delete(token)
        db.commit()
        if self.authenticator.enable_auth_state:
            await user.save_auth_state(None)  # the refresh token goes too
        user._auth_refreshed = None
        self._revoked.add(user.name)
        self.log.warning(
            "membership: %s may no longer use this tier (%s): sessions ended, %d tokens revoked", user.name, reason, len(tokens)
        )

    async def stop_servers(self, user) -> None:
        for name, spawner in list(user.spawners.items()):
            deadline = time.monotonic() + spawner.start_timeout + 30
            while spawner.pending == "spawn" and time.monotonic() < deadline:
                await asyncio.sleep(1)  # a spawn already under way: let it finish, then stop it
            if not spawner.active or spawner.pending:
                continue
            spawner._stop_pending = True
            try:
                if self.app is not None:
                    try:
                        await self.app.proxy.delete_user(user, name)
                    except Exception as exc:
                        self.log.warning("membership: removing %s's proxy route failed: %s", user.name, exc)
                await user.stop(name)
                self.log.warning("membership: stopped %s's server%s", user.name, f" {name!r}" if name else "")
            except Exception:
                self.log.exception("membership: stopping %s's server failed; retried next round", user.name)
            finally:
                spawner._stop_pending = False


def with_membership_checks(base, interval: int):
    """`base` (an Authenticator class with a `lakehub_membership(user) -> Verdict` coroutine),
    extended to re-check membership in the background and on refresh. Config sections of `base`
    (and its parents) still apply to the returned class."""

    class Checked(base):
        async def refresh_user(self, user, handler=None):
            return await self._lakehub_watcher().refresh(user)

        def get_handlers(self, app):
            self._lakehub_watcher().attach(app)  # JupyterHub calls this once, with the app, at start
            return super().get_handlers(app)

        def _lakehub_watcher(self):
            if getattr(self, "_membership_watcher", None) is None:
                self._membership_watcher = MembershipWatcher(self, interval)
            return self._membership_watcher

    Checked.__name__ = Checked.__qualname__ = base.__name__
    Checked.__module__ = base.__module__
    return Checked


# ------------------------------------------------------------------------------------------
# OAuth (cognito, oidc)
# ------------------------------------------------------------------------------------------
def oauth_authenticator_class():
    from oauthenticator.generic import GenericOAuthenticator
    from tornado import web
    from tornado.httpclient import HTTPClientError

    class LakehubOAuthenticator(GenericOAuthenticator):
        """GenericOAuthenticator whose membership can be re-checked with the refresh token."""

        async def lakehub_membership(self, user) -> Verdict:
            auth_state = await user.get_auth_state()
            if not auth_state:
                return Verdict(REMOVED, "no stored sign-in to re-check (signed in before checks began); sign in again")
            refresh_token = auth_state.get("refresh_token")
            token_info = auth_state.get("token_response") or {}
            if refresh_token:
                try:
                    token_info = await self.get_token_info(None, self.build_refresh_token_request_params(refresh_token))
                except HTTPClientError as exc:
                    if exc.code and 400 <= exc.code < 500:
                        return Verdict(REMOVED, f"the identity provider refused the refresh token (HTTP {exc.code})")
                    return Verdict(UNKNOWN, f"token endpoint: {exc}")
                except web.HTTPError as exc:  # an error description in the token response
                    return Verdict(REMOVED, f"the identity provider refused the refresh token: {exc.log_message}")
                if not token_info.get("refresh_token"):
                    token_info["refresh_token"] = refresh_token  # providers that do not rotate it
            elif not token_info.get("access_token"):
                return Verdict(REMOVED, "no token to re-check with; sign in again")
            try:
                model = await self._token_to_auth_model(token_info)
            except HTTPClientError as exc:
                if exc.code and 400 <= exc.code < 500:
                    return Verdict(REMOVED, f"the identity provider refused the access token (HTTP {exc.code})")
                return Verdict(UNKNOWN, f"user info: {exc}")
            if model.get("name") != user.name:
                return Verdict(REMOVED, "the identity provider names this account differently now")
            return await _decide(self, user.name, model, web)

    return LakehubOAuthenticator


async def _decide(authenticator, username, model, web) -> Verdict:
    """The sign-in's own group check on the refreshed model."""
    try:
        allowed = await authenticator.check_allowed(username, model)
    except web.HTTPError as exc:
        if exc.status_code != 403:
            raise
        allowed = False
    if not allowed:
        return Verdict(REMOVED, "not in any group allowed into this tier")
    return Verdict(MEMBER, model=model)


# ------------------------------------------------------------------------------------------
# LDAP
# ------------------------------------------------------------------------------------------
def ldap_lookup(authenticator, username: str, bind_dn: str, bind_password: str, timeout: int = 10) -> Verdict:
    """Look the user and the allowed groups up with the service account (blocking: run it in a
    thread). Returns MEMBER/REMOVED with an auth model like the sign-in's, or UNKNOWN."""
    import ldap3
    from ldap3.core.exceptions import LDAPBindError, LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

    strategy = str(getattr(authenticator.tls_strategy, "name", authenticator.tls_strategy))
    use_ssl = strategy == "on_connect"
    auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND if strategy == "before_bind" else ldap3.AUTO_BIND_NO_TLS
    server = ldap3.Server(
        authenticator.server_address,
        port=authenticator.server_port,
        use_ssl=use_ssl,
        tls=ldap3.Tls(**authenticator.tls_kwargs),
        connect_timeout=timeout,
    )
    try:
        conn = ldap3.Connection(server, user=bind_dn, password=bind_password, auto_bind=auto_bind, receive_timeout=timeout)
    except LDAPBindError as exc:  # the service account, not the user: decide nothing
        return Verdict(UNKNOWN, f"the service account cannot bind: {exc}")
    except LDAPException as exc:
        return Verdict(UNKNOWN, f"{type(exc).__name__}: {exc}")
    try:
        if authenticator.lookup_dn:
            conn.search(
                authenticator.user_search_base,
                f"({authenticator.user_attribute}={escape_filter_chars(username)})",
                search_scope=ldap3.SUBTREE,
                attributes=[],
            )
            if len(conn.entries) > 1:
                return Verdict(UNKNOWN, f"{len(conn.entries)} directory entries match {username}")
            user_dn = conn.entries[0].entry_dn if conn.entries else None
        else:
            user_dn = None
            for template in authenticator.bind_dn_template:
                dn = template.format(username=escape_rdn(username))
                if conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[]):
                    user_dn = dn
                    break
        if not user_dn:
            return Verdict(REMOVED, "the account is no longer in the directory")
        groups = []
        for group in authenticator.allowed_groups:
            query = authenticator.group_search_filter.format(
                userdn=escape_filter_chars(user_dn), uid=escape_filter_chars(username)
            )
            if conn.search(group, query, search_scope=ldap3.BASE, attributes=[]):
                groups.append(group)
    except LDAPException as exc:
        return Verdict(UNKNOWN, f"{type(exc).__name__}: {exc}")
    finally:
        conn.unbind()
    return Verdict(MEMBER, model={"name": username, "auth_state": {"ldap_groups": groups}})


async def ldap_membership(authenticator, user, bind_dn: str, bind_password: str, admin_groups=()) -> Verdict:
    from tornado import web

    found = await asyncio.to_thread(ldap_lookup, authenticator, user.name, bind_dn, bind_password)
    if found.state != MEMBER:
        return found
    verdict = await _decide(authenticator, user.name, found.model, web)
    if verdict.state != MEMBER:
        return verdict
    # LDAP auth state is not kept (nothing in it needs refreshing); admin follows the admin groups.
    groups = set(found.model["auth_state"]["ldap_groups"])
    admin = bool(groups & set(admin_groups)) if admin_groups else None
    return Verdict(MEMBER, model={"name": user.name, "admin": admin})
