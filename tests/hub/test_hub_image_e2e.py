"""End to end on loopback, no mocks: JupyterHub with hub_images/jupyterhub_config.py, the
configurable-http-proxy from node_modules, moto in server mode as S3, and a real identity provider
process (the OpenID Connect provider in lakehub/local/idp/oidc.py, or slapd over LDAPS) holding users in
two groups. Users sign in through the provider's own login form with a real HTTP client.

User servers get AWS credentials only the way ECS hands them out: AWS_CONTAINER_CREDENTIALS_FULL_URI
(served here by a loopback endpoint); the hub's environment has no AWS keys.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import pytest

import hub_harness as H
from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, emulator_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TIER_GROUP, OTHER_GROUP = "analysts", "marketing"
MEMBERS, OUTSIDER = ("alice", "bob"), "carol"
NOTEBOOKS = H.ROOT / "hub_images" / "notebooks"


def _require_tools():
    missing = [t for t in ("slapd", "ldapadd", "R") if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]
    if not (H.NODE_BIN / "configurable-http-proxy").exists():
        missing.append("configurable-http-proxy (npm install)")
    if missing:
        pytest.fail(f"missing tools for the hub end-to-end tests: {', '.join(missing)}; run `make setup`")


@pytest.fixture(scope="module")
def lake(moto_server):
    """Buckets in the emulator, the container-credentials endpoint, and (as root) reachable Python."""
    _require_tools()
    s3 = emulator_client("s3", moto_server.endpoint_url)
    notebook_bucket, data_bucket, _ = H.sales_lake(s3, ["north", "south", "north", "east", "south", "north"])
    s3.put_object(Bucket=data_bucket, Key="other-tier/secret.csv", Body=b"a,b\n1,2\n")
    creds = H.CredentialsEndpoint(EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY)
    changed = H.open_interpreter_path() if os.geteuid() == 0 else []
    before = H.unix_users_with_prefix()
    yield {
        "s3": s3,
        "notebook_bucket": notebook_bucket,
        "data_bucket": data_bucket,
        "creds": creds,
        "endpoint": moto_server.endpoint_url,
    }
    creds.stop()
    H.remove_unix_users(H.unix_users_with_prefix() - before)
    H.restore_modes(changed)


@pytest.fixture(scope="module", params=["oidc", "ldap"])
def tier(request, lake):
    """One hub per sign-in mode, with its identity provider; users and their API tokens cached."""
    mode = request.param
    groups = {TIER_GROUP: list(MEMBERS), OTHER_GROUP: [OUTSIDER]}
    prefix = f"tiers/{mode}-e2e"
    extra = dict(LAKEHUB_ALLOWED_GROUPS=TIER_GROUP, LAKEHUB_DATA_BUCKET=lake["data_bucket"], LAKEHUB_DATA_PREFIXES="pii/")
    with H.tier_hub(
        mode,
        f"{mode}-e2e",
        lake["notebook_bucket"],
        prefix,
        lake["endpoint"],
        lake["creds"].url,
        (*MEMBERS, OUTSIDER),
        groups,
        extra,
    ) as t:
        hub, passwords, sign_in = t.hub, t.passwords, t.sign_in
        state = {
            "mode": mode,
            "hub": hub,
            "idp": t.idp,
            "passwords": passwords,
            "prefix": prefix,
            "sign_in": sign_in,
            "servers": {},
            "env": t.env,
        }

        def server_for(user):
            if user not in state["servers"]:
                session, response = sign_in(hub.url, user, passwords[user])
                assert response.status_code == 200, f"{user} sign-in: {response.status_code} {response.url}\n{hub.log()[-3000:]}"
                token = H.api_token(session, hub.url, user)
                try:
                    H.wait_ready(hub.url, user, token)
                except TimeoutError as exc:
                    raise AssertionError(f"{exc}\n--- hub log ---\n{hub.log()[-6000:]}") from None
                state["servers"][user] = H.UserServer(hub.url, user, token)
            return state["servers"][user]

        state["server_for"] = server_for
        yield state


def test_tier_member_signs_in_and_gets_own_server_as_own_unix_user(tier):
    alice = tier["server_for"]("alice")
    out = alice.run(
        "python3",
        "import os, json; print(json.dumps({'uid': os.getuid(), 'user': os.environ.get('USER'), "
        "'home': os.environ.get('HOME'), 'env': sorted(os.environ)}))",
    )
    info = json.loads(out.strip().splitlines()[-1])
    env_names = set(info["env"])
    if os.geteuid() == 0:
        assert info["uid"] != 0, "a user server must never run as root"
        assert info["user"] == H.unix_username_guess("alice")
        assert oct(os.stat(info["home"]).st_mode & 0o777) == oct(0o700), "homes are private"
    # The idle culler runs as a managed hub service.
    assert "Starting managed service idle-culler" in tier["hub"].log()
    # The task role's credentials reach the user server; no secret of the hub does.
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in env_names
    assert not env_names & {
        "LAKEHUB_OAUTH_CLIENT_SECRET",
        "LAKEHUB_LDAP_BIND_PASSWORD",
        "LAKEHUB_COOKIE_SECRET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
    }


def test_saved_notebook_lands_under_tier_prefix_and_another_member_opens_it_from_shared(tier, lake):
    alice, prefix = tier["server_for"]("alice"), tier["prefix"]
    root = alice.api("GET", "contents/").json()  # the home, with the tier's shared/ folder
    assert "shared" in [item["name"] for item in root["content"]]
    try:
        alice.save_notebook("mine.ipynb", ["x = 1"])
    except Exception as exc:  # the user server's log says why (it is in the hub's log)
        raise AssertionError(f"{exc}\n--- hub log ---\n{tier['hub'].log()[-6000:]}") from None
    alice.save_notebook("shared/report.ipynb", ["print('quarterly report')"])
    keys = {o["Key"] for o in lake["s3"].list_objects_v2(Bucket=lake["notebook_bucket"], Prefix=prefix + "/")["Contents"]}
    assert f"{prefix}/users/alice/mine.ipynb" in keys
    assert f"{prefix}/shared/report.ipynb" in keys

    bob = tier["server_for"]("bob")
    bobs = [item["name"] for item in bob.api("GET", "contents/").json()["content"]]
    assert "shared" in bobs and "mine.ipynb" not in bobs  # his own home
    shared = bob.api("GET", "contents/shared").json()
    assert "report.ipynb" in [item["name"] for item in shared["content"]]
    nb = bob.api("GET", "contents/shared/report.ipynb").json()
    assert nb["type"] == "notebook"
    assert nb["content"]["cells"][0]["source"] == "print('quarterly report')"
    assert bob.api("GET", "contents/alice/mine.ipynb").status_code == 404  # not in bob's view
    # bob edits the shared notebook; alice sees the change
    bob.save_notebook("shared/report.ipynb", ["print('quarterly report, reviewed')"])
    again = alice.api("GET", "contents/shared/report.ipynb").json()
    assert "reviewed" in again["content"]["cells"][0]["source"]


def test_member_of_other_group_is_refused_with_a_clear_message(tier):
    hub = tier["hub"]
    session, response = tier["sign_in"](hub.url, OUTSIDER, tier["passwords"][OUTSIDER])
    assert response.status_code == 403
    assert "not a member of a group allowed into the" in response.text
    assert TIER_GROUP in response.text
    # and a wrong password is not mistaken for a refusal
    _, wrong = tier["sign_in"](hub.url, "alice", "not-the-password")
    assert "not a member of a group" not in wrong.text


def test_kernels_run_python_and_r_on_the_tier_data_lake(tier, lake):
    alice = tier["server_for"]("alice")
    py = alice.run(
        "python3",
        "import pandas as pd, numpy as np, pyarrow, matplotlib, s3fs\nprint(int(pd.DataFrame({'a': np.arange(4)})['a'].sum()))",
    )
    assert py.strip().splitlines()[-1] == "6"
    r = alice.run("ir", "suppressPackageStartupMessages(library(dplyr)); cat(nrow(filter(mtcars, cyl == 4)))")
    assert r.strip().endswith("11")
    # The example notebooks (hub_images/notebooks) run as they are, reading the data lake with the
    # container credentials: pandas via boto3 and s3fs, R via reticulate + boto3 with dplyr.
    py_nb = json.loads((NOTEBOOKS / "python_data_lake.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in py_nb["cells"] if c["cell_type"] == "code")
    out = alice.run("python3", code + "\nprint('ROWS', len(df), len(df2))")
    assert "ROWS 6 6" in out
    assert "pii/" in out and "other-tier" not in out
    r_nb = json.loads((NOTEBOOKS / "r_data_lake.ipynb").read_text())
    r_code = "\n".join("".join(c["source"]) for c in r_nb["cells"] if c["cell_type"] == "code")
    r_out = alice.run("ir", r_code + "\ncat('NROW', nrow(df), 'GROUPS', nrow(summary_df), '\\n')", timeout=120)
    assert "NROW 6 GROUPS 3" in r_out
    assert lake["creds"].hits > 0, "credentials came from the container-credentials endpoint"


def test_users_own_python_and_r_packages_with_c_code_survive_a_server_restart(tier):
    """Shared mode: `pip install --user` of a package with a C extension lands in ~/.local
    (PYTHONUSERBASE) and install.packages() of an R package with src/*.c in ~/R/library
    (R_LIBS_USER), both compiled in the server with no network; after the server is stopped and
    started again both load from the home (tests/user_packages.py)."""
    import requests
    import user_packages as UP

    alice = tier["server_for"]("alice")
    name = f"lhtiny{tier['mode']}"
    installed = UP.install_both(alice, name)
    hub, token = tier["hub"], alice.token
    requests.delete(f"{hub.url}/hub/api/users/alice/server", headers={"Authorization": f"token {token}"}, timeout=60)
    H.wait_stopped(hub.url, "alice", token)
    H.wait_ready(hub.url, "alice", token)  # starts it again
    UP.assert_in_home(installed, UP.check_both(alice, name), name)


def _oidc_hub_env(lake, name: str, passwords: dict, **extra) -> tuple[Path, object, dict]:
    """A work folder, an OpenID Connect provider holding `passwords`' users (all in the tier's
    group) and the environment of a hub that signs in through it."""
    from lakehub.local.idp.oidc import start_oidc

    work = Path(tempfile.mkdtemp(prefix=f"lakehub-e2e-{name}-"))
    work.chmod(0o755)
    port = H.free_port()
    redirect = f"http://127.0.0.1:{port}/hub/oauth_callback"
    idp = start_oidc(passwords, {TIER_GROUP: list(passwords)}, redirect_uris=[redirect], workdir=work)
    oidc = {
        "LAKEHUB_AUTH_MODE": "oidc",
        "LAKEHUB_OIDC_ISSUER": idp.issuer,
        "LAKEHUB_OAUTH_CLIENT_ID": idp.client_id,
        "LAKEHUB_OAUTH_CLIENT_SECRET": idp.client_secret,
        "LAKEHUB_ALLOWED_GROUPS": TIER_GROUP,
    }
    bucket, endpoint, creds = lake["notebook_bucket"], lake["endpoint"], lake["creds"].url
    env = H.base_hub_env(f"{name}-e2e", bucket, f"tiers/{name}-e2e", port, work, endpoint, creds, {**oidc, **extra})
    return work, idp, env


def test_idle_culler_stops_an_idle_server(lake, tmp_path):
    """The culler service, with its role, really stops servers idle longer than LAKEHUB_IDLE_TIMEOUT."""
    password = "pw-" + secrets.token_urlsafe(12)
    work, idp, env = _oidc_hub_env(lake, "cull", {"dora": password}, LAKEHUB_IDLE_TIMEOUT="10")
    hub = None
    try:
        hub = H.start_hub(env, work)
        hub.unix_users.add(H.unix_username_guess("dora"))
        session, response = H.oidc_sign_in(hub.url, "dora", password)
        assert response.status_code == 200
        token = H.api_token(session, hub.url, "dora")
        H.wait_ready(hub.url, "dora", token)
        H.wait_stopped(hub.url, "dora", token, timeout=90)
        assert "Culling server dora" in hub.log()  # the culler's own log line: it, not a crash, stopped it
    finally:
        if hub:
            hub.stop()
            H.remove_unix_users(hub.unix_users & H.unix_users_with_prefix())
        idp.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_a_hub_that_must_be_killed_leaves_no_culler_calling_its_api(lake):
    """The test harness, not the product: a hub that does not stop on SIGTERM is killed, and its
    idle culler (a managed service in a session of its own) goes with it; before, one was left
    running per killed hub, polling a port a later hub may get."""
    import psutil

    work, idp, env = _oidc_hub_env(lake, "kill", {})
    hub, culler = None, None
    try:
        hub = H.start_hub(env, work)
        for _ in H.tries(30, interval=0.2):
            found = [p for p in H.descendants(hub.process.pid) if "jupyterhub_idle_culler" in " ".join(p.cmdline())]
            if found:
                culler = found[0]
                break
        assert culler is not None, "the hub started no idle culler"
        os.kill(hub.process.pid, signal.SIGSTOP)  # a hub that answers nothing: SIGTERM waits, SIGKILL ends it
        hub.stop(grace=2)
        assert hub.process.poll() is not None
        try:
            culler.wait(timeout=10)
        except psutil.TimeoutExpired:
            pass
        assert not culler.is_running(), f"the killed hub's idle culler (pid {culler.pid}) is still running"
    finally:
        if hub and hub.process.poll() is None:
            os.killpg(hub.process.pid, signal.SIGKILL)
        if culler is not None and culler.is_running():
            culler.kill()
        idp.stop()
        shutil.rmtree(work, ignore_errors=True)


def _restart(tier, user):
    import requests

    server = tier["server_for"](user)
    hub = tier["hub"]
    requests.delete(f"{hub.url}/hub/api/users/{user}/server", headers={"Authorization": f"token {server.token}"}, timeout=60)
    H.wait_stopped(hub.url, user, server.token)
    try:
        H.wait_ready(hub.url, user, server.token)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- hub log ---\n{hub.log()[-6000:]}") from None
    return server


@pytest.mark.skipif(os.geteuid() != 0, reason="per-user Unix accounts need a root hub")
def test_a_users_symlinks_in_their_home_never_make_root_hand_them_a_system_folder(tier, tmp_path):
    """Issue 14 (high): `ln -s /etc ~/.local` and a server restart made the user own /etc (the hub,
    as root, created and chowned ~/.local and ~/R/library following the user's links)."""
    decoy = tmp_path / "root-owned"
    decoy.mkdir()
    before = {path: (os.stat(path).st_uid, os.stat(path).st_gid) for path in ("/etc", str(decoy))}
    alice = tier["server_for"]("alice")
    alice.run(
        "python3",
        (
            "import os, uuid\n"
            "home = os.path.expanduser('~')\n"
            "for name in ('.local', 'R'):\n"
            "    path = os.path.join(home, name)\n"
            "    if os.path.lexists(path): os.rename(path, f'{path}.{uuid.uuid4().hex[:6]}')\n"
            "os.symlink('/etc', os.path.join(home, '.local'))\n"
            f"os.symlink({str(decoy)!r}, os.path.join(home, 'R'))\n"
            "print('linked')"
        ),
    )
    try:
        _restart(tier, "alice")
        after = {path: (os.stat(path).st_uid, os.stat(path).st_gid) for path in before}
        assert after == before, "root followed a user's symlink and handed them a folder they do not own"
        assert not (decoy / "library").exists(), "root created a folder through a user's symlink"
    finally:
        for path, (uid, gid) in before.items():  # never leave the test machine's /etc changed
            if (os.stat(path).st_uid, os.stat(path).st_gid) != (uid, gid):
                os.chown(path, uid, gid)
        alice.run(
            "python3",
            "import os\nfor n in ('.local', 'R'):\n    p = os.path.expanduser('~/' + n)\n"
            "    os.path.islink(p) and os.remove(p)\nprint('unlinked')",
        )
        _restart(tier, "alice")


@pytest.mark.skipif(os.geteuid() != 0, reason="per-user Unix accounts need a root hub")
def test_each_user_has_a_private_temporary_folder_that_python_and_r_use(tier):
    """Issue 14: users shared the host's /tmp (a cross-user leak), and R could not start its
    session on a machine whose /tmp is not world-writable."""
    alice, bob = tier["server_for"]("alice"), tier["server_for"]("bob")
    info = json.loads(
        alice.run(
            "python3",
            (
                "import os, json, tempfile, stat\n"
                "d = tempfile.gettempdir(); st = os.stat(d)\n"
                "open(os.path.join(d, 'alice-secret.txt'), 'w').write('mine')\n"
                "print(json.dumps({'dir': d, 'env': os.environ.get('TMPDIR'), 'uid': st.st_uid, 'me': os.getuid(),"
                " 'mode': stat.S_IMODE(st.st_mode), 'runtime': os.environ.get('JUPYTER_RUNTIME_DIR')}))"
            ),
        )
        .strip()
        .splitlines()[-1]
    )
    assert info["dir"] == info["env"] and info["dir"] != "/tmp"
    assert info["uid"] == info["me"] and info["mode"] == 0o700
    # The server's and kernels' connection files are in that private folder too (not ~/.local).
    assert info["runtime"] and info["runtime"].startswith(info["dir"] + "/"), info
    r_temp = alice.run("ir", "cat(normalizePath(tempdir()))").strip().splitlines()[-1]
    assert r_temp.startswith(os.path.realpath(info["dir"]) + "/"), r_temp
    peek = bob.run(
        "python3",
        (
            f"import os\ntry:\n    print(open(os.path.join({info['dir']!r}, 'alice-secret.txt')).read())\n"
            "except OSError as exc:\n    print('refused', type(exc).__name__)"
        ),
    )
    assert "refused PermissionError" in peek, peek


@pytest.mark.skipif(os.geteuid() != 0, reason="per-user Unix accounts need a root hub")
def test_a_shared_mode_home_survives_a_server_stop_and_start(tier):
    """Issue 15: in shared mode the hub makes /home/<unix name> under LAKEHUB_HOME_ROOT (on AWS the
    tier's EFS access point, mounted at /home): the user's own uid, 0700, and what the user's code
    wrote there is there again after the server stops and starts."""
    from lakehub_hub.accounts import stable_uid, unix_username

    alice = tier["server_for"]("alice")
    marker = uuid.uuid4().hex
    where = (
        alice.run(
            "python3",
            (f"import os\nopen(os.path.expanduser('~/kept.txt'), 'w').write({marker!r})\nprint(os.path.expanduser('~'))"),
        )
        .strip()
        .splitlines()[-1]
    )
    unix = unix_username("alice")
    assert where == str(Path(tier["env"]["LAKEHUB_HOME_ROOT"]) / unix)
    st = os.stat(where)
    assert (st.st_uid, st.st_mode & 0o777) == (stable_uid(unix), 0o700)
    _restart(tier, "alice")
    again = alice.run("python3", "import os\nprint(open(os.path.expanduser('~/kept.txt')).read())")
    assert marker in again
