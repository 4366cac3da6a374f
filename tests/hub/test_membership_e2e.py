"""Removing someone from the tier's group ends their access, and only theirs (issue 14).

End to end on loopback, no mocks: JupyterHub with hub_images/jupyterhub_config.py, the
configurable-http-proxy, S3 in the emulator, and a real identity provider process (the OpenID
Connect provider in lakehub/local/idp/oidc.py, or slapd over LDAPS). Membership is re-checked every
LAKEHUB_MEMBERSHIP_CHECK_SECONDS (shortened here to a few seconds).

alice and bob are in the tier's group and have running servers, sessions and API tokens; ada is
an admin (her token watches the others). alice is removed from the group in the provider:
within the interval her server stops, her cookie and token are refused and a new sign-in is
refused, while bob keeps everything. Then the provider goes away: nobody is signed out, and
the failed checks are warnings in the hub's log.
"""

from __future__ import annotations

import os
import pwd
import time

import psutil
import pytest
import requests

import hub_harness as H
from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY
from lakehub.local.processes import terminate_group
from lakehub.waiting import tries

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP, ADMINS = "analysts", "hubadmins"
INTERVAL = 3  # seconds between membership checks (default 900)
DEADLINE = 6 * INTERVAL + 30  # a round, a stop, and slack for a loaded machine


@pytest.fixture(scope="module")
def lake(moto_server):
    if not (H.NODE_BIN / "configurable-http-proxy").exists():
        pytest.fail("configurable-http-proxy is missing; run `make setup`")
    with H.notebook_lake(moto_server.endpoint_url, EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY) as lake:
        yield lake


@pytest.fixture(scope="module", params=["oidc", "ldap"])
def tier(request, lake):
    mode = request.param
    groups = {GROUP: ["alice", "bob"], ADMINS: ["ada"]}
    extra = dict(
        LAKEHUB_ALLOWED_GROUPS=GROUP,
        LAKEHUB_ADMIN_GROUPS=ADMINS,
        LAKEHUB_MEMBERSHIP_CHECK_SECONDS=str(INTERVAL),
        LAKEHUB_IDLE_TIMEOUT="0",
    )
    with H.tier_hub(
        mode,
        f"{mode}-members",
        lake["bucket"],
        f"tiers/{mode}-members",
        lake["endpoint"],
        lake["creds"].url,
        ("alice", "bob", "ada"),
        groups,
        extra,
    ) as t:
        hub, passwords, sign_in = t.hub, t.passwords, t.sign_in
        people = {}
        for user in ("alice", "bob", "ada"):
            session, response = sign_in(hub.url, user, passwords[user])
            assert response.status_code == 200, f"{user} sign-in: {response.status_code}\n{hub.log()[-3000:]}"
            people[user] = {"session": session, "token": H.api_token(session, hub.url, user)}
        for user in ("alice", "bob"):
            try:
                H.wait_ready(hub.url, user, people[user]["token"])
            except (TimeoutError, requests.HTTPError) as exc:
                raise AssertionError(f"{exc}\n--- hub log ---\n{hub.log()[-6000:]}") from None
        yield {
            "mode": mode,
            "hub": hub,
            "idp": t.idp,
            "sign_in": sign_in,
            "passwords": passwords,
            "people": people,
            "groups": groups,
        }


def as_admin(tier, path):
    r = requests.get(
        f"{tier['hub'].url}/hub/api/{path}", timeout=10, headers={"Authorization": f"token {tier['people']['ada']['token']}"}
    )
    r.raise_for_status()
    return r.json()


def server_ready(tier, user) -> bool:
    server = (as_admin(tier, f"users/{user}").get("servers") or {}).get("")
    return bool(server and server.get("ready"))


def token_works(tier, user) -> bool:
    r = requests.get(
        f"{tier['hub'].url}/hub/api/user", timeout=10, headers={"Authorization": f"token {tier['people'][user]['token']}"}
    )
    return r.status_code == 200


def session_works(tier, user) -> bool:
    r = tier["people"][user]["session"].get(f"{tier['hub'].url}/hub/home", allow_redirects=False, timeout=10)
    return r.status_code == 200


def processes_of(user) -> list:
    if os.geteuid() != 0:
        return []
    try:
        uid = pwd.getpwnam(H.unix_username_guess(user)).pw_uid
    except KeyError:
        return []
    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]


def remove_from_group(tier, user):
    members = [m for m in tier["groups"][GROUP] if m != user]
    if tier["mode"] == "oidc":
        tier["idp"].set_groups(dict(tier["groups"], **{GROUP: members}))
    else:
        tier["idp"].set_members(GROUP, members)


def test_removed_user_loses_server_session_token_and_sign_in_while_others_keep_theirs(tier):
    hub = tier["hub"]
    assert server_ready(tier, "alice") and server_ready(tier, "bob")
    assert token_works(tier, "alice") and session_works(tier, "alice")
    bob_server = H.UserServer(hub.url, "bob", tier["people"]["bob"]["token"])
    assert bob_server.api("GET", "status").status_code == 200

    remove_from_group(tier, "alice")
    removed_at = time.monotonic()
    deadline = removed_at + DEADLINE
    for _ in tries(deadline - time.monotonic(), interval=0.5):
        if not as_admin(tier, "users/alice").get("servers"):
            break
    assert not as_admin(tier, "users/alice").get("servers"), f"alice's server still runs\n{hub.log()[-4000:]}"
    assert time.monotonic() - removed_at < DEADLINE
    assert "membership: alice may no longer use this tier" in hub.log()
    assert not processes_of("alice"), "alice's server processes are gone"

    assert not token_works(tier, "alice"), "alice's API token is refused"
    home = tier["people"]["alice"]["session"].get(f"{hub.url}/hub/home", allow_redirects=False, timeout=10)
    assert home.status_code == 302 and "/hub/login" in home.headers["Location"], "alice's session cookie is refused"
    spawn = requests.post(
        f"{hub.url}/hub/api/users/alice/server",
        timeout=30,
        headers={"Authorization": f"token {tier['people']['alice']['token']}"},
    )
    assert spawn.status_code == 403
    _, again = tier["sign_in"](hub.url, "alice", tier["passwords"]["alice"])
    assert again.status_code == 403 and "not a member of a group allowed into the" in again.text

    # bob, still in the group, kept his server, session and token through several rounds
    assert server_ready(tier, "bob") and token_works(tier, "bob") and session_works(tier, "bob")
    assert bob_server.api("GET", "status").status_code == 200
    assert "membership: bob may no longer use this tier" not in hub.log()
    assert processes_of("bob") or os.geteuid() != 0


def test_an_unreachable_identity_provider_signs_nobody_out(tier):
    hub = tier["hub"]
    assert server_ready(tier, "bob")
    log_before = len(hub.log())
    terminate_group(tier["idp"].process, timeout=10)  # gone, its files left as they were
    warning = "membership: cannot check bob with the identity provider"
    for _ in tries(DEADLINE, interval=0.5):
        if warning in hub.log()[log_before:]:
            break
    new_log = hub.log()[log_before:]
    assert warning in new_log, f"a failed check is a warning in the log\n{new_log[-3000:]}"
    time.sleep(2 * INTERVAL)  # more rounds, and requests past the refresh age, with the provider gone
    assert server_ready(tier, "bob") and token_works(tier, "bob") and session_works(tier, "bob")
    assert H.UserServer(hub.url, "bob", tier["people"]["bob"]["token"]).api("GET", "status").status_code == 200
    assert "membership: bob may no longer use this tier" not in hub.log()
    assert "membership: ada may no longer use this tier" not in hub.log()
