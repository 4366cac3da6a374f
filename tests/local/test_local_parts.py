"""The local environment's parts, without bringing the whole platform up: the state folder's
lock, the container-credentials endpoint (read by botocore itself), the unmodelled-types list,
and the emulator's local Lambda runner answering CloudFormation for a custom resource."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import boto3
import botocore.session
import pytest

from lakehub.errors import LakehubError
from lakehub.local.emulator import emulator_client
from lakehub.local.credentials import CredentialsServer
from lakehub.local.state import StateDir
from lakehub.local.unmodelled import template_types, unmodelled

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_supervisor_cannot_take_the_state_folder(tmp_path):
    first = StateDir(tmp_path)
    first.acquire()
    try:
        assert StateDir(tmp_path).running_pid() == int((tmp_path / "supervisor.pid").read_text())
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "from lakehub.local.state import StateDir; import sys; StateDir(sys.argv[1]).acquire()",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert child.returncode != 0 and "already running" in child.stderr
    finally:
        first.release()
    assert StateDir(tmp_path).running_pid() is None


def test_state_file_is_private(tmp_path):
    s = StateDir(tmp_path)
    s.write({"tiers": []})
    assert (tmp_path / "state.json").stat().st_mode & 0o077 == 0


def test_botocore_reads_the_tier_role_from_the_credentials_endpoint(monkeypatch):
    server = CredentialsServer(0).start()
    try:
        env = server.add_role(
            "pii-hub", {"AccessKeyId": "ASIALOCALTEST", "SecretAccessKey": "not-a-secret", "SessionToken": "tok"}
        )
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        creds = botocore.session.Session().get_credentials().get_frozen_credentials()
        assert (creds.access_key, creds.secret_key, creds.token) == ("ASIALOCALTEST", "not-a-secret", "tok")
        # Without the token (or with another role's), nothing.
        req = urllib.request.Request(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403
    finally:
        server.stop()


def test_unmodelled_types_come_from_the_templates_and_moto():
    from moto.cloudformation.parsing import get_model_map

    rows = unmodelled()
    types = {r["type"] for r in rows}
    assert "AWS::CodeBuild::Project" in types and "AWS::S3::BucketPolicy" in types
    assert not types & set(get_model_map())
    assert types <= set(template_types())
    assert not any(t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource" for t in types)
    assert all(r["local"] and r["templates"] for r in rows)


# ------------------------------------------------------------------------------------------
# the local Lambda runner
# ------------------------------------------------------------------------------------------
HANDLER = """
import json, urllib.error, urllib.request

def handler(event, context):
    props = event["ResourceProperties"]
    ok = props.get("Fail") != "yes"
    body = {"Status": "SUCCESS" if ok else "FAILED", "Reason": "asked to fail by the test",
            "PhysicalResourceId": "thing-" + props.get("Name", ""), "StackId": event["StackId"],
            "RequestId": event["RequestId"], "LogicalResourceId": event["LogicalResourceId"],
            "Data": {"Greeting": "hello " + props.get("Name", ""), "Remaining": context.get_remaining_time_in_millis() > 0}}
    assert event["ResponseURL"].startswith("https://")  # as CloudFormation's pre-signed URL
    # A forged answer (the relay's URL without its per-request value) must be refused.
    forged = urllib.request.Request(event["ResponseURL"].split("&signature=")[0], method="PUT",
                                    data=json.dumps(dict(body, Status="FAILED", Reason="forged")).encode())
    try:
        urllib.request.urlopen(forged, timeout=10).read()
        body["Data"]["Forged"] = "accepted"
    except urllib.error.HTTPError as e:
        body["Data"]["Forged"] = str(e.code)
    req = urllib.request.Request(event["ResponseURL"], data=json.dumps(body).encode(), method="PUT")
    urllib.request.urlopen(req, timeout=10).read()
"""

TEMPLATE = """
Parameters:
  Fail: {Type: String, Default: "no"}
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement: [{Effect: Allow, Principal: {Service: lambda.amazonaws.com}, Action: sts:AssumeRole}]
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: !GetAtt Role.Arn
      Code: {S3Bucket: runner-test, S3Key: fn.zip}
  Thing:
    Type: AWS::CloudFormation::CustomResource
    Properties:
      ServiceToken: !GetAtt Fn.Arn
      Name: world
      Fail: !Ref Fail
  Tag:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Name: !Sub "/runner-test/${AWS::StackName}"
      Value: !GetAtt Thing.Greeting
Outputs:
  Greeting: {Value: !GetAtt Thing.Greeting}
  Physical: {Value: !Ref Thing}
  Forged: {Value: !GetAtt Thing.Forged}
"""


@pytest.mark.e2e
def test_custom_resource_runs_locally_and_its_data_feeds_the_stack(local_emulator, emulator_env, tmp_path):
    from lakehub.release.deploy import deploy

    s3 = boto3.client("s3", endpoint_url=local_emulator, region_name="us-east-1")
    s3.create_bucket(Bucket="runner-test")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", HANDLER)
    s3.put_object(Bucket="runner-test", Key="fn.zip", Body=buf.getvalue())
    template = Path(tmp_path) / "runner.yaml"
    template.write_text(TEMPLATE)
    try:
        ok = deploy({}, stack_name="runner-ok", region="us-east-1", endpoint_url=local_emulator, template_file=template)
        # The answer's Data reached a resource created after it, as in CloudFormation.
        assert ok.outputs == {"Greeting": "hello world", "Physical": "thing-world", "Forged": "403"}
        ssm = boto3.client("ssm", endpoint_url=local_emulator, region_name="us-east-1")
        assert ssm.get_parameter(Name="/runner-test/runner-ok")["Parameter"]["Value"] == "hello world"
        with pytest.raises(LakehubError, match="Thing .* failed: asked to fail by the test"):
            deploy(
                {"Fail": "yes"}, stack_name="runner-fail", region="us-east-1", endpoint_url=local_emulator, template_file=template
            )
    finally:
        template.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------
# the emulator's control plane (issue 14, local mode)
# ------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_emulator_control_api_answers_only_the_supervisor_token(local_emulator):
    """Code in a kernel reaches the emulator's port; without the supervisor's token it can
    neither switch IAM enforcement off, wipe the emulator, dump its secrets, change task states,
    nor answer for a custom resource through moto's own endpoint."""
    from lakehub.local.control import HEADER

    attempts = [
        ("POST", "/moto-api/reset-auth", b"1000000"),
        ("POST", "/moto-api/reset", b""),
        ("GET", "/moto-api/data.json", None),
        ("GET", "//moto-api/data.json", None),
        ("GET", "/moto-api/%64ata.json", None),
        ("GET", "/moto-api/", None),
        (
            "POST",
            "/moto-api/state-manager/set-transition",
            b'{"model_name": "ecs::task", "transition": {"progression": "immediate"}}',
        ),
        ("POST", "/moto-api/recorder/replay-recording", b""),
        ("PUT", "/cloudformation_us-east-1/cfnresponse", b"{}"),
    ]
    for method, path, data in attempts:
        for headers in ({}, {HEADER: "not-the-token"}, {HEADER: ""}):
            req = urllib.request.Request(
                f"{local_emulator}{path}", data=data, method=method, headers=dict(headers, **{"Content-Type": "text/plain"})
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(req, timeout=10).read()
            assert refused.value.code == 403, (method, path, headers)
    # moto's own host name for its control API is refused the same way.
    req = urllib.request.Request(f"{local_emulator}/moto-api/data.json", headers={"Host": "motoapi.amazonaws.com"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10).read()
    assert refused.value.code == 403
    # The supervisor's token opens it; AWS calls need none.
    req = urllib.request.Request(
        f"{local_emulator}/moto-api/state-manager/get-transition?model_name=ecs::task",
        headers={HEADER: local_emulator.control_token},
    )
    assert json.loads(urllib.request.urlopen(req, timeout=10).read())
    sts = emulator_client("sts", local_emulator)
    assert sts.get_caller_identity()["Account"]


def test_the_emulator_will_not_start_without_a_control_token(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehub.local.emulator_server",
            "--port",
            "1",
            "--work-dir",
            str(tmp_path),
            "--control-token-file",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "cannot read --control-token-file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_shared_mode_homes_live_in_the_tiers_folder_of_the_emulated_homes_file_system(tmp_path):
    """Issue 15: the local shared-mode hub makes users' homes where the tier's HomesAccessPoint
    points (<state>/efs/<fs id>/tiers/<tier>, root's 0755), the folder per-user mode's access
    points live under, so a home outlives the hub's servers like on EFS."""
    import os
    import stat

    from lakehub.local import accounts
    from lakehub.local.platform import LocalPlatform

    state = StateDir(tmp_path / "state")
    state.ensure()
    platform = LocalPlatform(state, server_mode="shared")
    tier = platform.tiers[0]
    try:
        root = platform.home_root(tier, "fs-0123abcd")
        assert root == state.path / "efs" / "fs-0123abcd" / "tiers" / tier.name
        st = root.stat()
        assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == os.geteuid()
        assert platform.home_root(tier, "fs-0123abcd") == root  # found again, not remade
        with pytest.raises(LakehubError):
            platform.home_root(tier, "../../etc")
    finally:
        accounts.restore_modes(platform._opened)
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o700  # the state folder closed again


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--base-port", "0"], "--base-port"),
        (["--base-port", "-1"], "--base-port"),
        (["--base-port", "65530"], "--base-port"),  # base+10.. would pass 65535
        (["--base-port", "eighty"], "--base-port"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-3"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
    ],
)
def test_local_up_refuses_a_port_or_timeout_it_cannot_use_before_doing_anything(tmp_path, capsys, argv, says):
    from lakehub.cli import build_parser

    state = tmp_path / "state"
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["local", "up", "--state-dir", str(state), *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and err[-1].startswith("lakehub local up: error: argument")
    assert not state.exists()


def test_local_up_takes_a_usable_base_port_and_timeout():
    from lakehub.cli import build_parser

    args = build_parser().parse_args(["local", "up", "--base-port", "9100", "--timeout", "30"])
    assert (args.base_port, args.timeout) == (9100, 30.0)


@pytest.mark.parametrize("value", ["0", "-2", "101", "ten", "2.5", ""])
def test_local_up_refuses_a_demo_user_count_outside_1_to_100_before_doing_anything(tmp_path, capsys, value):
    from lakehub.cli import build_parser

    state = tmp_path / "state"
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["local", "up", "--state-dir", str(state), "--demo-users", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lakehub local up: error: argument --demo-users") and "1-100" in err[-1]
    assert not state.exists()


def test_the_demo_user_plan_keeps_todays_names_and_adds_predictable_ones_per_tier():
    from lakehub.cli import build_parser
    from lakehub.local.platform import demo_user_names

    assert build_parser().parse_args(["local", "up", "--demo-users", "25"]).demo_users == 25
    assert build_parser().parse_args(["local", "up"]).demo_users is None  # the platform's default, 2
    assert demo_user_names("pii") == ["alice", "bob"]
    assert demo_user_names("nonpii") == ["carol", "dave"]
    assert demo_user_names("pii", 1) == ["alice"]
    assert demo_user_names("pii", 4) == ["alice", "bob", "pii-user3", "pii-user4"]
    assert demo_user_names("gold", 3) == ["gold-user1", "gold-user2", "gold-user3"]
    assert len(set(demo_user_names("nonpii", 100))) == 100
    with pytest.raises(LakehubError, match="1-100"):
        demo_user_names("pii", 101)


def test_the_identity_provider_gets_n_users_per_tier_in_the_tiers_groups(tmp_path, monkeypatch):
    """LocalPlatform.start_identity_provider with --demo-users 3: three users per tier, each in the
    tier's groups only, a password of their own, all of it in state for `status`."""
    from lakehub.local import platform as P

    seen = {}

    import subprocess
    import sys
    import types

    def fake_start_oidc(users, groups, **kw):
        seen.update(users=users, groups=groups)
        # a process in the provider's place: the supervisor records and watches it
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        seen["proc"] = proc
        return types.SimpleNamespace(process=proc, stop=proc.kill, issuer="http://127.0.0.1:9101")

    import lakehub.local.idp.oidc as oidc

    monkeypatch.setattr(oidc, "start_oidc", fake_start_oidc)
    plat = P.LocalPlatform(StateDir(tmp_path / "state"), base_port=9100, demo_users=3)
    try:
        plat.start_identity_provider()
    finally:
        if "proc" in seen:
            seen["proc"].kill()
            seen["proc"].wait(timeout=10)
    status = plat.status()["tiers"]
    assert [len(t["users"]) for t in status] == [3] * len(plat.tiers)
    assert len(seen["users"]) == 3 * len(plat.tiers)
    assert len(set(seen["users"].values())) == len(seen["users"])  # one password each
    for tier in plat.tiers:
        names = [u["username"] for u in tier.users]
        assert names == P.demo_user_names(tier.name, 3)
        for group in tier.groups:
            assert set(names) <= set(seen["groups"][group])
        others = {u["username"] for t in plat.tiers if t is not tier for u in t.users}
        assert not others & {n for g in tier.groups for n in seen["groups"][g]}
