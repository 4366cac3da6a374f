"""cluster.template.yaml: ECS cluster, load balancer, certificate, sign-in, platform values.

The load balancer is the only thing on the internet: HTTPS with a modern TLS policy, port 80
only redirects, unknown hosts get a fixed 404, invalid header fields are dropped. Tasks sit in
private subnets behind a security group that admits the load balancer only. Every value a tier
needs is published in SSM under /lakehub/<platform>/, so a tier stack works the same nested
under main or launched on its own from Service Catalog.
"""

from __future__ import annotations

from awacs import ecr as awacs_ecr
from awacs import elasticfilesystem as awacs_efs
from awacs import elasticloadbalancing as awacs_elb
from awacs import secretsmanager as awacs_secretsmanager
from awacs import ssm as awacs_ssm
from awacs.aws import Allow, PolicyDocument, Principal, Statement
from troposphere import (
    FindInMap,
    Or,
    s3,
    Equals,
    GetAtt,
    If,
    Ref,
    Sub,
    certificatemanager,
    cognito,
    ec2,
    ecs,
    efs,
    elasticloadbalancingv2 as elb,
    logs,
    ssm,
)

from lakehub.stacks import names
from lakehub.stacks.compliance import finish
from lakehub.stacks.builder import port_rule, Builder, platform_tags, private_bucket
from lakehub.stacks.parameters import (
    ASSETS_BUCKET_NAME,
    ASSETS_KEY_PREFIX,
    BUCKET_NAME_PATTERN,
    CIDR_PATTERN,
    KMS_KEY_ARN_PATTERN,
    PLATFORM_NAME,
    VPC_CIDR,
    VPC_ID,
    log_retention_days,
    or_empty,
)
from lakehub.stacks.functions import LOGS_AWS_KEY, add_function
from lakehub.stacks.policies import deny_insecure_transport, tls_only_bucket_policy
from lakehub.stacks.builder import add_checkov_skip
from lakehub.settings import Settings

AUTH_MODES = ("cognito", "oidc", "ldap")

# Load-balancer access logs are written by a regional Elastic Load Balancing account in Regions
# opened before August 2022, and by the logdelivery.elasticloadbalancing.amazonaws.com service
# principal in later ones (AWS: "Enable access logs for your Application Load Balancer").
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-south-1": "718504428378",
    "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887",
    "ap-northeast-3": "383597477331",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-west-3": "009996457667",
    "eu-south-1": "635631232127",
    "eu-north-1": "897822967062",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}
ELB_LOG_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"
ALB_LOG_PREFIX = "alb"
ALB_LOG_DAYS = 365
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


# Deliberate checkov exceptions of the secret lookup function (docs/SECURITY.md lists every one).
SECRET_ARN_NO_VPC = (
    "The function calls only Secrets Manager's DescribeSecret (names and ARNs, never a value) with its own "
    "least-privilege role and serves no network clients; inside the VPC it would need NAT or an interface endpoint and gain nothing"
)
SECRET_ARN_ENV_AWS_KEY = (
    "The environment holds only the platform name (LAKEHUB_PLATFORM_NAME), no secret; Lambda encrypts environment "
    "variables at rest with an AWS-managed key, and a customer-managed key would add cost and a key policy"
)


def add_parameters(b: Builder, settings: Settings) -> None:
    b.use(PLATFORM_NAME)
    b.use(ASSETS_BUCKET_NAME)
    b.use(ASSETS_KEY_PREFIX)
    add_domain_params(b)
    b.choice(
        names.AUTH_MODE,
        "Sign-in",
        "Sign-in mode",
        "cognito: the platform's Cognito user pool; oidc: your OpenID Connect provider; ldap: your LDAP or Active Directory",
        AUTH_MODES,
        "cognito",
    )
    g = "Network (from the network stack or your VPC)"
    b.use(VPC_ID, group=g)
    b.use(
        VPC_CIDR,
        group=g,
        Description="CIDR block of the VPC (the load balancer may reach the hub port inside it only)",
        ConstraintDescription="a CIDR block such as 10.20.0.0/16",
    )
    for name, label in (
        (names.PUBLIC_SUBNET_1_ID, "Public subnet 1"),
        (names.PUBLIC_SUBNET_2_ID, "Public subnet 2"),
        (names.PRIVATE_SUBNET_1_ID, "Private subnet 1"),
        (names.PRIVATE_SUBNET_2_ID, "Private subnet 2"),
    ):
        b.param(
            name,
            g,
            label,
            f"{label} ({'load balancer' if 'Public' in name else 'tasks'}), in its own AZ",
            type="AWS::EC2::Subnet::Id",
        )
    g = "Storage and image (from the storage and pipeline stacks)"
    b.param(
        names.NOTEBOOK_BUCKET_NAME,
        g,
        "Notebook bucket",
        "Bucket that stores notebooks",
        AllowedPattern=BUCKET_NAME_PATTERN,
        ConstraintDescription="an S3 bucket name",
    )
    b.param(
        names.DATA_BUCKET_NAME,
        g,
        "Data-lake bucket",
        "Bucket of the data lake",
        AllowedPattern=BUCKET_NAME_PATTERN,
        ConstraintDescription="an S3 bucket name",
    )
    b.param(
        names.DATA_KMS_KEY_ARN,
        g,
        "Data-lake KMS key",
        "KMS key ARN of the data lake, or 'none'",
        Default="none",
        AllowedPattern=or_empty(KMS_KEY_ARN_PATTERN, "none"),
        ConstraintDescription="none, or a KMS key ARN",
    )
    b.param(
        names.SEED_FUNCTION_ARN,
        g,
        "Seeding function",
        "ARN of the function that seeds tier folders",
        AllowedPattern=r"^arn:aws[a-z-]*:lambda:.+$",
        ConstraintDescription="a Lambda function ARN",
    )
    b.param(
        names.IMAGE_REPOSITORY_URI,
        g,
        "Hub image repository",
        "URI of the hub image ECR repository",
        AllowedPattern=r"^\S+$",
        ConstraintDescription="an ECR repository URI",
    )
    b.param(
        names.ALARM_TOPIC_ARN,
        "Monitoring (from main)",
        "Alarm topic",
        "SNS topic of the platform's alarms; published in SSM for the tiers' alarms",
        AllowedPattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$",
        ConstraintDescription="an SNS topic ARN",
    )
    b.use(log_retention_days(settings))


def add_domain_params(b: Builder) -> None:
    g = "Domain and certificate"
    b.param(
        names.DOMAIN_NAME,
        g,
        "Domain name",
        "Domain under which each tier gets a host name (<tier>.<domain>), for example lakehub.example.com",
        AllowedPattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        ConstraintDescription="a lower-case DNS name such as lakehub.example.com",
    )
    b.param(
        names.HOSTED_ZONE_ID,
        g,
        "Route 53 hosted zone",
        "Public hosted zone of the domain (tier records and certificate validation go here)",
        type="AWS::Route53::HostedZone::Id",
    )
    b.param(
        names.CERTIFICATE_ARN,
        g,
        "Existing certificate ARN",
        "ACM certificate for *.<domain>; leave empty to create one validated through the hosted zone",
        Default="",
        AllowedPattern=r"^$|^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
        ConstraintDescription="empty, or an ACM certificate ARN",
    )
    b.param(
        names.ALLOWED_CIDR,
        g,
        "Allowed client CIDR",
        "Address range that may reach the load balancer on ports 443 and 80 (0.0.0.0/0 for anyone)",
        Default="0.0.0.0/0",
        AllowedPattern=CIDR_PATTERN,
        ConstraintDescription="a CIDR block such as 203.0.113.0/24",
    )


def add_security_groups(b: Builder):
    alb_sg = b.add(
        ec2.SecurityGroup(
            "LoadBalancerSecurityGroup",
            GroupDescription="lakehub load balancer: HTTPS and HTTP (redirect) from the allowed range",
            VpcId=Ref(names.VPC_ID),
            SecurityGroupIngress=[
                port_rule(443, "HTTPS from clients", cidr=Ref(names.ALLOWED_CIDR)),
                port_rule(80, "HTTP from clients (redirected to HTTPS)", cidr=Ref(names.ALLOWED_CIDR)),
            ],
            SecurityGroupEgress=[
                port_rule(names.HUB_PORT, "to hub tasks", cidr=Ref(names.VPC_CIDR)),
            ],
            Tags=platform_tags(("Name", Sub("${PlatformName}-alb"))),
        )
    )
    add_checkov_skip(
        alb_sg,
        "CKV_AWS_260",
        "Port 80 only answers with a redirect to HTTPS (listener HttpListener; rule load-balancer-https-only), so plain-HTTP links still reach the tiers; AllowedCidr narrows both ports",
    )
    task_sg = b.add(
        ec2.SecurityGroup(
            "TaskSecurityGroup",
            GroupDescription="lakehub hub tasks: the hub port from the load balancer only",
            VpcId=Ref(names.VPC_ID),
            SecurityGroupIngress=[port_rule(names.HUB_PORT, "hub port from the load balancer", source=Ref(alb_sg))],
            SecurityGroupEgress=[
                port_rule(443, "HTTPS: AWS APIs, image pulls, identity provider, package indexes", cidr="0.0.0.0/0"),
                port_rule(636, "LDAPS (ldap sign-in mode)", cidr="0.0.0.0/0"),
                port_rule((0, 65535), "inside the VPC: per-user servers, DNS", cidr=Ref(names.VPC_CIDR)),
                port_rule(53, "DNS (VPC resolver)", cidr=Ref(names.VPC_CIDR), protocol="udp"),
            ],
            Tags=platform_tags(("Name", Sub("${PlatformName}-hub-tasks"))),
        )
    )
    return alb_sg, task_sg


HOMES_IA_DAYS = "AFTER_30_DAYS"
HOMES_CMK_SKIP = (
    "Encrypted at rest with the account's AWS-managed key (aws/elasticfilesystem); a customer-managed key "
    "costs $1 a month plus requests and a key policy to keep, and the file system never leaves the account"
)


def add_homes(b: Builder) -> tuple[efs.FileSystem, ec2.SecurityGroup]:
    """Users' homes (issue 15): one encrypted EFS file system for the platform, elastic
    throughput (paid per use, nothing when idle), files not read for 30 days move to Infrequent
    Access, AWS Backup's default daily plan (BackupPolicy ENABLED) keeps versions of every home.
    Its policy refuses any client that does not use TLS and, because a policy exists, any client
    that does not mount with IAM (EFS treats those as anonymous, and nothing here allows
    anonymous): every mount is authorized by the mounting role's ClientMount/ClientWrite.
    Mount targets in the two private subnets; their security group admits NFS only from the
    groups that tiers and on-demand hubs add (each stack its own ingress rule)."""
    homes_sg = b.add(
        ec2.SecurityGroup(
            "HomesSecurityGroup",
            GroupDescription="lakehub homes (EFS mount targets): NFS from the platform tiers and hubs only",
            VpcId=Ref(names.VPC_ID),
            # Mount targets only answer (security groups are stateful): no egress at all.
            SecurityGroupEgress=[
                ec2.SecurityGroupRule(
                    IpProtocol="-1", CidrIp="127.0.0.1/32", Description="no egress (mount targets only answer)"
                ),
            ],
            Tags=platform_tags(("Name", Sub("${PlatformName}-homes"))),
        )
    )
    fs_arn = Sub("arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/*")
    policy = PolicyDocument(
        Version="2012-10-17",
        Statement=[deny_insecure_transport(Principal("AWS", "*"), [awacs_efs.Action("*")], [fs_arn])],
    )
    fs = b.add(
        efs.FileSystem(
            "HomesFileSystem",
            Encrypted=True,
            PerformanceMode="generalPurpose",
            ThroughputMode="elastic",
            LifecyclePolicies=[
                efs.LifecyclePolicy(TransitionToIA=HOMES_IA_DAYS),
                efs.LifecyclePolicy(TransitionToPrimaryStorageClass="AFTER_1_ACCESS"),
            ],
            BackupPolicy=efs.BackupPolicy(Status="ENABLED"),
            FileSystemPolicy={"Version": policy.Version, "Statement": list(policy.Statement)},
            FileSystemTags=platform_tags(("Name", Sub("${PlatformName}-homes")), ("lakehub:purpose", "homes")),
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
        )
    )
    add_checkov_skip(fs, "CKV_AWS_184", HOMES_CMK_SKIP)
    for i, subnet in enumerate((names.PRIVATE_SUBNET_1_ID, names.PRIVATE_SUBNET_2_ID), start=1):
        b.add(efs.MountTarget(f"HomesMountTarget{i}", FileSystemId=Ref(fs), SubnetId=Ref(subnet), SecurityGroups=[Ref(homes_sg)]))
    return fs, homes_sg


def add_load_balancer_logs(b: Builder) -> s3.Bucket:
    """A bucket for the load balancer's access logs (who reached which tier, when, from where),
    protected like every lakehub bucket, written only by Elastic Load Balancing log delivery."""
    t = b.t
    t.add_mapping("ElbLogDelivery", {region: {"AccountId": account} for region, account in sorted(ELB_LOG_ACCOUNTS.items())})
    regions = sorted(ELB_LOG_ACCOUNTS)
    groups = [regions[i : i + 10] for i in range(0, len(regions), 10)]
    t.add_condition(
        "ElbLogsFromRegionalAccount",
        Or(
            *[Or(*[Equals(Ref("AWS::Region"), r) for r in g]) if len(g) > 1 else Equals(Ref("AWS::Region"), g[0]) for g in groups]
        ),
    )
    bucket = b.add(
        # Load-balancer log delivery supports SSE-S3 only.
        private_bucket(
            "LoadBalancerLogsBucket",
            bucket_key=False,
            OwnershipControls=s3.OwnershipControls(Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
            LifecycleConfiguration=s3.LifecycleConfiguration(
                Rules=[
                    s3.LifecycleRule(
                        Id="ExpireAccessLogs",
                        Status="Enabled",
                        ExpirationInDays=ALB_LOG_DAYS,
                        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=30),
                        AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
                    )
                ]
            ),
            Tags=platform_tags(("lakehub:purpose", "load-balancer-logs")),
        )
    )
    add_checkov_skip(
        bucket,
        "CKV_AWS_18",
        "This bucket holds the load balancer's access logs; logging the log bucket's own access would log its own log writes without end",
    )
    tls_only = tls_only_bucket_policy(Ref(bucket))
    policy = {"Version": tls_only.Version, "Statement": list(tls_only.Statement)}
    policy["Statement"].append(
        {
            "Sid": "AllowLoadBalancerLogDelivery",
            "Effect": "Allow",
            # (a plain mapping: awacs' Principal cannot hold an Fn::If)
            "Principal": If(
                "ElbLogsFromRegionalAccount",
                {
                    "AWS": Sub(
                        "arn:${AWS::Partition}:iam::${Account}:root",
                        Account=FindInMap("ElbLogDelivery", Ref("AWS::Region"), "AccountId"),
                    )
                },
                {"Service": ELB_LOG_SERVICE},
            ),
            "Action": ["s3:PutObject"],
            "Resource": [
                Sub("arn:${AWS::Partition}:s3:::${B}/" + ALB_LOG_PREFIX + "/AWSLogs/${AWS::AccountId}/*", B=Ref(bucket))
            ],
        }
    )
    bucket_policy = b.add(s3.BucketPolicy("LoadBalancerLogsBucketPolicy", Bucket=Ref(bucket), PolicyDocument=policy))
    return bucket, bucket_policy


def add_load_balancer(b: Builder, alb_sg):
    logs_bucket, logs_policy = add_load_balancer_logs(b)
    lb = b.add(
        elb.LoadBalancer(
            "LoadBalancer",
            Name=Sub("${PlatformName}-alb"),
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Subnets=[Ref(names.PUBLIC_SUBNET_1_ID), Ref(names.PUBLIC_SUBNET_2_ID)],
            SecurityGroups=[Ref(alb_sg)],
            LoadBalancerAttributes=[
                elb.LoadBalancerAttributes(Key="routing.http.drop_invalid_header_fields.enabled", Value="true"),
                elb.LoadBalancerAttributes(Key="routing.http.desync_mitigation_mode", Value="strictest"),
                elb.LoadBalancerAttributes(Key="idle_timeout.timeout_seconds", Value="300"),
                elb.LoadBalancerAttributes(Key="access_logs.s3.enabled", Value="true"),
                elb.LoadBalancerAttributes(Key="access_logs.s3.bucket", Value=Ref(logs_bucket)),
                elb.LoadBalancerAttributes(Key="access_logs.s3.prefix", Value=ALB_LOG_PREFIX),
            ],
            Tags=platform_tags(),
            # Elastic Load Balancing checks that it may write to the bucket when logging is enabled.
            DependsOn=[logs_policy.title],
        )
    )
    cert = b.add(
        certificatemanager.Certificate(
            "Certificate",
            Condition="CreateCertificate",
            # The wildcard only: every tier (and an on-demand hub behind the load balancer) is
            # <host>.<domain>; nothing is served at the apex. A wildcard and its apex share one
            # DNS validation record, so listing both asks for that record twice.
            DomainName=Sub("*.${DomainName}"),
            ValidationMethod="DNS",
            DomainValidationOptions=[
                certificatemanager.DomainValidationOption(
                    DomainName=Sub("*.${DomainName}"), HostedZoneId=Ref(names.HOSTED_ZONE_ID)
                ),
            ],
            Tags=platform_tags(),
        )
    )
    add_checkov_skip(
        cert,
        "CKV2_AWS_71",
        "Tiers are added at run time (Service Catalog) as <tier>.<domain>; one wildcard for the platform's own sub-domain saves a certificate and a DNS validation per tier. Use CertificateArn for named certificates",
    )
    https = b.add(
        elb.Listener(
            "HttpsListener",
            LoadBalancerArn=Ref(lb),
            Port=443,
            Protocol="HTTPS",
            SslPolicy=TLS_POLICY,
            Certificates=[elb.Certificate(CertificateArn=If("CreateCertificate", Ref(cert), Ref(names.CERTIFICATE_ARN)))],
            DefaultActions=[
                elb.Action(
                    Type="fixed-response",
                    FixedResponseConfig=elb.FixedResponseConfig(
                        StatusCode="404", ContentType="text/plain", MessageBody="No lakehub tier here."
                    ),
                )
            ],
        )
    )
    b.add(
        elb.Listener(
            "HttpListener",
            LoadBalancerArn=Ref(lb),
            Port=80,
            Protocol="HTTP",
            DefaultActions=[
                elb.Action(
                    Type="redirect",
                    RedirectConfig=elb.RedirectConfig(
                        Protocol="HTTPS", Port="443", Host="#{host}", Path="/#{path}", Query="#{query}", StatusCode="HTTP_301"
                    ),
                )
            ],
        )
    )
    return lb, https


def add_user_pool(b: Builder):
    pool = b.add(
        cognito.UserPool(
            "UserPool",
            Condition="UseCognito",
            UserPoolName=Sub("${PlatformName}-users"),
            AdminCreateUserConfig=cognito.AdminCreateUserConfig(AllowAdminCreateUserOnly=True),
            UsernameAttributes=["email"],
            AutoVerifiedAttributes=["email"],
            MfaConfiguration="OPTIONAL",
            EnabledMfas=["SOFTWARE_TOKEN_MFA"],
            Policies=cognito.Policies(
                PasswordPolicy=cognito.PasswordPolicy(
                    MinimumLength=12,
                    RequireLowercase=True,
                    RequireUppercase=True,
                    RequireNumbers=True,
                    RequireSymbols=True,
                    TemporaryPasswordValidityDays=3,
                )
            ),
            AccountRecoverySetting=cognito.AccountRecoverySetting(
                RecoveryMechanisms=[cognito.RecoveryOption(Name="verified_email", Priority=1)]
            ),
            DeletionProtection="ACTIVE",
            UserPoolTags={names.TAG_PLATFORM: Ref(names.PLATFORM_NAME)},
        )
    )
    pool.DeletionPolicy = "Retain"
    pool.UpdateReplacePolicy = "Retain"
    domain = b.add(
        cognito.UserPoolDomain(
            "UserPoolDomain",
            Condition="UseCognito",
            UserPoolId=Ref(pool),
            Domain=Sub("${PlatformName}-${AWS::AccountId}"),
        )
    )
    return pool, domain


def build_cluster(settings: Settings):
    b = Builder("lakehub cluster: ECS on Fargate, HTTPS load balancer, certificate, sign-in, platform values in SSM")
    add_parameters(b, settings)
    t = b.t
    t.add_condition("CreateCertificate", Equals(Ref(names.CERTIFICATE_ARN), ""))
    t.add_condition("UseCognito", Equals(Ref(names.AUTH_MODE), "cognito"))

    cluster = b.add(
        ecs.Cluster(
            "Cluster",
            ClusterName=Sub("${PlatformName}"),
            CapacityProviders=["FARGATE", "FARGATE_SPOT"],
            DefaultCapacityProviderStrategy=[ecs.CapacityProviderStrategyItem(CapacityProvider="FARGATE", Weight=1)],
            ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="disabled")],
            Tags=platform_tags(),
        )
    )
    cluster.Metadata = {
        "checkov": {
            "skip": [
                {
                    "id": "CKV_AWS_65",
                    "comment": "Container Insights costs about $0.30 per task-month plus logs; off by default for low cost, enable it in the console when needed",
                }
            ]
        }
    }
    if settings.strict:
        # CT.ECS.PR.2: Container Insights (paid: metrics per task and their log events)
        cluster.ClusterSettings = [ecs.ClusterSetting(Name="containerInsights", Value="enabled")]
        del cluster.resource["Metadata"]
    alb_sg, task_sg = add_security_groups(b)
    homes_fs, homes_sg = add_homes(b)
    lb, https = add_load_balancer(b, alb_sg)
    if settings.strict:
        # CT.ELASTICLOADBALANCING.PR.5: deleting the stack fails until the attribute is turned off
        lb.LoadBalancerAttributes.append(elb.LoadBalancerAttributes(Key="deletion_protection.enabled", Value="true"))
    log_group = b.add(
        logs.LogGroup(
            "TaskLogGroup", LogGroupName=Sub("/lakehub/${PlatformName}/tasks"), RetentionInDays=Ref(names.LOG_RETENTION_DAYS)
        )
    )
    add_checkov_skip(log_group, "CKV_AWS_158", LOGS_AWS_KEY)
    pool, domain = add_user_pool(b)

    priority_fn = add_function(
        b,
        "ListenerPriorityFunction",
        "listener_priority",
        "lakehub: allocates a free rule priority on the platform's HTTPS listener",
        statements=[
            # DescribeRules supports no resource-level permission: it needs "*".
            Statement(Sid="ReadRules", Effect=Allow, Action=[awacs_elb.DescribeRules], Resource=["*"]),
            # Claims: one SSM parameter per priority in use, put without Overwrite (atomic).
            Statement(
                Sid="ClaimPriorities",
                Effect=Allow,
                Action=[awacs_ssm.PutParameter, awacs_ssm.GetParameter, awacs_ssm.DeleteParameter],
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
                        + names.LISTENER_PRIORITY_CLAIMS_SUB
                        + "/*"
                    )
                ],
            ),
        ],
        timeout=60,
    )

    # ECS takes a Secrets Manager secret by its full ARN (docs/AWS_NOTES.md): tiers look the
    # platform team's sign-in secrets up by name with this function. It reads only names under
    # the platform's own (its environment, not a property, says which platform).
    secret_arn_fn = add_function(
        b,
        "SecretArnFunction",
        "secret_arn",
        "lakehub: looks up the full ARN of a sign-in secret under the platform's name",
        statements=[
            Statement(
                Sid="DescribePlatformSecrets",
                Effect=Allow,
                Action=[awacs_secretsmanager.DescribeSecret],
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${"
                        + names.PLATFORM_NAME
                        + "}/*"
                    )
                ],
            ),
        ],
        timeout=60,
        environment={"LAKEHUB_PLATFORM_NAME": Ref(names.PLATFORM_NAME)},
        skip_reasons={
            "CKV_AWS_117": SECRET_ARN_NO_VPC,
            "CKV_AWS_173": SECRET_ARN_ENV_AWS_KEY,
        },
    )

    # Images are promoted, not rolled: tiers and on-demand hubs run their ImageTag by digest
    # (Custom::ImageDigest), so a task definition changes exactly when the image does.
    digest_fn = add_function(
        b,
        "ImageDigestFunction",
        "image_digest",
        "lakehub: resolves a hub image tag to its immutable digest",
        statements=[
            Statement(
                Sid="DescribeHubImages",
                Effect=Allow,
                Action=[awacs_ecr.DescribeImages],
                # The pipeline's repository, ${PlatformName}/hub (lakehub.stacks.pipeline).
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${" + names.PLATFORM_NAME + "}/hub"
                    )
                ],
            ),
        ],
        timeout=60,
    )

    values = {
        names.VPC_ID: Ref(names.VPC_ID),
        names.VPC_CIDR: Ref(names.VPC_CIDR),
        names.PRIVATE_SUBNET_1_ID: Ref(names.PRIVATE_SUBNET_1_ID),
        names.PRIVATE_SUBNET_2_ID: Ref(names.PRIVATE_SUBNET_2_ID),
        names.NOTEBOOK_BUCKET_NAME: Ref(names.NOTEBOOK_BUCKET_NAME),
        names.DATA_BUCKET_NAME: Ref(names.DATA_BUCKET_NAME),
        names.DATA_KMS_KEY_ARN: Ref(names.DATA_KMS_KEY_ARN),
        names.SEED_FUNCTION_ARN: Ref(names.SEED_FUNCTION_ARN),
        names.IMAGE_REPOSITORY_URI: Ref(names.IMAGE_REPOSITORY_URI),
        names.CLUSTER_NAME: Ref(cluster),
        names.HTTPS_LISTENER_ARN: Ref(https),
        names.LOAD_BALANCER_DNS_NAME: GetAtt(lb, "DNSName"),
        names.LOAD_BALANCER_HOSTED_ZONE_ID: GetAtt(lb, "CanonicalHostedZoneID"),
        names.LOAD_BALANCER_FULL_NAME: GetAtt(lb, "LoadBalancerFullName"),
        names.TASK_SECURITY_GROUP_ID: Ref(task_sg),
        names.LISTENER_PRIORITY_FUNCTION_ARN: GetAtt(priority_fn, "Arn"),
        names.SECRET_ARN_FUNCTION_ARN: GetAtt(secret_arn_fn, "Arn"),
        names.IMAGE_DIGEST_FUNCTION_ARN: GetAtt(digest_fn, "Arn"),
        names.LOG_GROUP_NAME: Ref(log_group),
        names.USER_POOL_ID: If("UseCognito", Ref(pool), "none"),
        names.USER_POOL_DOMAIN_URL: If(
            "UseCognito", Sub("https://${UserPoolDomain}.auth.${AWS::Region}.amazoncognito.com"), "none"
        ),
        names.AUTH_MODE: Ref(names.AUTH_MODE),
        names.DOMAIN_NAME: Ref(names.DOMAIN_NAME),
        names.HOSTED_ZONE_ID: Ref(names.HOSTED_ZONE_ID),
        names.HOMES_FILE_SYSTEM_ID: Ref(homes_fs),
        names.HOMES_SECURITY_GROUP_ID: Ref(homes_sg),
        names.ALARM_TOPIC_ARN: Ref(names.ALARM_TOPIC_ARN),
    }
    missing = set(names.PLATFORM_SSM_VALUES) - set(values)
    assert not missing, f"platform values not published: {missing}"
    for name, value in values.items():
        b.add(
            ssm.Parameter(
                f"Platform{name}Parameter",
                Name=Sub(names.SSM_NAME_SUB + name),
                Type="String",
                Value=value,
                Description=f"lakehub platform value: {names.PLATFORM_SSM_VALUES[name]}",
                Tags={names.TAG_PLATFORM: Ref(names.PLATFORM_NAME)},
            )
        )

    b.output(names.CLUSTER_NAME, Ref(cluster), "ECS cluster that runs the tiers")
    b.output(names.CLUSTER_ARN, GetAtt(cluster, "Arn"), "ARN of the ECS cluster")
    b.output(names.HTTPS_LISTENER_ARN, Ref(https), "HTTPS listener that routes <tier>.<domain> to the tiers")
    b.output(names.LOAD_BALANCER_DNS_NAME, GetAtt(lb, "DNSName"), "DNS name of the load balancer")
    b.output(
        names.LOAD_BALANCER_HOSTED_ZONE_ID,
        GetAtt(lb, "CanonicalHostedZoneID"),
        "Hosted zone of the load balancer (alias records)",
    )
    b.output(names.LOAD_BALANCER_SECURITY_GROUP_ID, Ref(alb_sg), "Security group of the load balancer")
    b.output(names.TASK_SECURITY_GROUP_ID, Ref(task_sg), "Security group of hub tasks")
    b.output(names.HOMES_FILE_SYSTEM_ID, Ref(homes_fs), "EFS file system of users' homes")
    b.output(names.HOMES_SECURITY_GROUP_ID, Ref(homes_sg), "Security group of the homes' mount targets")
    b.output(names.LOG_GROUP_NAME, Ref(log_group), "Log group of the platform's tasks")
    b.output(names.USER_POOL_ID, If("UseCognito", Ref(pool), "none"), "Cognito user pool (cognito sign-in), or 'none'")
    b.output(
        names.LISTENER_PRIORITY_FUNCTION_ARN,
        GetAtt(priority_fn, "Arn"),
        "Function that allocates listener-rule priorities (ServiceToken)",
    )
    b.output(
        names.SECRET_ARN_FUNCTION_ARN,
        GetAtt(secret_arn_fn, "Arn"),
        "Function that looks up the full ARN of a sign-in secret (ServiceToken)",
    )
    b.output(
        names.IMAGE_DIGEST_FUNCTION_ARN,
        GetAtt(digest_fn, "Arn"),
        "Function that resolves a hub image tag to its digest (ServiceToken)",
    )
    b.output("PlatformParameterPath", Sub(names.SSM_NAME_SUB), "SSM path under which the platform publishes its values")
    return finish(b, settings)
