"""tier.template.yaml: one data-access tier (for example `pii` or `nonpii`).

A tier is a hub on ECS Fargate behind the platform's load balancer at <host>.<domain>, whose
users reach only the tier's data-lake prefixes, its shared notebook folder and their own: each
user's code holds that user's session of the tier role (the data role), which the hub assumes
per user with SourceIdentity and a session tag (docs/SECURITY.md, "Per-user scope"). The stack reads
the platform's values from SSM (/lakehub/<platform>/...), so the same template runs nested
under main or launched alone from Service Catalog.

Two server modes:
- `per-user` (default): a small hub task; each user's server is its own Fargate task started
  by the hub (task role UserTaskRole, no data), so capacity and cost follow the people using it.
- `shared`: the reference design: users' servers are processes (one Unix user each) inside the
  tier's hub task(s); fast to start, sized for the whole team.

Off-hours schedule (`Schedule` = business-hours, the default): Application Auto Scaling
scheduled actions on the service's scalable target set it to 0 tasks outside business hours
(`BusinessHoursStart`/`End`, `BusinessDays`, in `ScheduleTimezone`) and back to MinTasks/MaxTasks
at the start. Per-user mode: the hub's stop leaves users' servers running (its database is
replicated to S3 and restored by the next hub, which takes them back and whose idle culler stops
the idle ones); shared mode: the servers live in the hub task and stop with it. Same parameters as the network's NAT
instance schedule (lakehub.stacks.network), which runs a little longer on each side.
"""

from __future__ import annotations


from awacs import cloudwatch as awacs_cloudwatch
from awacs import ecs as awacs_ecs
from awacs import elasticfilesystem as awacs_efs
from awacs import iam as awacs_iam
from awacs import s3 as awacs_s3
from awacs.aws import (
    Allow,
    ArnEquals,
    Condition,
    ForAllValuesStringEquals,
    Null,
    PolicyDocument,
    Principal,
    Statement,
    StringEquals,
    StringLike,
)
from awacs.sts import AssumeRole, SetSourceIdentity, TagSession
from troposphere import (
    AWSObject,
    And,
    Equals,
    GetAtt,
    If,
    Join,
    Not,
    Or,
    Ref,
    Select,
    Split,
    Sub,
    applicationautoscaling as aas,
    cognito,
    ec2,
    ecs,
    efs,
    elasticloadbalancingv2 as elb,
    iam,
    route53,
    secretsmanager,
    servicediscovery,
)

from lakehub.stacks import names
from lakehub.stacks.compliance import finish
from lakehub.assets import function_hash
from lakehub.stacks.builder import port_rule, Builder, custom_resource, platform_tags
from lakehub.stacks.parameters import (
    GROUP_NAME_PATTERN,
    HOST_LABEL_PATTERN,
    IMAGE_TAG,
    LISTENER_PRIORITY as LISTENER_PRIORITY_PARAM,
    KEY_PREFIX_PATTERN,
    ONE_LINE_PATTERN,
    TIER_NAME_PATTERN,
    joined_platform_name,
)
from lakehub.stacks.monitoring import add_tier_alarms
from lakehub.stacks.network import (
    BUSINESS_DAYS,
    BUSINESS_HOURS_END,
    BUSINESS_HOURS_START,
    HUB_START_MINUTE,
    HUB_STOP_MINUTE,
    SCHEDULE_TIMEZONE,
    add_schedule_conditions_and_rules,
    add_schedule_params,
)
from lakehub.stacks.policies import (
    S3_READ,
    S3_WRITE,
    bucket_arn,
    homes_client_statements,
    homes_file_system_arn,
    hub_runtime_statements,
    inline_policy,
    same_account,
    service_trust,
    tier_notebook_statements,
)
from lakehub.stacks.builder import add_checkov_skip
from lakehub.settings import FARGATE_SIZES, Settings
from lakehub_hub import contract

USER_SERVER_PORT = 8888
USER_SERVER_HOME = names.IMAGE_USER_HOMES["1000"]  # hub_images/Dockerfile: useradd --uid 1000 --home-dir
HUB_API_PORT = 8081
DEFAULT_IDLE_TIMEOUT = 3600
# The ServerMode parameter's choices: the contract's modes, its default first.
SERVER_MODE_CHOICES = sorted(contract.SERVER_MODES, key=lambda mode: mode != contract.DEFAULT_SERVER_MODE)

# Platform values the tier reads from SSM (parameter name -> label).
TIER_SSM_PARAMS = {
    names.VPC_ID: "VPC",
    names.VPC_CIDR: "VPC CIDR block",
    names.PRIVATE_SUBNET_1_ID: "Private subnet 1",
    names.PRIVATE_SUBNET_2_ID: "Private subnet 2",
    names.CLUSTER_NAME: "ECS cluster",
    names.HTTPS_LISTENER_ARN: "HTTPS listener",
    names.LOAD_BALANCER_DNS_NAME: "Load balancer DNS name",
    names.LOAD_BALANCER_HOSTED_ZONE_ID: "Load balancer hosted zone",
    names.TASK_SECURITY_GROUP_ID: "Hub task security group",
    names.LISTENER_PRIORITY_FUNCTION_ARN: "Listener priority function",
    names.SECRET_ARN_FUNCTION_ARN: "Secret ARN lookup function",
    names.IMAGE_DIGEST_FUNCTION_ARN: "Image digest function",
    names.LOG_GROUP_NAME: "Task log group",
    names.NOTEBOOK_BUCKET_NAME: "Notebook bucket",
    names.DATA_BUCKET_NAME: "Data-lake bucket",
    names.DATA_KMS_KEY_ARN: "Data-lake KMS key",
    names.SEED_FUNCTION_ARN: "Seeding function",
    names.IMAGE_REPOSITORY_URI: "Hub image repository",
    names.AUTH_MODE: "Sign-in mode",
    names.USER_POOL_ID: "Cognito user pool",
    names.USER_POOL_DOMAIN_URL: "Cognito sign-in URL",
    names.DOMAIN_NAME: "Domain name",
    names.HOSTED_ZONE_ID: "Hosted zone",
    names.HOMES_FILE_SYSTEM_ID: "Homes file system",
    names.HOMES_SECURITY_GROUP_ID: "Homes security group",
    # Observe (issue 18): the tier's alarms notify the platform's topic; the hub-unhealthy alarm
    # names the load balancer.
    names.ALARM_TOPIC_ARN: "Alarm topic",
    names.LOAD_BALANCER_FULL_NAME: "Load balancer full name",
}

PLATFORM_GROUP = "Platform values (SSM parameter names; keep the defaults)"

# Sign-in settings for the oidc and ldap modes (cognito needs none: the stack makes a client).
OIDC_ISSUER = "OidcIssuer"
OAUTH_CLIENT_ID = "OAuthClientId"
LDAP_URL = "LdapUrl"
LDAP_BIND_DN = "LdapBindDn"
LDAP_USER_SEARCH_BASE = "LdapUserSearchBase"
LDAP_GROUP_SEARCH_BASE = "LdapGroupSearchBase"
# The platform team sets these once on the main stack; Service Catalog copies pin each to the
# platform's value (lakehub.stacks.catalog), so no launch chooses an identity provider.
SIGN_IN_PARAMS = (OIDC_ISSUER, OAUTH_CLIENT_ID, LDAP_URL, LDAP_BIND_DN, LDAP_USER_SEARCH_BASE, LDAP_GROUP_SEARCH_BASE)

# Secrets of the sign-in modes: never a parameter. The platform team creates them, one per tier,
# at fixed names in the tier's namespace <platform>/<tier>/ (docs/SELF_SERVICE.md); everything a
# tier or an on-demand hub reads lives under that namespace.
TIER_SECRET_PATH = "${PlatformName}/${TierName}"
OIDC_CLIENT_SECRET = "oidc_client_secret"
LDAP_BIND_PASSWORD = "ldap_bind_password"
# ECS takes them by full ARN (name + "-" + 6 random characters, docs/AWS_NOTES.md): the tier looks
# each up with the platform's Custom::SecretArn (lambdas/secret_arn), only in the mode that uses it.
# secret leaf -> (logical id of the lookup, its condition)
SECRET_LOOKUPS = {
    OIDC_CLIENT_SECRET: ("OidcClientSecretArn", "UseOidc"),
    LDAP_BIND_PASSWORD: ("LdapBindPasswordArn", "UseLdap"),
}

TASK_CPU = "TaskCpu"
TASK_MEMORY = "TaskMemory"
MIN_TASKS = "MinTasks"
MAX_TASKS = "MaxTasks"
USE_SPOT = "UseSpot"
USER_SPOT = "UserServersOnSpot"
LISTENER_PRIORITY = names.LISTENER_PRIORITY
IDLE_TIMEOUT = "IdleTimeoutSeconds"
USER_PROFILES = "UserServerSizes"


def add_parameters(b: Builder, settings: Settings) -> None:
    b.use(joined_platform_name(settings, "Tier", "Name of the lakehub platform this tier joins"))
    b.param(
        names.TIER_NAME,
        "Tier",
        "Tier name",
        "Short name of the tier, for example pii or nonpii",
        AllowedPattern=TIER_NAME_PATTERN,
        ConstraintDescription="1-16 lower-case letters or digits, starting with a letter",
    )
    b.param(
        names.TIER_DATA_PREFIXES,
        "Tier",
        "Data-lake prefixes",
        "Comma-separated key prefixes (at most 4) of the data lake this tier may reach, each ending in '/' (for example pii/)",
        type="CommaDelimitedList",
        # No '*': in the tier role's ARNs it would be a wildcard reaching other tiers' prefixes.
        AllowedPattern=KEY_PREFIX_PATTERN,
        ConstraintDescription="key prefixes ending in '/' (letters, digits and !_.'()- ; no '*'), separated by commas",
    )
    b.choice(
        names.TIER_DATA_ACCESS,
        "Tier",
        "Data access",
        "read-only: users read the prefixes; read-write: they may also write and delete there",
        ["read-only", "read-write"],
        "read-only",
    )
    b.param(
        names.TIER_ALLOWED_GROUPS,
        "Tier",
        "Allowed sign-in groups",
        "Comma-separated groups (Cognito, OIDC groups claim or LDAP) whose members may sign in to this tier",
        type="CommaDelimitedList",
        AllowedPattern=GROUP_NAME_PATTERN,
        ConstraintDescription="group names of letters, digits and _.@+- separated by commas",
    )
    b.param(
        names.TIER_HOST_NAME,
        "Tier",
        "Host name",
        "Host label of the tier: users open https://<host>.<domain>",
        AllowedPattern=HOST_LABEL_PATTERN,
        ConstraintDescription="a DNS label: lower-case letters, digits and hyphens",
    )
    b.param(
        names.TIER_SERVER_MODE,
        "Capacity",
        "Server mode",
        "per-user: a small hub starts one Fargate task per user (cost follows use); shared: users' servers run inside the hub task(s)",
        Default=contract.DEFAULT_SERVER_MODE,
        AllowedValues=SERVER_MODE_CHOICES,
        ConstraintDescription=" or ".join(SERVER_MODE_CHOICES),
    )
    b.param(
        TASK_CPU,
        "Capacity",
        "Hub task CPU units",
        "CPU of each hub task (1024 = 1 vCPU); in shared mode the whole team's servers share it",
        Default="256",
        AllowedValues=[str(c) for c in FARGATE_SIZES],
        ConstraintDescription="a Fargate CPU size up to 4096",
    )
    all_memory = sorted({m for ms in FARGATE_SIZES.values() for m in ms})
    b.param(
        TASK_MEMORY,
        "Capacity",
        "Hub task memory (MiB)",
        "Memory of each hub task; must be valid for the CPU size (Fargate task sizes)",
        Default="512",
        AllowedValues=[str(m) for m in all_memory],
        ConstraintDescription="a Fargate memory size up to 30720 MiB",
    )
    b.number(
        MIN_TASKS,
        "Capacity",
        "Minimum hub tasks",
        "Fewest hub tasks (0 stops the tier; per-user mode runs exactly one)",
        1,
        0,
        20,
    )
    b.number(
        MAX_TASKS,
        "Capacity",
        "Maximum hub tasks",
        "Most hub tasks in shared mode (each is an independent hub; sessions stick to one)",
        1,
        1,
        20,
    )
    b.choice(
        USE_SPOT,
        "Capacity",
        "Hub on Fargate Spot",
        "Run hub tasks on Fargate Spot (about 70% cheaper; may be interrupted with two minutes' notice)",
        ["true", "false"],
        "false",
    )
    b.choice(
        USER_SPOT,
        "Capacity",
        "User servers on Fargate Spot",
        "Per-user mode: start users' servers on Fargate Spot, falling back to on-demand when Spot has no capacity",
        ["true", "false"],
        "true",
    )
    b.param(
        USER_PROFILES,
        "Capacity",
        "User server sizes",
        "Per-user mode: sizes offered at spawn, as name:cpu:memory items separated by commas",
        Default=contract.format_profiles(contract.DEFAULT_PROFILES),
        AllowedPattern=r"^[a-z0-9-]+:\d+:\d+(,[a-z0-9-]+:\d+:\d+)*$",
        ConstraintDescription="name:cpu:memory items separated by commas, e.g. small:1024:4096",
    )
    b.number(
        IDLE_TIMEOUT,
        "Capacity",
        "Idle timeout (seconds)",
        "Servers idle this long are stopped by the idle culler",
        DEFAULT_IDLE_TIMEOUT,
        300,
        86400,
        unit="seconds",
    )
    add_schedule_params(b, "the tier's hub (and in per-user mode its users' servers) stops")
    b.use(IMAGE_TAG, group="Capacity")
    b.use(LISTENER_PRIORITY_PARAM)

    g = "Sign-in (oidc and ldap modes only)"
    b.param(
        OIDC_ISSUER,
        g,
        "OIDC issuer URL",
        "oidc mode: issuer URL of your OpenID Connect provider",
        Default="",
        AllowedPattern=r"^$|^https://\S+$",
        ConstraintDescription="empty, or an https URL",
    )
    b.param(
        OAUTH_CLIENT_ID,
        g,
        "OIDC client ID",
        "oidc mode: client ID registered for https://<host>.<domain>/hub/oauth_callback",
        Default="",
        AllowedPattern=r"^[\w.@:/-]*$",
        ConstraintDescription="a client ID",
    )
    # ldaps:// only: the hub tasks' and the NAT's security groups open 636 (LDAPS), not 389.
    b.param(
        LDAP_URL,
        g,
        "LDAP URL",
        "ldap mode: ldaps://host[:636] of your directory (LDAPS only: port 636 is the one the security groups open)",
        Default="",
        AllowedPattern=r"^$|^ldaps://[A-Za-z0-9.-]+(:636)?$",
        ConstraintDescription="empty, or ldaps://host[:636]",
    )
    b.param(
        LDAP_BIND_DN,
        g,
        "LDAP bind DN",
        "ldap mode: DN of the service account that searches users and groups",
        Default="",
        AllowedPattern=ONE_LINE_PATTERN,
        ConstraintDescription="a DN",
    )
    b.param(
        LDAP_USER_SEARCH_BASE,
        g,
        "LDAP user search base",
        "ldap mode: where users are searched, e.g. ou=people,dc=example,dc=com",
        Default="",
        AllowedPattern=ONE_LINE_PATTERN,
        ConstraintDescription="a DN",
    )
    b.param(
        LDAP_GROUP_SEARCH_BASE,
        g,
        "LDAP group search base",
        "ldap mode: where groups are searched, e.g. ou=groups,dc=example,dc=com",
        Default="",
        AllowedPattern=ONE_LINE_PATTERN,
        ConstraintDescription="a DN",
    )

    for name, label in TIER_SSM_PARAMS.items():
        b.param(
            name,
            PLATFORM_GROUP,
            label,
            f"SSM parameter holding the platform's {label.lower()}",
            type="AWS::SSM::Parameter::Value<String>",
            Default=names.ssm_name(settings.platform_name, name),
        )


def add_conditions(b: Builder) -> None:
    t = b.t
    t.add_condition("IsPerUser", Equals(Ref(names.TIER_SERVER_MODE), contract.PER_USER))
    t.add_condition("IsShared", Equals(Ref(names.TIER_SERVER_MODE), contract.SHARED))
    for i in range(1, MAX_DATA_PREFIXES):
        t.add_condition(f"HasDataPrefix{i + 1}", Not(Equals(data_prefix(i), "")))
    t.add_condition("IsReadWrite", Equals(Ref(names.TIER_DATA_ACCESS), "read-write"))
    t.add_condition("HasKmsKey", Not(Equals(Ref(names.DATA_KMS_KEY_ARN), "none")))
    t.add_condition("UseCognito", Equals(Ref(names.AUTH_MODE), "cognito"))
    t.add_condition("UseOidc", Equals(Ref(names.AUTH_MODE), "oidc"))
    t.add_condition("UseLdap", Equals(Ref(names.AUTH_MODE), "ldap"))
    t.add_condition("UseOAuth", Or(Equals(Ref(names.AUTH_MODE), "cognito"), Equals(Ref(names.AUTH_MODE), "oidc")))
    t.add_condition("AutoPriority", Equals(Ref(LISTENER_PRIORITY), 0))
    t.add_condition("HubOnSpot", Equals(Ref(USE_SPOT), "true"))
    t.add_condition("Sticky", Not(Equals(Ref(MAX_TASKS), 1)))
    t.add_condition(
        "ScaleOnCpu", And(Not(Equals(Ref(names.TIER_SERVER_MODE), contract.PER_USER)), Not(Equals(Ref(MAX_TASKS), 1)))
    )


def add_rules(b: Builder) -> None:
    """Template rules: only valid Fargate CPU/memory pairs; sign-in settings for the mode."""
    rules = {}
    for cpu, memories in FARGATE_SIZES.items():
        rules[f"ValidMemoryFor{cpu}Cpu"] = {
            "RuleCondition": {"Fn::Equals": [{"Ref": TASK_CPU}, str(cpu)]},
            "Assertions": [
                {
                    "Assert": {"Fn::Contains": [[str(m) for m in memories], {"Ref": TASK_MEMORY}]},
                    "AssertDescription": f"With {cpu} CPU units, memory must be one of {memories[0]}-{memories[-1]} MiB (Fargate task sizes)",
                }
            ],
        }
    rules["PerUserRunsOneHub"] = {
        "RuleCondition": {"Fn::Equals": [{"Ref": names.TIER_SERVER_MODE}, contract.PER_USER]},
        "Assertions": [
            {
                "Assert": {"Fn::Equals": [{"Ref": MAX_TASKS}, "1"]},
                "AssertDescription": "A per-user tier runs exactly one hub task: set MaxTasks to 1, or ServerMode to shared",
            }
        ],
    }
    for name, rule in rules.items():
        b.t.add_rule(name, rule)


def tier_role_arn() -> Sub:
    """The tier role's ARN as a string (its name is fixed): what the hub role may assume, without
    a reference that would make the two roles depend on each other."""
    return Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${PlatformName}-${TierName}-tier")


def tier_role_trust() -> PolicyDocument:
    """Only the tier's hub role, and only for a named user: the hub must set a SourceIdentity
    (CloudTrail records it on every call of the session, S3 data events included) and the
    `lakehub-user` session tag (the user's own folder in the role's policy), and no other tag.
    AssumeRole with SourceIdentity or Tags fails unless the trust policy allows
    sts:SetSourceIdentity / sts:TagSession (docs/AWS_NOTES.md; rule
    data-roles-trust-only-named-sessions). The reference to HubRole also orders the two: IAM
    refuses a trust policy naming a role that does not exist yet."""
    return PolicyDocument(
        Version="2012-10-17",
        Statement=[
            Statement(
                Sid="HubAssumesForOneUser",
                Effect=Allow,
                Principal=Principal("AWS", GetAtt("HubRole", "Arn")),
                Action=[AssumeRole, SetSourceIdentity, TagSession],
                Condition=Condition(
                    [
                        Null({"sts:SourceIdentity": "false", f"aws:RequestTag/{names.USER_SESSION_TAG}": "false"}),
                        ForAllValuesStringEquals("aws:TagKeys", [names.USER_SESSION_TAG]),
                    ]
                ),
            )
        ],
    )


def add_tier_role(b: Builder) -> iam.Role:
    """The tier role, the *data role*: the tier's data-lake prefixes, its shared notebook folder
    and the session's own user folder, the lake's KMS key. No task runs with it: the hub assumes
    it per user (lakehub_hub.credentials) and each user server's credential relay serves that
    session to the user's kernels (docs/SECURITY.md, "Per-user scope")."""
    data_bucket = Ref(names.DATA_BUCKET_NAME)
    notebook_bucket = Ref(names.NOTEBOOK_BUCKET_NAME)
    # IAM needs one ARN per prefix and CloudFormation has no loop: the list is padded to
    # MAX_DATA_PREFIXES and the empty slots dropped by conditions (HasDataPrefix2...).
    data_objects = [
        _if_prefix(i, Sub("arn:${AWS::Partition}:s3:::${B}/${P}*", B=data_bucket, P=data_prefix(i)))
        for i in range(MAX_DATA_PREFIXES)
    ]
    list_patterns = []
    for i in range(MAX_DATA_PREFIXES):
        list_patterns += [_if_prefix(i, data_prefix(i)), _if_prefix(i, Sub("${P}*", P=data_prefix(i)))]
    statements = [
        Statement(
            Sid="ListDataPrefixes",
            Effect=Allow,
            Action=[awacs_s3.ListBucket],
            Resource=[bucket_arn(data_bucket)],
            Condition=Condition(StringLike("s3:prefix", list_patterns)),
        ),
        Statement(Sid="ReadData", Effect=Allow, Action=S3_READ, Resource=data_objects),
        *tier_notebook_statements(notebook_bucket),
    ]
    policies = [
        inline_policy("tier-data", statements),
        If(
            "IsReadWrite",
            inline_policy("tier-data-write", [Statement(Sid="WriteData", Effect=Allow, Action=S3_WRITE, Resource=data_objects)]),
            Ref("AWS::NoValue"),
        ),
        If(
            "HasKmsKey",
            inline_policy(
                "tier-data-key",
                [
                    Statement(
                        Sid="UseDataLakeKey",
                        Effect=Allow,
                        Action=[
                            awacs_kms_action("Decrypt"),
                            awacs_kms_action("DescribeKey"),
                            awacs_kms_action("GenerateDataKey"),
                        ],
                        Resource=[Ref(names.DATA_KMS_KEY_ARN)],
                        Condition=Condition(StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com"))),
                    )
                ],
            ),
            Ref("AWS::NoValue"),
        ),
    ]
    return b.add(
        iam.Role(
            "TierRole",
            RoleName=Sub("${PlatformName}-${TierName}-tier"),
            Description=Sub(
                "lakehub tier ${TierName}: its data-lake prefixes, shared folder and the session user's folder; assumed per user by the hub"
            ),
            AssumeRolePolicyDocument=tier_role_trust(),
            # Role chaining (hub task role -> tier role) caps a session at one hour anyway.
            MaxSessionDuration=3600,
            Policies=policies,
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )


MAX_DATA_PREFIXES = 4


def data_prefix(i: int):
    """The i-th data-lake prefix of the tier, or "" past the end of the list."""
    padded = Split(",", Join(",", [Join(",", Ref(names.TIER_DATA_PREFIXES))] + [""] * (MAX_DATA_PREFIXES - 1)))
    return Select(i, padded)


def _if_prefix(i: int, value):
    return value if i == 0 else If(f"HasDataPrefix{i + 1}", value, Ref("AWS::NoValue"))


def awacs_kms_action(name: str):
    from awacs import kms

    return getattr(kms, name)


# The tier's own sign-in secrets: one JSON secret (one is $0.40 a month, docs/COST.md), read by
# ECS key by key (`<ARN>:<json-key>::`, docs/AWS_NOTES.md).
HUB_SECRET_NAME = "hub-secret"
COOKIE_SECRET_KEY = "cookie_secret"
OAUTH_CLIENT_SECRET_KEY = "oauth_client_secret"


def add_hub_secrets(
    b: Builder, secret_path: str, what: str, reader: str, client_name: Sub, callbacks, logouts, tags, one_secret: bool = False
):
    """A hub's sign-in secrets: its generated cookie secret and, in cognito mode, its app client
    on the platform's user pool with the client secret kept in Secrets Manager. Shared by the
    tier (ECS) and the on-demand hub (EC2). `secret_path` is the Sub prefix of the secrets' names.
    `one_secret` (the tier): both in one JSON secret, HubSecret, returned for both."""
    skip = f"Encrypted with the account's aws/secretsmanager key. Readers: {reader} (ReadHubSecrets), the product's launch role (CloudFormation's secret handlers; Service Catalog assumes it only to run this template) and account admins; no user server's role. It never leaves the account, so a customer-managed key (for cross-account sharing) adds cost only"
    if one_secret:
        client = add_hub_client(b, client_name, callbacks, logouts)
        secret = b.add(
            secretsmanager.Secret(
                "HubSecret",
                Name=Sub(secret_path + "/" + HUB_SECRET_NAME),
                Description=f"{what} sign-in secrets: {COOKIE_SECRET_KEY} (signs users' sessions), {OAUTH_CLIENT_SECRET_KEY} (cognito: its app client's)",
                GenerateSecretString=secretsmanager.GenerateSecretString(
                    PasswordLength=64,
                    ExcludePunctuation=True,
                    GenerateStringKey=COOKIE_SECRET_KEY,
                    # Cognito's client secrets are letters and digits: safe inside a JSON string.
                    SecretStringTemplate=If(
                        "UseCognito",
                        Sub('{"' + OAUTH_CLIENT_SECRET_KEY + '":"${Secret}"}', Secret=GetAtt(client, "ClientSecret")),
                        "{}",
                    ),
                ),
                Tags=tags,
            )
        )
        add_checkov_skip(secret, "CKV_AWS_149", skip)
        return secret, client, secret
    cookie = b.add(
        secretsmanager.Secret(
            "CookieSecret",
            Name=Sub(secret_path + "/cookie-secret"),
            Description=f"{what} cookie secret (signs users' sessions)",
            GenerateSecretString=secretsmanager.GenerateSecretString(PasswordLength=64, ExcludePunctuation=True),
            Tags=tags,
        )
    )
    add_checkov_skip(cookie, "CKV_AWS_149", skip)
    client = add_hub_client(b, client_name, callbacks, logouts)
    client_secret = b.add(
        secretsmanager.Secret(
            "CognitoClientSecret",
            Condition="UseCognito",
            Name=Sub(secret_path + "/cognito-client-secret"),
            Description=f"{what}: its Cognito app client secret",
            SecretString=GetAtt(client, "ClientSecret"),
            Tags=tags,
        )
    )
    return cookie, client, client_secret


def add_hub_client(b: Builder, client_name: Sub, callbacks, logouts):
    """cognito mode: the hub's app client on the platform's user pool."""
    return b.add(
        cognito.UserPoolClient(
            "UserPoolClient",
            Condition="UseCognito",
            UserPoolId=Ref(names.USER_POOL_ID),
            ClientName=client_name,
            GenerateSecret=True,
            AllowedOAuthFlowsUserPoolClient=True,
            AllowedOAuthFlows=["code"],
            AllowedOAuthScopes=["openid", "email", "profile"],
            CallbackURLs=callbacks,
            LogoutURLs=logouts,
            SupportedIdentityProviders=["COGNITO"],
            PreventUserExistenceErrors="ENABLED",
            EnableTokenRevocation=True,
            AccessTokenValidity=1,
            IdTokenValidity=1,
            # The hub re-checks group membership with the refresh token (lakehub_hub.membership):
            # a session lasts as long as it, like the hub's API tokens (7 days), not 1 day.
            RefreshTokenValidity=7,
            TokenValidityUnits=cognito.TokenValidityUnits(AccessToken="hours", IdToken="hours", RefreshToken="days"),
        )
    )


def add_secrets(b: Builder):
    cookie, client, client_secret = add_hub_secrets(
        b,
        "${PlatformName}/${TierName}",
        "lakehub tier hub",
        "the tier's execution role",
        Sub("${PlatformName}-${TierName}"),
        [Sub("https://${HostName}.${DomainName}/hub/oauth_callback")],
        # Where the hub sends Cognito's /logout back to (logout_uri, jupyterhub_config.py): Cognito
        # redirects only to a registered sign-out URL (rule cognito-logout-urls-registered).
        [Sub("https://${HostName}.${DomainName}" + names.HUB_LOGOUT_RETURN_PATH)],
        platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        one_secret=True,
    )
    b.add(
        cognito.UserPoolGroup(
            "SignInGroup",
            Condition="UseCognito",
            UserPoolId=Ref(names.USER_POOL_ID),
            GroupName=Select(0, Ref(names.TIER_ALLOWED_GROUPS)),
            Description=Sub("Members may sign in to the lakehub ${TierName} tier"),
        )
    )
    return cookie, client, client_secret


def platform_secret_name(leaf: str, path: str = TIER_SECRET_PATH) -> Sub:
    """Name of a sign-in secret the platform team keeps in the tier's namespace."""
    return Sub(path + "/" + leaf)


def platform_secret_arn(leaf: str, path: str = TIER_SECRET_PATH) -> Sub:
    """IAM resource of that secret: Secrets Manager appends '-' and 6 random characters to its name."""
    return Sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:" + path + "/" + leaf + "-??????")


def add_platform_secret_lookups(b: Builder) -> dict:
    """The full ARN of each sign-in secret of the platform team for this tier, looked up by its
    fixed name (Custom::SecretArn), under the condition of the mode that reads it."""
    return {
        leaf: b.add(
            custom_resource(
                logical_id,
                "Custom::SecretArn",
                Condition=condition,
                ServiceToken=Ref(names.SECRET_ARN_FUNCTION_ARN),
                SecretName=platform_secret_name(leaf),
            )
        )
        for leaf, (logical_id, condition) in SECRET_LOOKUPS.items()
    }


def platform_secret_value_from(leaf: str) -> GetAtt:
    """The full ARN of that secret (add_platform_secret_lookups): what ECS Secrets ValueFrom and
    the execution role take. Use it only under the lookup's condition."""
    return GetAtt(SECRET_LOOKUPS[leaf][0], "Arn")


def spawn_env_objects():
    """The tier's per-spawn environment files: spawn-env/<tier>/ in the notebook bucket."""
    from lakehub.stacks.policies import objects_arn

    return objects_arn(Ref(names.NOTEBOOK_BUCKET_NAME), Sub(names.SPAWN_ENV_ROOT + "/${TierName}/"))


def hub_state_statements() -> list[Statement]:
    """Litestream's replica of the hub database (per-user mode): list, read, write and delete
    under hub-state/<tier>/ of the notebook bucket, nothing else (docs/AWS_NOTES.md)."""
    from lakehub.stacks.policies import objects_arn

    prefix = Sub(names.HUB_STATE_ROOT + "/${TierName}/")
    return [
        Statement(
            Sid="ListHubState",
            Effect=Allow,
            Action=[awacs_s3.ListBucket],
            Resource=[bucket_arn(Ref(names.NOTEBOOK_BUCKET_NAME))],
            Condition=Condition(StringLike("s3:prefix", [Sub(names.HUB_STATE_ROOT + "/${TierName}/*")])),
        ),
        Statement(
            Sid="KeepHubState",
            Effect=Allow,
            Action=[awacs_s3.GetObject, awacs_s3.PutObject, awacs_s3.DeleteObject],
            Resource=[objects_arn(Ref(names.NOTEBOOK_BUCKET_NAME), prefix)],
        ),
    ]


def spawn_env_read_statements() -> list[Statement]:
    """What ECS needs to read a task's environmentFiles with the execution role: s3:GetObject on
    the objects and s3:GetBucketLocation on their bucket (docs/AWS_NOTES.md)."""
    return [
        Statement(Sid="ReadSpawnEnvironment", Effect=Allow, Action=[awacs_s3.GetObject], Resource=[spawn_env_objects()]),
        Statement(
            Sid="LocateSpawnEnvironmentBucket",
            Effect=Allow,
            Action=[awacs_s3.GetBucketLocation],
            Resource=[bucket_arn(Ref(names.NOTEBOOK_BUCKET_NAME))],
        ),
    ]


def add_execution_role(b: Builder, cookie, client_secret) -> iam.Role:
    secret_arns = [
        Ref(cookie),  # HubSecret: the cookie secret and, in cognito mode, the client secret
        # The platform team's sign-in secret for this tier: its namespace only, never a name
        # a launcher gives.
        If("UseOidc", platform_secret_value_from(OIDC_CLIENT_SECRET), Ref("AWS::NoValue")),
        If("UseLdap", platform_secret_value_from(LDAP_BIND_PASSWORD), Ref("AWS::NoValue")),
    ]
    return b.add(
        iam.Role(
            "ExecutionRole",
            Description=Sub("lakehub tier ${TierName}: pull the hub image, write logs, read the tier's secrets"),
            AssumeRolePolicyDocument=service_trust("ecs-tasks.amazonaws.com", same_account()),
            Policies=[inline_policy("task-execution", hub_runtime_statements(secret_arns) + spawn_env_read_statements())],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )


def add_security_groups(b: Builder):
    hub_sg = b.add(
        ec2.SecurityGroup(
            "HubSecurityGroup",
            GroupDescription="lakehub tier hub tasks (this tier only)",
            VpcId=Ref(names.VPC_ID),
            SecurityGroupEgress=[
                port_rule(USER_SERVER_PORT, "to users' servers (per-user mode)", cidr=Ref(names.VPC_CIDR)),
            ],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME)), ("Name", Sub("${PlatformName}-${TierName}-hub"))),
        )
    )
    user_sg = b.add(
        ec2.SecurityGroup(
            "UserServerSecurityGroup",
            Condition="IsPerUser",
            GroupDescription="lakehub per-user servers: reachable from the hub of the tier only",
            VpcId=Ref(names.VPC_ID),
            SecurityGroupIngress=[port_rule(USER_SERVER_PORT, "single-user server port from the tier's hub", source=Ref(hub_sg))],
            SecurityGroupEgress=[
                port_rule(443, "HTTPS: S3, AWS APIs, package indexes", cidr="0.0.0.0/0"),
                port_rule(HUB_API_PORT, "to the hub API", cidr=Ref(names.VPC_CIDR)),
                port_rule(53, "DNS (VPC resolver)", cidr=Ref(names.VPC_CIDR), protocol="udp"),
            ],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME)), ("Name", Sub("${PlatformName}-${TierName}-users"))),
        )
    )
    b.add(
        ec2.SecurityGroupIngress(
            "HubApiFromUserServers",
            Condition="IsPerUser",
            GroupId=Ref(hub_sg),
            IpProtocol="tcp",
            FromPort=HUB_API_PORT,
            ToPort=HUB_API_PORT,
            SourceSecurityGroupId=Ref(user_sg),
            Description="users' servers report activity to the hub API",
        )
    )
    return hub_sg, user_sg


HUB_DNS_NAMESPACE = "HubNamespace"
HUB_DISCOVERY_SERVICE = "HubDiscovery"
HUB_DNS_LABEL = "hub"


def hub_namespace_name() -> Sub:
    """Private DNS namespace of a per-user tier's hub (Cloud Map): hub.<tier>.<platform>.lakehub.internal."""
    return Sub("${TierName}.${PlatformName}.lakehub.internal")


def hub_connect_url() -> Sub:
    """How users' tasks reach the hub API: a name that Cloud Map points at whichever hub task
    runs now (a replaced task has a new IP; the name follows it)."""
    return Sub(f"http://{HUB_DNS_LABEL}.${{N}}:{HUB_API_PORT}", N=hub_namespace_name())


def add_hub_discovery(b: Builder):
    """Per-user mode: the hub service registers its task's IP as an A record in a private DNS
    namespace of the VPC (ECS does it at each task start and removes it at stop), so users'
    servers, which keep the hub API address they were started with, reach a replacement hub."""
    namespace = b.add(
        servicediscovery.PrivateDnsNamespace(
            HUB_DNS_NAMESPACE,
            Condition="IsPerUser",
            Name=hub_namespace_name(),
            Vpc=Ref(names.VPC_ID),
            Description=Sub("lakehub tier ${TierName}: the hub's address for users' servers"),
        )
    )
    return b.add(
        servicediscovery.Service(
            HUB_DISCOVERY_SERVICE,
            Condition="IsPerUser",
            Name=HUB_DNS_LABEL,
            NamespaceId=Ref(namespace),
            DnsConfig=servicediscovery.DnsConfig(
                DnsRecords=[servicediscovery.DnsRecord(Type="A", TTL=10)],
                RoutingPolicy="MULTIVALUE",
            ),
            # ECS reports the task's health (its container health check) to Cloud Map.
            HealthCheckCustomConfig=servicediscovery.HealthCheckCustomConfig(FailureThreshold=1),
        )
    )


def hub_environment(client) -> list:
    """Environment of the hub container: names and meaning in docs/HUB_ENV.md (lakehub_hub.contract). No secret here."""
    env = contract.hub_environment(
        tier=Ref(names.TIER_NAME),
        # The Platform dimension of the hub's CloudWatch metrics (lakehub_hub.metrics, on with it).
        platform=Ref(names.PLATFORM_NAME),
        auth_mode=Ref(names.AUTH_MODE),
        allowed_groups=Join(",", Ref(names.TIER_ALLOWED_GROUPS)),
        notebook_bucket=Ref(names.NOTEBOOK_BUCKET_NAME),
        notebook_prefix=Sub(names.NOTEBOOK_TIERS_ROOT + "/${TierName}"),
        public_url=Sub("https://${HostName}.${DomainName}"),
        data_bucket=Ref(names.DATA_BUCKET_NAME),
        data_prefixes=Join(",", Ref(names.TIER_DATA_PREFIXES)),
        hub_port=names.HUB_PORT,
        idle_timeout=Ref(IDLE_TIMEOUT),
        server_mode=Ref(names.TIER_SERVER_MODE),
        # The data role the hub assumes per user and serves to users' servers (lakehub_hub.credentials).
        tier_role_arn=tier_role_arn(),
        aws_region=Ref("AWS::Region"),
        cognito_domain=Ref(names.USER_POOL_DOMAIN_URL),
        # the platform's user pool signs users in by email (its sub is a UUID)
        cognito_username_claim="email",
        oauth_client_id=If("UseCognito", Ref(client), Ref(OAUTH_CLIENT_ID)),
        oidc_issuer=If(
            "UseCognito",
            Sub("https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPoolId}"),
            Ref(OIDC_ISSUER),
        ),
        ldap_url=Ref(LDAP_URL),
        ldap_bind_dn=Ref(LDAP_BIND_DN),
        ldap_user_search_base=Ref(LDAP_USER_SEARCH_BASE),
        ldap_group_search_base=Ref(LDAP_GROUP_SEARCH_BASE),
        # per-user mode: what the Fargate spawner needs
        cluster=Ref(names.CLUSTER_NAME),
        user_task_definition=Sub("${PlatformName}-${TierName}-user"),
        user_subnets=Join(",", [Ref(names.PRIVATE_SUBNET_1_ID), Ref(names.PRIVATE_SUBNET_2_ID)]),
        user_security_groups=If("IsPerUser", Ref("UserServerSecurityGroup"), ""),
        user_capacity=If("UserSpotOn", "FARGATE_SPOT", "FARGATE"),
        user_profiles=Ref(USER_PROFILES),
        user_server_port=USER_SERVER_PORT,
        hub_api_port=HUB_API_PORT,
        # A name, not the task's IP: users' servers outlive the hub task (add_hub_discovery).
        hub_connect_url=If("IsPerUser", hub_connect_url(), ""),
        spawn_env_prefix=Sub(names.SPAWN_ENV_ROOT + "/${TierName}/"),
        # Per-user mode: the hub's database outlives the hub task (Litestream replica, restored by
        # the next task: lakehub_hub.hub_state), so users' servers outlive it too. Shared mode
        # has none: its servers live in the task, and several shared hub tasks would share one replica.
        hub_state_bucket=If("IsPerUser", Ref(names.NOTEBOOK_BUCKET_NAME), ""),
        hub_state_prefix=Sub(names.HUB_STATE_ROOT + "/${TierName}/"),
        # Homes (issue 15): shared mode mounts the tier's access point at /home; per-user mode
        # makes one access point per user on this file system (lakehub_hub.fargate).
        home_root=names.HOMES_MOUNT,
        homes_file_system_id=Ref(names.HOMES_FILE_SYSTEM_ID),
    )
    return [ecs.Environment(Name=k, Value=v) for k, v in env.items()]


def json_key_value_from(secret, key: str) -> Sub:
    """ECS `ValueFrom` of one key of a JSON secret: the secret's full ARN (its Ref), then
    `:json-key:version-stage:version-id` with the current version (docs/AWS_NOTES.md)."""
    return Sub("${" + secret.title + "}:" + key + "::")


def hub_secrets(cookie, client_secret) -> list:
    return [
        ecs.Secret(Name=contract.ENV_COOKIE_SECRET, ValueFrom=json_key_value_from(cookie, COOKIE_SECRET_KEY)),
        If(
            "UseOAuth",
            # cognito: the stack's app client secret (a key of HubSecret); oidc: the platform team's, looked up.
            ecs.Secret(
                Name=contract.ENV_OAUTH_CLIENT_SECRET,
                ValueFrom=If(
                    "UseCognito",
                    json_key_value_from(client_secret, OAUTH_CLIENT_SECRET_KEY),
                    platform_secret_value_from(OIDC_CLIENT_SECRET),
                ),
            ),
            Ref("AWS::NoValue"),
        ),
        If(
            "UseLdap",
            ecs.Secret(Name=contract.ENV_LDAP_BIND_PASSWORD, ValueFrom=platform_secret_value_from(LDAP_BIND_PASSWORD)),
            Ref("AWS::NoValue"),
        ),
    ]


def log_config(stream_prefix: str) -> ecs.LogConfiguration:
    return ecs.LogConfiguration(
        LogDriver="awslogs",
        Options={
            "awslogs-group": Ref(names.LOG_GROUP_NAME),
            "awslogs-region": Ref("AWS::Region"),
            "awslogs-stream-prefix": Sub("${TierName}-" + stream_prefix),
        },
    )


def add_user_task_role(b: Builder) -> iam.Role:
    """Per-user mode: the task role of users' server tasks. No data access at all: a user's
    kernels get their data through the credential relay (a per-user session of the tier role),
    and the relay takes this role's container-credential variables out of the server's
    environment (botocore would prefer them)."""
    return b.add(
        iam.Role(
            "UserTaskRole",
            Condition="IsPerUser",
            Description=Sub("lakehub tier ${TierName} users' server tasks: no data (data comes per user through the hub)"),
            AssumeRolePolicyDocument=service_trust("ecs-tasks.amazonaws.com", same_account()),
            MaxSessionDuration=3600,
            # Its only policy: mount the user's own home (add_homes, EFS ClientMount/ClientWrite).
            Policies=[],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )


def assume_tier_role_statement() -> Statement:
    """The hub (both modes) assumes the tier role for each signed-in user, with SourceIdentity
    and the user's session tag (the tier role's trust policy requires both)."""
    return Statement(
        Sid="AssumeTierRoleForUsers",
        Effect=Allow,
        Action=[AssumeRole, SetSourceIdentity, TagSession],
        Resource=[tier_role_arn()],
    )


def publish_metrics_statement() -> Statement:
    """The hub's metrics exporter (lakehub_hub.metrics): PutMetricData has no resource type
    (\"*\"), so the namespace condition is what scopes it: only the platform's `lakehub` namespace."""
    from lakehub_hub.metrics import NAMESPACE

    return Statement(
        Sid="PublishHubMetrics",
        Effect=Allow,
        Action=[awacs_cloudwatch.PutMetricData],
        Resource=["*"],
        Condition=Condition(StringEquals("cloudwatch:namespace", NAMESPACE)),
    )


def add_hub_role(b: Builder, execution_role, user_task_role) -> iam.Role:
    """The hub task's role in both modes: it assumes the tier role per user (never holds data
    itself). Per-user mode adds: the hub may run tasks of the tier's user-server family in the platform
    cluster, tagged with its tier; watch and stop only tasks tagged with its tier (so another
    tier's hub can neither read a server's overrides nor stop it); write and delete its tier's
    per-spawn environment files; and pass exactly the user task role and execution role to ECS tasks.
    ECS authorizes DescribeTasks and StopTask per task with aws:ResourceTag, and TagResource at
    RunTask with ecs:CreateAction and aws:RequestTag (docs/AWS_NOTES.md; rule
    ecs-task-access-by-tier-tag)."""
    cluster_arn = Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}")
    family_arn = Sub(
        "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/${PlatformName}-${TierName}-user:*"
    )
    task_arn = Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${ClusterName}/*")
    tier_tag = Ref(names.TIER_NAME)
    statements = [
        Statement(
            Sid="RunUserServers",
            Effect=Allow,
            Action=[awacs_ecs.RunTask],
            Resource=[family_arn],
            Condition=Condition(ArnEquals("ecs:cluster", cluster_arn)),
        ),
        # Tags only at RunTask (never on an existing task: re-tagging another tier's task would
        # open it to this hub), and the tier tag only with this tier's name.
        Statement(
            Sid="TagUserServersAtLaunch",
            Effect=Allow,
            Action=[awacs_ecs.TagResource],
            Resource=[task_arn],
            Condition=Condition(StringEquals({"ecs:CreateAction": "RunTask", f"aws:RequestTag/{names.TAG_TIER}": tier_tag})),
        ),
        Statement(
            Sid="WatchAndStopUserServers",
            Effect=Allow,
            Action=[awacs_ecs.DescribeTasks, awacs_ecs.StopTask],
            Resource=[task_arn],
            Condition=Condition(
                [
                    ArnEquals("ecs:cluster", cluster_arn),
                    StringEquals(f"aws:ResourceTag/{names.TAG_TIER}", tier_tag),
                ]
            ),
        ),
        # ListTasks without a container-instance filter (how the hub lists its users' tasks) is
        # authorized against "*": a container-instance ARN here would deny it (docs/AWS_NOTES.md).
        # It returns ARNs only; what a task holds takes DescribeTasks, scoped above.
        Statement(
            Sid="FindUserServers",
            Effect=Allow,
            Action=[awacs_ecs.ListTasks],
            Resource=["*"],
            Condition=Condition(ArnEquals("ecs:cluster", cluster_arn)),
        ),
        # Each spawn's secret environment (the server's API token): written before RunTask,
        # deleted (its one version) when the server stops. Never read back by the hub.
        Statement(
            Sid="WriteSpawnEnvironment",
            Effect=Allow,
            Action=[awacs_s3.PutObject, awacs_s3.DeleteObject, awacs_s3.DeleteObjectVersion],
            Resource=[spawn_env_objects()],
        ),
        *hub_state_statements(),
        Statement(
            Sid="PassTierRoles",
            Effect=Allow,
            Action=[awacs_iam.PassRole],
            Resource=[GetAtt(user_task_role, "Arn"), GetAtt(execution_role, "Arn")],
            Condition=Condition(StringEquals("iam:PassedToService", "ecs-tasks.amazonaws.com")),
        ),
    ]
    return b.add(
        iam.Role(
            "HubRole",
            Description=Sub(
                "lakehub tier ${TierName} hub: assumes the tier role per user; per-user mode: starts and stops users' server tasks"
            ),
            AssumeRolePolicyDocument=service_trust("ecs-tasks.amazonaws.com", same_account()),
            # Role chaining: the tier role sessions it makes last at most one hour whatever this says.
            MaxSessionDuration=3600,
            Policies=[
                inline_policy("serve-users-tier-sessions", [assume_tier_role_statement()]),
                inline_policy("publish-hub-metrics", [publish_metrics_statement()]),
                If(
                    "IsPerUser",
                    inline_policy("spawn-user-servers", statements),
                    Ref("AWS::NoValue"),
                ),
            ],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )


def add_hub_image(b: Builder) -> GetAtt:
    """The hub image by digest: `<repository URI>@sha256:...` of the ImageTag parameter, resolved at
    deploy time by the platform's function (lambdas/image_digest). A new tag is a new digest and a
    new task definition (a rolling deployment); the same tag changes nothing (docs/AWS_NOTES.md)."""
    image = b.add(
        custom_resource(
            "HubImage",
            "Custom::ImageDigest",
            ServiceToken=Ref(names.IMAGE_DIGEST_FUNCTION_ARN),
            RepositoryUri=Ref(names.IMAGE_REPOSITORY_URI),
            ImageTag=Ref(names.IMAGE_TAG),
        )
    )
    return GetAtt(image, "ImageUri")


def add_task_definitions(b: Builder, execution_role, hub_role, user_task_role, client, cookie, client_secret):
    image = add_hub_image(b)
    hub = b.add(
        ecs.TaskDefinition(
            "HubTaskDefinition",
            Family=Sub("${PlatformName}-${TierName}-hub"),
            Cpu=Ref(TASK_CPU),
            Memory=Ref(TASK_MEMORY),
            NetworkMode="awsvpc",
            RequiresCompatibilities=["FARGATE"],
            RuntimePlatform=ecs.RuntimePlatform(CpuArchitecture="ARM64", OperatingSystemFamily="LINUX"),
            ExecutionRoleArn=GetAtt(execution_role, "Arn"),
            # Both modes: the hub role, which holds no data (rule ecs-task-roles-reach-no-data).
            TaskRoleArn=GetAtt(hub_role, "Arn"),
            Volumes=If("IsShared", [homes_volume(Ref(HOMES_ACCESS_POINT))], Ref("AWS::NoValue")),
            ContainerDefinitions=[
                ecs.ContainerDefinition(
                    Name="hub",
                    Image=image,
                    Essential=True,
                    PortMappings=[
                        ecs.PortMapping(ContainerPort=names.HUB_PORT, Protocol="tcp"),
                        ecs.PortMapping(ContainerPort=HUB_API_PORT, Protocol="tcp"),
                    ],
                    Environment=hub_environment(client),
                    Secrets=hub_secrets(cookie, client_secret),
                    LogConfiguration=log_config("hub"),
                    # Shared mode: users' homes (/home/<unix name>) on the tier's access point.
                    MountPoints=If(
                        "IsShared",
                        [ecs.MountPoint(SourceVolume=HOMES_VOLUME, ContainerPath=names.HOMES_MOUNT, ReadOnly=False)],
                        Ref("AWS::NoValue"),
                    ),
                    # The hub creates one Unix user per data scientist (shared mode) and keeps
                    # its database under /srv/jupyterhub, so the root filesystem stays writable.
                    ReadonlyRootFilesystem=False,
                    # The port the hub listens on (LAKEHUB_HUB_PORT, above: 8000 on ECS), as the
                    # image's own HEALTHCHECK reads it: the local platform's hubs share the host's
                    # loopback and each listens on a port of its own (lakehub local, container runtime).
                    HealthCheck=ecs.HealthCheck(
                        Command=["CMD-SHELL", f"curl -fsS http://127.0.0.1:$LAKEHUB_HUB_PORT{names.HUB_HEALTH_PATH} || exit 1"],
                        Interval=30,
                        Timeout=5,
                        Retries=3,
                        StartPeriod=60,
                    ),
                )
            ],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )
    user = b.add(
        ecs.TaskDefinition(
            "UserServerTaskDefinition",
            Condition="IsPerUser",
            Family=Sub("${PlatformName}-${TierName}-user"),
            Cpu="1024",
            Memory="4096",
            NetworkMode="awsvpc",
            RequiresCompatibilities=["FARGATE"],
            RuntimePlatform=ecs.RuntimePlatform(CpuArchitecture="ARM64", OperatingSystemFamily="LINUX"),
            ExecutionRoleArn=GetAtt(execution_role, "Arn"),
            # No data: the user's data comes through the credential relay (lakehub_hub.credential_relay).
            TaskRoleArn=GetAtt(user_task_role, "Arn"),
            ContainerDefinitions=[
                ecs.ContainerDefinition(
                    Name="notebook",
                    Image=image,
                    Essential=True,
                    # The hub image's unprivileged user (uid 1000); the hub's JUPYTERHUB_* values and
                    # the single-user settings arrive as overrides at RunTask.
                    User="1000",
                    # The image's WORKDIR (/srv/jupyterhub, root's, 0700) is closed to uid 1000, and
                    # jupyterhub.singleuser serves its working directory: every kernel start would
                    # fail with Permission denied. Its own home instead.
                    WorkingDirectory=USER_SERVER_HOME,
                    Command=["python", "-m", "jupyterhub.singleuser"],
                    # A soft limit only: the spawner sizes each task per user (overrides), so
                    # no hard container memory caps the larger sizes.
                    MemoryReservation=512,
                    PortMappings=[ecs.PortMapping(ContainerPort=USER_SERVER_PORT, Protocol="tcp")],
                    Environment=[
                        ecs.Environment(Name="LAKEHUB_TIER", Value=Ref(names.TIER_NAME)),
                        ecs.Environment(Name="LAKEHUB_NOTEBOOK_BUCKET", Value=Ref(names.NOTEBOOK_BUCKET_NAME)),
                        ecs.Environment(Name="LAKEHUB_NOTEBOOK_PREFIX", Value=Sub(names.NOTEBOOK_TIERS_ROOT + "/${TierName}")),
                        ecs.Environment(Name="LAKEHUB_DATA_BUCKET", Value=Ref(names.DATA_BUCKET_NAME)),
                        ecs.Environment(Name="LAKEHUB_DATA_PREFIXES", Value=Join(",", Ref(names.TIER_DATA_PREFIXES))),
                        ecs.Environment(Name="AWS_REGION", Value=Ref("AWS::Region")),
                        ecs.Environment(Name="JUPYTER_CONFIG_PATH", Value="/etc/jupyterhub/singleuser"),
                    ],
                    LogConfiguration=log_config("user"),
                    ReadonlyRootFilesystem=False,
                )
            ],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )
    return hub, user


HOMES_ACCESS_POINT = "HomesAccessPoint"
HOMES_VOLUME = "homes"


def homes_volume(access_point_id) -> ecs.Volume:
    """An ECS volume of the homes file system through an access point: TLS in transit and IAM
    authorization (the task role's ClientMount/ClientWrite), as the file system policy demands.
    Fargate mounts EFS from platform version 1.4.0 (docs/AWS_NOTES.md)."""
    return ecs.Volume(
        Name=HOMES_VOLUME,
        EFSVolumeConfiguration=ecs.EFSVolumeConfiguration(
            FilesystemId=Ref(names.HOMES_FILE_SYSTEM_ID),
            TransitEncryption="ENABLED",
            AuthorizationConfig=ecs.AuthorizationConfig(AccessPointId=access_point_id, IAM="ENABLED"),
        ),
    )


def homes_access_point_arn():
    return Sub(
        "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:access-point/${AP}",
        AP=Ref(HOMES_ACCESS_POINT),
    )


def add_homes_access_point(b: Builder, title: str = HOMES_ACCESS_POINT, tags=None) -> efs.AccessPoint:
    """The tier's folder on the homes file system, /tiers/<tier>, created by EFS as root's 0755
    on first mount. No PosixUser: a hub (root) mounts it at /home and makes each user's
    /home/<unix name> (0700, the user's stable uid) itself. Shared by the tier (shared mode)
    and the on-demand hub."""
    ap = b.add(
        efs.AccessPoint(
            title,
            FileSystemId=Ref(names.HOMES_FILE_SYSTEM_ID),
            RootDirectory=efs.RootDirectory(
                Path=Sub(names.HOMES_TIERS_ROOT + "/${TierName}"),
                CreationInfo=efs.CreationInfo(OwnerUid="0", OwnerGid="0", Permissions="0755"),
            ),
            AccessPointTags=tags or platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )
    add_checkov_skip(
        ap,
        "CKV_AWS_330",
        "The hub (root) mounts the tier's folder to create each user's home owned by that user's uid (mode 0700); "
        "users' own servers in per-user mode mount per-user access points that do set a PosixUser",
    )
    return ap


def add_homes(b: Builder, hub_role, user_task_role, hub_sg, user_sg) -> efs.AccessPoint:
    """Homes (issue 15): the tier's access point, NFS from the tier's tasks to the homes file
    system, and the roles' EFS rights.
    - shared mode: the hub task role mounts the tier's access point with root access
      (ClientRootAccess: it creates users' folders and runs their servers as their uids);
    - per-user mode: the hub role creates each user's access point (tagged with this tier only),
      registers a per-user revision of the user-server task definition (ECS RunTask overrides
      cannot change volumes: docs/AWS_NOTES.md) and runs it; the user task role mounts (no root
      access: EFS enforces the access point's PosixUser)."""
    ap = add_homes_access_point(b)
    homes_sg = Ref(names.HOMES_SECURITY_GROUP_ID)
    nfs = dict(IpProtocol="tcp", FromPort=names.NFS_PORT, ToPort=names.NFS_PORT)
    # NFS both ways between the homes and the tier's tasks: the hub's always, the user servers'
    # in per-user mode only.
    for task_sg, ingress, egress, tasks, only in (
        (hub_sg, "HomesNfsFromHub", "HubToHomes", "hub tasks", {}),
        (user_sg, "HomesNfsFromUserServers", "UserServersToHomes", "user servers", {"Condition": "IsPerUser"}),
    ):
        b.add(
            ec2.SecurityGroupIngress(
                ingress,
                GroupId=homes_sg,
                SourceSecurityGroupId=Ref(task_sg),
                Description=Sub(f"NFS from the ${{TierName}} tier's {tasks}"),
                **only,
                **nfs,
            )
        )
        b.add(
            ec2.SecurityGroupEgress(
                egress,
                GroupId=Ref(task_sg),
                DestinationSecurityGroupId=homes_sg,
                Description="NFS to the homes file system",
                **only,
                **nfs,
            )
        )

    fs = Ref(names.HOMES_FILE_SYSTEM_ID)
    hub_doc = PolicyDocument(
        Version="2012-10-17", Statement=homes_client_statements(fs, homes_access_point_arn(), root=True, sid="MountTierHomes")
    )
    user_doc = PolicyDocument(Version="2012-10-17", Statement=homes_client_statements(fs, sid="MountOwnHome"))
    # One "homes" policy on the hub role in both modes, its document chosen by the mode: an If
    # around a whole policy leaves a NoValue item in Policies, which moto's CloudFormation (and
    # so the catalog rehearsal) cannot read. Shared: mount the tier's homes as root. Per-user:
    # give each user a home (access point, per-user task definition).
    spawn_doc = PolicyDocument(Version="2012-10-17", Statement=homes_spawn_statements())
    hub_role.Policies.append(iam.Policy(PolicyName="homes", PolicyDocument=If("IsShared", hub_doc, spawn_doc)))
    # The user task role exists only in per-user mode (Condition IsPerUser).
    user_task_role.Policies.append(iam.Policy(PolicyName="homes-user", PolicyDocument=user_doc))
    return ap


def homes_spawn_statements() -> list[Statement]:
    """Per-user mode: what the hub needs to give each user a home (lakehub_hub.fargate)."""
    fs_arn = homes_file_system_arn(Ref(names.HOMES_FILE_SYSTEM_ID))
    access_points = Sub("arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:access-point/*")
    tier_tag = Ref(names.TIER_NAME)
    cluster_arn = Sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/${ClusterName}")
    user_families = Sub(
        "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task-definition/${PlatformName}-${TierName}-user-*"
    )
    return [
        # Only access points tagged with this tier (the tag rides on CreateAccessPoint, which
        # EFS authorizes as TagResource too: allowed only inside that call).
        Statement(
            Sid="CreateUserHomes",
            Effect=Allow,
            Action=[awacs_efs.CreateAccessPoint],
            Resource=[fs_arn],
            Condition=Condition(StringEquals(f"aws:RequestTag/{names.TAG_TIER}", tier_tag)),
        ),
        Statement(
            Sid="TagUserHomesAtCreation",
            Effect=Allow,
            Action=[awacs_efs.TagResource],
            Resource=[access_points],
            Condition=Condition(
                StringEquals(
                    {"elasticfilesystem:CreateAction": "CreateAccessPoint", f"aws:RequestTag/{names.TAG_TIER}": tier_tag}
                )
            ),
        ),
        Statement(Sid="FindUserHomes", Effect=Allow, Action=[awacs_efs.DescribeAccessPoints], Resource=[fs_arn, access_points]),
        # Only this tier's per-user families (<user family>-<unix name>); the roles a definition
        # names are only those PassTierRoles lets the hub pass.
        Statement(
            Sid="RegisterUserTaskDefinitions",
            Effect=Allow,
            Action=[awacs_ecs.RegisterTaskDefinition],
            Resource=[Sub("${F}:*", F=user_families)],
        ),
        # DescribeTaskDefinition is authorized against "*" only (Service Authorization
        # Reference: no resource type); a definition holds no secret (those go by ARN).
        Statement(Sid="ReadUserTaskDefinitions", Effect=Allow, Action=[awacs_ecs.DescribeTaskDefinition], Resource=["*"]),
        Statement(
            Sid="TagUserTaskDefinitionsAtRegistration",
            Effect=Allow,
            Action=[awacs_ecs.TagResource],
            Resource=[Sub("${F}:*", F=user_families)],
            Condition=Condition(
                StringEquals({"ecs:CreateAction": "RegisterTaskDefinition", f"aws:RequestTag/{names.TAG_TIER}": tier_tag})
            ),
        ),
        Statement(
            Sid="RunUserHomeServers",
            Effect=Allow,
            Action=[awacs_ecs.RunTask],
            Resource=[Sub("${F}:*", F=user_families)],
            Condition=Condition(ArnEquals("ecs:cluster", cluster_arn)),
        ),
    ]


def business_hours_actions() -> list:
    """Scale the hub service to MinTasks/MaxTasks when business hours start and to 0 when they end
    (Application Auto Scaling cron: minutes hours day-of-month month day-of-week year)."""
    days = Ref(BUSINESS_DAYS)
    return [
        aas.ScheduledAction(
            ScheduledActionName="business-hours-start",
            Schedule=Sub(f"cron({HUB_START_MINUTE} ${{{BUSINESS_HOURS_START}}} ? * ${{Days}} *)", Days=days),
            Timezone=Ref(SCHEDULE_TIMEZONE),
            ScalableTargetAction=aas.ScalableTargetAction(MinCapacity=Ref(MIN_TASKS), MaxCapacity=Ref(MAX_TASKS)),
        ),
        aas.ScheduledAction(
            ScheduledActionName="business-hours-end",
            Schedule=Sub(f"cron({HUB_STOP_MINUTE} ${{{BUSINESS_HOURS_END}}} ? * ${{Days}} *)", Days=days),
            Timezone=Ref(SCHEDULE_TIMEZONE),
            ScalableTargetAction=aas.ScalableTargetAction(MinCapacity=0, MaxCapacity=0),
        ),
    ]


def add_listener_rule_priority(b: Builder) -> AWSObject:
    """The lowest free priority on the HTTPS listener (Custom::ListenerPriority, the platform's
    function lambdas/listener_priority), under the stack's AutoPriority condition."""
    return b.add(
        custom_resource(
            "ListenerRulePriority",
            "Custom::ListenerPriority",
            Condition="AutoPriority",
            ServiceToken=Ref(names.LISTENER_PRIORITY_FUNCTION_ARN),
            ListenerArn=Ref(names.HTTPS_LISTENER_ARN),
            # Claimed atomically in SSM: stacks launched at the same moment never share one.
            ClaimParameterPrefix=Sub(names.LISTENER_PRIORITY_CLAIMS_SUB),
            Minimum=str(names.AUTO_PRIORITY_MINIMUM),
        )
    )


def build_tier(settings: Settings):
    b = Builder("lakehub tier: a hub on ECS Fargate whose users reach only the tier's data-lake prefixes")
    add_parameters(b, settings)
    add_conditions(b)
    b.t.add_condition("UserSpotOn", Equals(Ref(USER_SPOT), "true"))
    add_rules(b)
    add_schedule_conditions_and_rules(b)

    tier_role = add_tier_role(b)
    cookie, client, client_secret = add_secrets(b)
    add_platform_secret_lookups(b)
    execution_role = add_execution_role(b, cookie, client_secret)
    hub_sg, user_sg = add_security_groups(b)
    user_task_role = add_user_task_role(b)
    hub_role = add_hub_role(b, execution_role, user_task_role)
    add_homes(b, hub_role=hub_role, user_task_role=user_task_role, hub_sg=hub_sg, user_sg=user_sg)
    hub_td, user_td = add_task_definitions(b, execution_role, hub_role, user_task_role, client, cookie, client_secret)
    if settings.strict:
        # CT.ECS.PR.7: a hard memory limit on every container, the task's own memory (one container
        # per task). A per-user server's size is chosen at spawn: the spawner overrides the
        # container's limit with the task's (lakehub_hub.fargate), so the limit caps no size.
        (hub_container,) = hub_td.ContainerDefinitions
        hub_container.Memory = Ref(TASK_MEMORY)
        # A number, as the container's limit is (the task's Memory takes it as a string).
        b.t.parameters[TASK_MEMORY].Type = "Number"
        (user_container,) = user_td.ContainerDefinitions
        user_container.Memory = int(user_td.Memory)
    discovery = add_hub_discovery(b)

    tg = b.add(
        elb.TargetGroup(
            "TargetGroup",
            TargetType="ip",
            Protocol="HTTP",
            Port=names.HUB_PORT,
            VpcId=Ref(names.VPC_ID),
            HealthCheckPath=names.HUB_HEALTH_PATH,
            HealthCheckIntervalSeconds=15,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=3,
            Matcher=elb.Matcher(HttpCode="200"),
            TargetGroupAttributes=[
                elb.TargetGroupAttribute(Key="deregistration_delay.timeout_seconds", Value="30"),
                elb.TargetGroupAttribute(Key="stickiness.enabled", Value=If("Sticky", "true", "false")),
                elb.TargetGroupAttribute(Key="stickiness.type", Value="lb_cookie"),
                elb.TargetGroupAttribute(Key="stickiness.lb_cookie.duration_seconds", Value="86400"),
            ],
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )
    priority = add_listener_rule_priority(b)
    rule = b.add(
        elb.ListenerRule(
            "ListenerRule",
            ListenerArn=Ref(names.HTTPS_LISTENER_ARN),
            Priority=If("AutoPriority", GetAtt(priority, "Priority"), Ref(LISTENER_PRIORITY)),
            Conditions=[
                elb.Condition(
                    Field="host-header", HostHeaderConfig=elb.HostHeaderConfig(Values=[Sub("${HostName}.${DomainName}")])
                )
            ],
            Actions=[elb.ListenerRuleAction(Type="forward", TargetGroupArn=Ref(tg))],
        )
    )
    service = b.add(
        ecs.Service(
            "Service",
            # The homes must be reachable by NFS before a shared hub task mounts them.
            DependsOn=[rule.title, "HomesNfsFromHub", "HubToHomes"],
            ServiceName=Sub("${TierName}-hub"),
            Cluster=Ref(names.CLUSTER_NAME),
            TaskDefinition=Ref(hub_td),
            DesiredCount=Ref(MIN_TASKS),
            CapacityProviderStrategy=[
                ecs.CapacityProviderStrategyItem(CapacityProvider=If("HubOnSpot", "FARGATE_SPOT", "FARGATE"), Weight=1)
            ],
            NetworkConfiguration=ecs.NetworkConfiguration(
                AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                    AssignPublicIp="DISABLED",
                    Subnets=[Ref(names.PRIVATE_SUBNET_1_ID), Ref(names.PRIVATE_SUBNET_2_ID)],
                    SecurityGroups=[Ref(names.TASK_SECURITY_GROUP_ID), Ref(hub_sg)],
                )
            ),
            LoadBalancers=[ecs.LoadBalancer(ContainerName="hub", ContainerPort=names.HUB_PORT, TargetGroupArn=Ref(tg))],
            # The Cloud Map service's ARN from its Id (Ref): the same value as GetAtt Arn, which
            # the emulator cannot give for a type it does not model (lakehub.local.unmodelled).
            ServiceRegistries=If(
                "IsPerUser",
                [
                    ecs.ServiceRegistry(
                        RegistryArn=Sub(
                            "arn:${AWS::Partition}:servicediscovery:${AWS::Region}:${AWS::AccountId}:service/${"
                            + discovery.title
                            + "}"
                        )
                    )
                ],
                Ref("AWS::NoValue"),
            ),
            HealthCheckGracePeriodSeconds=120,
            DeploymentConfiguration=ecs.DeploymentConfiguration(
                DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
                MinimumHealthyPercent=0,
                MaximumPercent=100,
            ),
            PropagateTags="SERVICE",
            EnableECSManagedTags=True,
            Tags=platform_tags((names.TAG_TIER, Ref(names.TIER_NAME))),
        )
    )
    target = b.add(
        aas.ScalableTarget(
            "ScalableTarget",
            ServiceNamespace="ecs",
            ScalableDimension="ecs:service:DesiredCount",
            ResourceId=Sub("service/${ClusterName}/${Service.Name}"),
            MinCapacity=Ref(MIN_TASKS),
            MaxCapacity=Ref(MAX_TASKS),
            ScheduledActions=If("UseSchedule", business_hours_actions(), Ref("AWS::NoValue")),
        )
    )
    b.add(
        aas.ScalingPolicy(
            "CpuScalingPolicy",
            Condition="ScaleOnCpu",
            PolicyName=Sub("${PlatformName}-${TierName}-cpu"),
            PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(target),
            TargetTrackingScalingPolicyConfiguration=aas.TargetTrackingScalingPolicyConfiguration(
                TargetValue=60.0,
                ScaleInCooldown=1800,
                ScaleOutCooldown=120,
                PredefinedMetricSpecification=aas.PredefinedMetricSpecification(
                    PredefinedMetricType="ECSServiceAverageCPUUtilization"
                ),
            ),
        )
    )
    b.add(
        route53.RecordSetType(
            "DnsRecord",
            HostedZoneId=Ref(names.HOSTED_ZONE_ID),
            Name=Sub("${HostName}.${DomainName}"),
            Type="A",
            AliasTarget=route53.AliasTarget(
                DNSName=Ref(names.LOAD_BALANCER_DNS_NAME), HostedZoneId=Ref(names.LOAD_BALANCER_HOSTED_ZONE_ID)
            ),
        )
    )
    b.add(
        custom_resource(
            "NotebookFolders",
            "Custom::SeedNotebooks",
            ServiceToken=Ref(names.SEED_FUNCTION_ARN),
            NotebookBucket=Ref(names.NOTEBOOK_BUCKET_NAME),
            Tiers=[
                {
                    "Name": Ref(names.TIER_NAME),
                    "NotebookPrefix": Sub(names.NOTEBOOK_TIERS_ROOT + "/${TierName}"),
                    "DataBucket": Ref(names.DATA_BUCKET_NAME),
                    "DataPrefixes": Ref(names.TIER_DATA_PREFIXES),
                }
            ],
            ExamplesVersion=function_hash("seed_notebooks"),
        )
    )

    add_tier_alarms(b, Ref(names.ALARM_TOPIC_ARN), tg)

    b.output(names.TIER_URL, Sub("https://${HostName}.${DomainName}"), "Where the tier's users sign in")
    b.output(
        names.TIER_ROLE_ARN,
        GetAtt(tier_role, "Arn"),
        "Data role of the tier (its data-lake prefixes, shared folder, each user's own folder), assumed per user by the hub",
    )
    b.output(names.TIER_SERVICE_NAME, GetAtt(service, "Name"), "ECS service of the tier's hub")
    b.output("ExecutionRoleArn", GetAtt(execution_role, "Arn"), "Task execution role (image pull, logs, secrets)")
    b.output("HubTaskDefinitionArn", Ref(hub_td), "Task definition of the tier's hub")
    b.output(
        "UserServerTaskDefinitionArn",
        If("IsPerUser", Ref("UserServerTaskDefinition"), "none"),
        "Task definition of users' servers (per-user mode), or 'none'",
    )
    b.output(
        "ListenerRulePriorityUsed",
        If("AutoPriority", GetAtt(priority, "Priority"), Ref(LISTENER_PRIORITY)),
        "Priority of the tier's listener rule",
    )
    b.output(
        "NotebookPrefix",
        Sub("s3://${NotebookBucketName}/" + names.NOTEBOOK_TIERS_ROOT + "/${TierName}/"),
        "Where the tier's notebooks are stored",
    )
    return finish(b, settings)
