"""`lakehub publish` against the emulator: everything the templates reference is uploaded.

The reference check starts at the entry templates in the bucket, reads every TemplateURL (and
Service Catalog LoadTemplateFromURL), Lambda Code S3Key and CodeBuild S3 source Location,
evaluates its Fn::Sub / Fn::Join / Ref / Fn::If expression with the parameter values a stack
would get (AssetsBucketName, AssetsKeyPrefix passed down through each nested stack's
Parameters, the AWS pseudo parameters, other parameters' defaults), and follows each nested
template from the bucket itself, not from the local folder.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import warnings
from pathlib import Path
from urllib.parse import urlparse

import pytest

from lakehub import assets
from lakehub.cfn.template import loads
from lakehub.release import packaging
from lakehub.errors import LakehubError
from lakehub.release.publish import normalize_prefix, publish

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ENTRY_TEMPLATES = ("main.template.yaml", "main-existing-vpc.template.yaml")
PSEUDO = {"AWS::Region": REGION, "AWS::URLSuffix": "amazonaws.com", "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}


class Unresolvable(Exception):
    pass


def candidates(expr, params: dict) -> list[str]:
    """Every string `expr` can evaluate to (Fn::If gives both branches)."""
    if isinstance(expr, (str, int)):
        return [str(expr)]
    if isinstance(expr, list):
        raise Unresolvable(f"list where a string was expected: {expr!r}")
    if not isinstance(expr, dict) or len(expr) != 1:
        raise Unresolvable(f"cannot evaluate {expr!r}")
    ((fn, arg),) = expr.items()
    if fn == "Ref":
        if arg == "AWS::NoValue":
            return []
        if arg in params:
            return [params[arg]]
        raise Unresolvable(f"Ref {arg} has no value")
    if fn == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        names = re.findall(r"\$\{([^}!]+)\}", text)
        options = []
        for name in names:
            if name in variables:
                options.append(candidates(variables[name], params))
            elif name in params:
                options.append([params[name]])
            else:
                raise Unresolvable(f"${{{name}}} in {text!r} has no value")
        out = []
        for combo in itertools.product(*options):
            value = text
            for name, sub in zip(names, combo):
                value = value.replace("${" + name + "}", sub, 1)
            out.append(value)
        return out
    if fn == "Fn::Join":
        delimiter, parts = arg
        return [delimiter.join(c) for c in itertools.product(*(candidates(p, params) for p in parts))]
    if fn == "Fn::If":
        return candidates(arg[1], params) + candidates(arg[2], params)
    raise Unresolvable(f"{fn} is not evaluated by this test: {expr!r}")


def references(template: dict, params: dict):
    """(kind, value, node) for every asset reference in a template."""

    def walk(node, parent=None):
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                for branch in node["Fn::If"][1:]:
                    yield from walk(branch, parent)
                return
            for key, value in node.items():
                if key == "LoadTemplateFromURL" and isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
                    continue  # the platform's copy (Custom::ProductTemplate): its SourceKey is followed
                if key == "SourceKey" and "Bucket" in node and "TargetKey" in node:
                    # Custom::ProductTemplate copies this published template at deploy time.
                    for bucket, k in itertools.product(candidates(node["Bucket"], params), candidates(value, params)):
                        yield "template", f"https://{bucket}.s3.{REGION}.amazonaws.com/{k}", node
                elif key in ("TemplateURL", "LoadTemplateFromURL"):
                    for url in candidates(value, params):
                        yield "template", url, node
                elif key == "S3Key" and "S3Bucket" in node:
                    buckets = candidates(node["S3Bucket"], params)
                    for bucket, k in itertools.product(buckets, candidates(value, params)):
                        yield "object", f"{bucket}/{k}", node
                elif key == "Location" and node.get("Type") == "S3":
                    for location in candidates(value, params):
                        yield "object", location, node
                else:
                    yield from walk(value, node)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, parent)

    yield from walk(template.get("Resources", {}))


def parameter_values(template: dict, given: dict) -> dict:
    values = dict(PSEUDO)
    for name, spec in (template.get("Parameters") or {}).items():
        if name in given:
            values[name] = given[name]
        elif "Default" in spec:
            values[name] = str(spec["Default"])
    return values


def follow(s3, bucket: str, prefix: str) -> tuple[set[str], set[str]]:
    """Walk from the entry templates in the bucket; return (template keys, object keys) referenced.
    Fails when a reference points at something that is not in the bucket."""
    seen_templates: set[str] = set()
    objects: set[str] = set()
    queue = [
        (prefix + assets.template_key(name), {"AssetsBucketName": bucket, "AssetsKeyPrefix": prefix}) for name in ENTRY_TEMPLATES
    ]
    while queue:
        key, given = queue.pop()
        if key in seen_templates:
            continue
        seen_templates.add(key)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        template = loads(body)
        params = parameter_values(template, given)
        if "AssetsKeyPrefix" in (template.get("Parameters") or {}):
            assert params["AssetsKeyPrefix"] == prefix, (
                f"{key}: AssetsKeyPrefix is not passed down ({params['AssetsKeyPrefix']!r})"
            )
        for kind, value, node in references(template, params):
            if kind == "template":
                url = urlparse(value)
                host_bucket = url.netloc.split(".s3.")[0]
                assert host_bucket == bucket, f"{key}: {value} is not in the assets bucket"
                assert url.netloc == f"{bucket}.s3.{REGION}.amazonaws.com", value
                child_key = url.path.lstrip("/")
                _assert_exists(s3, bucket, child_key, f"{key} nests {value}")
                child_given = {"AssetsBucketName": bucket}
                for name, expr in (node.get("Parameters") or {}).items():
                    try:
                        options = candidates(expr, params)
                    except Unresolvable:
                        continue
                    if len(options) == 1:
                        child_given[name] = options[0]
                queue.append((child_key, child_given))
            else:
                ref_bucket, _, obj_key = value.partition("/")
                assert ref_bucket == bucket, f"{key}: {value} is not in the assets bucket"
                _assert_exists(s3, bucket, obj_key, f"{key} references s3://{value}")
                objects.add(obj_key)
    return seen_templates, objects


def _assert_exists(s3, bucket, key, what):
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
    assert any(o["Key"] == key for o in listing), f"{what}, but s3://{bucket}/{key} was not uploaded" + (
        "; templates/ may be stale: run `python build_templates.py`" if "/functions/" in f"/{key}" else ""
    )


# ----------------------------------------------------------------- fixtures
@pytest.fixture
def bucket(aws_client):
    import uuid

    name = f"lakehub-assets-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def generated_templates(tmp_path_factory):
    """Templates generated now from the code, so this test does not depend on templates/ being
    up to date (test_publish_committed_templates checks those)."""
    try:
        from lakehub.release.build import render_all
        from lakehub.settings import load_settings
    except ImportError as exc:  # pragma: no cover - the template modules are another task's
        pytest.skip(f"template modules not available yet: {exc}")
    out = tmp_path_factory.mktemp("templates")
    try:
        rendered = render_all(load_settings(None))
    except Exception as exc:  # noqa: BLE001 - generation is tested elsewhere; publish is tested here
        if not any(assets.TEMPLATES_DIR.glob("main*.template.yaml")):
            pytest.skip(f"templates cannot be generated ({exc}) and templates/ is empty")
        warnings.warn(f"template generation failed ({str(exc)[:200]}); publishing the committed templates/ instead")
        rendered = {p.name: p.read_text() for p in assets.TEMPLATES_DIR.glob("*.template.yaml")}
    for name, text in rendered.items():
        (out / name).write_text(text)
    return out


# ----------------------------------------------------------------- tests
@pytest.mark.parametrize("prefix", ["lakehub/", "", "team/a/"])
def test_publish_uploads_everything_the_generated_templates_reference(aws_env, aws_client, bucket, generated_templates, prefix):
    uploaded = publish(bucket, prefix, REGION, aws_env.endpoint_url, templates_dir=generated_templates)
    s3 = aws_client("s3")
    templates, objects = follow(s3, bucket, prefix)
    template_files = {prefix + assets.template_key(p.name) for p in generated_templates.iterdir()}
    assert template_files <= set(uploaded)
    # Every nested template and every function is reached from the entry templates.
    reached_names = {Path(k).name for k in templates}
    assert {
        "network.template.yaml",
        "storage.template.yaml",
        "pipeline.template.yaml",
        "cluster.template.yaml",
        "tier.template.yaml",
    } <= reached_names
    function_keys = {prefix + assets.function_key(name) for name in assets.FUNCTIONS}
    assert function_keys <= objects, f"functions not referenced by any template: {function_keys - objects}"
    assert prefix + packaging.SOURCE_ZIP_KEY in objects  # the pipeline's S3 source
    # What was uploaded is what is on disk.
    for name in assets.FUNCTIONS:
        key = prefix + assets.function_key(name)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == (assets.FUNCTIONS_BUILD_DIR / assets.function_zip_name(name)).read_bytes()


def test_publish_committed_templates(aws_env, aws_client, bucket):
    if not any(assets.TEMPLATES_DIR.glob("main*.template.yaml")):
        pytest.skip("templates/ has no entry templates yet")
    publish(bucket, "lakehub/", REGION, aws_env.endpoint_url)
    follow(aws_client("s3"), bucket, "lakehub/")


def test_reference_parser_understands_join_and_sub_forms():
    template = loads(
        """
Parameters:
  AssetsKeyPrefix: {Type: String, Default: 'x/'}
  AssetsBucketName: {Type: String}
Resources:
  Child:
    Type: AWS::CloudFormation::Stack
    Properties:
      TemplateURL: !Join ['', ['https://', !Ref AssetsBucketName, '.s3.', !Ref 'AWS::Region', '.', !Ref 'AWS::URLSuffix', '/', !Ref AssetsKeyPrefix, 'templates/child.template.yaml']]
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Code:
        S3Bucket: !Ref AssetsBucketName
        S3Key: !Sub ['${P}functions/${Z}', {P: !Ref AssetsKeyPrefix, Z: f-0123.zip}]
  Build:
    Type: AWS::CodeBuild::Project
    Properties:
      Source: !If [UseS3, {Type: S3, Location: !Sub '${AssetsBucketName}/${AssetsKeyPrefix}source/s.zip'}, {Type: CODECOMMIT, Location: x}]
"""
    )
    params = parameter_values(template, {"AssetsBucketName": "b-1"})
    found = sorted((kind, value) for kind, value, _ in references(template, params))
    assert found == [
        ("object", "b-1/x/functions/f-0123.zip"),
        ("object", "b-1/x/source/s.zip"),
        ("template", "https://b-1.s3.us-east-1.amazonaws.com/x/templates/child.template.yaml"),
    ]


def test_missing_bucket_is_one_clear_line(aws_env, generated_templates):
    with pytest.raises(LakehubError, match=r"^bucket no-such-assets-bucket does not exist; create it"):
        publish("no-such-assets-bucket", "lakehub/", REGION, aws_env.endpoint_url, templates_dir=generated_templates)


def test_cli_missing_credentials_is_one_line_and_non_zero(aws_env, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakehub.cli",
            "publish",
            "--bucket",
            "lakehub-assets",
            "--region",
            REGION,
            "--endpoint-url",
            aws_env.endpoint_url,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "lakehub: error: no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run `aws configure`"
    ]


def test_cli_prints_what_it_uploaded(aws_env, aws_client, bucket):
    if not any(assets.TEMPLATES_DIR.glob("*.template.yaml")):
        pytest.skip("templates/ is empty")
    proc = subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "publish", "--bucket", bucket, "--prefix", "demo"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    keys = [o["Key"] for o in aws_client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(k.startswith("demo/") for k in keys)
    for key in keys:
        assert key in proc.stdout
    assert f"https://{bucket}.s3.{REGION}.amazonaws.com/demo/templates/main.template.yaml" in proc.stdout


@pytest.mark.parametrize("given, expected", [("", ""), ("lakehub", "lakehub/"), ("/a/b/", "a/b/"), ("a/b", "a/b/")])
def test_prefix_is_normalized_to_the_templates_pattern(given, expected):
    assert normalize_prefix(given) == expected


def test_bad_prefix_is_refused():
    with pytest.raises(LakehubError, match="not a valid AssetsKeyPrefix"):
        normalize_prefix("two words/")


def test_stage_lays_out_the_bucket_layout(tmp_path, generated_templates):
    from lakehub.release.publish import stage

    keys = stage(tmp_path, templates_dir=generated_templates)
    for key in keys:
        assert (tmp_path / key).is_file()
    assert (tmp_path / "templates" / "main.template.yaml").is_file()
    assert (tmp_path / packaging.SOURCE_ZIP_KEY).is_file()


# ------------------------------------------------------------------ the bucket first (issue 16)
@pytest.fixture
def nothing_built(monkeypatch):
    """Fails the test if publish builds a function or source zip (it writes build/)."""
    built = []

    def refuse(*args, **kwargs):
        built.append(args)
        raise AssertionError("publish built its zips before it checked the bucket")

    monkeypatch.setattr(packaging, "build_all", refuse)
    monkeypatch.setattr(packaging, "build_source_zip", refuse)
    return built


def _bucket_in(aws_client, region: str) -> str:
    import uuid

    name = f"lakehub-assets-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def _keys(aws_client, bucket: str) -> list[str]:
    return [o["Key"] for o in aws_client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_missing_bucket_is_found_before_anything_is_built(aws_env, generated_templates, nothing_built):
    with pytest.raises(LakehubError, match=r"^bucket no-such-assets-bucket does not exist"):
        publish("no-such-assets-bucket", "lakehub/", REGION, aws_env.endpoint_url, templates_dir=generated_templates)
    assert nothing_built == []


def test_a_bucket_in_another_region_than_the_stacks_is_refused_before_writing(
    aws_env, aws_client, generated_templates, nothing_built
):
    bucket = _bucket_in(aws_client, "eu-west-1")
    with pytest.raises(LakehubError) as err:
        publish(bucket, "lakehub/", REGION, aws_env.endpoint_url, templates_dir=generated_templates)
    message = str(err.value)
    assert "eu-west-1" in message and REGION in message and "--region eu-west-1" in message
    assert nothing_built == [] and _keys(aws_client, bucket) == []


def test_publish_takes_its_region_from_aws_region(aws_env, aws_client, generated_templates, nothing_built, monkeypatch):
    # AWS_REGION says eu-west-1 (AWS_DEFAULT_REGION says us-east-1): a us-east-1 bucket is the
    # wrong region for stacks deployed with this configuration.
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    import uuid

    bucket = f"lakehub-assets-{uuid.uuid4().hex[:10]}"
    aws_client("s3").create_bucket(Bucket=bucket)  # us-east-1
    with pytest.raises(LakehubError, match="us-east-1.*eu-west-1|eu-west-1.*us-east-1"):
        publish(bucket, "lakehub/", None, aws_env.endpoint_url, templates_dir=generated_templates)
    assert _keys(aws_client, bucket) == []


def test_publish_into_a_bucket_of_the_aws_region(aws_env, aws_client, generated_templates, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    bucket = _bucket_in(aws_client, "eu-west-1")
    from lakehub.release.publish import _publish

    keys, region = _publish(bucket, "lakehub/", None, aws_env.endpoint_url, generated_templates)
    assert region == "eu-west-1" and keys and sorted(keys) == sorted(_keys(aws_client, bucket))


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1:1", "http://127.0.0.1:99999"])
def test_publish_refuses_a_malformed_endpoint_url_in_one_line(aws_env, tmp_path, url):
    proc = subprocess.run(
        [sys.executable, "-m", "lakehub.cli", "publish", "--bucket", "lakehub-assets", "--endpoint-url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**__import__("os").environ},
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lakehub: error: --endpoint-url"), proc.stderr


def test_publish_requests_have_bounded_timeouts_and_retries():
    from lakehub.release.publish import _s3_client

    config = _s3_client("us-east-1", "http://127.0.0.1:4750").meta.config
    assert config.connect_timeout <= 10 and config.read_timeout <= 60
    assert config.retries["total_max_attempts"] <= 4


def test_publish_to_an_endpoint_that_is_not_s3_writes_nothing(aws_env, generated_templates, nothing_built, not_aws):
    """A web server that answers 200 to everything is not a bucket (HeadBucket has no body)."""
    with pytest.raises(LakehubError, match=f"^{not_aws.url} does not answer as AWS S3"):
        publish("lakehub-assets", "lakehub/", REGION, not_aws.url, templates_dir=generated_templates)
    assert "PUT" not in not_aws.seen and nothing_built == []


def test_publish_to_an_endpoint_that_never_answers_times_out_with_a_message(
    aws_env, generated_templates, nothing_built, monkeypatch
):
    import socket
    import time

    from lakehub.release import deploy

    monkeypatch.setattr(deploy, "READ_TIMEOUT", 2.0, raising=False)  # the bound every request has (60 s)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # connections complete in the backlog; nothing ever answers
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(LakehubError, match=f"^S3 at {url} did not answer within 2 s"):
            publish("lakehub-assets", "lakehub/", REGION, url, templates_dir=generated_templates)
    finally:
        sock.close()
    assert time.monotonic() - started < 30 and nothing_built == []
