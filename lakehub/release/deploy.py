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

import json
import math
import os
import sys
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
from lakehub.local.waiting import tries

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
    "CREATE_FAILED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED", "ROLLBACK_COMPLETE",
    "DELETE_FAILED", "UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_COMPLETE", "UPDATE_FAILED", "IMPORT_ROLLBACK_COMPLETE",
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
        raise LakehubError(
            f"the main template has no parameter {', '.join(unknown)}; known: {', '.join(sorted(declared))}"
        )
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


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds above 0, e.g. 600")
    return value


def client_config(timeout: float = DEFAULT_TIMEOUT, endpoint_url: str | None = None, *, long_call: bool = False) -> Config:
    """Bounded connect and read timeouts and attempts (see CONNECT_TIMEOUT)."""
    if long_call:  # the emulator's ExecuteChangeSet: the whole stack in one call
        return Config(connect_timeout=min(CONNECT_TIMEOUT, timeout), read_timeout=timeout,
                      retries={"total_max_attempts": 1, "mode": "standard"})
    return Config(connect_timeout=min(CONNECT_TIMEOUT, timeout), read_timeout=min(READ_TIMEOUT, timeout),
                  retries={"total_max_attempts": 1 if endpoint_url else MAX_ATTEMPTS, "mode": "standard"})


def make_client(service: str, region: str | None, endpoint_url: str | None, config: Config,
                session: boto3.session.Session | None = None):
    """A boto3 client, or one LakehubError line for a missing region or a refused endpoint."""
    session = session or boto3.session.Session()
    try:
        return session.client(service, region_name=region, endpoint_url=check_endpoint_url(endpoint_url), config=config)
    except NoRegionError:
        raise LakehubError("no AWS region set; pass --region or set AWS_REGION") from None
    except ValueError as exc:  # botocore's own refusal of an endpoint (also AWS_ENDPOINT_URL's)
        given = f"--endpoint-url {endpoint_url!r}" if endpoint_url else f"AWS_ENDPOINT_URL {os.environ.get('AWS_ENDPOINT_URL', '')!r}"
        raise LakehubError(f"{given} is not an endpoint URL ({exc}); give http(s)://HOST[:PORT]") from None


def cfn_client(region: str | None, endpoint_url: str | None, session: boto3.session.Session | None = None,
               timeout: float = DEFAULT_TIMEOUT, long_call: bool = False):
    return make_client("cloudformation", region, endpoint_url, client_config(timeout, endpoint_url, long_call=long_call), session)


def unreachable(exc: Exception, service: str, where: str, read_timeout: float | None = None,
                longer: str = ", or give a longer --timeout") -> LakehubError | None:
    """One line for an endpoint that does not answer, or answers but is not AWS; else None."""
    if isinstance(exc, ReadTimeoutError):
        return LakehubError(
            f"{service} at {where} did not answer within {read_timeout:g} s; check --endpoint-url (for "
            f"`lakehub local`, that it runs: `lakehub local status`) and the network{longer}"
        )
    if isinstance(exc, ConnectTimeoutError):
        return LakehubError(f"cannot connect to {service} at {where} (no answer to the connection); check --endpoint-url and the network")
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


def _events_table(watcher: EventWatcher, title: str):
    from rich.table import Table

    table = Table(title=title, expand=False, show_lines=False)
    table.add_column("time")
    table.add_column("stack")
    table.add_column("resource")
    table.add_column("status")
    table.add_column("reason", overflow="fold", max_width=60)
    for e in watcher.latest:
        status = e.get("ResourceStatus", "")
        style = "red" if "FAILED" in status or "ROLLBACK" in status else ("green" if status.endswith("COMPLETE") else "")
        table.add_row(
            e["Timestamp"].strftime("%H:%M:%S") if e.get("Timestamp") else "",
            e.get("StackName", "")[-40:],
            e.get("LogicalResourceId", ""),
            f"[{style}]{status}[/]" if style else status,
            (e.get("ResourceStatusReason") or "")[:200],
        )
    return table


def deploy(
    parameters: dict[str, str],
    stack_name: str = DEFAULT_STACK_NAME,
    region: str | None = None,
    endpoint_url: str | None = None,
    template_file: str | Path | None = None,
    template_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    session: boto3.session.Session | None = None,
    console=None,
    progress: Callable[[str], None] | None = None,
    tags: dict[str, str] | None = None,
    preview: bool = False,
) -> DeployResult:
    """Create or update `stack_name` through a change set; returns its outputs.

    `console` (a rich Console) shows a live table of the latest events; `progress` (a callback
    taking one line) is told of each new event instead, for callers with their own display.
    `preview`: make the change set, return its changes (DescribeChangeSet, nested stacks
    included), delete it (and the empty stack a CREATE change set makes) and change nothing.
    """
    started = time.time()
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
        _first_contact(cfn, stack_name, where, console)
        return _deploy(cfn, parameters, stack_name, region, declared, local_text, template_file, template_url,
                       timeout, started, console, progress, tags, executor, preview)
    except NoCredentialsError:
        raise LakehubError(
            "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "(or run `aws sso login`), or pass --endpoint-url for an emulator"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"):
            raise LakehubError(f"AWS refused the credentials ({code}); refresh them (for example `aws sso login`) and retry") from None
        if code == "AccessDenied" or code == "AccessDeniedException":
            raise LakehubError(f"AWS denied a CloudFormation call: {_error_line(exc)}") from None
        raise LakehubError(f"CloudFormation: {_error_line(exc)}") from None
    except (BotoCoreError, ResponseParserError) as exc:
        raise unreachable(exc, "CloudFormation", where, cfn.meta.config.read_timeout) or LakehubError(
            f"cannot reach CloudFormation ({endpoint_url or region}): {_error_line(exc)}"
        ) from None


def _first_contact(cfn, stack_name: str, where: str, console) -> None:
    """The first call, with a spinner on a terminal: an endpoint that never answers is seen
    waiting, then named when the read timeout ends the wait."""
    try:
        if console is None:
            _stack(cfn, stack_name)
            return
        with console.status(f"contacting CloudFormation at {where}", spinner="dots"):
            _stack(cfn, stack_name)
    except (KeyError, TypeError, AttributeError, ValueError):
        # botocore read a reply of the wrong shape (an HTML page that happens to be valid XML).
        raise ResponseParserError(f"{where} answered, but not as CloudFormation") from None


def _deploy(cfn, parameters, stack_name, region, declared, local_text, template_file, template_url,
            timeout, started, console, progress, tags, executor=None, preview=False) -> DeployResult:
    executor = executor or cfn
    existing = _stack(cfn, stack_name)
    if existing and existing["StackStatus"] == "REVIEW_IN_PROGRESS":
        existing_params: set[str] = set()
        change_set_type = "CREATE"  # a change set was made before but never run
    elif existing:
        status = existing["StackStatus"]
        if status.endswith("_IN_PROGRESS"):
            raise LakehubError(f"stack {stack_name} is busy ({status}); wait for it to finish and retry")
        if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"):
            raise LakehubError(f"stack {stack_name} failed to create ({status}); delete it and deploy again")
        existing_params = {p["ParameterKey"] for p in existing.get("Parameters", [])}
        change_set_type = "UPDATE"
    else:
        existing_params = set()
        change_set_type = "CREATE"
    check_parameters(parameters, declared, existing_params)

    cf_params = [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())]
    if change_set_type == "UPDATE":
        # Parameters not given keep their current value (CloudFormation's UsePreviousValue).
        for key in sorted(existing_params - set(parameters)):
            if key in declared:
                cf_params.append({"ParameterKey": key, "UsePreviousValue": True})
    args: dict[str, Any] = {
        "StackName": stack_name,
        "ChangeSetName": f"lakehub-{time.strftime('%Y%m%d-%H%M%S')}",
        "ChangeSetType": change_set_type,
        "Parameters": cf_params,
        "Capabilities": CAPABILITIES,
        "Description": "lakehub deploy",
        "Tags": [{"Key": k, "Value": v} for k, v in sorted((tags or {names.TAG_PLATFORM: parameters.get(names.PLATFORM_NAME, "lakehub")}).items())],
    }
    if preview:
        args["IncludeNestedStacks"] = True  # the nested stacks' own changes, not only "Modify"
    if template_file:
        body = Path(template_file).read_text()
        if len(body.encode()) > TEMPLATE_BODY_LIMIT:
            raise LakehubError(
                f"{template_file} is over CloudFormation's {TEMPLATE_BODY_LIMIT}-byte template body limit; "
                "publish it (lakehub publish) and deploy without --template-file"
            )
        args["TemplateBody"] = body
    else:
        args["TemplateURL"] = template_url or template_url_for(parameters, region, declared)

    _say(progress, console, f"{change_set_type.lower()} change set for stack {stack_name}")
    try:
        created = cfn.create_change_set(**args)
    except ClientError as exc:
        if not any(text in _error_line(exc) for text in NO_CHANGES):
            raise
        _say(progress, console, f"stack {stack_name}: no changes")
        stack = _stack(cfn, stack_name) or {}
        return DeployResult(stack_name, stack.get("StackId", ""), stack.get("StackStatus", ""), "NONE", _outputs(stack), time.time() - started)
    cs_id, stack_id = created["Id"], created["StackId"]
    for _ in tries(min(timeout, 600), interval=1.0):
        cs = cfn.describe_change_set(ChangeSetName=cs_id, StackName=stack_id)
        status = cs.get("Status")
        if status == "CREATE_COMPLETE":
            break
        if status == "FAILED":
            reason = cs.get("StatusReason") or ""
            if any(text in reason for text in NO_CHANGES):
                _safe(lambda: cfn.delete_change_set(ChangeSetName=cs_id, StackName=stack_id))
                _say(progress, console, f"stack {stack_name}: no changes")
                stack = _stack(cfn, stack_name) or {}
                return DeployResult(stack_name, stack_id, stack.get("StackStatus", ""), "NONE", _outputs(stack), time.time() - started)
            raise LakehubError(f"the change set for {stack_name} failed: {reason}")
    else:
        raise LakehubError(f"the change set for {stack_name} was not ready within 10 minutes ({status})")
    n = len(cs.get("Changes", []))
    if preview:
        changes = change_set_changes(cfn, cs_id, stack_id)
        _delete_change_set(cfn, cs_id, stack_id)
        if change_set_type == "CREATE":
            _safe(lambda: cfn.delete_stack(StackName=stack_id))  # the empty REVIEW_IN_PROGRESS stack
        _say(progress, console, f"preview: {len(changes)} change{'s' if len(changes) != 1 else ''}; nothing executed")
        stack = (_stack(cfn, stack_name) or {}) if change_set_type == "UPDATE" else {}
        return DeployResult(stack_name, stack_id if change_set_type == "UPDATE" else "", stack.get("StackStatus", "NONE"),
                            change_set_type, _outputs(stack), time.time() - started, changes)
    _say(progress, console, f"change set ready: {n} change{'s' if n != 1 else ''}; executing")

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
    watcher = EventWatcher(cfn, stack_id, started, emulator=emulator)
    status = _wait(cfn, stack_id, runner, failure, watcher, timeout, console, progress, stack_name, emulator)
    stack = _stack(cfn, stack_id) or {}
    if status not in DONE_STATES:
        reasons = [e.get("ResourceStatusReason") for e in watcher.latest if "FAILED" in (e.get("ResourceStatus") or "") and e.get("ResourceStatusReason")]
        detail = f": {reasons[0]}" if reasons else ""
        raise LakehubError(f"stack {stack_name} ended {status}{detail}")
    return DeployResult(stack_name, stack_id, status, change_set_type, _outputs(stack), time.time() - started)


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
            rows.append({
                "stack": stack_label or page.get("StackName", ""),
                "resource": rc.get("LogicalResourceId", ""),
                "type": rc.get("ResourceType", ""),
                "action": rc.get("Action", ""),
                "replacement": rc.get("Replacement", "") or "",
            })
            nested = rc.get("ChangeSetId")
            if nested and depth < 3:
                rows += change_set_changes(cfn, nested, "", f"{stack_label or page.get('StackName', '')}/{rc.get('LogicalResourceId', '')}", depth + 1)
        token = page.get("NextToken")
        if not token:
            break
    return rows


def _wait(cfn, stack_id, runner, failure, watcher, timeout, console, progress, stack_name, emulator=False) -> str:
    deadline = time.monotonic() + timeout
    live = None
    if console is not None:
        from rich.live import Live

        live = Live(_events_table(watcher, f"stack {stack_name}"), console=console, refresh_per_second=4, transient=False)
        live.start()
    try:
        while True:
            runner.join(timeout=POLL_SECONDS)
            for e in watcher.poll():
                if progress:
                    progress(f"{e.get('LogicalResourceId')} {e.get('ResourceStatus')}")
            if live is not None:
                live.update(_events_table(watcher, f"stack {stack_name}"))
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
                raise LakehubError(f"stack {stack_name} did not finish within {timeout:.0f} s (now {status}); see the CloudFormation console")
    finally:
        if live is not None:
            live.stop()


def _outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}


def _say(progress, console, line: str) -> None:
    if progress:
        progress(line)
    elif console is not None:
        console.print(f"[bold]lakehub[/]: {line}")


def _delete_change_set(cfn, cs_id: str, stack_id: str, timeout: float = 4.0) -> None:
    """A preview leaves no change set behind: delete it, and look that it is gone (a clean-clone
    CI run saw a preview's change set still AVAILABLE afterwards); a few tries, then leave it."""
    for _ in tries(timeout, interval=1.0):
        _safe(lambda: cfn.delete_change_set(ChangeSetName=cs_id, StackName=stack_id))
        try:
            left = [c for c in cfn.list_change_sets(StackName=stack_id).get("Summaries", [])
                    if c.get("ChangeSetId") == cs_id and c.get("ExecutionStatus") != "EXECUTE_COMPLETE"]
        except (ClientError, BotoCoreError):
            return  # the stack (a CREATE preview's) is gone with it
        if not left:
            return


def _safe(fn) -> None:
    try:
        fn()
    except (ClientError, BotoCoreError):
        pass


# ------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="create or update the main stack through a change set",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--stack-name", default=DEFAULT_STACK_NAME, help=f"stack name (default {DEFAULT_STACK_NAME})")
    p.add_argument("--parameter", "-p", action="append", default=[], metavar="KEY=VALUE", help="a template parameter (repeatable)")
    p.add_argument("--parameters-file", metavar="FILE", help="JSON or YAML: {Key: Value} or [{ParameterKey, ParameterValue}]; --parameter wins")
    p.add_argument("--region", help="AWS region (default: AWS_REGION, then AWS_DEFAULT_REGION, then the profile's)")
    p.add_argument("--endpoint-url", help="an AWS emulator's endpoint, e.g. http://127.0.0.1:8700")
    p.add_argument("--template-file", help="send this file as the template body instead of the published main template")
    p.add_argument("--template-url", help="deploy this template URL instead of the published main template")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for the stack (default 3600); each request waits at most {READ_TIMEOUT:.0f} s of it")
    p.add_argument("--format", choices=("table", "json"), default="table", help="how to print the outputs")
    p.add_argument("--preview", action="store_true",
                   help="show the change set of the main stack (resource, action, replacement) and the Service Catalog "
                        "products that --upgrade-products would update; change nothing")
    p.add_argument("--upgrade-products", action="store_true",
                   help="after the main stack, update every tier and on-demand hub launched from the platform's Service "
                        "Catalog products to the product's newest version, and report which runs which version")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    params: dict[str, str] = {}
    if args.parameters_file:
        params.update(read_parameters_file(args.parameters_file))
    for item in args.parameter:
        k, v = parse_parameter(item)
        params[k] = v
    as_json = args.format == "json"
    console = Console(stderr=as_json)
    preview = getattr(args, "preview", False)
    upgrade = getattr(args, "upgrade_products", False)
    result = deploy(
        params,
        stack_name=args.stack_name,
        region=args.region,
        endpoint_url=args.endpoint_url,
        template_file=args.template_file,
        template_url=args.template_url,
        timeout=args.timeout,
        console=console if console.is_terminal else None,
        progress=None if console.is_terminal else (lambda line: print(f"lakehub: {line}", file=sys.stderr)),
        preview=preview,
    )
    products = []
    if preview or upgrade:
        products = _products(args, result, preview, console)
    failed = [p for p in products if p.status == "failed"]
    if as_json:
        out = {"stack_name": result.stack_name, "stack_id": result.stack_id, "status": result.status,
               "change_set_type": result.change_set_type, "outputs": result.outputs}
        if preview:
            out["changes"] = result.changes
        if preview or upgrade:
            out["products"] = [p.row() for p in products]
        print(json.dumps(out, indent=2))
        return 1 if failed else 0
    _print_tables(result, products, preview, upgrade)
    for p in failed:
        print(f"lakehub: error: {p.name} ({p.provisioned_product_id}): {p.detail}", file=sys.stderr)
    return 1 if failed else 0


def _products(args, result: DeployResult, preview: bool, console) -> list:
    """--preview: the plan; --upgrade-products: the upgrade's report (after main)."""
    from lakehub.release import upgrade

    if preview and result.change_set_type == "CREATE":
        return []  # no platform yet, so no provisioned products
    session = boto3.session.Session()
    region = resolve_region(args.region, session)
    config = client_config(args.timeout, args.endpoint_url)
    cfn = make_client("cloudformation", region, args.endpoint_url, config, session)
    sc = make_client("servicecatalog", region, args.endpoint_url, config, session)
    try:
        if preview:
            return upgrade.plan_upgrades(cfn, sc, args.stack_name)
        return upgrade.upgrade_products(cfn, sc, args.stack_name, timeout=args.timeout,
                                        progress=lambda line: print(f"lakehub: {line}", file=sys.stderr))
    except ClientError as exc:
        raise LakehubError(f"Service Catalog: {_error_line(exc)}") from None
    except (BotoCoreError, ResponseParserError) as exc:
        raise LakehubError(f"cannot reach Service Catalog ({args.endpoint_url or region}): {_error_line(exc)}") from None


def _print_tables(result: DeployResult, products: list, preview: bool, upgrade: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    if preview:
        table = Table(title=f"preview of stack {result.stack_name} ({result.change_set_type.lower()}): {len(result.changes)} changes, nothing executed")
        for column in ("stack", "resource", "type", "action", "replacement"):
            table.add_column(column, overflow="fold")
        for c in result.changes:
            table.add_row(c["stack"], c["resource"], c["type"], c["action"], c["replacement"])
        out.print(table)
    else:
        table = Table(title=f"stack {result.stack_name}: {result.status} ({result.seconds:.0f} s)")
        table.add_column("output")
        table.add_column("value", overflow="fold")
        for k, v in sorted(result.outputs.items()):
            table.add_row(k, v)
        out.print(table)
    if preview or upgrade:
        table = Table(title="Service Catalog provisioned products" + (" (would upgrade)" if preview else ""))
        for column in ("provisioned product", "id", "before", "after", "status", "detail"):
            table.add_column(column, overflow="fold")
        for p in products:
            table.add_row(p.name, p.provisioned_product_id, p.before, p.after, p.status, p.detail)
        out.print(table)
