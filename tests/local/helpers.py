"""Sign in to a local tier hub and get its user's server (the client itself: tests/hubclient.py)."""

from __future__ import annotations

from hubclient import UserServer, api_token, oidc_sign_in, wait_ready


def sign_in(hub_url: str, username: str, password: str):
    session, response = oidc_sign_in(hub_url, username, password)
    response.raise_for_status()
    return session


def user_server(tier: dict, user: dict) -> UserServer:
    session = sign_in(tier["url"], user["username"], user["password"])
    token = api_token(session, tier["url"], user["username"])
    wait_ready(tier["url"], user["username"], token, timeout=120.0)
    return UserServer(tier["url"], user["username"], token)
