"""Platform-wide properties of the generated templates."""

from __future__ import annotations

import pytest

from lakehub.cfn.template import Resolver


def all_resources(templates):
    for fname, t in templates.items():
        for name, res in t.get("Resources", {}).items():
            yield fname, name, res


def test_every_bucket_is_retained_versioned_encrypted_private_and_tls_only(templates):
    buckets = [(f, n, r) for f, n, r in all_resources(templates) if r["Type"] == "AWS::S3::Bucket"]
    assert len(buckets) >= 3
    for fname, name, res in buckets:
        where = f"{fname}:{name}"
        assert res.get("DeletionPolicy") == "Retain", where
        assert res.get("UpdateReplacePolicy") == "Retain", where
        props = res["Properties"]
        assert props["VersioningConfiguration"]["Status"] == "Enabled", where
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], where
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, where
        policies = [
            r for r in templates[fname]["Resources"].values()
            if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": name}
        ]
        assert len(policies) == 1, f"{where} has no bucket policy"
        denies = [
            s for s in policies[0]["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert denies, f"{where} does not refuse plain HTTP"


def test_notebook_bucket_expires_old_versions_and_logs_access(templates):
    nb = templates["storage.template.yaml"]["Resources"]["NotebookBucket"]["Properties"]
    rules = nb["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in r for r in rules)
    assert nb["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}


def test_spawn_environment_files_a_crashed_hub_left_behind_expire_within_a_day(templates):
    """A per-user server's API token sits in spawn-env/<tier>/ only until its task started; the
    hub deletes the file at stop, and the bucket expires what a crashed hub could not."""
    from lakehub.stacks import names

    rules = templates["storage.template.yaml"]["Resources"]["NotebookBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r.get("Prefix") == names.SPAWN_ENV_ROOT + "/"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == 1
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1


def test_demo_lake_only_without_an_existing_lake(templates):
    storage = templates["storage.template.yaml"]
    assert Resolver(storage, {"AssetsBucketName": "assets"}).resources().get("DemoLakeBucket")
    assert "DemoLakeBucket" not in Resolver(storage, {"AssetsBucketName": "assets", "DataLakeBucketName": "corp-lake"}).resources()


def test_http_listener_only_redirects_to_https(templates):
    res = templates["cluster.template.yaml"]["Resources"]
    http = res["HttpListener"]["Properties"]
    assert http["Port"] == 80
    assert [a["Type"] for a in http["DefaultActions"]] == ["redirect"]
    assert http["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert http["DefaultActions"][0]["RedirectConfig"]["StatusCode"] == "HTTP_301"
    rules_on_http = [r for r in res.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule" and r["Properties"]["ListenerArn"] == {"Ref": "HttpListener"}]
    assert not rules_on_http
    https = res["HttpsListener"]["Properties"]
    assert https["Protocol"] == "HTTPS" and https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    assert https["DefaultActions"][0]["FixedResponseConfig"]["StatusCode"] == "404"


def test_load_balancer_drops_invalid_headers(templates):
    lb = templates["cluster.template.yaml"]["Resources"]["LoadBalancer"]["Properties"]
    attrs = {a["Key"]: a["Value"] for a in lb["LoadBalancerAttributes"]}
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert lb["Scheme"] == "internet-facing"


def test_hub_tasks_reachable_from_the_load_balancer_only(templates):
    task_sg = templates["cluster.template.yaml"]["Resources"]["TaskSecurityGroup"]["Properties"]
    assert [(r["FromPort"], r.get("SourceSecurityGroupId")) for r in task_sg["SecurityGroupIngress"]] == [
        (8000, {"Ref": "LoadBalancerSecurityGroup"})
    ]


def test_only_the_load_balancer_is_open_to_the_internet(templates):
    for fname, name, res in all_resources(templates):
        if res["Type"] != "AWS::EC2::SecurityGroup":
            continue
        for rule in res["Properties"].get("SecurityGroupIngress", []):
            if rule.get("CidrIp") == "0.0.0.0/0":
                pytest.fail(f"{fname}:{name} opens {rule.get('FromPort')} to 0.0.0.0/0")
    alb = templates["cluster.template.yaml"]["Resources"]["LoadBalancerSecurityGroup"]["Properties"]
    assert sorted(r["FromPort"] for r in alb["SecurityGroupIngress"]) == [80, 443]
    assert all(r["CidrIp"] == {"Ref": "AllowedCidr"} for r in alb["SecurityGroupIngress"])


def test_s3_gateway_endpoint_on_every_route_table(templates):
    res = templates["network.template.yaml"]["Resources"]
    tables = {n for n, r in res.items() if r["Type"] == "AWS::EC2::RouteTable"}
    endpoint = res["S3GatewayEndpoint"]["Properties"]
    assert {ref["Ref"] for ref in endpoint["RouteTableIds"]} == tables
    assert len(tables) == 3


def test_private_subnets_route_through_the_chosen_egress(templates):
    net = templates["network.template.yaml"]
    gw = Resolver(net, {"EgressMode": "nat-gateway", "AssetsBucketName": "assets"}).resources()
    inst = Resolver(net, {"EgressMode": "nat-instance", "AssetsBucketName": "assets"}).resources()
    assert sum(r["Type"] == "AWS::EC2::NatGateway" for r in gw.values()) == 2
    assert not any(r["Type"] == "AWS::EC2::NatGateway" for r in inst.values())
    asg = inst["NatInstanceGroup"]["Properties"]
    assert (asg["MinSize"], asg["MaxSize"]) == ("1", "1")
    lt = inst["NatInstanceLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    for name in ("PublicSubnet1", "PublicSubnet2", "PrivateSubnet1", "PrivateSubnet2"):
        assert gw[name]["Properties"]["MapPublicIpOnLaunch"] is False


def test_platform_values_are_published_under_the_platform_path(templates):
    from lakehub.stacks import names

    res = templates["cluster.template.yaml"]["Resources"]
    published = {
        r["Properties"]["Name"]["Fn::Sub"]
        for r in res.values()
        if r["Type"] == "AWS::SSM::Parameter"
    }
    assert published == {"/lakehub/${PlatformName}/" + n for n in names.PLATFORM_SSM_VALUES}
    # every platform value a tier reads is published
    from lakehub.stacks.tier import TIER_SSM_PARAMS

    assert set(TIER_SSM_PARAMS) <= set(names.PLATFORM_SSM_VALUES)


def test_every_log_group_has_retention(templates):
    for fname, name, res in all_resources(templates):
        if res["Type"] == "AWS::Logs::LogGroup":
            assert "RetentionInDays" in res["Properties"], f"{fname}:{name}"


def test_functions_run_a_current_python_on_arm64(templates):
    fns = [(f, n, r) for f, n, r in all_resources(templates) if r["Type"] == "AWS::Lambda::Function"]
    assert len(fns) >= 3
    for fname, name, res in fns:
        assert res["Properties"]["Runtime"] in ("python3.12", "python3.13"), f"{fname}:{name}"
        assert res["Properties"]["Architectures"] == ["arm64"]
        assert res["Properties"]["Code"]["S3Bucket"] == {"Ref": "AssetsBucketName"}


def test_ecr_scans_on_push_and_expires_images(templates):
    repo = templates["pipeline.template.yaml"]["Resources"]["ImageRepository"]["Properties"]
    assert repo["ImageScanningConfiguration"]["ScanOnPush"] is True
    assert "LifecyclePolicyText" in repo["LifecyclePolicy"]


def test_nested_template_urls_come_from_the_assets_parameters(templates):
    for fname in ("main.template.yaml", "main-existing-vpc.template.yaml"):
        stacks = [r for r in templates[fname]["Resources"].values() if r["Type"] == "AWS::CloudFormation::Stack"]
        assert stacks
        for s in stacks:
            url = s["Properties"]["TemplateURL"]["Fn::Sub"]
            assert url.startswith("https://${AssetsBucketName}.s3.${AWS::Region}.${AWS::URLSuffix}/${AssetsKeyPrefix}templates/")


@pytest.mark.parametrize("main", ["main.template.yaml", "main-existing-vpc.template.yaml"])
def test_every_nested_stack_parameter_is_wired(templates, main):
    parent = templates[main]
    for logical, res in parent["Resources"].items():
        if res["Type"] != "AWS::CloudFormation::Stack":
            continue
        child_file = res["Properties"]["TemplateURL"]["Fn::Sub"].rsplit("/", 1)[1]
        child = templates[child_file]
        given = set(res["Properties"].get("Parameters", {}))
        declared = set(child.get("Parameters", {}))
        required = {n for n, p in child["Parameters"].items() if "Default" not in p}
        assert given <= declared, f"{logical} passes unknown {given - declared}"
        assert required <= given, f"{logical} misses {required - given}"
        # a value taken from another stack's output uses the same name for output and parameter
        for key, value in res["Properties"]["Parameters"].items():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                src, attr = value["Fn::GetAtt"]
                assert attr == f"Outputs.{key}" or key in ("ImageTag",) or attr.endswith(key), f"{logical}.{key} <- {src}.{attr}"


def test_main_nests_the_default_tiers(templates):
    res = templates["main.template.yaml"]["Resources"]
    tiers = {n: r for n, r in res.items() if n.startswith("Tier") and r["Type"] == "AWS::CloudFormation::Stack"}
    assert set(tiers) == {"TierPiiStack", "TierNonpiiStack"}
    assert tiers["TierPiiStack"]["Properties"]["Parameters"]["DataPrefixes"] == "pii/"
    assert tiers["TierNonpiiStack"]["Properties"]["Parameters"]["DataPrefixes"] == "nonpii/"
    assert "NetworkStack" in res and "NetworkStack" not in templates["main-existing-vpc.template.yaml"]["Resources"]


def test_every_parameter_has_a_label_and_a_group(templates):
    for fname, t in templates.items():
        params = set(t.get("Parameters", {}))
        if not params:
            continue
        iface = t["Metadata"]["AWS::CloudFormation::Interface"]
        grouped = [p for g in iface["ParameterGroups"] for p in g["Parameters"]]
        assert sorted(grouped) == sorted(params), fname
        assert len(grouped) == len(set(grouped)), f"{fname}: a parameter is in two groups"
        assert set(iface["ParameterLabels"]) == params, fname
        for g in iface["ParameterGroups"]:
            label = g["Label"]["default"]
            assert label[0].isupper() and not label[1:].istitle() or " " not in label, f"{fname}: group {label!r} is not sentence case"


def test_constrained_parameters_explain_their_constraint(templates):
    for fname, t in templates.items():
        for name, p in t.get("Parameters", {}).items():
            if "AllowedPattern" in p or "AllowedValues" in p or "MinValue" in p:
                assert p.get("ConstraintDescription"), f"{fname}:{name}"
            assert p.get("Description"), f"{fname}:{name}"
            free_string = p["Type"] == "String" and not ({"AllowedPattern", "AllowedValues"} & set(p))
            assert not free_string, f"{fname}:{name} accepts any string"


def test_every_output_has_a_description(templates):
    for fname, t in templates.items():
        for name, o in t.get("Outputs", {}).items():
            assert o.get("Description"), f"{fname}:{name}"
