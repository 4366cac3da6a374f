"""The loopback identity providers in lakehub/idp behave like real ones: they refuse what a real
provider refuses, and what they hand out verifies."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import ssl
import urllib.parse

import jwt
import ldap3
import pytest
import requests

from lakehub.local.idp.ldap import start_ldap
from lakehub.local.idp.oidc import start_oidc

pytestmark = pytest.mark.e2e

REDIRECT = "http://127.0.0.1:9/hub/oauth_callback"


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    users = {"alice": "pw-" + secrets.token_urlsafe(8), "carol": "pw-" + secrets.token_urlsafe(8)}
    server = start_oidc(
        users, {"analysts": ["alice"], "sales": ["carol"]}, redirect_uris=[REDIRECT], workdir=tmp_path_factory.mktemp("oidc")
    )
    yield server
    server.stop()
    assert server.process.poll() is not None


def authorize(op, username, password, verifier="v" * 50):
    """A browser's sign-in: /authorize -> the login form -> post it -> (consent) -> the redirect
    to the client with ?code&state (not followed), or the form again with an error."""
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": op.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid profile email groups",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    browser = requests.Session()
    form = browser.get(f"{op.issuer}/authorize", params=params, timeout=10)
    assert form.status_code == 200 and 'type="password"' in form.text
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', form.text).group(1))
    response = browser.post(
        urllib.parse.urljoin(form.url, action),
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    while response.is_redirect and not response.headers["Location"].startswith(REDIRECT):
        response = browser.get(urllib.parse.urljoin(form.url, response.headers["Location"]), allow_redirects=False, timeout=10)
    return response


def client_auth(op, secret=None):
    """The client's credentials as OAuthenticator sends them (client_secret_post)."""
    return {"client_id": op.client_id, "client_secret": op.client_secret if secret is None else secret}


def redeem(op, code, verifier="v" * 50, secret=None):
    """The token endpoint's answer to an authorization code (the code flow's second leg)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    return requests.post(f"{op.issuer}/token", data={**data, **client_auth(op, secret)}, timeout=10)


def test_oidc_code_flow_issues_a_signed_id_token_with_groups(op):
    doc = requests.get(f"{op.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == op.issuer and doc["jwks_uri"] == f"{op.issuer}/jwks"
    assert doc["token_endpoint"] == f"{op.issuer}/token"  # where redeem() posts
    response = authorize(op, "alice", op_password(op, "alice"))
    assert response.status_code in (302, 303)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(response.headers["Location"]).query)
    assert query["state"] == ["s1"]
    tokens = redeem(op, query["code"][0]).json()
    key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"]).key
    claims = jwt.decode(tokens["id_token"], key, algorithms=["RS256"], audience=op.client_id, issuer=op.issuer)
    assert claims["preferred_username"] == "alice" and claims["groups"] == ["analysts"] and claims["nonce"] == "n1"
    info = requests.get(
        doc["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    ).json()
    assert info["groups"] == ["analysts"]
    # a code works once
    again = redeem(op, query["code"][0])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def op_password(op, user):
    return op.users[user]


def test_oidc_refuses_wrong_password_client_secret_pkce_and_redirect(op):
    wrong = authorize(op, "alice", "not-it")
    assert wrong.status_code == 401 and "Invalid username or password" in wrong.text
    code = urllib.parse.parse_qs(
        urllib.parse.urlparse(authorize(op, "carol", op_password(op, "carol")).headers["Location"]).query
    )["code"][0]
    bad_client = redeem(op, code, secret="wrong")
    assert bad_client.status_code == 401
    bad_pkce = redeem(op, code, verifier="w" * 50)
    assert bad_pkce.status_code == 400
    evil = requests.get(
        f"{op.issuer}/authorize",
        params={"response_type": "code", "client_id": op.client_id, "redirect_uri": "http://127.0.0.1:9/evil"},
        timeout=10,
    )
    assert evil.status_code == 400
    assert requests.get(f"{op.issuer}/userinfo", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401


def test_oidc_refresh_shows_current_groups_rotates_and_refuses_reuse_and_removed_accounts(tmp_path):
    users = {"dora": "pw-" + secrets.token_urlsafe(8), "erin": "pw-" + secrets.token_urlsafe(8)}
    op = start_oidc(users, {"analysts": ["dora", "erin"]}, redirect_uris=[REDIRECT], workdir=tmp_path)
    try:

        def sign_in(user):
            location = authorize(op, user, users[user]).headers["Location"]
            code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
            return redeem(op, code).json()

        def refresh(token):
            return requests.post(
                f"{op.issuer}/token", data={"grant_type": "refresh_token", "refresh_token": token, **client_auth(op)}, timeout=10
            )

        first = sign_in("dora")
        op.set_groups({"analysts": ["erin"], "sales": ["dora"]})
        second = refresh(first["refresh_token"])
        assert second.status_code == 200
        claims = jwt.decode(second.json()["id_token"], options={"verify_signature": False})
        assert claims["groups"] == ["sales"]  # the groups of now, not of the sign-in
        assert second.json()["refresh_token"] != first["refresh_token"]  # rotated
        # reusing a spent refresh token is refused and revokes the chain (a stolen token is useless)
        assert refresh(first["refresh_token"]).status_code == 400
        assert refresh(second.json()["refresh_token"]).status_code == 400
        # a removed account can no longer refresh
        third = sign_in("erin")
        op.set_users({"dora": users["dora"]})
        gone = refresh(third["refresh_token"])
        assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"
    finally:
        op.stop()


@pytest.mark.parametrize("tls", [True, False])
def test_ldap_binds_users_checks_certificates_and_lists_groups(tls):
    users = {"alice": "pw-" + secrets.token_urlsafe(8), "carol": "pw-" + secrets.token_urlsafe(8)}
    server = start_ldap(users, {"analysts": ["alice"], "sales": ["carol"]}, tls=tls)
    try:
        assert server.url.startswith("ldaps://" if tls else "ldap://")
        t = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(server.ca_file)) if tls else None
        srv = ldap3.Server("127.0.0.1", port=server.port, use_ssl=tls, tls=t)
        conn = ldap3.Connection(srv, user=server.user_dn("alice"), password=users["alice"], auto_bind=True)
        conn.search(server.groups_dn, f"(member={server.user_dn('alice')})", attributes=["cn"])
        assert [str(e.cn) for e in conn.entries] == ["analysts"]
        conn.unbind()
        with pytest.raises(ldap3.core.exceptions.LDAPBindError):
            ldap3.Connection(srv, user=server.user_dn("alice"), password="wrong", auto_bind=True)
        service = ldap3.Connection(srv, user=server.bind_dn, password=server.bind_password, auto_bind=True)
        service.search(server.people_dn, "(uid=carol)", attributes=["userPassword", "mail"])
        (entry,) = service.entries
        assert str(entry.mail) == "carol@lakehub.test" and not entry.userPassword.values  # hashes stay hidden
        if tls:  # a client that does not trust the throw-away CA is refused
            untrusting = ldap3.Server("127.0.0.1", port=server.port, use_ssl=True, tls=ldap3.Tls(validate=ssl.CERT_REQUIRED))
            with pytest.raises(ldap3.core.exceptions.LDAPSocketOpenError):
                ldap3.Connection(untrusting, user=server.bind_dn, password=server.bind_password, auto_bind=True)
    finally:
        server.stop()
    assert server.process.poll() is not None
