"""lakehub deploy: parameters, change sets (CREATE, UPDATE, no changes), outputs, one-line errors.

The change-set tests run against the local emulator server (moto in server mode with the local
environment's fixes, see lakehub/local/emulator_server.py), the same endpoint `lakehub local up`
deploys to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakehub.deploy import check_parameters, deploy, parse_parameter, read_parameters_file, template_url_for
from lakehub.emulator import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY
from lakehub.errors import LakehubError

ROOT = Path(__file__).resolve().parents[1]

SMALL_TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  BucketSuffix:
    Type: String
  Tag:
    Type: String
    Default: one
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub 'lakehub-deploy-test-${BucketSuffix}'
      Tags:
        - Key: tag
          Value: !Ref Tag
Outputs:
  BucketName:
    Value: !Ref Bucket
    Description: the bucket
  TagValue:
    Value: !Ref Tag
    Description: the tag
"""


def test_parameter_needs_key_and_value():
    assert parse_parameter("DomainName=a.example.com") == ("DomainName", "a.example.com")
    assert parse_parameter("Empty=") == ("Empty", "")
    with pytest.raises(LakehubError, match="Key=Value"):
        parse_parameter("DomainName")


def test_parameters_file_reads_mapping_and_cloudformation_list(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("DomainName: x.example.com\nMinTasks: 1\nUseSpot: true\n")
    assert read_parameters_file(a) == {"DomainName": "x.example.com", "MinTasks": "1", "UseSpot": "true"}
    b = tmp_path / "b.json"
    b.write_text('[{"ParameterKey": "DomainName", "ParameterValue": "y.example.com"}]')
    assert read_parameters_file(b) == {"DomainName": "y.example.com"}
    c = tmp_path / "c.json"
    c.write_text('[{"Key": "x"}]')
    with pytest.raises(LakehubError, match="ParameterKey"):
        read_parameters_file(c)
    with pytest.raises(LakehubError, match="cannot read"):
        read_parameters_file(tmp_path / "missing.json")


def test_unknown_and_missing_parameters_are_one_line_errors():
    declared = {"DomainName": {"Type": "String"}, "Tag": {"Type": "String", "Default": "x"}}
    with pytest.raises(LakehubError, match="no parameter Typo"):
        check_parameters({"DomainName": "a", "Typo": "b"}, declared, set())
    with pytest.raises(LakehubError, match="missing parameter DomainName"):
        check_parameters({}, declared, set())
    check_parameters({}, declared, {"DomainName"})  # an update keeps the previous value


def test_template_url_is_the_published_main_template():
    url = template_url_for({"AssetsBucketName": "b1", "AssetsKeyPrefix": "p/"}, "eu-west-1", {})
    assert url == "https://b1.s3.eu-west-1.amazonaws.com/p/templates/main.template.yaml"
    with pytest.raises(LakehubError, match="AssetsBucketName"):
        template_url_for({}, "eu-west-1", {})


def test_without_credentials_deploy_says_so_in_one_line(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env = {k: v for k, v in os.environ.items()}
    proc = subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "deploy", "--region", "us-east-1",
         "--parameter", "AssetsBucketName=b1", "--parameter", "DomainName=x.example.com", "--parameter", "HostedZoneId=Z1"],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lakehub: error: no AWS credentials found")
    assert "Traceback" not in proc.stderr


@pytest.fixture
def emulator_env(local_emulator, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY,
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return local_emulator


@pytest.mark.e2e
def test_create_then_update_then_no_changes_through_change_sets(emulator_env, tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text(SMALL_TEMPLATE)
    lines: list[str] = []
    first = deploy({"BucketSuffix": "a1"}, stack_name="deploy-test", region="us-east-1", endpoint_url=emulator_env,
                   template_file=template, progress=lines.append)
    assert first.change_set_type == "CREATE"
    assert first.status == "CREATE_COMPLETE"
    assert first.outputs == {"BucketName": "lakehub-deploy-test-a1", "TagValue": "one"}
    assert any("change set" in line for line in lines)

    second = deploy({"Tag": "two"}, stack_name="deploy-test", region="us-east-1", endpoint_url=emulator_env,
                    template_file=template)  # BucketSuffix keeps its previous value
    assert second.change_set_type == "UPDATE"
    assert second.status == "UPDATE_COMPLETE"
    assert second.outputs["TagValue"] == "two"

    third = deploy({"Tag": "two", "BucketSuffix": "a1"}, stack_name="deploy-test", region="us-east-1",
                   endpoint_url=emulator_env, template_file=template)
    assert third.change_set_type == "NONE"


@pytest.mark.e2e
def test_unknown_parameter_fails_before_any_change_set(emulator_env, tmp_path):
    import boto3

    template = tmp_path / "t.yaml"
    template.write_text(SMALL_TEMPLATE)
    with pytest.raises(LakehubError, match="no parameter Nope"):
        deploy({"BucketSuffix": "b2", "Nope": "x"}, stack_name="deploy-test-2", region="us-east-1",
               endpoint_url=emulator_env, template_file=template)
    cfn = boto3.client("cloudformation", endpoint_url=emulator_env, region_name="us-east-1")
    assert "deploy-test-2" not in {s["StackName"] for s in cfn.list_stacks()["StackSummaries"]}
