"""`lakehub publish`: upload the templates and function zips where the templates look for them.

Layout under the assets bucket and key prefix (the templates' AssetsBucketName and
AssetsKeyPrefix parameters):
  <prefix>templates/<file>             every file of templates/
  <prefix>functions/<name>-<hash>.zip  every function zip (built if needed)
  <prefix>source/hub-image.zip         the hub image's build source (pipeline SourceType s3)

Before it builds or uploads anything, publish checks the bucket: it exists, the endpoint
answers as S3, and it is in the region the stacks will be deployed in (--region, AWS_REGION,
AWS_DEFAULT_REGION or the profile's; Lambda reads function code only from its own region).

Then `aws cloudformation create-stack --template-url
https://<bucket>.s3.<region>.amazonaws.com/<prefix>templates/main.template.yaml ...` works.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lakehub import assets
from lakehub.release import packaging
from lakehub.errors import LakehubError

DEFAULT_PREFIX = "lakehub/"  # the templates' AssetsKeyPrefix default
PREFIX_PATTERN = re.compile(r"^([0-9a-zA-Z!_.'()-]+/)*$")  # the templates' AllowedPattern (no '*': IAM wildcard)
BUCKET_PATTERN = re.compile(r"^[0-9a-z][0-9a-z.-]{1,61}[0-9a-z]$")
CONTENT_TYPES = {
    ".yaml": "application/x-yaml",
    ".yml": "application/x-yaml",
    ".json": "application/json",
    ".zip": "application/zip",
}


def normalize_prefix(prefix: str | None) -> str:
    """'' stays ''; 'a/b' becomes 'a/b/'; a leading '/' is dropped. Raises on keys the
    templates' AssetsKeyPrefix pattern would refuse."""
    prefix = (prefix or "").lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if not PREFIX_PATTERN.match(prefix):
        raise LakehubError(
            f"--prefix {prefix!r} is not a valid AssetsKeyPrefix: use key segments of letters, digits and !_.'()- each followed by '/', such as lakehub/"
        )
    return prefix


def assets_to_publish(templates_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(key under the prefix, local file) of everything publish uploads, building zips first."""
    templates_dir = templates_dir or assets.TEMPLATES_DIR
    templates = (
        sorted(p for p in templates_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        if templates_dir.is_dir()
        else []
    )
    if not templates:
        raise LakehubError(f"no templates in {templates_dir}; run `lakehub build` first")
    files = [(assets.template_key(p.relative_to(templates_dir).as_posix()), p) for p in templates]
    for _name, zip_path in packaging.build_all().items():
        files.append((assets.FUNCTIONS_KEY + zip_path.name, zip_path))
    files.append((packaging.SOURCE_ZIP_KEY, packaging.build_source_zip()))
    return files


def _s3_client(region: str | None, endpoint_url: str | None):
    """S3 with bounded connect/read timeouts and attempts (lakehub.release.deploy.client_config)."""
    from lakehub.release.deploy import client_config, make_client

    return make_client("s3", region, endpoint_url, client_config(endpoint_url=endpoint_url))


def _check_bucket(s3, bucket: str) -> str:
    """The bucket's region; a clear LakehubError when it is missing or out of reach."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )
    from botocore.parsers import ResponseParserError

    from lakehub.release.deploy import unreachable

    where = s3.meta.endpoint_url
    try:
        response = s3.head_bucket(Bucket=bucket)
    except (ResponseParserError, ClientError) as exc:
        # Something that is not S3 answered (HeadBucket has no body: only the headers show it).
        if isinstance(exc, ResponseParserError) or not _from_aws(exc.response):
            raise unreachable(ResponseParserError(), "S3", where) from None
        raise _bucket_error(exc, bucket) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise LakehubError(
            "no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run `aws configure`"
        ) from None
    except NoRegionError:
        raise LakehubError("no AWS region set: pass --region or set AWS_REGION") from None
    except EndpointConnectionError as exc:
        raise LakehubError(
            f"cannot reach S3 at {exc.kwargs.get('endpoint_url', 'its endpoint')}; check --endpoint-url and the network"
        ) from None
    except BotoCoreError as exc:
        error = unreachable(exc, "S3", where, s3.meta.config.read_timeout, longer="")
        if error is None:
            raise LakehubError(f"cannot reach S3 at {where}: {str(exc).splitlines()[0]}") from None
        raise error from None
    if not _from_aws(response):
        # A web server that says 200 to anything is not a bucket, and would take the uploads.
        raise unreachable(ResponseParserError(), "S3", where)
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return headers.get("x-amz-bucket-region") or s3.meta.region_name or "us-east-1"


def _from_aws(response: dict) -> bool:
    """S3 marks every answer with a request id (x-amz-request-id; emulators x-amzn-requestid)."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return any(name.lower().startswith("x-amz") for name in headers)


def _bucket_error(exc, bucket: str) -> LakehubError:
    code = str(exc.response.get("Error", {}).get("Code"))
    if code in ("404", "NoSuchBucket", "NotFound"):
        return LakehubError(
            f"bucket {bucket} does not exist; create it (aws s3 mb s3://{bucket}) or pass an existing bucket with --bucket"
        )
    if code in ("403", "AccessDenied", "Forbidden"):
        return LakehubError(f"access denied to bucket {bucket}: the credentials in use need s3:ListBucket and s3:PutObject on it")
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return LakehubError(f"the AWS credentials were refused ({code}); refresh them or choose another AWS_PROFILE")
    return LakehubError(f"cannot use bucket {bucket}: {code}")


def check_bucket_region(bucket: str, bucket_region: str, region: str | None) -> None:
    """The stacks' functions read their zips from this bucket, and Lambda reads code only from a
    bucket in the function's own region (AWS::Lambda::Function Code.S3Bucket): publishing for
    `region` into a bucket elsewhere would fail the deploy late, so it fails here, first."""
    if region and region != bucket_region:
        raise LakehubError(
            f"bucket {bucket} is in {bucket_region}, not {region} where the stacks would be deployed (Lambda reads "
            f"function code only from a bucket in its own region); pass --region {bucket_region} (and deploy there) "
            f"or use an assets bucket in {region}"
        )


def publish(
    bucket: str,
    prefix: str | None = DEFAULT_PREFIX,
    region: str | None = None,
    endpoint_url: str | None = None,
    *,
    templates_dir: Path | None = None,
) -> list[str]:
    """Upload every template, function zip and the hub source zip; return the keys uploaded."""
    return _publish(bucket, prefix, region, endpoint_url, templates_dir)[0]


def _publish(bucket, prefix, region, endpoint_url, templates_dir=None) -> tuple[list[str], str]:
    if not bucket or not BUCKET_PATTERN.match(bucket):
        raise LakehubError(f"--bucket {bucket!r} is not a valid S3 bucket name")
    prefix = normalize_prefix(prefix)
    # The bucket first (there, reachable, in the stacks' region): nothing is built or uploaded
    # for a bucket that cannot take it.
    from lakehub.release.deploy import resolve_region

    region = resolve_region(region)
    s3 = _s3_client(region, endpoint_url)
    bucket_region = _check_bucket(s3, bucket)
    check_bucket_region(bucket, bucket_region, region)
    files = assets_to_publish(templates_dir)
    from botocore.exceptions import ClientError

    uploaded = []
    for key, path in files:
        full_key = prefix + key
        try:
            with path.open("rb") as body:
                s3.put_object(
                    Bucket=bucket,
                    Key=full_key,
                    Body=body,
                    ContentType=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            raise LakehubError(f"uploading s3://{bucket}/{full_key} failed: {code}") from None
        uploaded.append(full_key)
    return uploaded, bucket_region


def stage(dest: Path, templates_dir: Path | None = None) -> list[str]:
    """Lay out what publish uploads in a local folder (templates/, functions/, source/), for
    tools that upload a project folder themselves (taskcat)."""
    files = assets_to_publish(templates_dir)
    for sub in ("templates", "functions", "source"):
        shutil.rmtree(dest / sub, ignore_errors=True)
    for key, path in files:
        target = dest / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return [key for key, _ in files]


def template_url(bucket: str, prefix: str, region: str, filename: str = "main.template.yaml") -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{region}.{suffix}/{prefix}{assets.template_key(filename)}"
