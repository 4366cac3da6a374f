"""Which template resource types the emulator does not model.

moto creates AWS resources for the CloudFormation types in its model registry; for any other
type the local emulator makes a placeholder (a name and an ARN, nothing behind them), so the
stacks complete but that part of the platform does not exist locally. This module computes the
list from the generated templates and moto's registry, so it stays true as either changes.

    python -m lakehub.local.unmodelled [--format json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import load

# Types the local environment handles itself.
HANDLED_LOCALLY = {
    "AWS::CloudFormation::CustomResource": "run by the local Lambda runner",
    # lakehub.local.emulator_server._secret_class: the secret exists (GenerateSecretString
    # honoured) and Ref gives its full ARN, as ECS Secrets need.
    "AWS::SecretsManager::Secret": "created in the emulator's Secrets Manager by the local emulator",
    # lakehub.local.emulator_server._alarm_class: PutMetricAlarm in the emulator's CloudWatch
    # (moto stores alarms and evaluates none; the local platform's evaluator does).
    "AWS::CloudWatch::Alarm": "created in the emulator's CloudWatch by the local emulator",
}
# What each missing type means for local mode (shown next to the type).
MEANING = {
    "AWS::CertificateManager::Certificate": "local mode passes a certificate requested from the emulator's ACM",
    "AWS::Cognito::UserPool": "local mode signs in with AuthMode oidc (a loopback provider)",
    "AWS::Cognito::UserPoolClient": "local mode signs in with AuthMode oidc (a loopback provider)",
    "AWS::Cognito::UserPoolDomain": "local mode signs in with AuthMode oidc (a loopback provider)",
    "AWS::Cognito::UserPoolGroup": "groups come from the loopback provider's groups claim",
    "AWS::SNS::TopicPolicy": "the alarm topic's policy is not applied (the emulator delivers to any topic)",
    "AWS::CloudTrail::Trail": "no trail of S3 data events (RecordDataEvents, off by default): the emulator records none; a kernel's identity shows in get_caller_identity",
    "AWS::CodeCommit::Repository": "no source repository (SourceType s3 is the default)",
    "AWS::EC2::SecurityGroupEgress": "separate egress rules (NFS to the homes) are not applied; local processes share loopback",
    "AWS::S3::BucketPolicy": "bucket policies (TLS-only, log delivery) are not applied",
    "AWS::CodeBuild::Project": "no image build: a placeholder image manifest is put in ECR",
    "AWS::ServiceDiscovery::PrivateDnsNamespace": "no hub name in DNS: local user servers call the hub on loopback",
    "AWS::ServiceDiscovery::Service": "no hub name in DNS: local user servers call the hub on loopback",
    "AWS::ApplicationAutoScaling::ScalableTarget": "no scaling of hub services",
    "AWS::ApplicationAutoScaling::ScalingPolicy": "no scaling of hub services",
    "AWS::ApplicationAutoScaling::ScheduledAction": "no off-hours schedule",
    "AWS::ServiceCatalog::Portfolio": "no Service Catalog: tiers cannot be launched from it locally",
    "AWS::ServiceCatalog::CloudFormationProduct": "no Service Catalog products",
    "AWS::ServiceCatalog::PortfolioProductAssociation": "no Service Catalog products",
    "AWS::ServiceCatalog::LaunchRoleConstraint": "no Service Catalog constraints",
    "AWS::ServiceCatalog::LaunchTemplateConstraint": "no Service Catalog constraints",
    "AWS::ServiceCatalog::PortfolioPrincipalAssociation": "no Service Catalog access",
    "AWS::ServiceCatalog::TagOption": "no Service Catalog tag options",
    "AWS::ServiceCatalog::TagOptionAssociation": "no Service Catalog tag options",
}


def template_types(templates_dir: Path | None = None) -> dict[str, list[str]]:
    """{resource type: [template files using it]} over every generated template."""
    found: dict[str, set[str]] = {}
    for path in sorted((templates_dir or TEMPLATES_DIR).glob("*.template.yaml")):
        data = load(path)
        for resource in (data.get("Resources") or {}).values():
            rtype = (resource or {}).get("Type")
            if rtype:
                found.setdefault(rtype, set()).add(path.name)
    return {k: sorted(v) for k, v in sorted(found.items())}


def moto_models() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def unmodelled(templates_dir: Path | None = None) -> list[dict]:
    """[{type, templates, local}] for every template type moto has no model for."""
    models = moto_models()
    out = []
    for rtype, files in template_types(templates_dir).items():
        if rtype in models or rtype.startswith("Custom::") or rtype in HANDLED_LOCALLY:
            continue
        out.append({"type": rtype, "templates": files, "local": MEANING.get(rtype, "not created locally (placeholder only)")})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehub.local.unmodelled", description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    rows = unmodelled()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['type']:50} {', '.join(row['templates']):40} {row['local']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
