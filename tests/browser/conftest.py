"""The two platforms the browser suite runs on, and the browser.

- per-user: `lakehub local up` (the real templates in the emulator, one hub per tier, each user's
  server a task of the emulator's ECS run by the local agent with the tier role).
- shared: the hub image's config in shared mode (every user's server a process of the tier's
  task, as its own Unix user; needs root), S3 in the emulator, the loopback OpenID Connect provider.

Screenshots of every step, and the timings of the steps a person waits for, are written to
build/test-artifacts/browser/<mode>/ (LAKEHUB_TEST_ARTIFACTS moves them).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "hub"))

import hub_harness as H  # noqa: E402
from local.helpers import Platform  # noqa: E402

from lakehub.local.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, emulator_client  # noqa: E402
from lakehub.local.platform import free_base_port  # noqa: E402

ARTIFACTS = Path(os.environ.get("LAKEHUB_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts") / "browser"
NOTEBOOKS = ROOT / "hub_images" / "notebooks"


@dataclass
class Tier:
    """One tier's hub as a person meets it: its URL, two members and their passwords, and a way
    to look into the notebook bucket behind the file browser (for what the browser cannot show)."""

    mode: str
    url: str
    members: list[tuple[str, str]]
    notebook_keys: object  # callable(folder) -> set of keys below the tier's notebook root
    expected_rows: str  # what the tier's first CSV file holds (rows), as the typed cell prints it
    timings: dict = field(default_factory=dict)
    versions: object = None  # callable(path below the tier's notebook root) -> [(version id, body)], newest first

    @property
    def artifacts(self) -> Path:
        return ARTIFACTS / self.mode


@pytest.fixture(scope="module")
def chromium():
    """Playwright's sync API keeps an event loop running in this thread while it is open: close it
    with the module, or every later test that runs asyncio (jupyter_server's, the spawner's) fails
    with "This event loop is already running"."""
    from playwright.sync_api import sync_playwright

    from browser.lab import launch

    with sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()


def _per_user(tmp_path_factory):
    # Inside the checkout, as `make local`'s default state folder (.lakehub/local) is: what runs
    # there must not pick up the project's own files (its pyproject.toml, .git).
    state_dir = ROOT / "build" / f"browser-local-{uuid.uuid4().hex[:8]}"
    platform = Platform(state_dir, free_base_port())
    proc = platform.up()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        tier = platform.tier("pii")
        bucket = platform.state()["outputs"]["NotebookBucketName"]
        s3 = platform.admin_s3()

        def keys(folder: str) -> set[str]:
            prefix = f"tiers/pii/{folder.strip('/')}/"
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return {o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", [])}

        members = [(u["username"], u["password"]) for u in tier["users"]][:2]
        rows = _first_csv_rows(s3, platform)
        yield Tier("per-user", tier["url"], members, keys, rows, versions=_versions_of(s3, bucket, "tiers/pii"))
    finally:
        platform.down()
        shutil.rmtree(state_dir, ignore_errors=True)


def _versions_of(s3, bucket: str, root: str):
    """The S3 versions (not delete markers) of one key below the tier's notebook root, newest first."""

    def versions(path: str) -> list[tuple[str, bytes]]:
        key = f"{root}/{path.strip('/')}"
        listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
        return [
            (v["VersionId"], s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read())
            for v in listed
            if v["Key"] == key
        ]

    return versions


def _first_csv_rows(s3, platform) -> str:
    """The demo data lake's first pii CSV file, as the typed cell finds it."""
    bucket = platform.state()["outputs"]["DataBucketName"]
    contents = s3.list_objects_v2(Bucket=bucket, Prefix="pii/").get("Contents", [])
    key = sorted(o["Key"] for o in contents if o["Key"].endswith(".csv"))[0]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return str(len(list(csv.reader(io.StringIO(body)))) - 1)


def _shared(moto_server):
    if os.geteuid() != 0:
        pytest.skip("shared mode creates a Unix user per data scientist: run the suite as root (CI does)")
    s3 = emulator_client("s3", moto_server.endpoint_url)
    notebook_bucket, data_bucket, rows = H.sales_lake(s3, ["north", "south", "north", "east", "south"])
    prefix = "tiers/browser"
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):  # what the seeding function puts in shared/examples/
        s3.put_object(Bucket=notebook_bucket, Key=f"{prefix}/shared/examples/{nb.name}", Body=nb.read_bytes())

    creds = H.CredentialsEndpoint(EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY)
    changed = H.open_interpreter_path()
    before = H.unix_users_with_prefix()
    work = Path(tempfile.mkdtemp(prefix="lakehub-browser-shared-"))
    work.chmod(0o755)
    port = H.free_port()
    members = ("alice", "bob")
    passwords = {u: "pw-" + secrets.token_urlsafe(12) for u in members}
    idp, extra, _ = H.start_idp("oidc", passwords, {"analysts": list(members)}, port, work)
    extra.update(
        LAKEHUB_ALLOWED_GROUPS="analysts",
        LAKEHUB_DATA_BUCKET=data_bucket,
        LAKEHUB_DATA_PREFIXES="pii/",
        LAKEHUB_SERVER_MODE="shared",
    )
    env = H.base_hub_env("browser", notebook_bucket, prefix, port, work, moto_server.endpoint_url, creds.url, extra)
    hub = None
    try:
        hub = H.start_hub(env, work)
        hub.unix_users.update(H.unix_username_guess(u) for u in members)

        def keys(folder: str) -> set[str]:
            p = f"{prefix}/{folder.strip('/')}/"
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=notebook_bucket, Prefix=p)
            return {o["Key"][len(p) :] for page in pages for o in page.get("Contents", [])}

        yield Tier(
            "shared",
            hub.url,
            [(u, passwords[u]) for u in members],
            keys,
            str(len(rows) - 1),
            versions=_versions_of(s3, notebook_bucket, prefix),
        )
    finally:
        if hub:
            hub.stop()
            (work / "hub.log").exists() and shutil.copy(work / "hub.log", _artifacts("shared") / "hub.log")
        H.remove_unix_users(H.unix_users_with_prefix() - before)
        idp.stop()
        creds.stop()
        H.restore_modes(changed)
        shutil.rmtree(work, ignore_errors=True)


def _artifacts(mode: str) -> Path:
    path = ARTIFACTS / mode
    path.mkdir(parents=True, exist_ok=True)
    return path


_CLEARED: set[str] = set()


@pytest.fixture(scope="module", params=["per-user", "shared"])
def tier(request, tmp_path_factory):
    mode = request.param
    if mode not in _CLEARED:  # once per session: each module's screenshots stay
        shutil.rmtree(ARTIFACTS / mode, ignore_errors=True)
        _CLEARED.add(mode)
    _artifacts(mode)
    gen = _per_user(tmp_path_factory) if mode == "per-user" else _shared(request.getfixturevalue("moto_server"))
    t = next(gen)
    try:
        yield t
    finally:
        (ARTIFACTS / mode / "timings.json").write_text(json.dumps(t.timings, indent=2, sort_keys=True) + "\n")
        gen.close()
