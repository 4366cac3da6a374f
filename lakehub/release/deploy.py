"""`lakehub deploy`: create or update the main stack through a change set.

    lakehub deploy --parameter AssetsBucketName=my-assets --parameter DomainName=lakehub.example.com \\
                   --parameter HostedZoneId=Z123 [--parameters-file params.json] [--endpoint-url URL]

1. The template: by default the published main template in the assets bucket
   (https://<AssetsBucketName>.s3.<region>.amazonaws.com/<AssetsKeyPrefix>templates/main.template.yaml,
   run `lakehub publish` first: the nested stacks and function zips are read from there too);
   `--template-file` sends a local file as the template body instead.
2. A change set of type CREATE (no stack yet) or UPDATE (the stack exists), with the IAM and
   auto-expand capabilities; a change set without changes ends here ("no changes").
3. Execute it and wait (bounded by --timeout), showing the latest stack events of the main
   stack and its nested stacks (the most recent few, so the display stays small).
4. Print the stack's outputs (a table, or JSON with --format json).

`lakehub local up` calls `deploy()` with the emulator's endpoint: the same code path.
Errors a user can cause (no credentials, an unknown parameter, a failed stack, a malformed
--endpoint-url, an endpoint that is not AWS or never answers) are one line. The region is
--region, else AWS_REGION, else AWS_DEFAULT_REGION or the profile's (as the AWS CLI v2 picks it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from lakehub.stacks import names
from lakehub.assets import TEMPLATES_DIR, template_key
from lakehub.cfn.template import TemplateError, loads
from lakehub.errors import LakehubError
from lakehub.waiting import tries

DEFAULT_STACK_NAME = "lakehub"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
TEMPLATE_BODY_LIMIT = 51_200  # CloudFormation's limit for TemplateBody
DEFAULT_TIMEOUT = 3600
EVENTS_SHOWN = 12
POLL_SECONDS = 2.0
# Every request is bounded: connect within CONNECT_TIMEOUT, an answer within READ_TIMEOUT (both
# at most the deploy's --timeout), MAX_ATTEMPTS tries in all (botocore's standard retry mode;
# one against an emulator, which answers at once or not at all). Only the emulator's
# ExecuteChangeSet, which runs the whole stack inside the call, waits up to --timeout.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_ATTEMPTS = 4

FAILED_STATES = {
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "DELETE_FAILED",
    "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_FAILED",
    "IMPORT_ROLLBACK_COMPLETE",
}
DONE_STATES = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


@dataclass
class DeployResult:
    stack_name: str
    stack_id: str
    status: str
    change_set_type: str  # CREATE, UPDATE, or NONE (no changes)
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # --preview: the change set's resource changes (nested stacks' too), nothing executed
    changes: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------
def parse_parameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise LakehubError(f"--parameter {text!r} is not Key=Value; write it as --parameter DomainName=lakehub.example.com")
    return key.strip(), value


def read_parameters_file(path: str | Path) -> dict[str, str]:
    """A JSON or YAML file: {"Key": "Value"} or CloudFormation's [{"ParameterKey", "ParameterValue"}]."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise LakehubError(f"cannot read the parameters file {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise LakehubError(f"the parameters file {p} is not valid JSON or YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(data, list):
        try:
            return {str(i["ParameterKey"]): _text(i["ParameterValue"]) for i in data}
        except (TypeError, KeyError):
            raise LakehubError(f"the parameters file {p}: every item needs ParameterKey and ParameterValue") from None
    if isinstance(data, dict):
        return {str(k): _text(v) for k, v in data.items()}
    raise LakehubError(f"the parameters file {p} must hold a mapping Key: Value or a list of ParameterKey/ParameterValue")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def template_parameters(template_text: str, source: str = "the template") -> dict[str, dict]:
    """The template's Parameters; TemplateError when it is not a template (names `source`)."""
    params = loads(template_text, source).get("Parameters") or {}
    if not isinstance(params, dict):
        raise TemplateError(source, "its Parameters is not a mapping")
    return dict(params)


def check_parameters(params: dict[str, str], declared: dict[str, dict], existing: set[str]) -> None:
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise LakehubError(f"the main template has no parameter {', '.join(unknown)}; known: {', '.join(sorted(declared))}")
    missing = sorted(k for k, p in declared.items() if "Default" not in p and k not in params and k not in existing)
    if missing:
        raise LakehubError(f"missing parameter {', '.join(missing)}; pass --parameter {missing[0]}=VALUE")


# ------------------------------------------------------------------------------------------
# the deploy
# ------------------------------------------------------------------------------------------
def resolve_region(region: str | None, session: boto3.session.Session | None = None) -> str | None:
    """--region, else AWS_REGION, else botocore's own choice (AWS_DEFAULT_REGION, then the
    profile's `region`). botocore reads only AWS_DEFAULT_REGION; the AWS CLI v2 and the other
    SDKs read AWS_REGION first (AWS SDKs and Tools reference guide, "AWS Region")."""
    if region:
        return region
    if os.environ.get("AWS_REGION", "").strip():
        return os.environ["AWS_REGION"].strip()
    return (session or boto3.session.Session()).region_name


def check_endpoint_url(url: str | None) -> str | None:
    """None, or `url` if it is scheme://host[:port] with http(s): else one LakehubError line."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    why = ""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as exc:
        parts, port, why = None, None, str(exc)
    if not why:
        if any(c.isspace() for c in url):
            why = "it contains spaces"
        elif parts.scheme not in ("http", "https"):
            why = "it must start with http:// or https://"
        elif not parts.hostname:
            why = "it names no host"
        elif parts.query or parts.fragment or parts.username or parts.password:
            why = "it may hold only scheme, host, port and path"
        elif port == 0:
            why = "port 0 is not a port"
    if why:
        raise LakehubError(
            f"--endpoint-url {url!r} is not an endpoint URL ({why}); give http(s)://HOST[:PORT], "
            "e.g. http://127.0.0.1:8700 for `lakehub local` (its `status` shows the endpoint), or leave it out for AWS"
        )
    return url


def client_config(timeout: float = DEFAULT_TIMEOUT, endpoint_url: str | None = None, *, long_call: bool = False) -> Config:
    """Bounded connect and read timeouts and attempts (see CONNECT_TIMEOUT)."""
    if long_call:  # the emulator's ExecuteChangeSet: the whole stack in one call
        return Config(
            connect_timeout=min(CONNECT_TIMEOUT, timeout),
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
    return Config(
        connect_timeout=min(CONNECT_TIMEOUT, timeout),
        read_timeout=min(READ_TIMEOUT, timeout),
        retries={"total_max_attempts": 1 if endpoint_url else MAX_ATTEMPTS, "mode": "standard"},
    )


def make_client(
    service: str, region: str | None, endpoint_url: str | None, config: Config, session: boto3.session.Session | None = None
):
    """A boto3 client, or one LakehubError line for a missing region or a refused endpoint."""
    session = session or boto3.session.Session()
    try:
        return session.client(service, region_name=region, endpoint_url=check_endpoint_url(endpoint_url), config=config)
    except NoRegionError:
        raise LakehubError("no AWS region set; pass --region or set AWS_REGION") from None
    except ValueError as exc:  # botocore's own refusal of an endpoint (also AWS_ENDPOINT_URL's)
        given = (
            f"--endpoint-url {endpoint_url!r}" if endpoint_url else f"AWS_ENDPOINT_URL {os.environ.get('AWS_ENDPOINT_URL', '')!r}"
        )
        raise LakehubError(f"{given} is not an endpoint URL ({exc}); give http(s)://HOST[:PORT]") from None


def cfn_client(
    region: str | None,
    endpoint_url: str | None,
    session: boto3.session.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    long_call: bool = False,
):
    return make_client("cloudformation", region, endpoint_url, client_config(timeout, endpoint_url, long_call=long_call), session)


def unreachable(
    exc: Exception, service: str, where: str, read_timeout: float | None = None, longer: str = ", or give a longer --timeout"
) -> LakehubError | None:
    """One line for an endpoint that does not answer, or answers but is not AWS; else None."""
    if isinstance(exc, ReadTimeoutError):
        return LakehubError(
            f"{service} at {where} did not answer within {read_timeout:g} s; check --endpoint-url (for "
            f"`lakehub local`, that it runs: `lakehub local status`) and the network{longer}"
        )
    if isinstance(exc, ConnectTimeoutError):
        return LakehubError(
            f"cannot connect to {service} at {where} (no answer to the connection); check --endpoint-url and the network"
        )
    if isinstance(exc, ResponseParserError):
        return LakehubError(
            f"{where} does not answer as AWS {service} (its reply is not an AWS API response); "
            "check --endpoint-url: it must be an AWS endpoint or an emulator's, such as `lakehub local`'s"
        )
    return None


def template_url_for(params: dict[str, str], region: str, declared: dict[str, dict]) -> str:
    bucket = params.get(names.ASSETS_BUCKET_NAME)
    if not bucket:
        raise LakehubError(
            f"no {names.ASSETS_BUCKET_NAME}: pass --parameter {names.ASSETS_BUCKET_NAME}=BUCKET "
            "(the bucket `lakehub publish` uploaded to), or --template-file"
        )
    prefix = params.get(names.ASSETS_KEY_PREFIX, str((declared.get(names.ASSETS_KEY_PREFIX) or {}).get("Default", "")))
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{region}.{suffix}/{prefix}{template_key(names.MAIN_TEMPLATE)}"


def _stack(cfn, name: str) -> dict | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _error_line(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', str(exc))}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class EventWatcher:
    """Collects new stack events of a stack and its nested stacks (bounded memory)."""

    def __init__(self, cfn, stack_id: str, since: float, emulator: bool = False):
        self.cfn = cfn
        self.stack_id = stack_id
        self.stack_name = stack_id.split("/")[1] if stack_id.startswith("arn:") else stack_id
        self.since = since
        self.emulator = emulator
        self.seen: set[str] = set()
        self.latest: deque = deque(maxlen=EVENTS_SHOWN)

    def _stacks(self) -> list[str]:
        ids = [self.stack_id]
        try:
            if self.emulator:
                # moto builds resources lazily: ListStackResources or DescribeStacks during the
                # change set's run would create some a second time. ListStacks reads nothing lazy.
                for page in self.cfn.get_paginator("list_stacks").paginate():
                    for s in page.get("StackSummaries", []):
                        if s["StackName"].startswith(self.stack_name + "-") and s["StackStatus"] != "DELETE_COMPLETE":
                            ids.append(s["StackId"])
            else:
                for page in self.cfn.get_paginator("list_stack_resources").paginate(StackName=self.stack_id):
                    for r in page.get("StackResourceSummaries", []):
                        if r.get("ResourceType") == "AWS::CloudFormation::Stack" and r.get("PhysicalResourceId"):
                            ids.append(r["PhysicalResourceId"])
        except (ClientError, BotoCoreError):
            pass
        return ids[:50]

    def poll(self) -> list[dict]:
        new = []
        for sid in self._stacks():
            try:
                events = self.cfn.describe_stack_events(StackName=sid).get("StackEvents", [])[:100]
            except (ClientError, BotoCoreError):
                continue
            for e in events:
                if e["EventId"] in self.seen:
                    continue
                self.seen.add(e["EventId"])
                ts = e.get("Timestamp")
                if ts is not None and ts.timestamp() < self.since - 5:
                    continue
                new.append(e)
        new.sort(key=lambda e: e.get("Timestamp"))
        self.latest.extend(new)
        return new


class Display:
    """What deploy() shows while it runs. This one shows nothing; `Lines` passes each step and
    event on as one line; lakehub.cli.deploy shows a live table of the events on a terminal."""

    def say(self, line: str) -> None:
        """A step of the deploy (change set made, executing, no changes...)."""

    def contacting(self, where: str):
        """A context around the first call to CloudFormation (an endpoint that never answers is
        seen waiting)."""
        return contextlib.nullcontext()

    def watching(self, stack_name: str, latest: deque):
        """A context while the stack runs; `latest` holds its most recent events."""
        return contextlib.nullcontext()

    def events(self, new: list[dict]) -> None:
        """After each look at the stack: the events new since the last look (maybe none)."""


class Lines(Display):
    """Each step and each new event as one line to `progress` (logs, `lakehub local up`)."""

    def __init__(self, progress: Callable[[str], None]):
        self.progress = progress

    def say(self, line: str) -> None:
        self.progress(line)

    def events(self, new: list[dict]) -> None:
        for e in new:
            self.progress(f"{e.get('LogicalResourceId')} {e.get('ResourceStatus')}")


def deploy(
    parameters: dict[str, str],
    stack_name: str = DEFAULT_STACK_NAME,
    region: str | None = None,
    endpoint_url: str | None = None,
    template_file: str | Path | None = None,
    template_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    session: boto3.session.Session | None = None,
    display: Display | None = None,
    progress: Callable[[str], None] | None = None,
    tags: dict[str, str] | None = None,
    preview: bool = False,
) -> DeployResult:
    """Create or update `stack_name` through a change set; returns its outputs.

    `display` shows the progress (see Display); or `progress`, a callback taking one line, is told
    of each step and each new event (Lines), for callers with their own display.
    `preview`: make the change set, return its changes (DescribeChangeSet, nested stacks
    included), delete it (and the empty stack a CREATE change set makes) and change nothing.
    """
    started = time.time()
    display = display or (Lines(progress) if progress else Display())
    session = session or boto3.session.Session()
    check_endpoint_url(endpoint_url)
    region = resolve_region(region, session)
    if not region:
        raise LakehubError("no AWS region set; pass --region or set AWS_REGION")
    local_text = Path(template_file or TEMPLATES_DIR / names.MAIN_TEMPLATE)
    try:
        declared = template_parameters(local_text.read_text(), str(local_text))
    except OSError as exc:
        raise LakehubError(f"cannot read the template {local_text}: {exc.strerror}; run `python build_templates.py`") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(str(local_text), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    cfn = cfn_client(region, endpoint_url, session, timeout=timeout)
    # The emulator runs the whole change set inside ExecuteChangeSet: that one call may take
    # up to --timeout (on AWS it returns at once).
    executor = cfn_client(region, endpoint_url, session, timeout=timeout, long_call=True) if endpoint_url else cfn
    where = endpoint_url or f"the {region} endpoint"
    try:
        _first_contact(cfn, stack_name, where, display)
        request = _Request(
            parameters=parameters,
            stack_name=stack_name,
            region=region,
            declared=declared,
            template_file=template_file,
            template_url=template_url,
            timeout=timeout,
            started=started,
            display=display,
            tags=tags,
            preview=preview,
        )
        return _deploy(cfn, request, executor)
    except NoCredentialsError:
        raise LakehubError(
            "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "(or run `aws sso login`), or pass --endpoint-url for an emulator"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in (
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "SignatureDoesNotMatch",
        ):
            raise LakehubError(
                f"AWS refused the credentials ({code}); refresh them (for example `aws sso login`) and retry"
            ) from None
        if code == "AccessDenied" or code == "AccessDeniedException":
            raise LakehubError(f"AWS denied a CloudFormation call: {_error_line(exc)}") from None
        raise LakehubError(f"CloudFormation: {_error_line(exc)}") from None
    except (BotoCoreError, ResponseParserError) as exc:
        raise unreachable(exc, "CloudFormation", where, cfn.meta.config.read_timeout) or LakehubError(
            f"cannot reach CloudFormation ({endpoint_url or region}): {_error_line(exc)}"
        ) from None


def _first_contact(cfn, stack_name: str, where: str, display: Display) -> None:
    """The first call, shown as waiting (a spinner on a terminal): an endpoint that never answers
    is seen waiting, then named when the read timeout ends the wait."""
    try:
        with display.contacting(where):
            _stack(cfn, stack_name)
    except (KeyError, TypeError, AttributeError, ValueError):
        # botocore read a reply of the wrong shape (an HTML page that happens to be valid XML).
        raise ResponseParserError(f"{where} answered, but not as CloudFormation") from None


@dataclass
class _Request:
    """What one deploy() asks for, as _deploy() reads it."""

    parameters: dict[str, str]
    stack_name: str
    region: str
    declared: dict[str, dict]
    template_file: str | Path | None
    template_url: str | None
    timeout: float
    started: float
    display: Display
    tags: dict[str, str] | None
    preview: bool = False


def _deploy(cfn, req: _Request, executor=None) -> DeployResult:
    executor = executor or cfn
    existing = _stack(cfn, req.stack_name)
    if existing and existing["StackStatus"] == "REVIEW_IN_PROGRESS":
        existing_params: set[str] = set()
        change_set_type = "CREATE"  # a change set was made before but never run
    elif existing:
        status = existing["StackStatus"]
        if status.endswith("_IN_PROGRESS"):
            raise LakehubError(f"stack {req.stack_name} is busy ({status}); wait for it to finish and retry")
        if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"):
            raise LakehubError(f"stack {req.stack_name} failed to create ({status}); delete it and deploy again")
        existing_params = {p["ParameterKey"] for p in existing.get("Parameters", [])}
        change_set_type = "UPDATE"
    else:
        existing_params = set()
        change_set_type = "CREATE"
    check_parameters(req.parameters, req.declared, existing_params)

    cf_params = [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(req.parameters.items())]
    if change_set_type == "UPDATE":
        # Parameters not given keep their current value (CloudFormation's UsePreviousValue).
        for key in sorted(existing_params - set(req.parameters)):
            if key in req.declared:
                cf_params.append({"ParameterKey": key, "UsePreviousValue": True})
    args: dict[str, Any] = {
        "StackName": req.stack_name,
        "ChangeSetName": f"lakehub-{time.strftime('%Y%m%d-%H%M%S')}",
        "ChangeSetType": change_set_type,
        "Parameters": cf_params,
        "Capabilities": CAPABILITIES,
        "Description": "lakehub deploy",
        "Tags": [
            {"Key": k, "Value": v}
            for k, v in sorted((req.tags or {names.TAG_PLATFORM: req.parameters.get(names.PLATFORM_NAME, "lakehub")}).items())
        ],
    }
    if req.preview:
        args["IncludeNestedStacks"] = True  # the nested stacks' own changes, not only "Modify"
    if req.template_file:
        body = Path(req.template_file).read_text()
        if len(body.encode()) > TEMPLATE_BODY_LIMIT:
            raise LakehubError(
                f"{req.template_file} is over CloudFormation's {TEMPLATE_BODY_LIMIT}-byte template body limit; "
                "publish it (lakehub publish) and deploy without --template-file"
            )
        args["TemplateBody"] = body
    else:
        args["TemplateURL"] = req.template_url or template_url_for(req.parameters, req.region, req.declared)

    req.display.say(f"{change_set_type.lower()} change set for stack {req.stack_name}")
    try:
        created = cfn.create_change_set(**args)
    except ClientError as exc:
        if not any(text in _error_line(exc) for text in NO_CHANGES):
            raise
        req.display.say(f"stack {req.stack_name}: no changes")
        stack = _stack(cfn, req.stack_name) or {}
        return DeployResult(
            req.stack_name,
            stack.get("StackId", ""),
            stack.get("StackStatus", ""),
            "NONE",
            _outputs(stack),
            time.time() - req.started,
        )
    cs_id, stack_id = created["Id"], created["StackId"]
    for _ in tries(min(req.timeout, 600), interval=1.0):
        cs = cfn.describe_change_set(ChangeSetName=cs_id, StackName=stack_id)
        status = cs.get("Status")
        if status == "CREATE_COMPLETE":
            break
        if status == "FAILED":
            reason = cs.get("StatusReason") or ""
            if any(text in reason for text in NO_CHANGES):
                _safe(lambda: cfn.delete_change_set(ChangeSetName=cs_id, StackName=stack_id))
                req.display.say(f"stack {req.stack_name}: no changes")
                stack = _stack(cfn, req.stack_name) or {}
                return DeployResult(
                    req.stack_name, stack_id, stack.get("StackStatus", ""), "NONE", _outputs(stack), time.time() - req.started
                )
            raise LakehubError(f"the change set for {req.stack_name} failed: {reason}")
    else:
        raise LakehubError(f"the change set for {req.stack_name} was not ready within 10 minutes ({status})")
    n = len(cs.get("Changes", []))
    if req.preview:
        changes = change_set_changes(cfn, cs_id, stack_id)
        _delete_change_set(cfn, cs_id, stack_id)
        if change_set_type == "CREATE":
            _safe(lambda: cfn.delete_stack(StackName=stack_id))  # the empty REVIEW_IN_PROGRESS stack
        req.display.say(f"preview: {len(changes)} change{'s' if len(changes) != 1 else ''}; nothing executed")
        stack = (_stack(cfn, req.stack_name) or {}) if change_set_type == "UPDATE" else {}
        return DeployResult(
            req.stack_name,
            stack_id if change_set_type == "UPDATE" else "",
            stack.get("StackStatus", "NONE"),
            change_set_type,
            _outputs(stack),
            time.time() - req.started,
            changes,
        )
    req.display.say(f"change set ready: {n} change{'s' if n != 1 else ''}; executing")

    # An emulator executes the whole change set inside this call, so it runs in a thread while
    # this one shows the events; on AWS the call returns at once.
    failure: list[BaseException] = []

    def execute():
        try:
            executor.execute_change_set(ChangeSetName=cs_id, StackName=stack_id)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            failure.append(exc)

    runner = threading.Thread(target=execute, name="execute-change-set", daemon=True)
    runner.start()
    emulator = bool(cfn.meta.endpoint_url) and not cfn.meta.endpoint_url.endswith(".amazonaws.com")
    watcher = EventWatcher(cfn, stack_id, req.started, emulator=emulator)
    status = _wait(cfn, stack_id, runner, failure, watcher, req.timeout, req.display, req.stack_name, emulator)
    stack = _stack(cfn, stack_id) or {}
    if status not in DONE_STATES:
        reasons = [
            e.get("ResourceStatusReason")
            for e in watcher.latest
            if "FAILED" in (e.get("ResourceStatus") or "") and e.get("ResourceStatusReason")
        ]
        detail = f": {reasons[0]}" if reasons else ""
        raise LakehubError(f"stack {req.stack_name} ended {status}{detail}")
    return DeployResult(req.stack_name, stack_id, status, change_set_type, _outputs(stack), time.time() - req.started)


def change_set_changes(cfn, change_set_id: str, stack_id: str, stack_label: str = "", depth: int = 0) -> list[dict]:
    """Each resource change of a change set: stack, resource, type, action, replacement (and the
    nested stacks' own change sets, as IncludeNestedStacks makes them, to 3 levels)."""
    rows: list[dict] = []
    token = None
    for _ in range(50):
        kwargs = {"ChangeSetName": change_set_id, **({"StackName": stack_id} if stack_id else {})}
        if token:
            kwargs["NextToken"] = token
        page = cfn.describe_change_set(**kwargs)
        for change in page.get("Changes", []):
            rc = change.get("ResourceChange") or {}
            rows.append(
                {
                    "stack": stack_label or page.get("StackName", ""),
                    "resource": rc.get("LogicalResourceId", ""),
                    "type": rc.get("ResourceType", ""),
                    "action": rc.get("Action", ""),
                    "replacement": rc.get("Replacement", "") or "",
                }
            )
            nested = rc.get("ChangeSetId")
            if nested and depth < 3:
                rows += change_set_changes(
                    cfn, nested, "", f"{stack_label or page.get('StackName', '')}/{rc.get('LogicalResourceId', '')}", depth + 1
                )
        token = page.get("NextToken")
        if not token:
            break
    return rows


def _wait(cfn, stack_id, runner, failure, watcher, timeout, display: Display, stack_name, emulator=False) -> str:
    deadline = time.monotonic() + timeout
    with display.watching(stack_name, watcher.latest):
        while True:
            runner.join(timeout=POLL_SECONDS)
            display.events(watcher.poll())
            if failure:
                exc = failure[0]
                if isinstance(exc, ReadTimeoutError):
                    raise LakehubError(f"stack {stack_name} did not finish within {timeout:.0f} s in the emulator")
                if isinstance(exc, (ClientError, BotoCoreError)):
                    raise LakehubError(f"stack {stack_name}: {_error_line(exc)}")
                raise exc
            if emulator and runner.is_alive():
                if time.monotonic() > deadline:
                    raise LakehubError(f"stack {stack_name} did not finish within {timeout:.0f} s in the emulator")
                continue  # see EventWatcher._stacks: no DescribeStacks while moto runs it
            stack = _stack(cfn, stack_id) or {}
            status = stack.get("StackStatus", "")
            if not runner.is_alive() and status and not status.endswith("_IN_PROGRESS"):
                return status
            if time.monotonic() > deadline:
                raise LakehubError(
                    f"stack {stack_name} did not finish within {timeout:.0f} s (now {status}); see the CloudFormation console"
                )


def _outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}


def _delete_change_set(cfn, cs_id: str, stack_id: str, timeout: float = 4.0) -> None:
    """A preview leaves no change set behind: delete it, and look that it is gone (a clean-clone
    CI run saw a preview's change set still AVAILABLE afterwards); a few tries, then leave it."""
    for _ in tries(timeout, interval=1.0):
        _safe(lambda: cfn.delete_change_set(ChangeSetName=cs_id, StackName=stack_id))
        try:
            left = [
                c
                for c in cfn.list_change_sets(StackName=stack_id).get("Summaries", [])
                if c.get("ChangeSetId") == cs_id and c.get("ExecutionStatus") != "EXECUTE_COMPLETE"
            ]
        except (ClientError, BotoCoreError):
            return  # the stack (a CREATE preview's) is gone with it
        if not left:
            return


def _safe(fn) -> None:
    try:
        fn()
    except (ClientError, BotoCoreError):
        pass


def catalog_products(
    result: DeployResult,
    region: str | None,
    endpoint_url: str | None,
    timeout: float,
    preview: bool,
    progress: Callable[[str], None] | None = None,
) -> list:
    """After the main stack, the platform's Service Catalog provisioned products
    (lakehub.release.upgrade): with `preview`, the plan; else the upgrade's report."""
    from lakehub.release import upgrade

    if preview and result.change_set_type == "CREATE":
        return []  # no platform yet, so no provisioned products
    session = boto3.session.Session()
    region = resolve_region(region, session)
    config = client_config(timeout, endpoint_url)
    cfn = make_client("cloudformation", region, endpoint_url, config, session)
    sc = make_client("servicecatalog", region, endpoint_url, config, session)
    try:
        if preview:
            return upgrade.plan_upgrades(cfn, sc, result.stack_name)
        return upgrade.upgrade_products(cfn, sc, result.stack_name, timeout=timeout, progress=progress)
    except ClientError as exc:
        raise LakehubError(f"Service Catalog: {_error_line(exc)}") from None
    except (BotoCoreError, ResponseParserError) as exc:
        raise LakehubError(f"cannot reach Service Catalog ({endpoint_url or region}): {_error_line(exc)}") from None
