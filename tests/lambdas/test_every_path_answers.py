"""Every handler answers CloudFormation on every path: an exception in Create, Update or Delete,
a client that cannot be created at start, a call that hangs until the Lambda is about to time out.
"""

from __future__ import annotations

import threading
import time

import pytest

HANDLERS = {
    # name: (resource type, client attributes, valid properties for the emulator-less failure)
    "seed_notebooks": (
        "Custom::SeedNotebooks",
        ("s3",),
        {
            "NotebookBucket": "b-x",
            "Tiers": [{"Name": "pii", "NotebookPrefix": "tiers/pii", "DataBucket": "data-lake", "DataPrefixes": ["pii/"]}],
        },
    ),
    "wait_for_image": (
        "Custom::WaitForImage",
        ("ecr", "codebuild", "cloudformation"),
        {"ProjectName": "p", "RepositoryName": "r"},
    ),
    "listener_priority": (
        "Custom::ListenerPriority",
        ("elbv2",),
        {"ListenerArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/a/1/2"},
    ),
    "secret_arn": ("Custom::SecretArn", ("secretsmanager",), {"SecretName": "lakehub/pii/oidc_client_secret"}),
    "product_template": (
        "Custom::ProductTemplate",
        ("s3",),
        {
            "Bucket": "b",
            "SourceKey": "t/x.template.yaml",
            "TargetKey": "t/platforms/p/x.template.yaml",
            "Defaults": {"PlatformName": "p"},
        },
    ),
}


@pytest.fixture(autouse=True)
def _platform_of_the_functions(monkeypatch):
    """What the templates set on functions that take their platform from the environment."""
    monkeypatch.setenv("LAKEHUB_PLATFORM_NAME", "lakehub")


class Boom:
    """A boto3 client whose every call raises (or hangs, when told to)."""

    def __init__(self, hang: float = 0.0):
        self.hang = hang

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if self.hang:
                time.sleep(self.hang)
            raise RuntimeError(f"Emulator unreachable during {name}")

        return call


@pytest.mark.parametrize("name", sorted(HANDLERS))
@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_an_exception_in_create_or_update_answers_failed(
    name, request_type, load_handler, make_event, invoke, failed, monkeypatch
):
    resource_type, clients, props = HANDLERS[name]
    module = load_handler(name)
    for attr in clients:
        monkeypatch.setattr(module, attr, Boom())
    kwargs = {"old_properties": {**props, "Changed": "yes"}, "physical_id": "phys-1"} if request_type == "Update" else {}
    if name == "wait_for_image" and request_type == "Update":
        kwargs["old_properties"]["SourceVersion"] = "old"
    event = make_event(request_type, resource_type, props, function=f"fn-{name}", **kwargs)
    answer = invoke(module, event, function=f"fn-{name}")
    failed(answer, "Emulator unreachable during")
    if request_type == "Update":
        assert answer["PhysicalResourceId"] == "phys-1"


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_an_exception_in_delete_answers_failed(name, load_handler, make_event, invoke, failed, monkeypatch):
    resource_type, _, props = HANDLERS[name]
    module = load_handler(name)

    def broken_delete(event, context):
        raise RuntimeError("Delete broke: disk on fire")

    monkeypatch.setattr(module.helper, "_delete_func", broken_delete)
    event = make_event("Delete", resource_type, props, function=f"fn-{name}", physical_id="phys-1")
    answer = invoke(module, event, function=f"fn-{name}")
    failed(answer, "Delete broke: disk on fire")
    assert answer["PhysicalResourceId"] == "phys-1"


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_a_client_that_cannot_be_created_answers_failed_for_every_request(
    name, load_handler, make_event, invoke, failed, monkeypatch
):
    resource_type, _, props = HANDLERS[name]
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key)
    module = load_handler(name)  # boto3 raises NoRegionError at import; crhelper records it
    for request_type in ("Create", "Delete"):
        event = make_event(request_type, resource_type, props, function=f"fn-{name}", physical_id="phys-1")
        failed(invoke(module, event, function=f"fn-{name}"), "region")


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_a_call_that_hangs_is_answered_before_the_lambda_times_out(
    name, load_handler, make_event, cfn, failed, lambda_context, monkeypatch
):
    resource_type, clients, props = HANDLERS[name]
    module = load_handler(name)
    for attr in clients:
        monkeypatch.setattr(module, attr, Boom(hang=2.0))
    event = make_event("Create", resource_type, props, function=f"fn-{name}")
    started = time.monotonic()
    worker = threading.Thread(target=module.handler, args=(event, lambda_context(f"fn-{name}", remaining_ms=1200)), daemon=True)
    worker.start()
    deadline = started + 10
    while not cfn.for_request(event["RequestId"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = cfn.for_request(event["RequestId"])[0]
    assert time.monotonic() - started < 1.9  # answered at ~0.7 s, while the call still hangs
    failed(first, "Execution timed out")
    worker.join(10)


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_helper_settings(name, load_handler):
    helper = load_handler(name).helper
    assert 0 < helper._sleep_on_delete <= 10
    assert helper._json_logging is False and helper._log_level == "INFO" and helper._boto_level == "CRITICAL"
    assert helper._polling_interval == 1


class LongBoom:
    def __getattr__(self, name):
        def call(*args, **kwargs):
            raise RuntimeError(f"Emulator unreachable during {name}: " + "arn:aws:x:" * 60)

        return call


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_a_long_error_keeps_its_beginning_in_the_reason(name, load_handler, make_event, invoke, failed, monkeypatch):
    resource_type, clients, props = HANDLERS[name]
    module = load_handler(name)
    for attr in clients:
        monkeypatch.setattr(module, attr, LongBoom())
    event = make_event("Create", resource_type, props, function=f"fn-{name}")
    answer = invoke(module, event, function=f"fn-{name}")
    failed(answer, "Emulator unreachable during")
    assert answer["Reason"].startswith("Emulator unreachable during") and answer["Reason"].endswith("...")
