"""Custom::SecretArn: the full ARN of a Secrets Manager secret the platform team created by name.

ECS takes a Secrets Manager secret in a task definition's `Secrets[].ValueFrom` by its full ARN
(the name, "-" and the 6 random characters Secrets Manager appends); a partial ARN without them
is undocumented there and reported to fail (docs/AWS_NOTES.md). The sign-in secrets live at fixed
names (<platform>/<tier>/oidc_client_secret, ...): this function looks the full ARN up.

Properties
  SecretName   the secret's name; it must lie under <platform>/, where <platform> is the
               platform this function belongs to (environment variable LAKEHUB_PLATFORM_NAME).
               The function trusts no property: any other name is refused.

Create/Update: DescribeSecret; a secret that does not exist (or is scheduled for deletion) fails
the stack with one line naming the secret and the command that fixes it.
Delete: nothing (the secret is the platform team's, not the stack's).
Data: Arn (the full ARN), Name.
PhysicalResourceId: the full ARN (a secret created again gets a new one: the task definition
is updated with it).
"""

from __future__ import annotations

import logging
import os
import re

from botocore.exceptions import ClientError
from lakehub_cr import clients, error_code, new_helper, nothing_to_delete, properties, serve

logger = logging.getLogger(__name__)

helper = new_helper()

(secretsmanager,) = clients(helper, "secretsmanager")

PLATFORM_ENV = "LAKEHUB_PLATFORM_NAME"
# Secrets Manager names: 1-512 of letters, digits and /_+=.@- (CreateSecret, Name).
SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
PLATFORM_NAME = re.compile(r"^[a-z][a-z0-9-]{1,19}$")  # the templates' PlatformName pattern


def _platform() -> str:
    value = os.environ.get(PLATFORM_ENV, "").strip()
    if not PLATFORM_NAME.match(value):
        raise RuntimeError(
            f"environment variable {PLATFORM_ENV} is {value[:40]!r}, not a platform name (the cluster template sets it)"
        )
    return value


def secret_name(event) -> str:
    """SecretName, when it is a secret name under this function's platform."""
    platform = _platform()
    name = properties(event).get("SecretName")
    if not (
        isinstance(name, str) and SECRET_NAME.match(name) and name.startswith(platform + "/") and len(name) > len(platform) + 1
    ):
        # Names only (an ARN could name another account's or platform's secret), under this platform.
        raise ValueError(
            f"Refused SecretName {str(name)[:120]!r}: this function reads only secrets named {platform}/... (the platform it belongs to)"
        )
    return name


def _region() -> str:
    return secretsmanager.meta.region_name or os.environ.get("AWS_REGION", "")


def look_up(name: str) -> str:
    try:
        secret = secretsmanager.describe_secret(SecretId=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ValueError(
                f"No secret {name}: run `aws secretsmanager create-secret --region {_region()} --name {name} "
                "--secret-string file://value.txt`, then deploy again"
            ) from None
        raise
    if secret.get("Name") != name:
        # DescribeSecret also takes ARNs; a name is what was asked for, so the answer must match.
        raise ValueError(f"Secret lookup for {name} answered another secret ({str(secret.get('Name'))[:80]})")
    if secret.get("DeletedDate"):
        raise ValueError(
            f"Secret {name} is scheduled for deletion: run `aws secretsmanager restore-secret --region {_region()} --secret-id {name}`, then deploy again"
        )
    return secret["ARN"]


def _answer(event) -> str:
    name = secret_name(event)
    arn = look_up(name)
    helper.Data.update({"Arn": arn, "Name": name})
    logger.info("secret %s is %s", name, arn)
    return arn


handler = serve(helper, create=_answer, update=_answer, delete=nothing_to_delete("the secret is the platform team's"))
