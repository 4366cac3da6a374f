"""lambdas/product_template (Custom::ProductTemplate) against the emulator's S3: the catalog's
copy of a product template whose defaults name the catalog's own platform."""

from __future__ import annotations

import pytest

from lakehub.stacks import catalog, names
from lakehub.assets import TEMPLATES_DIR
from lakehub.cfn.template import load

FUNCTION = "analytics-product-template"
BUCKET = "assets-product-template"


def defaults_for(template_file: str, platform: str) -> dict[str, str]:
    """What the catalog template passes, resolved for `platform` (every SSM name under it)."""
    t = load(TEMPLATES_DIR / template_file)
    out = {names.PLATFORM_NAME: platform}
    for name, p in t["Parameters"].items():
        if p["Type"].startswith("AWS::SSM::Parameter::Value") and str(p.get("Default", "")).startswith(names.SSM_ROOT + "/"):
            out[name] = names.ssm_name(platform, name)
    return out


@pytest.fixture
def fn(load_handler):
    return load_handler("product_template")


@pytest.fixture
def published(client):
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for p in catalog.PRODUCTS:
        s3.put_object(Bucket=BUCKET, Key=f"lakehub/templates/{p.filename}", Body=(TEMPLATES_DIR / p.filename).read_bytes())
    return s3


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p.key)
def test_the_copy_names_the_catalogs_platform_and_changes_nothing_else(product, fn, published, make_event, invoke, tmp_path):
    props = {
        "Bucket": BUCKET,
        "SourceKey": f"lakehub/templates/{product.filename}",
        "TargetKey": f"lakehub/templates/platforms/analytics/{product.filename}",
        "Defaults": defaults_for(product.filename, "analytics"),
    }
    answer = invoke(fn, make_event("Create", "Custom::ProductTemplate", props, function=FUNCTION), function=FUNCTION)
    assert answer["Status"] == "SUCCESS", answer
    assert (
        answer["Data"]["TemplateUrl"]
        == f"https://{BUCKET}.s3.us-east-1.amazonaws.com/lakehub/templates/platforms/analytics/{product.filename}"
    )
    body = published.get_object(Bucket=BUCKET, Key=props["TargetKey"])["Body"].read()
    (tmp_path / "copy.template.yaml").write_bytes(body)
    copy, original = load(tmp_path / "copy.template.yaml"), load(TEMPLATES_DIR / product.filename)

    ssm_defaults = {k: p["Default"] for k, p in copy["Parameters"].items() if str(p.get("Default", "")).startswith("/lakehub/")}
    assert ssm_defaults and all(v == f"/lakehub/analytics/{k}" for k, v in ssm_defaults.items()), ssm_defaults
    assert copy["Parameters"][names.PLATFORM_NAME]["Default"] == "analytics"
    for k in props["Defaults"]:
        original["Parameters"][k]["Default"] = copy["Parameters"][k]["Default"]
    assert copy == original, "only the named defaults change"


SIGN_IN = {
    "OidcIssuer": "https://login.example.com/realms/data",
    "OAuthClientId": "lakehub",
    "LdapUrl": "",
    "LdapBindDn": "cn=svc,ou=people,dc=example,dc=com",
    "LdapUserSearchBase": "ou=people,dc=example,dc=com",
    "LdapGroupSearchBase": "ou=groups,dc=example,dc=com",
}


@pytest.mark.parametrize(("filename", "tier"), [("tier.template.yaml", None), ("hub-instance.template.yaml", "nonpii")])
def test_pinned_parameters_allow_only_the_platforms_value(filename, tier, fn, published, make_event, invoke, tmp_path):
    """Issue 14: the copy's sign-in settings (and a hub product's tier) take one value, the
    platform's: CloudFormation refuses any other at launch. Nothing else changes."""
    pins = dict(SIGN_IN, **({"TierName": tier} if tier else {}))
    props = {
        "Bucket": BUCKET,
        "SourceKey": f"lakehub/templates/{filename}",
        "TargetKey": f"lakehub/templates/platforms/p/{filename}",
        "Defaults": {"PlatformName": "p"},
        "Pins": pins,
    }
    answer = invoke(fn, make_event("Create", "Custom::ProductTemplate", props, function=FUNCTION), function=FUNCTION)
    assert answer["Status"] == "SUCCESS", answer
    (tmp_path / "copy.template.yaml").write_bytes(published.get_object(Bucket=BUCKET, Key=props["TargetKey"])["Body"].read())
    copy, original = load(tmp_path / "copy.template.yaml"), load(TEMPLATES_DIR / filename)
    for name, value in pins.items():
        assert copy["Parameters"][name]["AllowedValues"] == [value], name
        assert copy["Parameters"][name]["Default"] == value, name
        original["Parameters"][name].update(AllowedValues=[value], Default=value)
    original["Parameters"]["PlatformName"]["Default"] = "p"
    assert copy == original, "only the pinned parameters and the named defaults change"


def test_a_change_of_the_platforms_sign_in_gives_the_copy_a_new_digest(fn, published, make_event, invoke):
    """The product's version name carries the copy's Digest (catalog.add_product): a new
    identity provider on main must reach the product as a new version, not stay in the old copy."""
    key = "lakehub/templates/platforms/p/tier.template.yaml"
    base = {
        "Bucket": BUCKET,
        "SourceKey": "lakehub/templates/tier.template.yaml",
        "TargetKey": key,
        "Defaults": {"PlatformName": "p"},
    }
    digests = []
    for issuer in ("https://login.example.com/a", "https://login.example.com/a", "https://login.example.com/b"):
        props = dict(base, Pins=dict(SIGN_IN, OidcIssuer=issuer))
        answer = invoke(fn, make_event("Create", "Custom::ProductTemplate", props, function=FUNCTION), function=FUNCTION)
        assert answer["Status"] == "SUCCESS", answer
        digests.append(answer["Data"]["Digest"])
    assert digests[0] == digests[1] != digests[2]


def test_update_writes_again_and_delete_removes_the_copy(fn, published, make_event, invoke):
    props = {
        "Bucket": BUCKET,
        "SourceKey": "lakehub/templates/hub-instance.template.yaml",
        "TargetKey": "lakehub/templates/platforms/a1/hub-instance.template.yaml",
        "Defaults": {"PlatformName": "a1"},
    }
    created = invoke(fn, make_event("Create", "Custom::ProductTemplate", props, function=FUNCTION), function=FUNCTION)
    physical = created["PhysicalResourceId"]
    assert physical == f"s3://{BUCKET}/{props['TargetKey']}"
    published.delete_object(Bucket=BUCKET, Key=props["TargetKey"])
    updated = invoke(
        fn,
        make_event(
            "Update",
            "Custom::ProductTemplate",
            {**props, "Version": "v2"},
            old_properties=props,
            physical_id=physical,
            function=FUNCTION,
        ),
        function=FUNCTION,
    )
    assert updated["Status"] == "SUCCESS" and updated["PhysicalResourceId"] == physical
    published.head_object(Bucket=BUCKET, Key=props["TargetKey"])
    for _ in range(2):  # the second Delete finds nothing and still succeeds
        deleted = invoke(
            fn, make_event("Delete", "Custom::ProductTemplate", props, physical_id=physical, function=FUNCTION), function=FUNCTION
        )
        assert deleted["Status"] == "SUCCESS"
    assert published.list_objects_v2(Bucket=BUCKET, Prefix="lakehub/templates/platforms/").get("KeyCount", 0) == 0
    assert published.head_object(Bucket=BUCKET, Key=props["SourceKey"])  # the published template stays


@pytest.mark.parametrize(
    ("props", "says"),
    [
        ({"Defaults": {"NoSuchParameter": "/lakehub/x/NoSuchParameter"}}, "no parameter with a Default named NoSuchParameter"),
        ({"SourceKey": "lakehub/templates/missing.template.yaml"}, "run lakehub publish first"),
        (
            {"TargetKey": "lakehub/templates/tier.template.yaml", "SourceKey": "lakehub/templates/tier.template.yaml"},
            "must differ from SourceKey",
        ),
        ({"Defaults": {"PlatformName": "x\nResources: {}"}}, "Invalid property Defaults"),
        ({"Pins": {"OidcIssuer": "https://x\nResources: {}"}}, "Invalid property Pins"),
        ({"Pins": {"NoSuchParameter": ""}}, "NoSuchParameter"),
    ],
)
def test_bad_requests_fail_with_the_reason(props, says, fn, published, make_event, invoke, failed):
    base = {
        "Bucket": BUCKET,
        "SourceKey": "lakehub/templates/tier.template.yaml",
        "TargetKey": "lakehub/templates/platforms/b/tier.template.yaml",
        "Defaults": {"PlatformName": "b"},
    }
    failed(
        invoke(fn, make_event("Create", "Custom::ProductTemplate", {**base, **props}, function=FUNCTION), function=FUNCTION), says
    )
