"""Custom::ProductTemplate: a Service Catalog product's template with this platform's defaults.

A product template (tier, on-demand hub) reads the platform's values through SSM-typed
parameters whose defaults are SSM names under /lakehub/<platform>/. CloudFormation defaults are
literals, so the published template carries the platform name it was built for; a platform
deployed under another name would launch products that read (or miss) another platform's values.
The catalog stack gives each product a copy of its template whose defaults name its own platform.

Properties
  Bucket       the assets bucket
  SourceKey    the published template (YAML, as lakehub build writes it)
  TargetKey    where the copy goes (under <prefix>templates/platforms/<platform>/)
  Defaults     {parameter name: new default}; every name must be a parameter of the template
               with a Default, or the request fails naming it
  Pins         optional {parameter name: value}: the parameter's only allowed value (its
               Default and AllowedValues [value]; CloudFormation refuses any other value at
               launch). The platform's sign-in settings, and a tier's hub product's TierName,
               so that no launcher chooses them. Every name must be a parameter of the template.
  Version      optional; a new value (the source template's digest) renders again

Create/Update: read SourceKey, replace the `Default:` line of each named parameter in the
template's top-level Parameters section and the Default and AllowedValues of each pinned one
(nothing else changes), write TargetKey.
Delete: remove TargetKey (succeeds when it is already gone). A new TargetKey on Update gives a
new physical id, so CloudFormation deletes the old copy.
Data: TemplateUrl (https://<bucket>.s3.<region>.<suffix>/<TargetKey>), TargetKey.
"""

from __future__ import annotations

import json
import logging
import hashlib
import re

from botocore.exceptions import ClientError
from lakehub_cr import Failure, clients, dns_suffix, error_code, new_helper, physical_id, properties, serve

logger = logging.getLogger(__name__)

helper = new_helper()

(s3,) = clients(helper, "s3")

MAX_TEMPLATE_BYTES = 1_000_000  # CloudFormation's limit for a template in S3
PARAMETER_NAME = re.compile(r"^[A-Za-z0-9]{1,255}$")
SIMPLE_DEFAULT = re.compile(r"^[A-Za-z0-9/_.:-]{0,2048}$")
PIN_VALUE = re.compile(r"^[\x20-\x7e]{0,2048}$")  # printable ASCII on one line (URLs, DNs, client ids)


def _props(event) -> dict:
    props = properties(event)
    out = {}
    for key in ("Bucket", "SourceKey", "TargetKey"):
        value = props.get(key)
        if not isinstance(value, str) or not value.strip():
            raise Failure(f"Invalid property {key}: a non-empty string is required")
        out[key] = value.strip()
    if out["TargetKey"] == out["SourceKey"]:
        raise Failure("Invalid property TargetKey: it must differ from SourceKey (the published template stays as built)")
    defaults = props.get("Defaults")
    if not isinstance(defaults, dict) or not defaults:
        raise Failure("Invalid property Defaults: a mapping of parameter names to defaults is required")
    for name, value in defaults.items():
        if not PARAMETER_NAME.match(str(name)) or not isinstance(value, str) or not SIMPLE_DEFAULT.match(value):
            raise Failure(
                f"Invalid property Defaults: {str(name)[:40]!r}: {str(value)[:60]!r} is not a parameter name and a plain default"
            )
    out["Defaults"] = defaults
    pins = props.get("Pins") or {}
    if not isinstance(pins, dict):
        raise Failure("Invalid property Pins: a mapping of parameter names to values is required")
    for name, value in pins.items():
        if not PARAMETER_NAME.match(str(name)) or not isinstance(value, str) or not PIN_VALUE.match(value):
            raise Failure(
                f"Invalid property Pins: {str(name)[:40]!r}: {str(value)[:60]!r} is not a parameter name and a one-line printable value"
            )
        if name in defaults:
            raise Failure(f"Invalid property Pins: {name} is also in Defaults")
    out["Pins"] = pins
    return out


def render(text: str, defaults: dict[str, str], pins: dict[str, str] | None = None) -> str:
    """The template text with the Default of each named top-level parameter replaced, and each
    pinned parameter's Default and AllowedValues set to its one value."""
    pins = pins or {}
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip("\r\n") == "Parameters:")
    except StopIteration:
        raise Failure("the template has no Parameters section") from None
    newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
    out = lines[: start + 1]
    current, dropping, done, seen = None, False, set(), set()
    end = len(lines)
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and not line.startswith(" "):
            end = i
            break  # the next top-level section
        m = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if m:
            current, dropping = m.group(1), False
            seen.add(current)
            out.append(line)
            if current in pins:
                value = json.dumps(pins[current])
                out += [f"    AllowedValues:{newline}", f"      - {value}{newline}", f"    Default: {value}{newline}"]
            continue
        prop = re.match(r"^    ([A-Za-z0-9]+):", line)
        if prop:
            dropping = current in pins and prop.group(1) in ("Default", "AllowedValues")
        if dropping:
            continue  # the pinned parameter's old Default or AllowedValues (and its items)
        m = re.match(r"^(    Default: ).*?(\r?\n)?$", line)
        if m and current in defaults:
            line = m.group(1) + json.dumps(defaults[current]) + (m.group(2) or "")
            done.add(current)
        out.append(line)
    missing = sorted(set(defaults) - done) + sorted(set(pins) - seen)
    if missing:
        raise Failure(f"the template has no parameter with a Default named {', '.join(missing)}")
    return "".join(out + lines[end:])


def _template_url(bucket: str, key: str) -> str:
    return f"https://{bucket}.s3.{s3.meta.region_name}.{dns_suffix(s3)}/{key}"


def _write(event) -> str:
    p = _props(event)
    try:
        obj = s3.get_object(Bucket=p["Bucket"], Key=p["SourceKey"])
    except ClientError as exc:
        code = error_code(exc) or "error"
        raise Failure(f"cannot read s3://{p['Bucket']}/{p['SourceKey']} ({code}): run lakehub publish first") from exc
    body = obj["Body"].read()
    if len(body) > MAX_TEMPLATE_BYTES:
        raise Failure(f"s3://{p['Bucket']}/{p['SourceKey']} is over {MAX_TEMPLATE_BYTES} bytes")
    text = render(body.decode("utf-8"), p["Defaults"], p["Pins"])
    s3.put_object(Bucket=p["Bucket"], Key=p["TargetKey"], Body=text.encode("utf-8"), ContentType="application/x-yaml")
    # Digest: the written copy's hash. The product's version name carries it, so a change of the
    # platform's pinned values (sign-in) gives the product a new version, read from this copy.
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    helper.Data.update({"TemplateUrl": _template_url(p["Bucket"], p["TargetKey"]), "TargetKey": p["TargetKey"], "Digest": digest})
    return f"s3://{p['Bucket']}/{p['TargetKey']}"


def _remove(event) -> str:
    physical = physical_id(event)
    m = re.match(r"^s3://([^/]+)/(.+)$", physical)
    if not m:
        return physical  # a failed Create: nothing was written
    bucket, key = m.groups()
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchBucket", "NoSuchKey", "404"):
            raise
    return physical


handler = serve(helper, create=_write, update=_write, delete=_remove)
