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
    server = start_oidc(users, {"analysts": ["alice"], "sales": ["carol"]}, redirect_uris=[REDIRECT],
                        workdir=tmp_path_factory.mktemp("oidc"))
    yield server
    server.stop()
    assert server.process.poll() is not None


def authorize(op, username, password, verifier="v" * 50):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": op.client_id, "redirect_uri": REDIRECT, "scope": "openid groups",
              "state": "s1", "nonce": "n1", "code_challenge": challenge, "code_challenge_method": "S256"}
    form = requests.get(f"{op.issuer}/authorize", params=params, timeout=10)
    assert form.status_code == 200 and 'type="password"' in form.text
    fields = {k: html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.text)}
    return requests.post(f"{op.issuer}/authorize", data=dict(fields, username=username, password=password),
                         allow_redirects=False, timeout=10)


def test_oidc_code_flow_issues_a_signed_id_token_with_groups(op):
    doc = requests.get(f"{op.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == op.issuer and doc["jwks_uri"] == f"{op.issuer}/jwks"
    response = authorize(op, "alice", op_password(op, "alice"))
    assert response.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlparse(response.headers["Location"]).query)
    assert query["state"] == ["s1"]
    tokens = requests.post(doc["token_endpoint"], data={"grant_type": "authorization_code", "code": query["code"][0],
                                                        "redirect_uri": REDIRECT, "code_verifier": "v" * 50},
                           auth=(op.client_id, op.client_secret), timeout=10).json()
    key = jwt.PyJWKClient(doc["jwks_uri"]).get_signing_key_from_jwt(tokens["id_token"]).key
    claims = jwt.decode(tokens["id_token"], key, algorithms=["RS256"], audience=op.client_id, issuer=op.issuer)
    assert claims["preferred_username"] == "alice" and claims["groups"] == ["analysts"] and claims["nonce"] == "n1"
    info = requests.get(doc["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=10).json()
    assert info["groups"] == ["analysts"]
    # a code works once
    again = requests.post(doc["token_endpoint"], data={"grant_type": "authorization_code", "code": query["code"][0],
                                                       "code_verifier": "v" * 50},
                          auth=(op.client_id, op.client_secret), timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def op_password(op, user):
    return op.users[user]


def test_oidc_refuses_wrong_password_client_secret_pkce_and_redirect(op):
    wrong = authorize(op, "alice", "not-it")
    assert wrong.status_code == 401 and "Invalid username or password" in wrong.text
    code = urllib.parse.parse_qs(urllib.parse.urlparse(
        authorize(op, "carol", op_password(op, "carol")).headers["Location"]).query)["code"][0]
    bad_client = requests.post(f"{op.issuer}/token", data={"grant_type": "authorization_code", "code": code,
                                                           "code_verifier": "v" * 50},
                               auth=(op.client_id, "wrong"), timeout=10)
    assert bad_client.status_code == 401
    bad_pkce = requests.post(f"{op.issuer}/token", data={"grant_type": "authorization_code", "code": code,
                                                         "code_verifier": "w" * 50},
                             auth=(op.client_id, op.client_secret), timeout=10)
    assert bad_pkce.status_code == 400
    evil = requests.get(f"{op.issuer}/authorize", params={"response_type": "code", "client_id": op.client_id,
                                                          "redirect_uri": "http://127.0.0.1:9/evil"}, timeout=10)
    assert evil.status_code == 400
    assert requests.get(f"{op.issuer}/userinfo", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401


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
            untrusting = ldap3.Server("127.0.0.1", port=server.port, use_ssl=True,
                                      tls=ldap3.Tls(validate=ssl.CERT_REQUIRED))
            with pytest.raises(ldap3.core.exceptions.LDAPSocketOpenError):
                ldap3.Connection(untrusting, user=server.bind_dn, password=server.bind_password, auto_bind=True)
    finally:
        server.stop()
    assert server.process.poll() is not None
