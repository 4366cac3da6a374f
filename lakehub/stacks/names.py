"""Names that cross stacks, defined once.

A value that one stack hands to another has one name: the child's Output, the child's
Parameter and the parent's key are the same string, so a rename cannot leave one of them behind. Platform values are also
published as SSM parameters at `ssm_name(platform, NAME)`, so a tier stack launched on its own
(from Service Catalog) finds them without the parent.
"""

from __future__ import annotations

# -- entry-point parameters --------------------------------------------------------------
PLATFORM_NAME = "PlatformName"
ASSETS_BUCKET_NAME = "AssetsBucketName"
ASSETS_KEY_PREFIX = "AssetsKeyPrefix"
DOMAIN_NAME = "DomainName"
HOSTED_ZONE_ID = "HostedZoneId"
CERTIFICATE_ARN = "CertificateArn"
ALLOWED_CIDR = "AllowedCidr"
AUTH_MODE = "AuthMode"
LOG_RETENTION_DAYS = "LogRetentionDays"
DATA_LAKE_BUCKET_NAME = "DataLakeBucketName"
DATA_LAKE_KMS_KEY_ARN = "DataLakeKmsKeyArn"
RECORD_DATA_EVENTS = "RecordDataEvents"  # storage: a CloudTrail trail of S3 data events (attribution)
SOURCE_TYPE = "SourceType"
SOURCE_BUCKET_NAME = "SourceBucketName"
SOURCE_OBJECT_KEY = "SourceObjectKey"
EGRESS_MODE = "EgressMode"

# -- network -----------------------------------------------------------------------------
VPC_CIDR = "VpcCidr"
VPC_ID = "VpcId"
PUBLIC_SUBNET_1_ID = "PublicSubnet1Id"
PUBLIC_SUBNET_2_ID = "PublicSubnet2Id"
PRIVATE_SUBNET_1_ID = "PrivateSubnet1Id"
PRIVATE_SUBNET_2_ID = "PrivateSubnet2Id"

# -- storage -----------------------------------------------------------------------------
NOTEBOOK_BUCKET_NAME = "NotebookBucketName"
DATA_BUCKET_NAME = "DataBucketName"  # the lake in use: existing or demo
DATA_KMS_KEY_ARN = "DataKmsKeyArn"  # "" when the lake uses SSE-S3
SEED_FUNCTION_ARN = "SeedFunctionArn"

# -- pipeline ----------------------------------------------------------------------------
IMAGE_REPOSITORY_NAME = "ImageRepositoryName"
IMAGE_REPOSITORY_URI = "ImageRepositoryUri"
IMAGE_REPOSITORY_ARN = "ImageRepositoryArn"
BUILD_PROJECT_NAME = "BuildProjectName"
IMAGE_TAG = "ImageTag"

# -- cluster -----------------------------------------------------------------------------
CLUSTER_NAME = "ClusterName"
CLUSTER_ARN = "ClusterArn"
HTTPS_LISTENER_ARN = "HttpsListenerArn"
LOAD_BALANCER_DNS_NAME = "LoadBalancerDnsName"
LOAD_BALANCER_HOSTED_ZONE_ID = "LoadBalancerHostedZoneId"
LOAD_BALANCER_FULL_NAME = "LoadBalancerFullName"
TASK_SECURITY_GROUP_ID = "TaskSecurityGroupId"
LOAD_BALANCER_SECURITY_GROUP_ID = "LoadBalancerSecurityGroupId"
LISTENER_PRIORITY_FUNCTION_ARN = "ListenerPriorityFunctionArn"
SECRET_ARN_FUNCTION_ARN = "SecretArnFunctionArn"
IMAGE_DIGEST_FUNCTION_ARN = "ImageDigestFunctionArn"
LOG_GROUP_NAME = "LogGroupName"
USER_POOL_ID = "UserPoolId"
USER_POOL_ARN = "UserPoolArn"
USER_POOL_DOMAIN_URL = "UserPoolDomainUrl"
# Homes (issue 15): one EFS file system per platform; tiers and on-demand hubs add access points
# and NFS ingress rules to its security group.
HOMES_FILE_SYSTEM_ID = "HomesFileSystemId"
HOMES_SECURITY_GROUP_ID = "HomesSecurityGroupId"
# Observe (issue 18): the SNS topic every alarm notifies (main makes it; tiers read it from SSM).
ALARM_TOPIC_ARN = "AlarmTopicArn"
ALARM_EMAIL = "AlarmEmail"
NAT_INSTANCE_GROUP_NAME = "NatInstanceGroupName"

# Values the platform publishes in SSM for tier stacks (name -> description).
PLATFORM_SSM_VALUES: dict[str, str] = {
    VPC_ID: "VPC of the platform",
    VPC_CIDR: "CIDR block of the VPC",
    PRIVATE_SUBNET_1_ID: "First private subnet (tasks)",
    PRIVATE_SUBNET_2_ID: "Second private subnet (tasks)",
    NOTEBOOK_BUCKET_NAME: "Notebook bucket",
    DATA_BUCKET_NAME: "Data-lake bucket",
    DATA_KMS_KEY_ARN: "KMS key of the data lake, or 'none'",
    SEED_FUNCTION_ARN: "Function that seeds a tier's notebook folders",
    IMAGE_REPOSITORY_URI: "ECR repository of the hub image",
    CLUSTER_NAME: "ECS cluster",
    HTTPS_LISTENER_ARN: "HTTPS listener of the load balancer",
    LOAD_BALANCER_DNS_NAME: "DNS name of the load balancer",
    LOAD_BALANCER_HOSTED_ZONE_ID: "Hosted zone of the load balancer (alias target)",
    LOAD_BALANCER_FULL_NAME: "Load balancer full name (metrics)",
    TASK_SECURITY_GROUP_ID: "Security group of hub tasks (reachable from the load balancer only)",
    LISTENER_PRIORITY_FUNCTION_ARN: "Function that allocates a free listener-rule priority",
    SECRET_ARN_FUNCTION_ARN: "Function that looks up the full ARN of a sign-in secret under the platform's name",
    IMAGE_DIGEST_FUNCTION_ARN: "Function that resolves a hub image tag to its immutable digest",
    LOG_GROUP_NAME: "Log group for tasks",
    USER_POOL_ID: "Cognito user pool, or 'none'",
    USER_POOL_DOMAIN_URL: "Cognito hosted sign-in URL, or 'none'",
    AUTH_MODE: "Sign-in mode: cognito, oidc or ldap",
    DOMAIN_NAME: "Domain under which tiers get host names",
    HOSTED_ZONE_ID: "Route 53 hosted zone of the domain",
    HOMES_FILE_SYSTEM_ID: "EFS file system of users' homes (/tiers/<tier>/<unix name>)",
    HOMES_SECURITY_GROUP_ID: "Security group of the homes' mount targets (tiers and hubs add NFS ingress)",
    ALARM_TOPIC_ARN: "SNS topic of the platform's alarms (tiers' alarms notify it)",
}

# Where platform values live in SSM. One path per platform name.
SSM_ROOT = "/lakehub"


def ssm_path(platform: str) -> str:
    return f"{SSM_ROOT}/{platform}/"


def ssm_name(platform: str, name: str) -> str:
    """SSM parameter name of a platform value, e.g. /lakehub/lakehub/ClusterName."""
    return f"{SSM_ROOT}/{platform}/{name}"


SSM_NAME_SUB = SSM_ROOT + "/${" + PLATFORM_NAME + "}/"  # Fn::Sub prefix

# -- tier --------------------------------------------------------------------------------
TIER_NAME = "TierName"
TIER_ROLE_ARN = "TierRoleArn"
TIER_URL = "TierUrl"
TIER_SERVICE_NAME = "ServiceName"
TIER_DATA_PREFIXES = "DataPrefixes"
TIER_DATA_ACCESS = "DataAccess"
TIER_ALLOWED_GROUPS = "AllowedGroups"
TIER_HOST_NAME = "HostName"
TIER_SERVER_MODE = "ServerMode"

# -- self-service (Service Catalog products) -------------------------------------------------
OWNER = "Owner"
PRINCIPAL_ARNS = "PrincipalArns"
# IAM path of roles made by self-service products: their launch roles may manage only these.
IAM_PATH_SUB = "/" + "lakehub" + "/${" + PLATFORM_NAME + "}/"

# -- templates ---------------------------------------------------------------------------
MAIN_TEMPLATE = "main.template.yaml"
MAIN_EXISTING_VPC_TEMPLATE = "main-existing-vpc.template.yaml"
NETWORK_TEMPLATE = "network.template.yaml"
STORAGE_TEMPLATE = "storage.template.yaml"
PIPELINE_TEMPLATE = "pipeline.template.yaml"
CLUSTER_TEMPLATE = "cluster.template.yaml"
TIER_TEMPLATE = "tier.template.yaml"
CATALOG_TEMPLATE = "catalog.template.yaml"
HUB_INSTANCE_TEMPLATE = "hub-instance.template.yaml"

# Tag keys
TAG_PLATFORM = "lakehub:platform"
TAG_TIER = "lakehub:tier"
TAG_OWNER = "lakehub:owner"
TAG_PRODUCT = "lakehub:product"  # what made a resource, e.g. on-demand-hub
ON_DEMAND_HUB_PRODUCT = "on-demand-hub"  # TAG_PRODUCT of on-demand hub instances (the NAT keeps egress up for them)

# The hub's port inside the task (the proxy's public port). TLS ends at the load balancer.
HUB_PORT = 8000
HUB_HEALTH_PATH = "/hub/health"
NOTEBOOK_TIERS_ROOT = "tiers"  # notebook bucket layout: tiers/<tier>/shared, tiers/<tier>/users/<u>
# Per-user mode: each spawn's secret environment (the server's API token) in the notebook bucket
# under spawn-env/<tier>/, written and deleted by the tier's hub role, read by ECS with the tier's
# execution role only (containerOverrides.environmentFiles); outside tiers/, so no tier role
# reads it. hub_images/lakehub_hub/fargate.py has the same value (SPAWN_ENV_ROOT).
SPAWN_ENV_ROOT = "spawn-env"
# Per-user mode: the hub's database, replicated by Litestream (lakehub_hub.hub_state) to the
# notebook bucket under hub-state/<tier>/, read and written by the tier's hub role only; outside
# tiers/, so no user's session reads it. hub_images/lakehub_hub/hub_state.py has the same value.
HUB_STATE_ROOT = "hub-state"
# The STS session tag that names a user's own notebook folder (tiers/<tier>/users/<value>/): the
# hub sets it (and SourceIdentity) when it assumes the tier role for a user; the tier role's
# policy reads it as ${aws:PrincipalTag/lakehub-user}. hub_images/lakehub_hub/credentials.py
# has the same value (USER_TAG); its value is lakehub_hub.accounts.storage_name(user).
USER_SESSION_TAG = "lakehub-user"

# Homes on the EFS file system: /tiers/<tier>/<unix name>, seen by every server at
# /home/<unix name> (HOMES_MOUNT is where the tier's access point is mounted in shared mode and
# on the on-demand hub; per-user tasks mount their own access point at /home/<unix name>).
HOMES_TIERS_ROOT = "/tiers"
HOMES_MOUNT = "/home"
NFS_PORT = 2049

# Listener rule priorities: main's own tiers take explicit ones below AUTO_PRIORITY_MINIMUM (in
# settings order); tiers and hubs launched later claim the lowest free one from it, atomically,
# under this SSM path (Custom::ListenerPriority, rule listener-priorities-by-construction).
LISTENER_PRIORITY_CLAIMS = "listener-priorities"
LISTENER_PRIORITY_CLAIMS_SUB = SSM_NAME_SUB + LISTENER_PRIORITY_CLAIMS
AUTO_PRIORITY_MINIMUM = 100
# A tier's or an on-demand hub's rule priority on the HTTPS listener (0: the lowest free one).
LISTENER_PRIORITY = "ListenerPriority"

# Where the hub asks Cognito's /logout to send users back (logout_uri in
# hub_images/jupyterhub_config.py): every tier client registers it (rule cognito-logout-urls-registered).
HUB_LOGOUT_RETURN_PATH = "/hub/login"
# Non-root users of lakehub's image and the directory each owns (hub_images/Dockerfile creates
# them; tests/templates/test_aws_semantics.py checks it still does). The image's own WORKDIR
# (/srv/jupyterhub, root's, 0700) is not enterable by them.
IMAGE_USER_HOMES = {"1000": "/home/lakehub", "lakehub": "/home/lakehub"}
