"""The local environment's AWS emulator: moto in server mode, plus a local Lambda runner.

    python -m lakehub.local.emulator_server --port 4750 --work-dir .lakehub/local/emulator \
        --control-token-file .lakehub/local/control-token

moto runs Lambda functions only in Docker, and there is no Docker engine here. This process
imports moto, changes six things, and serves moto's app on 127.0.0.1:

1. Custom resources (``AWS::CloudFormation::CustomResource`` and ``Custom::*``) are run by a
   small local Lambda runner: the function's code zip (which moto took from the emulator's S3
   when the stack created the function) is unpacked and its handler (``index.handler``) is
   called in a child Python process, with ``AWS_ENDPOINT_URL`` pointing back at this emulator,
   the function's environment variables, a session of its execution role (made in moto's STS
   backend, as Lambda gives one) and a Lambda-like context. The call is synchronous, so
   an attribute of a custom resource (``!GetAtt ListenerRulePriority.Priority``) is known
   before the resources that use it are created, as in CloudFormation. Sibling nested stacks
   are created concurrently (``install_parallel_nested_stacks``), as CloudFormation does, so
   their custom resources reach the runner at the same time and races between them show.
2. crhelper answers only over HTTPS, so the ResponseURL given to the function is a loopback
   HTTPS relay (certificate from a throw-away CA the child process trusts through
   SSL_CERT_FILE). The relay records the answer on moto's stack like moto's own
   ``cfnresponse`` endpoint does; a FAILED answer fails the stack operation with its reason.
3. The control plane: moto's ``/moto-api/...`` (reset-auth turns IAM enforcement off, reset
   wipes, data.json dumps every secret) and its own ``cfnresponse`` endpoint answer only requests
   carrying the supervisor's token (lakehub.local.control; ``--control-token-file``); the rest get
   403, so code in a user's kernel cannot switch enforcement off. The relay's ResponseURL carries
   a random value per request, as CloudFormation's pre-signed URL does: an answer without it is
   refused.
4. IAM enforcement: S3 and STS requests are decided by lakehub.local.iam_eval (conditions,
   policy variables, session tags and policies, SourceIdentity, trust policies, bucket policies,
   DeleteObjects per key: lakehub.local.emulator_iam says what and how). For other services
   moto asks about resource ``*``, which no resource-scoped statement matches, so every
   least-privilege role would be refused: there a request is checked on its action only, by
   moto's own check (which ignores most Conditions).

5. ECS task status (``POST /moto-api/lakehub/ecs-task``, token required): moto reports every
   task's container HEALTHY with exit code 0 and runs no health check. The local agent, which
   runs the tasks, sets what DescribeTasks shows: the task's ``healthStatus``, and each
   container's ``healthStatus``, ``lastStatus``, ``exitCode`` and ``reason``
   (``ecs_task_api``).

6. Durable local S3 (``--persist-dir``): once the supervisor names the notebook bucket
   (``POST /moto-api/lakehub/persist``, token required), every write to it is mirrored to that
   folder before the request is answered (``install_bucket_persistence``): the folder always
   holds the bucket's current objects, so a crash of this process loses no saved notebook.

The emulator has no build service: before ``Custom::WaitForImage`` runs, a placeholder image
manifest is pushed to its repository under the wanted tag (the local hubs run from this
machine's Python environment, not from an image).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lakehub.local.emulator import DEFAULT_REGION, EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY, LOOPBACK

log = logging.getLogger("lakehub.local.emulator")

# Longest a custom resource may take locally (a Lambda function's own limit is 900 s).
MAX_FUNCTION_SECONDS = 900


class _Answers:
    """Custom-resource answers received by the relay, by RequestId."""

    def __init__(self):
        self._lock = threading.Lock()
        self._answers: dict[str, dict] = {}
        self._events: dict[str, threading.Event] = {}
        self._signatures: dict[str, str] = {}

    def expect(self, request_id: str, signature: str = "") -> threading.Event:
        with self._lock:
            if signature:
                self._signatures[request_id] = signature
            return self._events.setdefault(request_id, threading.Event())

    def signed(self, request_id: str, signature: str) -> bool:
        """The relay URL's per-request value (what CloudFormation's pre-signed URL is)."""
        import hmac

        with self._lock:
            expected = self._signatures.get(request_id, "")
        return bool(expected and signature) and hmac.compare_digest(expected.encode(), signature.encode())

    def put(self, request_id: str, body: dict) -> None:
        with self._lock:
            self._answers[request_id] = body
            event = self._events.setdefault(request_id, threading.Event())
        event.set()

    def get(self, request_id: str) -> dict | None:
        with self._lock:
            return self._answers.get(request_id)


ANSWERS = _Answers()


def _record_answer(body: dict) -> None:
    """Apply a crhelper answer to moto's stack (what moto's cfnresponse endpoint does, plus the
    physical id and FAILED answers, which moto ignores)."""
    from moto.cloudformation import cloudformation_backends

    stack_id = body.get("StackId", "")
    parts = stack_id.split(":")
    region, account = (parts[3], parts[4]) if len(parts) > 5 else (DEFAULT_REGION, "123456789012")
    stack = cloudformation_backends[account][region].get_stack(stack_id)
    resource = stack.get_custom_resource(body["LogicalResourceId"])
    if body.get("Status") == "SUCCESS":
        if body.get("PhysicalResourceId"):
            resource.resource_name = body["PhysicalResourceId"]
        # No stack.verify_readiness() here (moto's endpoint calls it): the resource is still
        # being created by this same synchronous call, and moto's readiness check would
        # create it again. The stack's create or update checks readiness when it ends.
        resource.set_data(body.get("Data") or {})
    ANSWERS.put(body.get("RequestId", ""), body)


class _RelayHandler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        log.debug("relay: " + fmt, *args)

    def do_PUT(self):
        from urllib.parse import parse_qs, urlsplit

        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        signature = (parse_qs(urlsplit(self.path).query).get("signature") or [""])[0]
        try:
            body = json.loads(raw or b"{}")
            if not ANSWERS.signed(str(body.get("RequestId", "")), signature):
                status, reply = 403, b"not a response URL this emulator gave"
            else:
                _record_answer(body)
                status, reply = 200, b""
        except Exception as exc:  # noqa: BLE001 - the function is told; the stack fails below
            log.exception("relay: cannot record an answer")
            status, reply = 400, str(exc).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class LambdaRunner:
    """Runs a moto Lambda function's code in a child process (see the module docstring)."""

    def __init__(self, endpoint_url: str, work_dir: Path):
        from lakehub.local.idp.ldap import make_ca_and_cert

        self.endpoint_url = endpoint_url
        self.work_dir = work_dir
        self.functions_dir = work_dir / "functions"
        self.functions_dir.mkdir(parents=True, exist_ok=True)
        tls = work_dir / "relay-tls"
        tls.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = make_ca_and_cert(tls, hostnames=("localhost",), ips=(LOOPBACK,))
        self.relay = ThreadingHTTPServer((LOOPBACK, 0), _RelayHandler)
        self.relay.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.relay.socket = ctx.wrap_socket(self.relay.socket, server_side=True)
        self.relay_port = self.relay.server_address[1]
        threading.Thread(target=self.relay.serve_forever, name="cfn-response-relay", daemon=True).start()

    def response_url(self, region: str, stack_id: str, signature: str) -> str:
        from urllib.parse import quote

        return (
            f"https://{LOOPBACK}:{self.relay_port}/cloudformation_{region}/cfnresponse"
            f"?stack={quote(stack_id, safe='')}&signature={signature}"
        )

    def _code_dir(self, fn) -> Path:
        digest = hashlib.sha256(fn.code_bytes).hexdigest()[:16]
        folder = self.functions_dir / f"{fn.function_name}-{digest}"
        if not folder.is_dir():
            tmp = folder.with_name(folder.name + ".tmp")
            with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as zf:
                zf.extractall(tmp)
            tmp.rename(folder)
        return folder

    @staticmethod
    def role_credentials(fn, region: str, timeout: int) -> dict[str, str]:
        """A session of the function's execution role, as Lambda gives a function (made in
        moto's STS backend directly: Lambda's service principal needs no caller's permission).
        Once the supervisor turns IAM enforcement on, what a function does in a stack update (an
        upgrade's Custom::ImageDigest reading ECR) is allowed or refused by its role, as on
        AWS; the emulator's dummy keys would be refused outright (403). Without a role, the
        dummy keys stay."""
        from moto.sts.models import sts_backends
        from moto.utilities.utils import get_partition

        role_arn = str(getattr(fn, "role", "") or "")
        parts = role_arn.split(":")
        if len(parts) < 6 or not parts[5].startswith("role/"):
            return {}
        session = sts_backends[parts[4]][get_partition(region)].assume_role(
            region_name=region,
            role_session_name=str(fn.function_name)[:64],
            role_arn=role_arn,
            policy=None,
            duration=max(900, timeout + 60),
            external_id=None,
        )
        return {
            "AWS_ACCESS_KEY_ID": session.access_key_id,
            "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
            "AWS_SESSION_TOKEN": session.session_token,
        }

    def invoke(self, fn, event: dict, region: str) -> subprocess.CompletedProcess:
        code_dir = self._code_dir(fn)
        timeout = min(int(getattr(fn, "timeout", 3) or 3), MAX_FUNCTION_SECONDS)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(code_dir),
            "PYTHONPATH": str(code_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(getattr(fn, "memory_size", 128)),
            # crhelper's HTTPS answer goes to the relay, whose CA only this process trusts.
            "SSL_CERT_FILE": str(self.ca_file),
        }
        env.update(self.role_credentials(fn, region, timeout))
        env.update({k: str(v) for k, v in (getattr(fn, "environment_vars", None) or {}).items()})
        context = {
            "function_name": fn.function_name,
            "invoked_function_arn": fn.function_arn,
            "memory_limit_in_mb": str(getattr(fn, "memory_size", 128)),
            "timeout": timeout,
            "log_group_name": f"/aws/lambda/{fn.function_name}",
        }
        payload = json.dumps({"event": event, "context": context, "handler": fn.handler or "index.handler"})
        log_path = self.work_dir / "functions" / f"{fn.function_name}.log"
        with open(log_path, "ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} {event.get('RequestType')} {event.get('LogicalResourceId')}\n".encode())
            out.flush()
            return subprocess.run(
                [sys.executable, "-m", "lakehub.local.lambda_bootstrap"],
                input=payload.encode(),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(code_dir),
                timeout=timeout + 30,
            )


RUNNER: LambdaRunner | None = None


def image_manifest(layer_digest: str, layer_size: int, config_digest: str | None = None) -> str:
    """An image manifest (Docker schema 2, JSON) of one layer, for an image nothing builds (the
    config's digest: that of `{}` unless given)."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": config_digest or "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        },
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer_size, "digest": layer_digest}
        ],
    }
    return json.dumps(manifest)


def _placeholder_image(account_id: str, region: str, properties: dict) -> None:
    """The emulator builds nothing: give Custom::WaitForImage the tag it waits for. Its manifest
    names one layer made of the tag, so each tag has a digest of its own (moto makes an image's
    digest from its layers' digests; ECR from the manifest: either way another tag, another
    digest), as each build of another source is another image."""
    from moto.ecr.models import ecr_backends

    repo = properties.get("RepositoryName")
    tag = properties.get("ImageTag") or "latest"
    if not repo:
        return
    backend = ecr_backends[account_id][region]
    try:
        backend.describe_images(repo, None, [{"imageTag": tag}])
        return
    except Exception:  # noqa: BLE001 - not there yet
        pass
    layer = "sha256:" + hashlib.sha256(f"lakehub-local-image:{tag}".encode()).hexdigest()
    backend.put_image(repo, image_manifest(layer, len(tag)), tag)


def _create_custom_resource(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    """Replacement for moto's CustomModel.create_from_cloudformation_json: synchronous, local."""
    from moto.awslambda.utils import get_backend as get_lambda_backend
    from moto.cloudformation import cloudformation_backends
    from moto.cloudformation.custom_model import CustomModel
    from moto.moto_api._internal import mock_random

    logical_id = kwargs["LogicalId"]
    stack_id = kwargs["StackId"]
    resource_type = kwargs["ResourceType"]
    properties = cloudformation_json["Properties"]
    service_token = properties["ServiceToken"]
    fn = get_lambda_backend(account_id, region_name).get_function(service_token)
    import secrets

    request_id = str(mock_random.uuid4())
    signature = secrets.token_urlsafe(24)
    resource = CustomModel(region_name, request_id, logical_id, resource_name)
    stack = cloudformation_backends[account_id][region_name].get_stack(stack_id)
    stack.add_custom_resource(resource)
    if resource_type == "Custom::WaitForImage" or {"ProjectName", "RepositoryName"} <= set(properties):
        _placeholder_image(account_id, region_name, properties)
    # What an Update needs (moto's CustomModel keeps none of it).
    resource.lakehub_stack_id, resource.lakehub_type, resource.lakehub_properties = stack_id, resource_type, properties
    return _run_custom_resource(resource, fn, region_name, stack_id, logical_id, resource_type, properties, request_id, signature)


def _run_custom_resource(
    resource,
    fn,
    region_name,
    stack_id,
    logical_id,
    resource_type,
    properties,
    request_id,
    signature,
    request_type="Create",
    old=None,
    physical_id=None,
):
    from moto.cloudformation.exceptions import ValidationError

    service_token = properties["ServiceToken"]
    event = {
        "RequestType": request_type,
        "ServiceToken": service_token,
        "ResponseURL": RUNNER.response_url(region_name, stack_id, signature),
        "StackId": stack_id,
        "RequestId": request_id,
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": properties,
        **({"OldResourceProperties": old, "PhysicalResourceId": physical_id} if request_type == "Update" else {}),
    }
    done = ANSWERS.expect(request_id, signature)
    try:
        proc = RUNNER.invoke(fn, event, region_name)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    done.wait(timeout=5)
    answer = ANSWERS.get(request_id)
    if answer is None:
        raise ValidationError(
            message=f"custom resource {logical_id} ({resource_type}): function {fn.function_name} "
            f"sent no answer (exit {code}); see the emulator's functions/{fn.function_name}.log"
        )
    if answer.get("Status") != "SUCCESS":
        raise ValidationError(
            message=f"custom resource {logical_id} ({resource_type}) failed: {answer.get('Reason') or 'no reason given'}"
        )
    return resource


def _update_custom_resource(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    """Replacement for moto's (absent) CustomModel update: when a custom resource's properties
    change in a stack update, CloudFormation sends its function an Update request (with the old
    properties and the physical id); moto leaves the resource and its attributes as they were.
    Here the function gets that Update, and its answer gives the resource's new attributes (a
    tier's HubImage resolves a new ImageTag to its digest, so the task definition changes)."""
    from moto.awslambda.utils import get_backend as get_lambda_backend
    from moto.cloudformation import cloudformation_backends
    from moto.cloudformation.custom_model import CustomModel
    from moto.moto_api._internal import mock_random

    properties = cloudformation_json["Properties"]
    old = getattr(original_resource, "lakehub_properties", None)
    stack_id = getattr(original_resource, "lakehub_stack_id", None)
    if old is None or stack_id is None or old == properties:
        return original_resource  # unchanged (or not one of ours): no request, as CloudFormation
    import secrets

    fn = get_lambda_backend(account_id, region_name).get_function(properties["ServiceToken"])
    if original_resource.lakehub_type == "Custom::WaitForImage":
        _placeholder_image(account_id, region_name, properties)
    request_id = str(mock_random.uuid4())
    resource = CustomModel(region_name, request_id, original_resource.logical_id, original_resource.resource_name)
    resource.lakehub_stack_id, resource.lakehub_type, resource.lakehub_properties = (
        stack_id,
        original_resource.lakehub_type,
        properties,
    )
    cloudformation_backends[account_id][region_name].get_stack(stack_id).add_custom_resource(resource)
    return _run_custom_resource(
        resource,
        fn,
        region_name,
        stack_id,
        original_resource.logical_id,
        original_resource.lakehub_type,
        properties,
        request_id,
        secrets.token_urlsafe(24),
        request_type="Update",
        old=old,
        physical_id=original_resource.physical_resource_id,
    )


def install_lambda_runner(endpoint_url: str, work_dir: Path) -> LambdaRunner:
    global RUNNER
    from moto.cloudformation.custom_model import CustomModel

    RUNNER = LambdaRunner(endpoint_url, work_dir)
    CustomModel.create_from_cloudformation_json = classmethod(_create_custom_resource)
    CustomModel.update_from_cloudformation_json = classmethod(_update_custom_resource)
    return RUNNER


def install_action_only_iam_for_unknown_resources() -> None:
    """See point 4 of the module docstring."""
    from moto.iam.access_control import IAMPolicyStatement

    original = IAMPolicyStatement._check_element_matches

    def check(self, statement_element, value):
        if statement_element == "Resource" and value == "*":
            return True
        return original(self, statement_element, value)

    IAMPolicyStatement._check_element_matches = check


def install_nested_stack_outputs() -> None:
    """`!GetAtt NestedStack.Outputs.Name`: moto's Stack model has no get_cfn_attribute, so a
    parent stack cannot read a nested stack's outputs (it fails with an internal error)."""
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import Stack

    def get_cfn_attribute(self, attribute_name):
        if attribute_name.startswith("Outputs."):
            key = attribute_name[len("Outputs.") :]
            for output in self.output_map.values():
                if output and output.key == key:
                    return output.value
            raise ValidationError(message=f"stack {self.name} has no output {key}")
        raise ValidationError(message=f"stack {self.name} has no attribute {attribute_name}")

    Stack.get_cfn_attribute = get_cfn_attribute

    # moto's YAML reader splits `!GetAtt A.Outputs.B` on every dot; CloudFormation splits on
    # the first one only (the attribute is `Outputs.B`).
    import moto.cloudformation.models as cfn_models
    import moto.cloudformation.utils as cfn_utils

    original = cfn_utils.yaml_tag_constructor

    import yaml

    def yaml_tag_constructor(loader, tag, node):
        key = "Ref" if tag == "!Ref" else f"Fn::{tag[1:]}"
        if tag == "!GetAtt" and isinstance(node, yaml.ScalarNode):
            return {key: node.value.split(".", 1)}
        # moto returns raw YAML nodes for a short-form tag on a mapping (`!Base64 {Fn::Sub: ...}`).
        if isinstance(node, yaml.MappingNode):
            return {key: loader.construct_mapping(node, deep=True)}
        if isinstance(node, yaml.SequenceNode):
            return {key: loader.construct_sequence(node, deep=True)}
        return original(loader, tag, node)

    import moto.cloudformation.responses as cfn_responses

    cfn_utils.yaml_tag_constructor = yaml_tag_constructor
    cfn_models.yaml_tag_constructor = yaml_tag_constructor
    cfn_responses.yaml_tag_constructor = yaml_tag_constructor


# Resource types moto does not model, seen while deploying (type -> logical ids).
PLACEHOLDERS: dict[str, set[str]] = {}


class _LocalModel:
    """What the emulator's own CloudFormation models share (placeholders, secrets, alarms),
    mixed in before moto's CloudFormationModel: each model stays a direct subclass of it, which
    is how moto's parser finds models. A model names its type (CFN_TYPE), its name property
    (NAME_PROPERTY), its GetAtt attributes (ATTRIBUTES; None: any) and the field its Ref gives
    (REF); GetAtt gives its ARN. An update keeps the resource as it is, a delete does nothing,
    unless the model says otherwise."""

    CFN_TYPE = "?"
    NAME_PROPERTY = ""
    ATTRIBUTES: tuple[str, ...] | None = ()
    REF = "name"

    def __init__(self, name: str, arn: str):
        self.name, self.arn = name, arn

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.CFN_TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.NAME_PROPERTY

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        return None

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return cls.ATTRIBUTES is None or attr in cls.ATTRIBUTES

    def get_cfn_attribute(self, attribute_name: str):
        return self.arn

    @property
    def physical_resource_id(self) -> str:
        return getattr(self, self.REF)


def _placeholder_class():
    from moto.core.common_models import CloudFormationModel

    class Placeholder(_LocalModel, CloudFormationModel):
        """A resource of a type moto does not model: it gets a name, an ARN-shaped Arn and
        nothing else, so Ref and GetAtt on it resolve and the stack completes. Local mode
        lists these types (see lakehub.local.unmodelled)."""

        __module__ = "lakehub.placeholders"  # moto's model registry keys models by module
        ATTRIBUTES = None

        def __init__(self, name: str, resource_type: str, account_id: str, region_name: str):
            self.resource_type = resource_type
            service = resource_type.split("::")[1].lower() if "::" in resource_type else "unknown"
            kind = resource_type.rsplit("::", 1)[-1].lower()
            super().__init__(name, f"arn:aws:{service}:{region_name}:{account_id}:{kind}/{name}")

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            rtype = kwargs.get("ResourceType", "?")
            PLACEHOLDERS.setdefault(rtype, set()).add(kwargs.get("LogicalId", resource_name))
            props = cloudformation_json.get("Properties") or {}
            name = next((props[k] for k in ("Name", "ProjectName", "RoleName") if isinstance(props.get(k), str)), resource_name)
            return cls(name, rtype, account_id, region_name)

        def get_cfn_attribute(self, attribute_name: str):
            if attribute_name == "Arn" or attribute_name.endswith("Arn"):
                return self.arn
            return self.name

    return Placeholder


def _secret_class():
    """AWS::SecretsManager::Secret as CloudFormation makes it (moto's CloudFormation has no model
    for it): a secret in the emulator's Secrets Manager with its SecretString, or one generated as
    GenerateSecretString says; Ref (the physical id) and GetAtt Id are its full ARN, which is what
    an ECS task definition's Secrets[].ValueFrom needs (a bare name is read as an SSM parameter).
    Without it the hub task definition named a secret that did not exist, by a name ECS would
    take for an SSM parameter (see docs/AWS_NOTES.md)."""
    from moto.core.common_models import CloudFormationModel

    class Secret(_LocalModel, CloudFormationModel):
        __module__ = "lakehub.secrets"  # moto's model registry keys models by module
        CFN_TYPE, NAME_PROPERTY, ATTRIBUTES, REF = "AWS::SecretsManager::Secret", "Name", ("Id",), "arn"

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            from moto.secretsmanager.models import secretsmanager_backends

            props = cloudformation_json.get("Properties") or {}
            name = props.get("Name") or resource_name
            backend = secretsmanager_backends[account_id][region_name]
            value = props.get("SecretString")
            generate = props.get("GenerateSecretString")
            if value is None and generate is not None:
                value = generated_secret_string(backend, generate)
            found = backend.create_secret(
                name=name,
                secret_string=value,
                secret_binary=None,
                description=props.get("Description"),
                tags=props.get("Tags") or [],
                kms_key_id=props.get("KmsKeyId"),
                client_request_token=None,
                replica_regions=[],
                force_overwrite=False,
            )
            return cls(name, json.loads(found)["ARN"] if isinstance(found, str) else found["ARN"])

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            from moto.secretsmanager.models import secretsmanager_backends

            name = (cloudformation_json.get("Properties") or {}).get("Name") or resource_name
            try:
                secretsmanager_backends[account_id][region_name].delete_secret(name, None, True)
            except Exception:  # noqa: BLE001 - already gone: CloudFormation's delete succeeds too
                pass

    return Secret


def _alarm_class():
    """AWS::CloudWatch::Alarm as CloudFormation makes it (moto's CloudFormation has no model for
    it): a metric alarm in the emulator's CloudWatch (PutMetricAlarm with the template's
    properties), so the tiers' and the platform's alarms exist locally, where the local evaluator
    reads them; Ref is the alarm's name, as on AWS. Without it they were placeholders."""
    from moto.core.common_models import CloudFormationModel

    def truth(value, default=True) -> bool:
        return default if value is None else (value if isinstance(value, bool) else str(value).lower() == "true")

    class Alarm(_LocalModel, CloudFormationModel):
        __module__ = "lakehub.alarms"  # moto's model registry keys models by module
        CFN_TYPE, NAME_PROPERTY, ATTRIBUTES = "AWS::CloudWatch::Alarm", "AlarmName", ("Arn",)

        @classmethod
        def _put(cls, name: str, props: dict, account_id: str, region_name: str) -> "Alarm":
            from moto.cloudwatch.models import cloudwatch_backends

            def number(key, default=None, kind=int):
                return kind(props[key]) if props.get(key) not in (None, "") else default

            alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=name,
                namespace=props.get("Namespace"),
                metric_name=props.get("MetricName"),
                comparison_operator=props.get("ComparisonOperator"),
                evaluation_periods=number("EvaluationPeriods", 1),
                period=number("Period"),
                threshold=number("Threshold", kind=float),
                statistic=props.get("Statistic"),
                description=props.get("AlarmDescription", ""),
                dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in props.get("Dimensions") or []],
                alarm_actions=list(props.get("AlarmActions") or []),
                datapoints_to_alarm=number("DatapointsToAlarm"),
                extended_statistic=props.get("ExtendedStatistic"),
                ok_actions=list(props.get("OKActions") or []),
                insufficient_data_actions=list(props.get("InsufficientDataActions") or []),
                unit=props.get("Unit"),
                actions_enabled=truth(props.get("ActionsEnabled")),
                treat_missing_data=props.get("TreatMissingData"),
            )
            return cls(name, alarm.alarm_arn)

        @classmethod
        def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
            props = cloudformation_json.get("Properties") or {}
            return cls._put(props.get("AlarmName") or resource_name, props, account_id, region_name)

        @classmethod
        def update_from_cloudformation_json(
            cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
        ):
            props = cloudformation_json.get("Properties") or {}
            name = props.get("AlarmName") or original_resource.name
            if name != original_resource.name:
                cls.delete_from_cloudformation_json(original_resource.name, cloudformation_json, account_id, region_name)
            return cls._put(name, props, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
            from moto.cloudwatch.models import cloudwatch_backends

            name = (cloudformation_json.get("Properties") or {}).get("AlarmName") or resource_name
            try:
                cloudwatch_backends[account_id][region_name].delete_alarms([name])
            except Exception:  # noqa: BLE001 - already gone: CloudFormation's delete succeeds too
                pass

    return Alarm


def generated_secret_string(backend, spec: dict) -> str:
    """A value as Secrets Manager's GenerateSecretString makes it (GetRandomPassword's options,
    and SecretStringTemplate + GenerateStringKey for a JSON secret)."""

    def flag(key: str, default: bool = False) -> bool:
        value = spec.get(key, default)
        return value if isinstance(value, bool) else str(value).lower() == "true"

    password = json.loads(
        backend.get_random_password(
            password_length=int(spec.get("PasswordLength", 32)),
            exclude_characters=spec.get("ExcludeCharacters", ""),
            exclude_numbers=flag("ExcludeNumbers"),
            exclude_punctuation=flag("ExcludePunctuation"),
            exclude_uppercase=flag("ExcludeUppercase"),
            exclude_lowercase=flag("ExcludeLowercase"),
            include_space=flag("IncludeSpace"),
            require_each_included_type=flag("RequireEachIncludedType", True),
        )
    )["RandomPassword"]
    if spec.get("SecretStringTemplate") and spec.get("GenerateStringKey"):
        return json.dumps(dict(json.loads(spec["SecretStringTemplate"]), **{spec["GenerateStringKey"]: password}))
    return password


def install_generic_custom_resource_type() -> None:
    """moto knows `Custom::*` but not the generic AWS::CloudFormation::CustomResource type; it
    has no model for AWS::SecretsManager::Secret (_secret_class); other types it does not model
    get a placeholder."""
    import moto.cloudformation.parsing as parsing
    from moto.cloudformation.custom_model import CustomModel

    Placeholder = _placeholder_class()
    Secret = _secret_class()
    Alarm = _alarm_class()

    original = parsing.resource_class_from_type

    def resource_class_from_type(resource_type):
        if resource_type == "AWS::CloudFormation::CustomResource":
            return CustomModel
        if resource_type == "AWS::SecretsManager::Secret":
            return Secret
        if resource_type == "AWS::CloudWatch::Alarm":
            return Alarm
        found = original(resource_type)
        if found is None and resource_type not in parsing.NULL_MODELS:
            return Placeholder
        return found

    parsing.resource_class_from_type = resource_class_from_type


def install_security_group_rule_defaults() -> None:
    """A rule with IpProtocol -1 (all traffic) has no ports in CloudFormation; moto's security
    group model requires FromPort/ToPort."""
    from moto.ec2.models.security_groups import SecurityGroup

    original = SecurityGroup.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties") or {}
        for rule in list(props.get("SecurityGroupIngress") or []) + list(props.get("SecurityGroupEgress") or []):
            if isinstance(rule, dict):
                rule.setdefault("FromPort", -1)
                rule.setdefault("ToPort", -1)
        return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    SecurityGroup.create_from_cloudformation_json = classmethod(create)


def install_bucket_versioning() -> None:
    """AWS::S3::Bucket's VersioningConfiguration: moto's CloudFormation ignores it, so the notebook
    bucket came up unversioned locally (a user's restore points are its object versions)."""
    from moto.s3.models import FakeBucket

    original = FakeBucket.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        status = ((cloudformation_json.get("Properties") or {}).get("VersioningConfiguration") or {}).get("Status")
        if status in ("Enabled", "Suspended"):
            bucket.versioning_status = status
        return bucket

    FakeBucket.create_from_cloudformation_json = classmethod(create)


def install_ssm_parameter_tags() -> None:
    """AWS::SSM::Parameter's Tags is a JSON map in CloudFormation; moto expects a list."""
    from moto.ssm.models import Parameter

    original = Parameter.create_from_cloudformation_json.__func__

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json.get("Properties") or {}
        if isinstance(props.get("Tags"), dict):
            props["Tags"] = [{"Key": k, "Value": v} for k, v in props["Tags"].items()]
        return original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)

    Parameter.create_from_cloudformation_json = classmethod(create)


def install_change_set_outputs() -> None:
    """After a change set runs, moto keeps the stack's template dict and outputs of the change
    set's creation (empty for a CREATE change set): refresh them as an update does."""
    from moto.cloudformation.models import CloudFormationBackend

    original = CloudFormationBackend.execute_change_set

    def execute_change_set(self, change_set_name, stack_name=None):
        original(self, change_set_name, stack_name)
        change_set = self.change_sets.get(change_set_name) or next(
            (cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name), None
        )
        if change_set is not None:
            stack = self.stacks[change_set.stack_id]
            stack._parse_template()
            stack.description = stack.template_dict.get("Description")
            stack.output_map = stack._create_output_map()

    CloudFormationBackend.execute_change_set = execute_change_set


def install_role_policy_documents() -> None:
    """A role's inline policies from a template reach moto as dicts, which moto's IAM
    enforcement cannot read (it expects the JSON text that the IAM API stores)."""
    from moto.iam.models import Role

    original = Role.put_policy

    def put_policy(self, policy_name, policy_json):
        if not isinstance(policy_json, str):
            policy_json = json.dumps(policy_json)
        return original(self, policy_name, policy_json)

    Role.put_policy = put_policy


def install_fargate_task_memory() -> None:
    """RunTask of a Fargate task definition whose containers leave memory to the task level
    (valid for Fargate) fails in moto, which adds up per-container memory."""
    import copy

    from moto.ecs.models import EC2ContainerServiceBackend

    original = EC2ContainerServiceBackend._calculate_task_resource_requirements  # a staticmethod

    def calculate(task_definition):
        view = copy.copy(task_definition)
        task_memory = int(getattr(task_definition, "memory", None) or 0)
        containers = []
        for c in task_definition.container_definitions:
            c = dict(c)
            if not any(c.get(k) for k in ("Memory", "MemoryReservation", "memory", "memoryReservation")):
                c["memory"] = task_memory // max(1, len(task_definition.container_definitions))
            containers.append(c)
        view.container_definitions = containers
        return original(view)

    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(calculate)


def install_task_definition_properties() -> None:
    """moto's AWS::ECS::TaskDefinition keeps only family, containers, volumes and memory: the
    task role (what the local agent gives a user server), execution role, CPU, network mode,
    compatibilities, platform and tags are dropped. Pass them through."""
    from moto.ecs.models import TaskDefinition, ecs_backends
    from moto.moto_api._internal import mock_random
    from moto.core.utils import pascal_to_camelcase, remap_nested_keys

    def create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        p = cloudformation_json["Properties"]
        tags = p.get("Tags") or []
        if isinstance(tags, dict):
            tags = [{"Key": k, "Value": v} for k, v in tags.items()]
        return ecs_backends[account_id][region_name].register_task_definition(
            family=p.get("Family", f"task-definition-{int(mock_random.random() * 10**6)}"),
            container_definitions=remap_nested_keys(p.get("ContainerDefinitions", []), pascal_to_camelcase),
            volumes=remap_nested_keys(p.get("Volumes", []), pascal_to_camelcase),
            network_mode=p.get("NetworkMode"),
            tags=[{"key": t["Key"], "value": t["Value"]} for t in tags],
            requires_compatibilities=p.get("RequiresCompatibilities"),
            cpu=p.get("Cpu"),
            memory=p.get("Memory"),
            task_role_arn=p.get("TaskRoleArn"),
            execution_role_arn=p.get("ExecutionRoleArn"),
            runtime_platform=remap_nested_keys(p["RuntimePlatform"], pascal_to_camelcase) if p.get("RuntimePlatform") else None,
        )

    def update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        # A changed task definition is a new revision (CloudFormation replaces it; the old one
        # is deregistered: INACTIVE, still described, as a running task needs). moto's update
        # registers one with family, containers, volumes and memory only.
        new = create(cls, new_resource_name, cloudformation_json, account_id, region_name)
        ecs_backends[account_id][region_name].deregister_task_definition(original_resource.arn)
        return new

    TaskDefinition.create_from_cloudformation_json = classmethod(create)
    TaskDefinition.update_from_cloudformation_json = classmethod(update)


def install_efs_attributes() -> None:
    """moto models AWS::EFS::FileSystem and AWS::EFS::AccessPoint but gives neither GetAtt
    attributes, and `!Ref AccessPoint` returns no id (it has no physical id): the tier's volume
    and its policies need the access point's id and ARN (CloudFormation: Ref and GetAtt
    AccessPointId are the id, GetAtt Arn the ARN)."""
    from moto.cloudformation.exceptions import ValidationError
    from moto.efs.models import AccessPoint, FileSystem

    def attributes(resource_type: str, **fields: str):
        """get_cfn_attribute giving each GetAtt attribute named in `fields` from that field."""

        def get_cfn_attribute(self, attribute_name):
            if attribute_name in fields:
                return getattr(self, fields[attribute_name])
            raise ValidationError(message=f"{resource_type} has no attribute {attribute_name}")

        return get_cfn_attribute

    AccessPoint.physical_resource_id = property(lambda self: self.access_point_id)
    AccessPoint.get_cfn_attribute = attributes("AWS::EFS::AccessPoint", AccessPointId="access_point_id", Arn="access_point_arn")
    FileSystem.get_cfn_attribute = attributes("AWS::EFS::FileSystem", FileSystemId="file_system_id", Arn="file_system_arn")


def install_bodyless_request_signatures() -> None:
    """With IAM enforcement on, moto checks a request's SigV4 signature by signing it again,
    with `raw_body or data` as the payload: for a GET of a REST API (EFS DescribeAccessPoints,
    DescribeFileSystems...) that is the parsed query, not the empty payload the client signed,
    so every such call fails with SignatureDoesNotMatch. Sign what was sent."""
    from moto.iam.access_control import IAMRequestBase

    original = IAMRequestBase._create_aws_request

    def create(self):
        request = original(self)
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:
            request.data = b""
        return request

    IAMRequestBase._create_aws_request = create


def install_eni_dns_name() -> None:
    """moto's awsvpc RunTask reads an ENI's private DNS name, which it sets only when the VPC
    has DNS host names on in moto's model (its CloudFormation VPC leaves them off)."""
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    if not hasattr(NetworkInterface, "private_dns_name"):
        NetworkInterface.private_dns_name = ""


def install_cidr_function() -> None:
    """Fn::Cidr, which moto's template parser lacks (it returns the unresolved mapping),
    AWS::NoValue inside lists, and Fn::Sub's variable map taken literally."""
    import ipaddress

    import moto.cloudformation.parsing as parsing

    original = parsing.clean_json

    def clean_json(resource_json, resources_map):
        if isinstance(resource_json, dict) and "Fn::Cidr" in resource_json:
            block, count, bits = (original(v, resources_map) for v in resource_json["Fn::Cidr"])
            network = ipaddress.ip_network(str(block), strict=False)
            prefix = network.max_prefixlen - int(bits)
            subnets = network.subnets(new_prefix=prefix)
            return [str(next(subnets)) for _ in range(int(count))]
        if (
            isinstance(resource_json, dict)
            and isinstance(resource_json.get("Fn::Sub"), list)
            and len(resource_json["Fn::Sub"]) == 2
        ):
            # moto substitutes the variable map first, then reads the result as a template again,
            # so a value such as the IAM policy variable ${aws:userid} becomes a Ref to nothing.
            template, variables = resource_json["Fn::Sub"]
            values = {}
            for i, (key, value) in enumerate((variables or {}).items()):
                token = f"LAKEHUBSUBVALUE{i}X"
                template = template.replace("${" + key + "}", token)
                values[token] = str(clean_json(value, resources_map))
            text = original({"Fn::Sub": template}, resources_map)
            for token, value in values.items():
                text = text.replace(token, value)
            return text
        result = original(resource_json, resources_map)
        if isinstance(resource_json, list) and isinstance(result, list):
            # CloudFormation drops list items that are AWS::NoValue (`!If [c, x, !Ref AWS::NoValue]`).
            return [item for item in result if item is not None]
        return result

    parsing.clean_json = clean_json


NESTED_STACK = "AWS::CloudFormation::Stack"


def install_parallel_nested_stacks() -> None:
    """Sibling nested stacks are created at the same time, as CloudFormation does.

    moto creates a stack's resources one after another, so two tier stacks never overlap and a
    race between them (two custom resources reading the listener before either rule exists:
    issue 13's priority defect) cannot show. Here a run of nested stacks whose dependencies are
    all created already (a "wave") is created in threads, and their custom resources reach the
    local Lambda runner concurrently. Everything else keeps moto's order.
    """
    from moto.cloudformation.parsing import ResourceMap
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.core import TaggedEC2Resource

    from lakehub.cfn.walk import refs

    if getattr(ResourceMap, "_lakehub_parallel", False):
        return

    def create(self, template):
        self._template = template
        self._resource_json_map = template["Resources"]
        self.tags.update(
            {"aws:cloudformation:stack-name": self["AWS::StackName"], "aws:cloudformation:stack-id": self["AWS::StackId"]}
        )
        names = set(self._resource_json_map)

        def deps(name: str) -> set[str]:
            res = self._resource_json_map[name]
            depends = res.get("DependsOn") or []
            return (refs(res.get("Properties") or {}) | set([depends] if isinstance(depends, str) else depends)) & names

        def finish(name: str, instance) -> bool:
            if isinstance(instance, TaggedEC2Resource):
                self.tags["aws:cloudformation:logical-id"] = name
                ec2_backends[self._account_id][self._region_name].create_tags([instance.physical_resource_id], self.tags)
            return not (instance and not instance.is_created())

        order = self._ResourceMap__get_resources_in_dependency_order()
        created: set[str] = set()
        ready = True
        i = 0
        while i < len(order):
            wave = [order[i]]
            if self._resource_json_map[order[i]].get("Type") == NESTED_STACK:
                j = i + 1
                while (
                    j < len(order) and self._resource_json_map[order[j]].get("Type") == NESTED_STACK and deps(order[j]) <= created
                ):
                    wave.append(order[j])
                    j += 1
            if len(wave) == 1:
                ready = finish(wave[0], self[wave[0]]) and ready
            else:
                results: dict[str, Any] = {}
                errors: list[BaseException] = []

                def one(name: str) -> None:
                    try:
                        results[name] = self[name]
                    except BaseException as exc:  # noqa: BLE001 - re-raised below, in order
                        errors.append(exc)

                threads = [threading.Thread(target=one, args=(n,), name=f"nested-{n}") for n in wave]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=MAX_FUNCTION_SECONDS * 4)
                if errors:
                    raise errors[0]
                for name in wave:
                    ready = finish(name, results.get(name)) and ready
            created.update(wave)
            i += len(wave)
        return ready

    ResourceMap.create = create
    ResourceMap._lakehub_parallel = True


def install_nested_stack_updates() -> None:
    """A stack update updates its nested stacks in place, as CloudFormation does.

    moto's ``AWS::CloudFormation::Stack`` update deletes the nested stack and creates another
    under a new name (the upgrade rehearsal saw new child stacks in CREATE_IN_PROGRESS, and
    their custom resources re-run as Creates). Here the nested stack keeps its id and name,
    goes UPDATE_IN_PROGRESS -> UPDATE_COMPLETE, and its own resources are updated with its new
    template and parameters; the parent's resource keeps its physical id.

    moto also decides what changed from the template text alone (plus parameters a resource
    names with Ref), so a value that changes through another resource (`!GetAtt
    HubImage.ImageUri` after the digest resource was updated, a nested stack parameter fed by a
    sibling's output) never reaches the resource. CloudFormation compares resolved values: here
    the resources are updated in dependency order (Ref, GetAtt, Sub and DependsOn), and one
    whose resolved properties differ from before the update is updated too. A resource type
    moto cannot update keeps its resource (moto would drop it).
    """
    import copy

    from moto.cloudformation import parsing
    from moto.cloudformation.models import Stack
    from moto.cloudformation.utils import get_stack_from_s3_url
    from moto.utilities.utils import get_partition

    from lakehub.cfn.walk import refs

    if getattr(parsing.ResourceMap, "_lakehub_in_place", False):
        return

    def update_nested(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
        props = cloudformation_json["Properties"]
        body = get_stack_from_s3_url(props["TemplateURL"], account_id=account_id, partition=get_partition(region_name))
        parameters = props.get("Parameters") or {}
        if original_resource.has_template(body) and original_resource.parameters == parameters:
            return original_resource
        original_resource.status = "UPDATE_IN_PROGRESS"
        original_resource.update(body, role_arn=original_resource.role_arn, parameters=parameters)
        return original_resource

    unresolved = object()

    def resolved(resource_map, resource_json):
        try:
            return parsing.clean_json(copy.deepcopy(resource_json.get("Properties") or {}), resource_map)
        except Exception:  # noqa: BLE001 - unresolvable now: only moto's own diff decides
            return unresolved

    def dependency_order(resource_json_map: dict) -> list[str]:
        names = set(resource_json_map)
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:  # a cycle (CloudFormation refuses it): keep going
                return
            state[name] = 1
            res = resource_json_map[name]
            depends = res.get("DependsOn") or []
            for dep in sorted(
                (refs(res.get("Properties") or {}) | set([depends] if isinstance(depends, str) else depends)) & names
            ):
                visit(dep)
            state[name] = 2
            order.append(name)

        for name in resource_json_map:
            visit(name)
        return order

    def update(self, template, parameters=None):
        by_action = self.build_resource_diff(template, parameters)
        old_json = dict(self._resource_json_map)
        before = {
            name: resolved(self, old_json[name])
            for name in template["Resources"]
            if name in old_json and self._parsed_resources.get(name) is not None
        }
        for logical_name in by_action["Remove"]:
            if logical_name in self._parsed_resources:
                self._delete_resource(self._parsed_resources.pop(logical_name), old_json[logical_name])
        self._template = template
        if parameters:
            self.input_parameters = parameters
        self.load_mapping()
        self.load_parameters()
        self.load_conditions()
        self._resource_json_map = template["Resources"]
        added = set(by_action["Add"])
        # Template text changed; a changed parameter counts through the resolved values below
        # (moto's own diff also marks every resource naming a parameter it thinks changed, and
        # it counts a parameter kept with UsePreviousValue as changed: the platform's alarm
        # topic was replaced, under a new ARN, on an update that changed only ImageTag).
        modify = {name for name in by_action["Modify"] if template["Resources"][name] != old_json.get(name)}
        for logical_name in dependency_order(self._resource_json_map):
            if logical_name in added:
                _ = self[logical_name]  # moto's way of creating a resource
                continue
            original = self._parsed_resources.get(logical_name)
            if original is None:
                continue  # never created (a false condition)
            resource_json = self._resource_json_map[logical_name]
            if logical_name not in modify:
                was = before.get(logical_name, unresolved)
                if was is unresolved or resolved(self, resource_json) == was:
                    continue
            log.info(
                "stack %s: updating %s (%s)",
                self["AWS::StackName"],
                logical_name,
                "its template or a parameter it names" if logical_name in modify else "a value it resolves to",
            )
            changed = parsing.parse_and_update_resource(
                logical_name, resource_json, self, account_id=self._account_id, region_name=self._region_name
            )
            if changed is not None:
                self._parsed_resources[logical_name] = changed

    Stack.update_from_cloudformation_json = classmethod(update_nested)
    parsing.ResourceMap.update = update
    parsing.ResourceMap._lakehub_in_place = True


# ------------------------------------------------------------------------------------------
# durable local S3: the notebook bucket mirrored to a folder as it is written
# ------------------------------------------------------------------------------------------
PERSIST_PATH = "/moto-api/lakehub/persist"


def _cannot_be_a_file(exc: OSError) -> bool:
    """A key the folder cannot hold as a file (`a` and `a/b` both keys, a name too long), as
    opposed to a folder that cannot be written (no space, no permission)."""
    import errno

    return isinstance(exc, (NotADirectoryError, IsADirectoryError, FileExistsError)) or exc.errno == errno.ENAMETOOLONG


def key_path(root: Path, key: str) -> Path | None:
    """Where object `key` lives under `root`, or None when the key cannot be a file there
    (empty, absolute, `.`/`..`/empty segments, a folder marker ending in `/`, a NUL): S3
    allows such keys; the mirror never writes outside `root`."""
    parts = key.split("/")
    if not key or "\0" in key or any(p in ("", ".", "..") for p in parts):
        return None
    path = root.joinpath(*parts)
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return path


class BucketMirror:
    """Keeps `root` equal to the current objects of one bucket (the notebook bucket): each
    current object is a file at its key; deleted keys (and keys whose current version is a delete
    marker) have no file. Writes are atomic (a temporary file in the sibling folder
    `<root>.writing`, fsync, rename, fsync of the folder), so a crash leaves the old or the new
    body, never a part. Object bodies only: versions, metadata and tags are not kept."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.scratch = self.root.with_name(self.root.name + ".writing")
        self.bucket = ""
        self.lock = threading.Lock()
        self.skipped: set[str] = set()
        self.errors = 0

    # -- files ------------------------------------------------------------------------------
    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, path: Path, body: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.scratch)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._fsync_dir(path.parent)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            return  # a folder of other keys' files, not this key's
        self._fsync_dir(path.parent)
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()  # only when empty
            except OSError:
                break
            parent = parent.parent

    # -- the bucket ---------------------------------------------------------------------------
    @staticmethod
    def _bucket(name: str):
        from moto.s3.models import s3_backends

        partition, account = s3_backends.bucket_accounts[name]
        return s3_backends[account][partition].get_bucket(name)

    @staticmethod
    def _current(bucket, key: str) -> bytes | None:
        from moto.s3.models import FakeKey

        obj = bucket.keys.get(key)
        return obj.value if isinstance(obj, FakeKey) else None

    def sync_key(self, bucket_name: str, key: str) -> None:
        """After a write to `key`: its file is the key's current body, or gone. Reads the bucket
        under the lock, so concurrent writes to one key end with the last one's body."""
        if bucket_name != self.bucket:
            return
        path = key_path(self.root, key)
        if path is None:
            if key not in self.skipped and not key.endswith("/"):
                log.warning("durable S3: key %r of %s cannot be a file under %s; not mirrored", key, bucket_name, self.root)
            self.skipped.add(key)
            return
        with self.lock:
            try:
                body = self._current(self._bucket(bucket_name), key)
                if body is None:
                    self._remove(path)
                else:
                    self._write(path, body)
            except OSError as exc:
                if not _cannot_be_a_file(exc):
                    self.errors += 1
                    log.error("durable S3: cannot mirror %s/%s to %s: %s", bucket_name, key, path, exc)
                else:
                    self.skipped.add(key)
                    log.warning(
                        "durable S3: key %r of %s cannot be a file under %s (%s); not mirrored", key, bucket_name, self.root, exc
                    )
            except Exception as exc:  # noqa: BLE001 - the request succeeded; say what was not kept
                # (A body replaced by a concurrent write is closed by moto: that write mirrors it.)
                self.errors += 1
                log.error("durable S3: cannot mirror %s/%s to %s: %s", bucket_name, key, path, exc)

    def watch(self, bucket_name: str) -> int:
        """Mirror `bucket_name` from now on (instead of any other), after making the folder equal
        to its current objects. The caller restores the folder into the bucket first."""
        bucket = self._bucket(bucket_name)  # KeyError: no such bucket
        with self.lock:
            self.bucket = bucket_name
            return self._sync_all(bucket)

    def sync_all(self) -> int:
        """Make the folder equal to the watched bucket again (a clean stop's last export)."""
        if not self.bucket:
            raise LookupError("no bucket is mirrored")
        with self.lock:
            return self._sync_all(self._bucket(self.bucket))

    def _sync_all(self, bucket) -> int:
        from moto.s3.models import FakeKey

        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        wanted: dict[Path, bytes] = {}
        for key in list(bucket.keys.keys()):
            obj = bucket.keys.get(key)
            path = key_path(self.root, key)
            if isinstance(obj, FakeKey) and path is not None:
                wanted[path] = obj.value
        for path, body in sorted(wanted.items()):
            try:
                if not (path.is_file() and path.read_bytes() == body):
                    self._write(path, body)
            except OSError as exc:
                if not _cannot_be_a_file(exc):
                    raise
                self.skipped.add(path.relative_to(self.root).as_posix())
                log.warning("durable S3: %s cannot be a file (%s); not mirrored", path, exc)
        for path in sorted(self.root.rglob("*"), reverse=True):
            if path.is_file() and path not in wanted:
                self._remove(path)
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        self.errors = 0  # writes that failed before are in the folder now
        return len(wanted)

    def status(self) -> dict:
        return {
            "bucket": self.bucket,
            "folder": str(self.root),
            "errors_since_last_sync": self.errors,
            "not_mirrored": sorted(k for k in self.skipped if not k.endswith("/")),
        }


MIRROR: BucketMirror | None = None


def install_bucket_persistence(root: Path) -> BucketMirror:
    """Durable local S3 (issue 16): every write that changes a key of the watched bucket
    (PutObject, CompleteMultipartUpload, CopyObject into it: all end in S3Backend.put_object;
    DeleteObject, DeleteObjects, delete markers, deleting a version: all end in
    S3Backend.delete_object) is mirrored to `root` before the request is answered. The bucket
    to mirror is named later through the control API (`POST /moto-api/lakehub/persist`), since
    the stack creates it."""
    global MIRROR
    from moto.s3.models import S3Backend

    MIRROR = BucketMirror(root)
    if getattr(S3Backend, "_lakehub_persistence", False):
        return MIRROR
    put_object, delete_object = S3Backend.put_object, S3Backend.delete_object

    def put(self, bucket_name, key_name, *args, **kwargs):
        key = put_object(self, bucket_name, key_name, *args, **kwargs)
        if MIRROR is not None:
            MIRROR.sync_key(bucket_name, key_name)
        return key

    def delete(self, bucket_name, key_name, *args, **kwargs):
        result = delete_object(self, bucket_name, key_name, *args, **kwargs)
        if MIRROR is not None:
            MIRROR.sync_key(bucket_name, key_name)
        return result

    S3Backend.put_object = put
    S3Backend.delete_object = delete
    S3Backend._lakehub_persistence = True
    return MIRROR


def _answer(start_response, status: str, body: dict):
    """A JSON answer of the control paths' middlewares (persistence_api, ecs_task_api)."""
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _request_body(environ):
    """The request's JSON body ({} when empty)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) or b"{}")


def persistence_api(app):
    """WSGI middleware for the control path PERSIST_PATH (the token guard in front of it lets
    only the supervisor through): `POST` with `{"bucket": name}` starts mirroring that bucket,
    `POST` with `{"sync": true}` makes the folder equal to it again, `GET` says what is mirrored.
    The folder itself is fixed at start (--persist-dir), never given over the network."""

    def handle(environ, start_response):
        if (environ.get("PATH_INFO") or "") != PERSIST_PATH:
            return app(environ, start_response)
        if MIRROR is None:
            return _answer(start_response, "409 Conflict", {"error": "the emulator was started without --persist-dir"})
        try:
            if environ.get("REQUEST_METHOD") == "POST":
                request = _request_body(environ)
                if request.get("bucket"):
                    count = MIRROR.watch(str(request["bucket"]))
                elif request.get("sync"):
                    count = MIRROR.sync_all()
                else:
                    return _answer(start_response, "400 Bad Request", {"error": 'give {"bucket": name} or {"sync": true}'})
                return _answer(start_response, "200 OK", dict(MIRROR.status(), files=count))
            return _answer(start_response, "200 OK", MIRROR.status())
        except KeyError as exc:
            return _answer(start_response, "404 Not Found", {"error": f"no bucket {exc}"})
        except (LookupError, OSError, ValueError) as exc:
            log.exception("durable S3")
            return _answer(start_response, "500 Internal Server Error", {"error": str(exc)})

    return handle


ECS_TASK_PATH = "/moto-api/lakehub/ecs-task"
HEALTH_VALUES = ("HEALTHY", "UNHEALTHY", "UNKNOWN")


def set_task_status(request: dict) -> dict:
    """Set what DescribeTasks shows of a task the local agent runs: `{"taskArn": arn,
    "healthStatus": "HEALTHY"|"UNHEALTHY"|"UNKNOWN", "containers": [{"name": n, "healthStatus": ...,
    "lastStatus": ..., "exitCode": int|null, "reason": text}]}` (every key but taskArn optional)."""
    from moto.ecs.models import ecs_backends

    arn = str(request.get("taskArn") or "")
    if not arn.startswith("arn:"):
        raise ValueError("give the task's ARN as taskArn")
    health = request.get("healthStatus")
    if health is not None and health not in HEALTH_VALUES:
        raise ValueError(f"healthStatus must be one of {', '.join(HEALTH_VALUES)}")
    for account in list(ecs_backends):
        for backend in ecs_backends[account].values():
            for cluster_tasks in backend.tasks.values():
                task = cluster_tasks.get(arn)
                if task is None:
                    continue
                if health is not None:
                    task.health_status = health
                for change in request.get("containers") or []:
                    for container in task.containers:
                        if change.get("name") not in (None, container.name):
                            continue
                        if change.get("healthStatus") in HEALTH_VALUES:
                            container.health_status = change["healthStatus"]
                        if "lastStatus" in change:
                            container.last_status = str(change["lastStatus"])
                        if "exitCode" in change:
                            container.exitCode = None if change["exitCode"] is None else int(change["exitCode"])
                        if "reason" in change:
                            container.reason = str(change["reason"])[:255]
                return {"taskArn": arn, "healthStatus": getattr(task, "health_status", None)}
    raise KeyError(arn)


def ecs_task_api(app):
    """WSGI middleware for the control path ECS_TASK_PATH (behind the token guard):
    `POST` a set_task_status request."""

    def handle(environ, start_response):
        if (environ.get("PATH_INFO") or "") != ECS_TASK_PATH:
            return app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", {"error": "POST a task status"})
        try:
            request = _request_body(environ)
            if not isinstance(request, dict):
                raise ValueError("the body is a JSON object")
            return _answer(start_response, "200 OK", set_task_status(request))
        except KeyError as exc:
            return _answer(start_response, "404 Not Found", {"error": f"no task {exc}"})
        except (TypeError, ValueError) as exc:
            return _answer(start_response, "400 Bad Request", {"error": str(exc)})

    return handle


def serve(port: int, work_dir: Path, control_token: str, persist_dir: Path | None = None) -> None:
    from werkzeug.serving import make_server

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    endpoint = f"http://{LOOPBACK}:{port}"
    install_lambda_runner(endpoint, work_dir)
    install_action_only_iam_for_unknown_resources()
    from lakehub.local.emulator_iam import install_iam_evaluator

    install_iam_evaluator()
    install_nested_stack_outputs()
    install_parallel_nested_stacks()
    install_nested_stack_updates()
    install_generic_custom_resource_type()
    install_security_group_rule_defaults()
    install_cidr_function()
    install_ssm_parameter_tags()
    install_bucket_versioning()
    install_change_set_outputs()
    install_role_policy_documents()
    install_fargate_task_memory()
    install_task_definition_properties()
    install_efs_attributes()
    install_bodyless_request_signatures()
    install_eni_dns_name()
    if persist_dir is not None:
        install_bucket_persistence(persist_dir)
    from lakehub.local.control import guard

    app = guard(ecs_task_api(persistence_api(DomainDispatcherApplication(create_backend_app))), control_token)
    server = make_server(LOOPBACK, port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    log.info("emulator on %s (relay https://%s:%s)", endpoint, LOOPBACK, RUNNER.relay_port)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehub.local.emulator_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument(
        "--control-token-file",
        required=True,
        help="file holding the token the control API (/moto-api/...) requires (lakehub.local.control)",
    )
    parser.add_argument(
        "--persist-dir",
        default=None,
        help="folder the bucket named through POST /moto-api/lakehub/persist is mirrored to as it is written",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from lakehub.local.control import read_token

    try:
        token = read_token(Path(args.control_token_file))
    except OSError as exc:
        parser.error(f"cannot read --control-token-file: {exc}")
    if len(token) < 16:
        parser.error("--control-token-file holds no token (16 characters at least)")
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    serve(args.port, work_dir, token, Path(args.persist_dir).resolve() if args.persist_dir else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
