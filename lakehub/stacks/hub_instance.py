"""hub-instance.template.yaml: an on-demand JupyterHub on one EC2 instance (a Service Catalog product).

A data scientist launches it for ad-hoc or very large work on any instance family (general,
memory-heavy, GPU) and pays only while it runs:

- the instance runs the platform's hub image (from the platform's ECR repository, found in
  SSM) with docker, configured through the same environment contract as a tier's hub task
  (tier.hub_environment(), docs/HUB_ENV.md), in `shared` server mode: users' servers are
  processes on the instance;
- its instance role reaches only one tier's data-lake prefixes and that tier's notebook
  folder. The tier is chosen at launch from the tiers of the build-time settings, whose
  prefixes, groups and access are baked into the template as a Mapping (no SSM look-up);
- no inbound port by default: users open it through SSM Session Manager port forwarding (the
  `PortForwardCommand` output); optionally a host rule on the platform's load balancer, with
  the platform's hub-task security group (whose only source is the load balancer's group);
- IMDSv2 only, encrypted gp3 root volume, an owner tag;
- a CloudWatch alarm stops the instance when its CPU stays below IdleCpuPercent for
  IdleMinutes, so an idle hub costs only its volume.
"""

from __future__ import annotations

from awacs import kms as awacs_kms
from awacs import ssm as awacs_ssm
from awacs import ssmmessages as awacs_ssmmessages
from awacs import s3 as awacs_s3
from awacs.aws import Allow, Condition, PolicyDocument, Principal, Statement, StringEquals, StringLike
from awacs.sts import AssumeRole, SetSourceIdentity, TagSession
from troposphere import Condition as Condition_
from troposphere import (
    And,
    Base64,
    Equals,
    FindInMap,
    GetAtt,
    If,
    Not,
    Ref,
    Sub,
    cloudwatch,
    ec2,
    elasticloadbalancingv2 as elb,
    iam,
    route53,
)
from troposphere.policies import CreationPolicy, ResourceSignal

from lakehub.stacks import names
from lakehub.stacks.compliance import finish
from lakehub.stacks import tier as tier_mod
from lakehub.stacks.builder import port_rule, Builder, platform_tags
from lakehub.stacks.parameters import IMAGE_TAG, LISTENER_PRIORITY, joined_platform_name
from lakehub.stacks.builder import add_checkov_skip
from lakehub.stacks.policies import (
    S3_READ,
    S3_WRITE,
    bucket_arn,
    homes_client_statements,
    hub_runtime_statements,
    inline_policy,
    service_trust,
    tier_notebook_statements,
)
from lakehub.settings import Settings
from lakehub_hub import contract

# -- parameter names (this template only) --------------------------------------------------
INSTANCE_TYPE = "InstanceType"
VOLUME_SIZE = "VolumeSize"
IDLE_CPU_PERCENT = "IdleCpuPercent"
IDLE_MINUTES = "IdleMinutes"
SUBNET_CHOICE = "SubnetChoice"
ACCESS_MODE = "AccessMode"
LOCAL_PORT = "LocalPort"
AMI_ARM64 = "AmiArm64"
AMI_X86 = "AmiX86"
AMI_GPU_X86 = "AmiGpuX86"

# -- output names -----------------------------------------------------------------------------
INSTANCE_ID = "InstanceId"
PORT_FORWARD_COMMAND = "PortForwardCommand"
HUB_URL = "HubUrl"
INSTANCE_ROLE_ARN = "InstanceRoleArn"
USER_ROLE_ARN = "UserRoleArn"

PRODUCT_TAG_VALUE = names.ON_DEMAND_HUB_PRODUCT
HOST_PREFIX = "hub-"  # load-balancer access: hub-<HostName>.<domain>, never a tier's host
PUBLIC_HOST = HOST_PREFIX + "${HostName}.${DomainName}"  # names.TAG_PRODUCT on the instance: end users may reach only these
ACCESS_SSM = "ssm"
ACCESS_LOAD_BALANCER = "load-balancer"

# Instance types offered at launch: family -> (architecture, kind). The hub image is built for
# linux/arm64 (the pipeline's CodeBuild runs on ARM): x86 types need the image published for
# linux/amd64 too; the instance reports that at launch (cfn-signal) instead of failing silently.
INSTANCE_FAMILIES: dict[str, tuple[str, str]] = {
    "t4g": ("arm64", "general"),
    "m7g": ("arm64", "general"),
    "m6i": ("x86_64", "general"),
    "r7g": ("arm64", "memory"),
    "r6i": ("x86_64", "memory"),
    "g5": ("x86_64", "gpu"),
    "g6": ("x86_64", "gpu"),
}
INSTANCE_TYPES: tuple[str, ...] = (
    "t4g.medium",
    "t4g.large",
    "t4g.xlarge",
    "t4g.2xlarge",
    "m7g.large",
    "m7g.xlarge",
    "m7g.2xlarge",
    "m7g.4xlarge",
    "m7g.8xlarge",
    "m6i.large",
    "m6i.xlarge",
    "m6i.2xlarge",
    "m6i.4xlarge",
    "m6i.8xlarge",
    "r7g.large",
    "r7g.xlarge",
    "r7g.2xlarge",
    "r7g.4xlarge",
    "r7g.8xlarge",
    "r7g.16xlarge",
    "r6i.large",
    "r6i.xlarge",
    "r6i.2xlarge",
    "r6i.4xlarge",
    "r6i.8xlarge",
    "r6i.16xlarge",
    "g5.xlarge",
    "g5.2xlarge",
    "g5.4xlarge",
    "g5.8xlarge",
    "g6.xlarge",
    "g6.2xlarge",
    "g6.4xlarge",
    "g6.8xlarge",
)
DEFAULT_INSTANCE_TYPE = "t4g.large"
# The strict compliance profile: Nitro types that encrypt traffic between instances in transit
# (Control Tower CT.EC2.PR.19 lists the families; t4g and g6 are not among them).
STRICT_INSTANCE_FAMILIES = ("m7g", "m6i", "r7g", "r6i", "g5")
STRICT_DEFAULT_INSTANCE_TYPE = "m7g.large"

# Root volume sizes (GiB); GPU types boot the Deep Learning Base AMI, which needs the larger ones.
VOLUME_SIZES = ("32", "64", "128", "256", "512", "1024")
GPU_VOLUME_SIZES = ("128", "256", "512", "1024")

# Idle period -> 5-minute alarm periods (basic monitoring, free).
ALARM_PERIOD_SECONDS = 300
IDLE_MINUTES_CHOICES = ("15", "30", "45", "60", "90", "120", "180", "240")

# Public AMI parameters (SSM) per architecture.
AMI_PARAMETERS = {
    AMI_ARM64: ("Amazon Linux 2023 (arm64)", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"),
    AMI_X86: ("Amazon Linux 2023 (x86_64)", "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"),
    AMI_GPU_X86: (
        "Deep Learning Base GPU AMI (x86_64)",
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
    ),
}

# Platform values (SSM) this template reads: a subset of the tier's.
HUB_SSM_PARAMS = (
    names.VPC_ID,
    names.VPC_CIDR,
    names.PRIVATE_SUBNET_1_ID,
    names.PRIVATE_SUBNET_2_ID,
    names.NOTEBOOK_BUCKET_NAME,
    names.DATA_BUCKET_NAME,
    names.DATA_KMS_KEY_ARN,
    names.IMAGE_REPOSITORY_URI,
    names.IMAGE_DIGEST_FUNCTION_ARN,
    names.LOG_GROUP_NAME,
    names.AUTH_MODE,
    names.USER_POOL_ID,
    names.USER_POOL_DOMAIN_URL,
    names.HTTPS_LISTENER_ARN,
    names.LOAD_BALANCER_DNS_NAME,
    names.LOAD_BALANCER_HOSTED_ZONE_ID,
    names.TASK_SECURITY_GROUP_ID,
    names.LISTENER_PRIORITY_FUNCTION_ARN,
    names.DOMAIN_NAME,
    names.HOSTED_ZONE_ID,
    names.HOMES_FILE_SYSTEM_ID,
    names.HOMES_SECURITY_GROUP_ID,
)

TIERS_MAP = "Tiers"
IDLE_MAP = "IdlePeriods"
TYPES_MAP = "InstanceTypes"
CONTAINER_NAME = "lakehub-hub"
ENV_FILE = "/etc/lakehub/hub.env"
IMDS_GUARD = "/usr/local/sbin/lakehub-imds-guard"
IMDS_GUARD_UNIT = "/etc/systemd/system/lakehub-imds-guard.service"
SIGNAL_TIMEOUT = "PT25M"
# The tier's homes (EFS access point /tiers/<tier>) on the host, bound into the hub container at
# /home (LAKEHUB_HOME_ROOT): the host's own /home (ec2-user, ssm-user) stays as it is.
HOMES_HOST_MOUNT = "/mnt/lakehub-homes"
# Boot waits for egress up to 120 x (5 s + up to 5 s): the NAT instance may be starting.
EGRESS_WAIT_ATTEMPTS = 120


def instance_arch(instance_type: str) -> tuple[str, str]:
    return INSTANCE_FAMILIES[instance_type.split(".")[0]]


def add_parameters(b: Builder, settings: Settings) -> None:
    g = "On-demand hub"
    b.use(joined_platform_name(settings, g, "Name of the lakehub platform this hub belongs to"))
    b.choice(
        names.TIER_NAME,
        g,
        "Tier",
        "Data-access tier: the hub reaches only this tier's data-lake prefixes and notebook folder, and only its groups may sign in",
        [t.name for t in settings.tiers],
        settings.tiers[0].name,
        constraint="one of the platform's tiers: " + ", ".join(t.name for t in settings.tiers),
    )
    b.param(
        names.OWNER,
        g,
        "Owner",
        "Who this hub belongs to (user name or e-mail); tagged on every resource for cost allocation",
        AllowedPattern=r"^[A-Za-z0-9][A-Za-z0-9._%+@-]{0,127}$",
        ConstraintDescription="a user name or e-mail address: letters, digits and ._%+@-",
    )
    b.choice(
        INSTANCE_TYPE,
        g,
        "Instance type",
        "General (t4g, m7g, m6i), memory-optimised (r7g, r6i) or GPU (g5, g6); billed only while running",
        INSTANCE_TYPES,
        DEFAULT_INSTANCE_TYPE,
        constraint="one of the listed instance types",
    )
    b.choice(
        VOLUME_SIZE,
        g,
        "Disk size (GiB)",
        "Encrypted gp3 root volume; GPU types need at least 128 GiB. Kept (and billed) while the hub is stopped",
        VOLUME_SIZES,
        "64",
    )
    g = "Auto-stop"
    b.number(
        IDLE_CPU_PERCENT,
        g,
        "Idle CPU threshold (%)",
        "The hub counts as idle while its average CPU stays below this percentage",
        5,
        1,
        50,
    )
    b.choice(
        IDLE_MINUTES,
        g,
        "Idle minutes before stopping",
        "Stop the instance after this many minutes below the idle CPU threshold; idle servers are culled after the same time",
        IDLE_MINUTES_CHOICES,
        "60",
    )
    g = "Access"
    b.choice(
        ACCESS_MODE,
        g,
        "Access",
        "ssm: no inbound port, open the hub through Session Manager port forwarding; load-balancer: also https://<host>.<domain> on the platform's load balancer",
        [ACCESS_SSM, ACCESS_LOAD_BALANCER],
        ACCESS_SSM,
    )
    b.number(
        LOCAL_PORT,
        g,
        "Local port",
        "ssm access: the port on your computer that forwards to the hub (http://localhost:<port>)",
        names.HUB_PORT,
        1024,
        65535,
    )
    b.param(
        names.TIER_HOST_NAME,
        g,
        "Host name",
        "load-balancer access: the hub answers at https://hub-<host>.<domain> (the hub- prefix keeps hubs off the tiers' host names)",
        Default="",
        AllowedPattern=r"^$|^[a-z0-9]([a-z0-9-]{0,57}[a-z0-9])?$",
        ConstraintDescription="empty, or a DNS label of at most 59 characters: lower-case letters, digits and hyphens",
    )
    b.use(
        LISTENER_PRIORITY,
        group=g,
        Description="load-balancer access: priority of the hub's rule on the HTTPS listener; 0 picks the lowest free one",
    )
    g = "Placement and image"
    b.choice(
        SUBNET_CHOICE,
        g,
        "Private subnet",
        "Which of the platform's private subnets (availability zones) to launch in; try the other when a type has no capacity",
        ["1", "2"],
        "1",
    )
    b.use(IMAGE_TAG, group=g)
    for name, (label, path) in AMI_PARAMETERS.items():
        b.param(
            name,
            g,
            f"{label} image",
            f"Public SSM parameter of the {label} machine image (keep the default)",
            type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
            Default=path,
        )
    # Sign-in settings for the oidc and ldap modes: the same parameters as a tier.
    tier_template = tier_mod.build_tier(settings)
    group = "Sign-in (oidc and ldap modes only)"
    for name in tier_mod.SIGN_IN_PARAMS:
        b.copy_param(tier_template, name, group)
    for name in HUB_SSM_PARAMS:
        label = tier_mod.TIER_SSM_PARAMS[name]
        b.param(
            name,
            tier_mod.PLATFORM_GROUP,
            label,
            f"SSM parameter holding the platform's {label.lower()}",
            type="AWS::SSM::Parameter::Value<String>",
            Default=names.ssm_name(settings.platform_name, name),
        )


def add_mappings(b: Builder, settings: Settings) -> None:
    b.t.add_mapping(
        TIERS_MAP,
        {
            t.name: {
                "DataPrefixes": ",".join(t.data_prefixes),
                "AllowedGroups": ",".join(t.allowed_groups),
                "DataAccess": t.data_access,
            }
            for t in settings.tiers
        },
    )
    b.t.add_mapping(
        IDLE_MAP,
        {m: {"EvaluationPeriods": int(m) * 60 // ALARM_PERIOD_SECONDS, "Seconds": int(m) * 60} for m in IDLE_MINUTES_CHOICES},
    )
    b.t.add_mapping(
        TYPES_MAP,
        {t: {"Architecture": instance_arch(t)[0], "Kind": instance_arch(t)[1]} for t in INSTANCE_TYPES},
    )


def tier_condition(tier: str) -> str:
    return f"Is{tier.capitalize()}Tier"


def by_tier(settings: Settings, value):
    """value(tier) for the tier chosen at launch: nested Fn::If over the build-time tiers."""
    tiers = list(settings.tiers)
    result = value(tiers[-1])
    for t in reversed(tiers[:-1]):
        result = If(tier_condition(t.name), value(t), result)
    return result


def data_object_arns(tier, bucket) -> list:
    return [Sub("arn:${AWS::Partition}:s3:::${B}/" + p + "*", B=bucket) for p in tier.data_prefixes]


def tier_value(key: str) -> FindInMap:
    return FindInMap(TIERS_MAP, Ref(names.TIER_NAME), key)


def add_conditions(b: Builder, settings: Settings) -> None:
    t = b.t
    for tier in settings.tiers[:-1]:
        t.add_condition(tier_condition(tier.name), Equals(Ref(names.TIER_NAME), tier.name))
    t.add_condition("IsArm", Equals(FindInMap(TYPES_MAP, Ref(INSTANCE_TYPE), "Architecture"), "arm64"))
    t.add_condition("IsGpu", Equals(FindInMap(TYPES_MAP, Ref(INSTANCE_TYPE), "Kind"), "gpu"))
    t.add_condition("IsReadWrite", Equals(tier_value("DataAccess"), "read-write"))
    t.add_condition("HasKmsKey", Not(Equals(Ref(names.DATA_KMS_KEY_ARN), "none")))
    t.add_condition("UseCognito", Equals(Ref(names.AUTH_MODE), "cognito"))
    t.add_condition("UseOidc", Equals(Ref(names.AUTH_MODE), "oidc"))
    t.add_condition("UseLdap", Equals(Ref(names.AUTH_MODE), "ldap"))
    t.add_condition("UseLoadBalancer", Equals(Ref(ACCESS_MODE), ACCESS_LOAD_BALANCER))
    t.add_condition("PriorityIsAuto", Equals(Ref(tier_mod.LISTENER_PRIORITY), 0))
    t.add_condition("AutoPriority", And(Condition_("UseLoadBalancer"), Condition_("PriorityIsAuto")))
    t.add_condition("InSubnet1", Equals(Ref(SUBNET_CHOICE), "1"))


def add_rules(b: Builder) -> None:
    gpu_types = [t for t in INSTANCE_TYPES if instance_arch(t)[1] == "gpu"]
    b.t.add_rule(
        "GpuNeedsLargerDisk",
        {
            "RuleCondition": {"Fn::Contains": [gpu_types, {"Ref": INSTANCE_TYPE}]},
            "Assertions": [
                {
                    "Assert": {"Fn::Contains": [list(GPU_VOLUME_SIZES), {"Ref": VOLUME_SIZE}]},
                    "AssertDescription": "GPU instance types boot the Deep Learning Base AMI: choose a disk of at least 128 GiB",
                }
            ],
        },
    )
    b.t.add_rule(
        "LoadBalancerNeedsHostName",
        {
            "RuleCondition": {"Fn::Equals": [{"Ref": ACCESS_MODE}, ACCESS_LOAD_BALANCER]},
            "Assertions": [
                {
                    "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": names.TIER_HOST_NAME}, ""]}]},
                    "AssertDescription": "load-balancer access needs a HostName (the hub answers at https://hub-<host>.<domain>)",
                }
            ],
        },
    )


def role_path() -> Sub:
    """IAM path of the roles this product makes: /lakehub/<platform>/<tier>/. The launch role of
    a tier's hub product may manage only these (lakehub.stacks.catalog)."""
    return Sub(names.IAM_PATH_SUB + "${" + names.TIER_NAME + "}/")


def add_user_role(b: Builder, settings: Settings, instance_role: iam.Role) -> iam.Role:
    """The user role: what users' servers run with (one tier's data-lake prefixes and notebook
    folder, as the tier role), and nothing of the hub's. Only the instance role may assume it
    (the hub does, per user, with the user as SourceIdentity: lakehub_hub.credentials)."""
    data_bucket = Ref(names.DATA_BUCKET_NAME)
    notebook_bucket = Ref(names.NOTEBOOK_BUCKET_NAME)
    # The tiers' prefixes are build-time settings: each statement's values are literal lists,
    # chosen by tier with conditions (IAM needs one ARN per prefix; CloudFormation has no loop).
    data = [
        Statement(
            Sid="DataList",
            Effect=Allow,
            Action=[awacs_s3.ListBucket],
            Resource=[bucket_arn(data_bucket)],
            Condition=Condition(
                StringLike("s3:prefix", by_tier(settings, lambda t: [v for p in t.data_prefixes for v in (p, p + "*")]))
            ),
        ),
        Statement(
            Sid="DataRead", Effect=Allow, Action=S3_READ, Resource=by_tier(settings, lambda t: data_object_arns(t, data_bucket))
        ),
    ]
    data_write = by_tier(settings, lambda t: data_object_arns(t, data_bucket))
    statements = [
        *data,
        # The tier's notebook folder, as the tier role has it.
        *tier_notebook_statements(notebook_bucket),
    ]
    # Conditional statements sit inside the one policy (CloudFormation drops AWS::NoValue items).
    statements += [
        If("IsReadWrite", Statement(Sid="DataWrite", Effect=Allow, Action=S3_WRITE, Resource=data_write), Ref("AWS::NoValue")),
        If(
            "HasKmsKey",
            Statement(
                Sid="UseDataLakeKey",
                Effect=Allow,
                Action=[awacs_kms.Decrypt, awacs_kms.DescribeKey, awacs_kms.GenerateDataKey],
                Resource=[Ref(names.DATA_KMS_KEY_ARN)],
                Condition=Condition(StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com"))),
            ),
            Ref("AWS::NoValue"),
        ),
    ]
    # (a plain mapping: awacs' PolicyDocument refuses an Fn::If among its statements)
    policies = [iam.Policy(PolicyName="hub-users", PolicyDocument={"Version": "2012-10-17", "Statement": statements})]
    return b.add(
        iam.Role(
            "UserRole",
            Path=role_path(),
            Description=Sub(
                "lakehub on-demand hub users' servers (tier ${TierName}, owner ${Owner}): the tier's data-lake prefixes and notebook folder only"
            ),
            AssumeRolePolicyDocument=user_role_trust(instance_role),
            # Role chaining (instance role -> user role) caps a session at one hour anyway.
            MaxSessionDuration=3600,
            Policies=policies,
            Tags=hub_tags(),
        )
    )


def user_role_trust(instance_role: iam.Role) -> PolicyDocument:
    """Only this hub's instance role, for one named user: it must set the SourceIdentity and the
    `lakehub-user` session tag (the user's own folder in the role's policy), and no other tag
    (AssumeRole with SourceIdentity or Tags fails unless the trust policy allows
    sts:SetSourceIdentity / sts:TagSession), as the tier role's trust (lakehub.stacks.tier)."""
    from lakehub.stacks.tier import tier_role_trust

    trust = tier_role_trust()
    trust.Statement[0].Principal = Principal("AWS", GetAtt(instance_role, "Arn"))
    return trust


def add_instance_role(b: Builder, secrets: list) -> iam.Role:
    """The instance role: what the hub itself needs (the hub image, the platform log group, this
    hub's secrets, Session Manager), no data. Only root on the instance reaches it (the user
    data's IMDS firewall); users' servers get the user role instead."""
    statements = [
        # Pull and run the hub image, as a tier's execution role does.
        *hub_runtime_statements(secrets),
        # Session Manager (the documented minimum for sessions and port forwarding; the
        # managed AmazonSSMManagedInstanceCore policy grants much more).
        Statement(
            Sid="SessionManager",
            Effect=Allow,
            Action=[
                awacs_ssm.UpdateInstanceInformation,
                awacs_ssmmessages.CreateControlChannel,
                awacs_ssmmessages.CreateDataChannel,
                awacs_ssmmessages.OpenControlChannel,
                awacs_ssmmessages.OpenDataChannel,
            ],
            Resource=["*"],
        ),
        # The tier's homes through its access point, as root (the hub creates users' folders
        # owned by their uids); amazon-efs-utils mounts with these credentials (iam option).
        *homes_client_statements(
            Ref(names.HOMES_FILE_SYSTEM_ID), tier_mod.homes_access_point_arn(), root=True, sid="MountTierHomes"
        ),
    ]
    role = iam.Role(
        "InstanceRole",
        Path=role_path(),
        Description=Sub(
            "lakehub on-demand hub (tier ${TierName}, owner ${Owner}): the hub image, its logs and secrets, Session Manager; no data"
        ),
        AssumeRolePolicyDocument=service_trust("ec2.amazonaws.com"),
        MaxSessionDuration=3600,
        Policies=[inline_policy("hub-instance", statements)],
        Tags=hub_tags(),
    )
    add_checkov_skip(
        role,
        "CKV_AWS_111",
        "ssm:UpdateInstanceInformation on * is Session Manager's documented minimum for an instance (AWS's AmazonSSMManagedInstanceCore grants it on *); it registers this instance with Systems Manager and writes no data; only root on the instance reaches this role (IMDS firewall)",
    )
    return b.add(role)


def add_assume_user_role(b: Builder, instance_role: iam.Role, user_role: iam.Role) -> iam.RolePolicy:
    """The instance role may assume the user role (a policy of its own: the two roles name each
    other, and CloudFormation cannot create a cycle)."""
    return b.add(
        iam.RolePolicy(
            "InstanceAssumesUserRole",
            RoleName=Ref(instance_role),
            PolicyName="assume-user-role",
            # (a plain mapping: this resource type's PolicyDocument is typed as a dict)
            PolicyDocument={
                "Version": "2012-10-17",
                "Statement": [
                    Statement(
                        Sid="ServeUsersTheUserRole",
                        Effect=Allow,
                        Action=[AssumeRole, SetSourceIdentity, TagSession],
                        Resource=[GetAtt(user_role, "Arn")],
                    )
                ],
            },
        )
    )


def hub_tags(*extra):
    return platform_tags((names.TAG_TIER, Ref(names.TIER_NAME)), (names.TAG_OWNER, Ref(names.OWNER)), *extra)


def add_secrets(b: Builder):
    # Cognito accepts plain http only for localhost: the Session Manager tunnel.
    local, public = Sub("http://localhost:${LocalPort}/hub"), Sub("https://" + PUBLIC_HOST + "/hub")
    callbacks = If(
        "UseLoadBalancer",
        [Sub("${U}/oauth_callback", U=local), Sub("${U}/oauth_callback", U=public)],
        [Sub("${U}/oauth_callback", U=local)],
    )
    logouts = If("UseLoadBalancer", [Sub("${U}/login", U=local), Sub("${U}/login", U=public)], [Sub("${U}/login", U=local)])
    return tier_mod.add_hub_secrets(
        b,
        # In the tier's secret namespace: the hub product of a tier manages only secrets there.
        tier_mod.TIER_SECRET_PATH + "/hubs/${AWS::StackName}",
        "lakehub on-demand hub",
        "this hub's instance role (root on the instance only: IMDS firewall)",
        Sub("${PlatformName}-${TierName}-hub-${Owner}"),
        callbacks,
        logouts,
        hub_tags(),
    )


def add_security_group(b: Builder) -> ec2.SecurityGroup:
    """No inbound rule at all: Session Manager needs none. Outbound HTTPS (AWS APIs, ECR, the
    identity provider, package indexes), LDAPS, and DNS inside the VPC."""
    return b.add(
        ec2.SecurityGroup(
            "InstanceSecurityGroup",
            GroupDescription="lakehub on-demand hub: no inbound port (Session Manager)",
            VpcId=Ref(names.VPC_ID),
            SecurityGroupEgress=[
                port_rule(443, "HTTPS: AWS APIs, image pulls, identity provider, package indexes", cidr="0.0.0.0/0"),
                port_rule(636, "LDAPS (ldap sign-in mode)", cidr="0.0.0.0/0"),
                port_rule(53, "DNS (VPC resolver)", cidr=Ref(names.VPC_CIDR), protocol="udp"),
                port_rule(53, "DNS over TCP (VPC resolver)", cidr=Ref(names.VPC_CIDR)),
            ],
            Tags=hub_tags(("Name", Sub("${PlatformName}-${TierName}-hub-${Owner}"))),
        )
    )


def add_homes_access(b: Builder, sg) -> None:
    """NFS between this hub and the platform's homes file system (its mount targets' group)."""
    nfs = dict(IpProtocol="tcp", FromPort=names.NFS_PORT, ToPort=names.NFS_PORT)
    b.add(
        ec2.SecurityGroupEgress(
            "InstanceToHomes",
            GroupId=Ref(sg),
            DestinationSecurityGroupId=Ref(names.HOMES_SECURITY_GROUP_ID),
            Description="NFS to the homes file system",
            **nfs,
        )
    )
    b.add(
        ec2.SecurityGroupIngress(
            "HomesNfsFromInstance",
            GroupId=Ref(names.HOMES_SECURITY_GROUP_ID),
            SourceSecurityGroupId=Ref(sg),
            Description=Sub("NFS from the on-demand hub ${AWS::StackName}"),
            **nfs,
        )
    )


def hub_env() -> dict:
    """The hub's environment: the same names and meaning as a tier's hub task
    (tier.hub_environment(), docs/HUB_ENV.md, lakehub_hub.contract), in shared mode. Secrets are added at boot."""
    return contract.hub_environment(
        tier=Ref(names.TIER_NAME),
        auth_mode=Ref(names.AUTH_MODE),
        allowed_groups=tier_value("AllowedGroups"),
        notebook_bucket=Ref(names.NOTEBOOK_BUCKET_NAME),
        notebook_prefix=Sub(names.NOTEBOOK_TIERS_ROOT + "/${TierName}"),
        public_url=hub_url(),
        data_bucket=Ref(names.DATA_BUCKET_NAME),
        data_prefixes=tier_value("DataPrefixes"),
        hub_ip=If("UseLoadBalancer", "0.0.0.0", "127.0.0.1"),
        hub_port=names.HUB_PORT,
        idle_timeout=FindInMap(IDLE_MAP, Ref(IDLE_MINUTES), "Seconds"),
        server_mode=contract.SHARED,
        # users' homes: the tier's folder of the homes file system (bound at /home, HomesMount)
        home_root=names.HOMES_MOUNT,
        # users' servers get per-user sessions of this role from the hub (lakehub_hub.credentials),
        # never the instance role; the same name as a tier's (its data role)
        tier_role_arn=GetAtt("UserRole", "Arn"),
        aws_region=Ref("AWS::Region"),
        cognito_domain=Ref(names.USER_POOL_DOMAIN_URL),
        # as the tiers: the platform's user pool signs users in by email (its sub is a UUID)
        cognito_username_claim="email",
        oauth_client_id=If("UseCognito", Ref("UserPoolClient"), Ref(tier_mod.OAUTH_CLIENT_ID)),
        oidc_issuer=If(
            "UseCognito",
            Sub("https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPoolId}"),
            Ref(tier_mod.OIDC_ISSUER),
        ),
        ldap_url=Ref(tier_mod.LDAP_URL),
        ldap_bind_dn=Ref(tier_mod.LDAP_BIND_DN),
        ldap_user_search_base=Ref(tier_mod.LDAP_USER_SEARCH_BASE),
        ldap_group_search_base=Ref(tier_mod.LDAP_GROUP_SEARCH_BASE),
    )


USER_DATA = r"""#!/bin/bash
# lakehub on-demand hub: run the platform's hub image with the tier's configuration.
# Log: /var/log/lakehub-hub.log. The launch fails (cfn-signal) with the reason if the hub
# does not come up.
set -uo pipefail
exec >>/var/log/lakehub-hub.log 2>&1
REGION='${AWS::Region}'
signal() {
  /opt/aws/bin/cfn-signal --exit-code "$1" --reason "$2" --stack '${AWS::StackName}' --resource Instance --region "$REGION" || true
}
fail() { echo "lakehub: $1"; signal 1 "$1"; exit 1; }

# Egress first: outside business hours the platform's NAT instance starts because this
# instance is pending (lambdas/nat_egress); it takes a few minutes. Any HTTP answer from the
# regional CloudFormation endpoint (which cfn-signal needs too) means the route is up.
for attempt in $(seq 1 ${EgressWaitAttempts}); do
  if curl -sS -o /dev/null --max-time 5 'https://cloudformation.${AWS::Region}.${AWS::URLSuffix}/'; then
    break
  fi
  if [ "$attempt" -eq ${EgressWaitAttempts} ]; then
    fail "no egress from the private subnet: the regional CloudFormation endpoint did not answer in ${EgressWaitAttempts} attempts (is the platform's NAT instance running?)"
  fi
  sleep 5
done

dnf install -y -q docker aws-cfn-bootstrap iptables-nft || fail "cannot install docker (no route to the package repositories?)"

# Only root reaches the instance metadata service (IMDS, the instance role's credentials): the
# hub runs as root in its container; users' servers are other uids on the same (host) network
# and get the user role from the hub instead. A unit that docker requires puts the rule back
# before docker (and so the hub) starts on every boot: the idle alarm stops and starts the hub.
cat > ${ImdsGuard} <<'LAKEHUB_GUARD'
#!/bin/bash
set -e
iptables -N LAKEHUB-IMDS 2>/dev/null || true
iptables -F LAKEHUB-IMDS
iptables -A LAKEHUB-IMDS -m owner --uid-owner 0 -j RETURN
iptables -A LAKEHUB-IMDS -j REJECT
iptables -C OUTPUT -d 169.254.169.254/32 -j LAKEHUB-IMDS 2>/dev/null || iptables -I OUTPUT 1 -d 169.254.169.254/32 -j LAKEHUB-IMDS
LAKEHUB_GUARD
chmod 0755 ${ImdsGuard}
cat > ${ImdsGuardUnit} <<'LAKEHUB_UNIT'
[Unit]
Description=lakehub: only root may reach the instance metadata service
Before=docker.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${ImdsGuard}
[Install]
WantedBy=multi-user.target
RequiredBy=docker.service
LAKEHUB_UNIT
systemctl daemon-reload
systemctl enable --now lakehub-imds-guard.service || fail "cannot install the firewall rule that keeps users off the instance metadata service"
iptables -C OUTPUT -d 169.254.169.254/32 -j LAKEHUB-IMDS || fail "the firewall rule that keeps users off the instance metadata service is missing"

# Users' homes: the tier's folder on the platform's EFS file system (access point
# ${HomesAccessPoint}), over TLS with this instance's IAM role (the file system refuses
# anything else), mounted before docker starts on every boot and bound into the hub at /home.
dnf install -y -q amazon-efs-utils || fail "cannot install amazon-efs-utils"
mkdir -p ${HomesHostMount}
grep -q ' ${HomesHostMount} ' /etc/fstab || \
  echo '${HomesFileSystemId}:/ ${HomesHostMount} efs _netdev,tls,iam,accesspoint=${HomesAccessPoint},x-systemd.before=docker.service,x-systemd.required-by=docker.service 0 0' >> /etc/fstab
systemctl daemon-reload
mountpoint -q ${HomesHostMount} || mount ${HomesHostMount} || fail "cannot mount the homes file system ${HomesFileSystemId} (access point ${HomesAccessPoint}): NFS from this hub's security group, or the instance role's elasticfilesystem:ClientMount"

systemctl enable --now docker || fail "cannot start docker"

IMAGE='${HubImage.ImageUri}'
REGISTRY="$(echo "$IMAGE" | cut -d/ -f1)"
aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY" \
  || fail "cannot sign in to $REGISTRY (instance role, or no route to ECR)"
docker pull -q "$IMAGE" \
  || fail "cannot pull $IMAGE for $(uname -m): it must exist for this architecture (x86 types need a linux/amd64 image)"

secret() { aws secretsmanager get-secret-value --region "$REGION" --secret-id "$1" --query SecretString --output text; }
umask 077
mkdir -p /etc/lakehub
# Root only (0600): the hub's secrets are added below.
install -m 0600 /dev/null ${EnvFile}
cat > ${EnvFile} <<'LAKEHUB_ENV'
${Environment}
LAKEHUB_ENV
value="$(secret '${CookieSecret}')" || fail "cannot read the cookie secret"
echo "LAKEHUB_COOKIE_SECRET=$value" >> ${EnvFile}
OAUTH_SECRET='${OAuthSecretId}'
if [ -n "$OAUTH_SECRET" ]; then
  value="$(secret "$OAUTH_SECRET")" || fail "cannot read the OAuth client secret $OAUTH_SECRET"
  echo "LAKEHUB_OAUTH_CLIENT_SECRET=$value" >> ${EnvFile}
fi
LDAP_SECRET='${LdapSecretId}'
if [ -n "$LDAP_SECRET" ]; then
  value="$(secret "$LDAP_SECRET")" || fail "cannot read the LDAP bind password $LDAP_SECRET"
  echo "LAKEHUB_LDAP_BIND_PASSWORD=$value" >> ${EnvFile}
fi
unset value

docker rm -f ${Container} >/dev/null 2>&1 || true
# Host networking: the hub binds LAKEHUB_HUB_IP only; the hub (root) reaches the instance role
# through IMDSv2 with a hop limit of 1, users' servers cannot (the firewall rule above). The
# container survives stop and start.
docker run -d --name ${Container} --restart unless-stopped --network host ${GpuFlag} \
  --env-file ${EnvFile} --volume ${HomesHostMount}:${HomesMount} \
  --log-driver awslogs --log-opt awslogs-region="$REGION" --log-opt awslogs-group='${LogGroupName}' \
  --log-opt awslogs-stream='hubs/${TierName}/${AWS::StackName}' \
  "$IMAGE" || fail "cannot start the hub container"

for attempt in $(seq 1 60); do
  if curl -fsS -o /dev/null http://127.0.0.1:${HubPort}${HealthPath}; then
    signal 0 "hub is up"
    exit 0
  fi
  sleep 5
done
fail "the hub did not answer ${HealthPath} within 5 minutes; see log group ${LogGroupName}, stream hubs/${TierName}/${AWS::StackName}"
"""


def user_data(cookie, client_secret) -> Base64:
    env_lines = []
    variables: dict = {}
    for i, (key, value) in enumerate(hub_env().items()):
        var = f"Env{i}"
        env_lines.append(f"{key}=${{{var}}}")
        variables[var] = value
    text = USER_DATA.replace("${Environment}", "\n".join(env_lines))
    variables.update(
        {
            "EnvFile": ENV_FILE,
            "ImdsGuard": IMDS_GUARD,
            "ImdsGuardUnit": IMDS_GUARD_UNIT,
            "Container": CONTAINER_NAME,
            "HubPort": str(names.HUB_PORT),
            "EgressWaitAttempts": str(EGRESS_WAIT_ATTEMPTS),
            "HealthPath": names.HUB_HEALTH_PATH,
            "CookieSecret": Ref(cookie),
            # The platform team's sign-in secrets of the tier, at their fixed names (never a parameter).
            "OAuthSecretId": If(
                "UseCognito", Ref(client_secret), If("UseOidc", tier_mod.platform_secret_name(tier_mod.OIDC_CLIENT_SECRET), "")
            ),
            "LdapSecretId": If("UseLdap", tier_mod.platform_secret_name(tier_mod.LDAP_BIND_PASSWORD), ""),
            "GpuFlag": If("IsGpu", "--gpus all", ""),
            "HomesHostMount": HOMES_HOST_MOUNT,
            "HomesMount": names.HOMES_MOUNT,
            "HomesAccessPoint": Ref(tier_mod.HOMES_ACCESS_POINT),
        }
    )
    return Base64(Sub(text, **variables))


def add_instance(b: Builder, profile, sg, cookie, client_secret) -> ec2.Instance:
    image = If("IsGpu", Ref(AMI_GPU_X86), If("IsArm", Ref(AMI_ARM64), Ref(AMI_X86)))
    return b.add(
        ec2.Instance(
            "Instance",
            ImageId=image,
            InstanceType=Ref(INSTANCE_TYPE),
            IamInstanceProfile=Ref(profile),
            SubnetId=If("InSubnet1", Ref(names.PRIVATE_SUBNET_1_ID), Ref(names.PRIVATE_SUBNET_2_ID)),
            SecurityGroupIds=If("UseLoadBalancer", [Ref(sg), Ref(names.TASK_SECURITY_GROUP_ID)], [Ref(sg)]),
            BlockDeviceMappings=[
                ec2.BlockDeviceMapping(
                    DeviceName="/dev/xvda",
                    Ebs=ec2.EbsBlockDevice(
                        VolumeType="gp3", VolumeSize=Ref(VOLUME_SIZE), Encrypted=True, DeleteOnTermination=True
                    ),
                )
            ],
            # IMDSv2 only; the IPv6 endpoint stays off (the user data's firewall rule is IPv4).
            MetadataOptions=ec2.MetadataOptions(
                HttpTokens="required", HttpEndpoint="enabled", HttpPutResponseHopLimit=1, HttpProtocolIpv6="disabled"
            ),
            Monitoring=False,
            PropagateTagsToVolumeOnCreation=True,
            UserData=user_data(cookie, client_secret),
            Tags=hub_tags(("Name", Sub("lakehub ${TierName} hub (${Owner})")), (names.TAG_PRODUCT, PRODUCT_TAG_VALUE)),
            CreationPolicy=CreationPolicy(ResourceSignal=ResourceSignal(Count=1, Timeout=SIGNAL_TIMEOUT)),
        )
    )


def add_idle_alarm(b: Builder, instance) -> cloudwatch.Alarm:
    return b.add(
        cloudwatch.Alarm(
            "IdleStopAlarm",
            AlarmName=Sub("${PlatformName}-hub-${AWS::StackName}-idle-stop"),
            AlarmDescription=Sub(
                "Stops the lakehub on-demand hub ${Instance} (owner ${Owner}) when its CPU stays below ${IdleCpuPercent}% for ${IdleMinutes} minutes"
            ),
            Namespace="AWS/EC2",
            MetricName="CPUUtilization",
            Dimensions=[cloudwatch.MetricDimension(Name="InstanceId", Value=Ref(instance))],
            Statistic="Average",
            Period=ALARM_PERIOD_SECONDS,
            EvaluationPeriods=FindInMap(IDLE_MAP, Ref(IDLE_MINUTES), "EvaluationPeriods"),
            DatapointsToAlarm=FindInMap(IDLE_MAP, Ref(IDLE_MINUTES), "EvaluationPeriods"),
            Threshold=Ref(IDLE_CPU_PERCENT),
            ComparisonOperator="LessThanThreshold",
            # A stopped instance sends nothing: that is not "busy", and must not re-alarm.
            TreatMissingData="notBreaching",
            AlarmActions=[Sub("arn:${AWS::Partition}:automate:${AWS::Region}:ec2:stop")],
        )
    )


def add_load_balancer_access(b: Builder, instance) -> None:
    """Optional: https://<host>.<domain> on the platform's load balancer. The instance joins the
    platform's hub-task security group, whose only inbound source is the load balancer's group."""
    tg = b.add(
        elb.TargetGroup(
            "TargetGroup",
            Condition="UseLoadBalancer",
            TargetType="instance",
            Protocol="HTTP",
            Port=names.HUB_PORT,
            VpcId=Ref(names.VPC_ID),
            Targets=[elb.TargetDescription(Id=Ref(instance), Port=names.HUB_PORT)],
            HealthCheckPath=names.HUB_HEALTH_PATH,
            HealthCheckIntervalSeconds=15,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=3,
            Matcher=elb.Matcher(HttpCode="200"),
            TargetGroupAttributes=[elb.TargetGroupAttribute(Key="deregistration_delay.timeout_seconds", Value="30")],
            Tags=hub_tags(),
        )
    )
    priority = tier_mod.add_listener_rule_priority(b)
    b.add(
        elb.ListenerRule(
            "ListenerRule",
            Condition="UseLoadBalancer",
            ListenerArn=Ref(names.HTTPS_LISTENER_ARN),
            Priority=If("PriorityIsAuto", GetAtt(priority, "Priority"), Ref(tier_mod.LISTENER_PRIORITY)),
            Conditions=[elb.Condition(Field="host-header", HostHeaderConfig=elb.HostHeaderConfig(Values=[Sub(PUBLIC_HOST)]))],
            Actions=[elb.ListenerRuleAction(Type="forward", TargetGroupArn=Ref(tg))],
        )
    )
    b.add(
        route53.RecordSetType(
            "DnsRecord",
            Condition="UseLoadBalancer",
            HostedZoneId=Ref(names.HOSTED_ZONE_ID),
            Name=Sub(PUBLIC_HOST),
            Type="A",
            AliasTarget=route53.AliasTarget(
                DNSName=Ref(names.LOAD_BALANCER_DNS_NAME), HostedZoneId=Ref(names.LOAD_BALANCER_HOSTED_ZONE_ID)
            ),
        )
    )


def port_forward_command() -> Sub:
    return Sub(
        "aws ssm start-session --region ${AWS::Region} --target ${Instance}"
        " --document-name AWS-StartPortForwardingSession"
        ' --parameters \'{"portNumber":["' + str(names.HUB_PORT) + '"],"localPortNumber":["${LocalPort}"]}\''
    )


def build_hub_instance(settings: Settings):
    b = Builder("lakehub on-demand hub: JupyterHub on one EC2 instance with one tier's data access; stops itself when idle")
    add_parameters(b, settings)
    if settings.strict:
        types = b.t.parameters[INSTANCE_TYPE]
        types.AllowedValues = [t for t in INSTANCE_TYPES if t.split(".")[0] in STRICT_INSTANCE_FAMILIES]
        types.Default = STRICT_DEFAULT_INSTANCE_TYPE
        types.Description = "General (m7g, m6i), memory-optimised (r7g, r6i) or GPU (g5): Nitro types that encrypt traffic in transit (strict compliance profile); billed only while running"
    add_mappings(b, settings)
    add_conditions(b, settings)
    add_rules(b)

    cookie, client, client_secret = add_secrets(b)
    # The cookie secret and the sign-in mode's secret (every mode has exactly one).
    secrets = [
        Ref(cookie),
        If(
            "UseCognito",
            Ref(client_secret),
            If(
                "UseOidc",
                tier_mod.platform_secret_arn(tier_mod.OIDC_CLIENT_SECRET),
                tier_mod.platform_secret_arn(tier_mod.LDAP_BIND_PASSWORD),
            ),
        ),
    ]
    role = add_instance_role(b, secrets)
    user_role = add_user_role(b, settings, role)
    assume = add_assume_user_role(b, role, user_role)
    profile = b.add(iam.InstanceProfile("InstanceProfile", Path=role_path(), Roles=[Ref(role)]))
    sg = add_security_group(b)
    tier_mod.add_homes_access_point(b, tags=hub_tags())
    add_homes_access(b, sg)
    tier_mod.add_hub_image(b)  # the user data pulls ${HubImage.ImageUri}: the ImageTag's digest
    instance = add_instance(b, profile, sg, cookie, client_secret)
    if settings.strict:
        # CT.EC2.PR.13: detailed (1-minute) monitoring, a paid CloudWatch feature; CT.EC2.PR.8: the
        # network interface is declared, with no public address (the instance is in a private subnet).
        instance.Monitoring = True
        interface = ec2.NetworkInterfaceProperty(
            DeviceIndex="0",
            SubnetId=instance.properties.pop("SubnetId"),
            GroupSet=instance.properties.pop("SecurityGroupIds"),
            AssociatePublicIpAddress=False,
            DeleteOnTermination=True,
        )
        instance.NetworkInterfaces = [interface]
    instance.DependsOn = [assume.title]  # users' first spawn assumes the user role
    add_idle_alarm(b, instance)
    add_load_balancer_access(b, instance)

    b.output(INSTANCE_ID, Ref(instance), "EC2 instance of the hub (start it again with aws ec2 start-instances)")
    b.output(
        PORT_FORWARD_COMMAND,
        port_forward_command(),
        "Run this, then open HubUrl in your browser (needs the Session Manager plugin)",
    )
    b.output(HUB_URL, hub_url(), "Where the hub answers (through the port forward, or the load balancer)")
    b.output(
        "StopCommand",
        Sub("aws ec2 stop-instances --region ${AWS::Region} --instance-ids ${Instance}"),
        "Stop the hub now (it also stops itself when idle); only the volume is billed while stopped",
    )
    b.output(
        "StartCommand",
        Sub("aws ec2 start-instances --region ${AWS::Region} --instance-ids ${Instance}"),
        "Start a stopped hub again",
    )
    b.output(INSTANCE_ROLE_ARN, GetAtt(role, "Arn"), "IAM role of the hub instance (image, logs, this hub's secrets; no data)")
    b.output(
        USER_ROLE_ARN,
        GetAtt(user_role, "Arn"),
        "Data role the hub assumes per user for their server (the tier's data-lake prefixes, shared folder and the user's own folder)",
    )
    b.output(
        "NotebookPrefix",
        Sub("s3://${NotebookBucketName}/" + names.NOTEBOOK_TIERS_ROOT + "/${TierName}/"),
        "Where the hub's notebooks are stored (the tier's folder)",
    )
    b.output("IdleStopAlarmName", Ref("IdleStopAlarm"), "CloudWatch alarm that stops the hub when idle")
    return finish(b, settings)


def hub_url():
    return If("UseLoadBalancer", Sub("https://" + PUBLIC_HOST), Sub("http://localhost:${LocalPort}"))
