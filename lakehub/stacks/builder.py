"""Building blocks shared by the template modules.

`Builder` wraps a troposphere Template and records a label and a group for every Parameter,
emitting AWS::CloudFormation::Interface at the end, so no parameter can be added without them.
"""

from __future__ import annotations

from typing import Any

from troposphere import (
    AWSObject,
    Export,
    GetAtt,
    Join,
    Output,
    Parameter,
    Ref,
    Sub,
    Tags,
    Template,
)
from troposphere import ec2

from lakehub.stacks import names

LAMBDA_RUNTIME = "python3.13"

# Stateful types whose contents the platform can rebuild: explicit Delete policies.
DISPOSABLE_STATEFUL = {
    "AWS::Logs::LogGroup",
    "AWS::SecretsManager::Secret",
    "AWS::CloudFormation::Stack",
}
LAMBDA_ARCHITECTURE = "arm64"


class Builder:
    """A template under construction: parameters with labels and groups, outputs with descriptions."""

    def __init__(self, description: str):
        self.t = Template()
        self.t.set_version("2010-09-09")
        self.t.set_description(description)
        self._groups: dict[str, list[str]] = {}
        self._labels: dict[str, str] = {}

    def param(
        self,
        name: str,
        group: str,
        label: str,
        description: str,
        type: str = "String",
        **kwargs: Any,
    ) -> Parameter:
        """Add a Parameter; `group` is a sentence-case group name, `label` its short label."""
        if name in self.t.parameters:
            raise ValueError(f"parameter {name} defined twice")
        p = self.t.add_parameter(Parameter(name, Type=type, Description=description, **kwargs))
        self._groups.setdefault(group, []).append(name)
        self._labels[name] = label
        return p

    def choice(
        self, name: str, group: str, label: str, description: str, values: Any, default: Any, constraint: str | None = None
    ) -> Parameter:
        """A String parameter taking one of `values`; its constraint description lists them ("a, b
        or c"; "one of a, b, c, d" beyond three) unless `constraint` words it."""
        words = [str(v) for v in values]
        if constraint is None:
            constraint = ", ".join(words[:-1]) + " or " + words[-1] if len(words) <= 3 else "one of " + ", ".join(words)
        return self.param(
            name, group, label, description, Default=default, AllowedValues=list(values), ConstraintDescription=constraint
        )

    def number(
        self, name: str, group: str, label: str, description: str, default: int, minimum: int, maximum: int, unit: str = ""
    ) -> Parameter:
        """A Number parameter from `minimum` to `maximum` (its constraint description says so, in `unit`)."""
        constraint = f"{minimum} to {maximum}" + (f" {unit}" if unit else "")
        return self.param(
            name,
            group,
            label,
            description,
            type="Number",
            Default=default,
            MinValue=minimum,
            MaxValue=maximum,
            ConstraintDescription=constraint,
        )

    def use(self, parameter: Any, **changes: Any) -> Parameter:
        """Add a shared parameter (lakehub.stacks.parameters), with its label and group, or as
        `changes` (properties, label, group) word it for this template."""
        p = parameter.but(**changes) if changes else parameter
        props = dict(p.properties)
        return self.param(p.title, p.group, p.label, props.pop("Description"), type=props.pop("Type"), **props)

    def copy_param(self, child: Template, name: str, group: str) -> Parameter:
        """Declare a parameter exactly as a nested template declares it (type, constraints,
        description, label), for an entry point that passes it down unchanged."""
        props = dict(child.parameters[name].properties)
        labels = child.metadata["AWS::CloudFormation::Interface"]["ParameterLabels"]
        return self.param(name, group, labels[name]["default"], props.pop("Description"), type=props.pop("Type"), **props)

    def output(self, name: str, value: Any, description: str, export: bool = False) -> Output:
        kwargs: dict[str, Any] = {"Description": description, "Value": value}
        if export:
            kwargs["Export"] = Export(Sub("${AWS::StackName}-" + name))
        return self.t.add_output(Output(name, **kwargs))

    def add(self, resource: AWSObject) -> AWSObject:
        """Add a resource. Stateful resources always carry explicit DeletionPolicy and
        UpdateReplacePolicy: Delete for rebuildable ones (logs, secrets the stack generates,
        nested stacks) unless the caller chose otherwise (Retain for users' data)."""
        if resource.resource_type in DISPOSABLE_STATEFUL and not hasattr(resource, "DeletionPolicy"):
            resource.DeletionPolicy = "Delete"
            resource.UpdateReplacePolicy = "Delete"
        return self.t.add_resource(resource)

    def finish(self) -> Template:
        if self._groups:
            self.t.set_metadata(
                {
                    "AWS::CloudFormation::Interface": {
                        "ParameterGroups": [
                            {"Label": {"default": group}, "Parameters": params} for group, params in self._groups.items()
                        ],
                        "ParameterLabels": {name: {"default": label} for name, label in self._labels.items()},
                    }
                }
            )
        return self.t


def custom_resource(logical_id: str, type_name: str, **properties: Any) -> AWSObject:
    """A custom resource declared with its own type (Custom::<Name>), which names it in the
    console and in events, served by the ServiceToken in `properties`."""
    from troposphere import cloudformation

    cls = type(type_name.replace("Custom::", ""), (cloudformation.CustomResource,), {"resource_type": type_name})
    return cls(logical_id, **properties)


def private_bucket(logical_id: str, bucket_key: bool, **properties: Any) -> AWSObject:
    """An S3 bucket kept on delete and replace (it holds data or logs), with public access
    blocked, versioning and SSE-S3 encryption (with an S3 Bucket Key when `bucket_key`)."""
    from troposphere import s3

    rule = s3.ServerSideEncryptionRule(ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(SSEAlgorithm="AES256"))
    if bucket_key:
        rule.BucketKeyEnabled = True
    return s3.Bucket(
        logical_id,
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True
        ),
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[rule]),
        **properties,
    )


def platform_tags(*extra: tuple[str, Any]) -> Tags:
    """Tags every taggable resource carries: the platform name (cost allocation)."""
    pairs: dict[str, Any] = {names.TAG_PLATFORM: Ref(names.PLATFORM_NAME)}
    for key, value in extra:
        pairs[key] = value
    return Tags(pairs)


def function_code_key(function: str) -> Sub:
    from lakehub.assets import function_key

    return Sub("${" + names.ASSETS_KEY_PREFIX + "}" + function_key(function))


def template_url(filename: str) -> Sub:
    from lakehub.assets import template_key

    return Sub(
        "https://${"
        + names.ASSETS_BUCKET_NAME
        + "}.s3.${AWS::Region}.${AWS::URLSuffix}/${"
        + names.ASSETS_KEY_PREFIX
        + "}"
        + template_key(filename)
    )


__all__ = [
    "Builder",
    "GetAtt",
    "Join",
    "Ref",
    "Sub",
    "platform_tags",
    "function_code_key",
    "template_url",
    "LAMBDA_RUNTIME",
    "LAMBDA_ARCHITECTURE",
]


def add_checkov_skip(resource: Any, check_id: str, comment: str) -> Any:
    """Record a deliberate checkov exception in the resource's Metadata (checkov reads
    Metadata.checkov.skip). Every skip needs its row in docs/SECURITY.md (a test checks)."""
    try:
        metadata = dict(resource.Metadata)
    except AttributeError:
        metadata = {}
    skips = list(metadata.get("checkov", {}).get("skip", []))
    skips.append({"id": check_id, "comment": comment})
    metadata["checkov"] = {**metadata.get("checkov", {}), "skip": skips}
    resource.Metadata = metadata
    return resource


def port_rule(port, description: str, *, cidr: Any = None, source: Any = None, protocol: str = "tcp") -> ec2.SecurityGroupRule:
    """One rule of a security group: a port, or a (first, last) range, from or to a CIDR range
    (`cidr`) or another security group (`source`)."""
    first, last = port if isinstance(port, tuple) else (port, port)
    peer = {"CidrIp": cidr} if source is None else {"SourceSecurityGroupId": source}
    return ec2.SecurityGroupRule(IpProtocol=protocol, FromPort=first, ToPort=last, **peer, Description=description)
