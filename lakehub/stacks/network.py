"""network.template.yaml: a VPC over two Availability Zones.

Public subnets hold the load balancer (and the NAT instance or gateways); private subnets hold
every task. An S3 gateway endpoint (free) sits on every route table, so notebook and data-lake
traffic never crosses the NAT. Egress for private subnets is a choice:
- `nat-instance` (default): one t4g.nano NAT instance in an Auto Scaling group of one, which
  heals itself; a few dollars a month.
- `nat-gateway`: one managed NAT gateway per AZ (highly available, about $33 a month each).

Off-hours schedule (shared with the tier template, same parameter names and defaults): with
`Schedule` = business-hours the NAT instance's group scales to 0 outside business hours, in
`ScheduleTimezone`, unless an on-demand hub runs. It starts on the hour, five minutes before the
tiers' hubs (MinSize, MaxSize and DesiredCapacity 1), and a quarter of an hour after them its
floor drops to 0 (MinSize only: the scheduled action never sets DesiredCapacity at night, so it
cannot fight what follows). The NAT egress function (lambdas/nat_egress), invoked by EventBridge
on every EC2 instance state change and every few minutes, sets DesiredCapacity to 1 while the
floor is 1 or any on-demand hub of the platform (tags lakehub:platform, lakehub:product) is
pending or running, else 0: a hub launched or started at night brings egress up (Session
Manager, ECR, Secrets Manager, cfn-signal) and the NAT stops once the last hub stops.
NAT gateways cannot be stopped: with `nat-gateway` the schedule only affects tiers.
"""

from __future__ import annotations

from awacs import autoscaling as awacs_autoscaling
from awacs import ec2 as awacs_ec2
from awacs.aws import Allow, Condition, Statement, StringEquals
from troposphere import (
    And,
    Base64,
    Condition as CfnCondition,
    Cidr,
    Equals,
    GetAtt,
    GetAZs,
    If,
    Not,
    Ref,
    Select,
    Sub,
    autoscaling,
    awslambda,
    ec2,
    events,
    iam,
)

from lakehub.stacks import names
from lakehub.stacks.compliance import finish
from lakehub.stacks.builder import port_rule, Builder, platform_tags
from lakehub.stacks.parameters import ASSETS_BUCKET_NAME, ASSETS_KEY_PREFIX, PLATFORM_NAME, log_retention_days
from lakehub.stacks.functions import add_function
from lakehub.stacks.builder import add_checkov_skip
from lakehub.stacks.policies import inline_policy, service_trust
from lakehub.settings import Settings

EGRESS_MODES = ("nat-instance", "nat-gateway")

# Off-hours schedule parameters: one definition, used by this template and the tier template.
SCHEDULE = "Schedule"
SCHEDULE_TIMEZONE = "ScheduleTimezone"
BUSINESS_HOURS_START = "BusinessHoursStart"
BUSINESS_HOURS_END = "BusinessHoursEnd"
BUSINESS_DAYS = "BusinessDays"
SCHEDULES = ("business-hours", "always")
BUSINESS_DAY_CHOICES = ("MON-FRI", "MON-SAT", "SUN-SAT")
DEFAULT_SCHEDULE = "business-hours"
DEFAULT_HOURS = (7, 19)  # 07:00-19:00: room for an 8-hour day in staggered teams
SCHEDULE_GROUP = "Off-hours schedule"
# Minutes past the hour: the NAT starts before the hubs and stops after them.
NAT_START_MINUTE, HUB_START_MINUTE, HUB_STOP_MINUTE, NAT_STOP_MINUTE = 0, 5, 0, 15


def add_schedule_params(b: Builder, what: str) -> None:
    """Schedule, time zone, business hours and days; `what` names what the schedule stops."""
    b.choice(
        SCHEDULE,
        SCHEDULE_GROUP,
        "Schedule",
        f"business-hours: {what} outside business hours (scheduled scaling to 0); always: runs 24x7",
        SCHEDULES,
        DEFAULT_SCHEDULE,
    )
    b.param(
        SCHEDULE_TIMEZONE,
        SCHEDULE_GROUP,
        "Time zone",
        "IANA time zone of the business hours, for example Europe/London or America/New_York",
        Default="UTC",
        AllowedPattern=r"^[A-Za-z][A-Za-z0-9_+/-]{1,63}$",
        ConstraintDescription="an IANA time zone name such as Europe/Paris",
    )
    for name, label, first, description, default in (
        (
            BUSINESS_HOURS_START,
            "start",
            0,
            "Hour of the day (0-23, in the time zone) when hubs start on business days",
            DEFAULT_HOURS[0],
        ),
        (
            BUSINESS_HOURS_END,
            "end",
            1,
            "Hour of the day (1-23, in the time zone, later than the start) when hubs stop and users' servers with them",
            DEFAULT_HOURS[1],
        ),
    ):
        b.param(
            name,
            SCHEDULE_GROUP,
            f"Business hours {label} (hour)",
            description,
            type="Number",
            Default=default,
            MinValue=first,
            MaxValue=23,
            ConstraintDescription=f"a whole hour from {first} to 23",
        )
    b.choice(
        BUSINESS_DAYS, SCHEDULE_GROUP, "Business days", "Days on which hubs run", BUSINESS_DAY_CHOICES, BUSINESS_DAY_CHOICES[0]
    )


def add_schedule_conditions_and_rules(b: Builder) -> None:
    b.t.add_condition("UseSchedule", Equals(Ref(SCHEDULE), "business-hours"))
    b.t.add_rule(
        "BusinessHoursEndAfterStart",
        {
            "RuleCondition": {"Fn::Equals": [{"Ref": SCHEDULE}, "business-hours"]},
            "Assertions": [
                {
                    "Assert": {"Fn::Not": [{"Fn::Equals": [{"Ref": BUSINESS_HOURS_START}, {"Ref": BUSINESS_HOURS_END}]}]},
                    "AssertDescription": "BusinessHoursEnd must differ from BusinessHoursStart (and be later in the day)",
                }
            ],
        },
    )


def unix_cron_days():
    """Business days in Unix cron form (EC2 Auto Scaling: 0 = Sunday; names cannot form ranges)."""
    return If("DaysEveryDay", "0-6", If("DaysMonSat", "1-6", "1-5"))


NAT_INSTANCE_AMI_SSM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"

NAT_USER_DATA = """#!/bin/bash
# lakehub NAT instance: forward and masquerade traffic from the private subnets, then point the
# private route tables at this instance (it replaces the previous one after a heal).
set -euo pipefail
dnf install -y iptables-nft >/dev/null
sysctl -w net.ipv4.ip_forward=1
echo 'net.ipv4.ip_forward=1' > /etc/sysctl.d/90-nat.conf
IFACE=$(ip route show default | awk '{print $5; exit}')
iptables -t nat -A POSTROUTING -o "$IFACE" -s ${VpcCidr} -j MASQUERADE
TOKEN=$(curl -s -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
ID=$(curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
aws ec2 modify-instance-attribute --region ${AWS::Region} --instance-id "$ID" --no-source-dest-check
for RT in ${PrivateRouteTable1} ${PrivateRouteTable2}; do
  aws ec2 replace-route --region ${AWS::Region} --route-table-id "$RT" --destination-cidr-block 0.0.0.0/0 --instance-id "$ID" \\
    || aws ec2 create-route --region ${AWS::Region} --route-table-id "$RT" --destination-cidr-block 0.0.0.0/0 --instance-id "$ID"
done
"""


def add_parameters(b: Builder) -> None:
    b.use(PLATFORM_NAME)
    b.param(
        names.VPC_CIDR,
        "Network",
        "VPC CIDR block",
        "Address range of the new VPC (/16 to /18); four /20 subnets are cut from its start",
        Default="10.20.0.0/16",
        AllowedPattern=r"^(\d{1,3}\.){3}\d{1,3}/1[6-8]$",
        ConstraintDescription="a CIDR block from /16 to /18, such as 10.20.0.0/16",
    )
    b.choice(
        names.EGRESS_MODE,
        "Network",
        "Egress for private subnets",
        "nat-instance: one small self-healing NAT instance (cheapest); nat-gateway: a managed NAT gateway per AZ",
        EGRESS_MODES,
        "nat-instance",
    )


def add_vpc(b: Builder) -> ec2.VPC:
    return b.add(
        ec2.VPC(
            "Vpc",
            CidrBlock=Ref(names.VPC_CIDR),
            EnableDnsHostnames=True,
            EnableDnsSupport=True,
            Tags=platform_tags(("Name", Sub("${PlatformName}-vpc"))),
        )
    )


def add_subnet(b: Builder, vpc: ec2.VPC, logical_id: str, az: int, index: int, public: bool) -> ec2.Subnet:
    return b.add(
        ec2.Subnet(
            logical_id,
            VpcId=Ref(vpc),
            AvailabilityZone=Select(az, GetAZs("")),
            CidrBlock=Select(index, Cidr(GetAtt(vpc, "CidrBlock"), 4, SUBNET_BITS)),
            MapPublicIpOnLaunch=False,
            Tags=platform_tags(("Name", Sub("${PlatformName}-" + ("public" if public else "private") + f"-{az + 1}"))),
        )
    )


# Every subnet is a /20 (4,091 usable addresses; Fn::Cidr takes host bits), so the VPC must be
# a /16 to /18 to hold four of them.
SUBNET_BITS = "12"


def build_network(settings: Settings) -> object:
    b = Builder("lakehub network: VPC over two AZs, public and private subnets, S3 gateway endpoint, NAT egress")
    add_parameters(b)
    if settings.strict:
        # The NAT instance's Auto Scaling group and launch template break CT.AUTOSCALING.PR.1/.6 and
        # CT.EC2.PR.9/.10 (one instance type, one AZ, a public address): strict egress defaults to a
        # managed NAT gateway per AZ. nat-instance stays allowed (the templates keep both), but
        # Control Tower's hooks refuse it.
        egress = b.t.parameters[names.EGRESS_MODE]
        egress.Default = "nat-gateway"
        egress.Description = (
            "nat-gateway: a managed NAT gateway per AZ (the strict compliance profile's egress); "
            "nat-instance: one small self-healing NAT instance, which AWS Control Tower's proactive controls refuse"
        )
    add_schedule_params(b, "the NAT instance stops (it keeps running while an on-demand hub runs)")
    add_schedule_conditions_and_rules(b)
    # The NAT egress function's code and logs.
    b.use(ASSETS_BUCKET_NAME)
    b.use(ASSETS_KEY_PREFIX)
    b.use(log_retention_days(settings))
    t = b.t
    t.add_condition("DaysMonSat", Equals(Ref(BUSINESS_DAYS), "MON-SAT"))
    t.add_condition("DaysEveryDay", Equals(Ref(BUSINESS_DAYS), "SUN-SAT"))
    t.add_condition("UseNatGateway", Equals(Ref(names.EGRESS_MODE), "nat-gateway"))
    t.add_condition("UseNatInstance", Not(Equals(Ref(names.EGRESS_MODE), "nat-gateway")))
    t.add_condition("UseNatInstanceOnSchedule", And(CfnCondition("UseNatInstance"), CfnCondition("UseSchedule")))

    vpc = add_vpc(b)
    igw = b.add(ec2.InternetGateway("InternetGateway", Tags=platform_tags()))
    attach = b.add(ec2.VPCGatewayAttachment("InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(igw)))

    public = [add_subnet(b, vpc, f"PublicSubnet{i + 1}", i, i, True) for i in range(2)]
    private = [add_subnet(b, vpc, f"PrivateSubnet{i + 1}", i, i + 2, False) for i in range(2)]

    public_rt = b.add(
        ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc), Tags=platform_tags(("Name", Sub("${PlatformName}-public"))))
    )
    b.add(
        ec2.Route(
            "PublicDefaultRoute",
            DependsOn=[attach.title],
            RouteTableId=Ref(public_rt),
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId=Ref(igw),
        )
    )
    for i, subnet in enumerate(public):
        b.add(
            ec2.SubnetRouteTableAssociation(
                f"PublicSubnet{i + 1}RouteTableAssociation", SubnetId=Ref(subnet), RouteTableId=Ref(public_rt)
            )
        )

    private_rts = []
    for i, subnet in enumerate(private):
        rt = b.add(
            ec2.RouteTable(
                f"PrivateRouteTable{i + 1}",
                VpcId=Ref(vpc),
                Tags=platform_tags(("Name", Sub(f"${{PlatformName}}-private-{i + 1}"))),
            )
        )
        private_rts.append(rt)
        b.add(
            ec2.SubnetRouteTableAssociation(
                f"PrivateSubnet{i + 1}RouteTableAssociation", SubnetId=Ref(subnet), RouteTableId=Ref(rt)
            )
        )
        eip = b.add(
            ec2.EIP(
                f"NatGateway{i + 1}Eip", Condition="UseNatGateway", DependsOn=[attach.title], Domain="vpc", Tags=platform_tags()
            )
        )
        nat = b.add(
            ec2.NatGateway(
                f"NatGateway{i + 1}",
                Condition="UseNatGateway",
                AllocationId=GetAtt(eip, "AllocationId"),
                SubnetId=Ref(public[i]),
                Tags=platform_tags(),
            )
        )
        b.add(
            ec2.Route(
                f"PrivateDefaultRoute{i + 1}",
                Condition="UseNatGateway",
                RouteTableId=Ref(rt),
                DestinationCidrBlock="0.0.0.0/0",
                NatGatewayId=Ref(nat),
            )
        )

    b.add(
        ec2.VPCEndpoint(
            "S3GatewayEndpoint",
            VpcId=Ref(vpc),
            ServiceName=Sub("com.amazonaws.${AWS::Region}.s3"),
            VpcEndpointType="Gateway",
            RouteTableIds=[Ref(public_rt)] + [Ref(rt) for rt in private_rts],
        )
    )
    add_nat_instance(b, vpc, public, private_rts)

    b.output(names.VPC_ID, Ref(vpc), "ID of the VPC")
    b.output(names.PUBLIC_SUBNET_1_ID, Ref(public[0]), "Public subnet in the first AZ (load balancer)")
    b.output(names.PUBLIC_SUBNET_2_ID, Ref(public[1]), "Public subnet in the second AZ (load balancer)")
    b.output(names.PRIVATE_SUBNET_1_ID, Ref(private[0]), "Private subnet in the first AZ (tasks)")
    b.output(names.PRIVATE_SUBNET_2_ID, Ref(private[1]), "Private subnet in the second AZ (tasks)")
    b.output(names.VPC_CIDR, GetAtt(vpc, "CidrBlock"), "CIDR block of the VPC")
    # Observe (issue 18): main's NAT-down alarm and dashboard read the group's EC2 metrics.
    b.output(
        names.NAT_INSTANCE_GROUP_NAME,
        If("UseNatInstance", Ref("NatInstanceGroup"), "none"),
        "Auto Scaling group of the NAT instance, or 'none' (NAT gateways)",
    )
    return finish(b, settings)


def add_nat_instance(b: Builder, vpc, public, private_rts) -> autoscaling.AutoScalingGroup:
    """A self-healing NAT instance: an Auto Scaling group of one t4g.nano in the public subnets."""
    sg = b.add(
        ec2.SecurityGroup(
            "NatInstanceSecurityGroup",
            Condition="UseNatInstance",
            GroupDescription="lakehub NAT instance: traffic from the VPC only",
            VpcId=Ref(vpc),
            SecurityGroupIngress=[
                ec2.SecurityGroupRule(
                    IpProtocol="-1", CidrIp=GetAtt(vpc, "CidrBlock"), Description="forward traffic from the VPC"
                )
            ],
            SecurityGroupEgress=[
                port_rule(80, "HTTP egress for the private subnets", cidr="0.0.0.0/0"),
                port_rule(443, "HTTPS egress for the private subnets", cidr="0.0.0.0/0"),
                port_rule(636, "LDAPS egress (ldap sign-in mode)", cidr="0.0.0.0/0"),
            ],
            Tags=platform_tags(("Name", Sub("${PlatformName}-nat"))),
        )
    )
    route_table_arns = [
        Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:route-table/${RT}", RT=Ref(rt)) for rt in private_rts
    ]
    role = b.add(
        iam.Role(
            "NatInstanceRole",
            Condition="UseNatInstance",
            AssumeRolePolicyDocument=service_trust("ec2.amazonaws.com"),
            Policies=[
                inline_policy(
                    "nat",
                    [
                        Statement(
                            Effect=Allow,
                            Action=[awacs_ec2.ReplaceRoute, awacs_ec2.CreateRoute],
                            Resource=route_table_arns,
                        ),
                        Statement(
                            Effect=Allow,
                            Action=[awacs_ec2.ModifyInstanceAttribute],
                            Resource=[Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*")],
                            Condition=Condition(
                                StringEquals({"aws:ResourceTag/" + names.TAG_PLATFORM: Ref(names.PLATFORM_NAME)})
                            ),
                        ),
                    ],
                )
            ],
            Tags=platform_tags(),
        )
    )
    profile = b.add(iam.InstanceProfile("NatInstanceProfile", Condition="UseNatInstance", Roles=[Ref(role)]))
    lt = b.add(
        ec2.LaunchTemplate(
            "NatInstanceLaunchTemplate",
            Condition="UseNatInstance",
            LaunchTemplateData=ec2.LaunchTemplateData(
                ImageId="{{resolve:ssm:" + NAT_INSTANCE_AMI_SSM + "}}",
                InstanceType="t4g.nano",
                IamInstanceProfile=ec2.IamInstanceProfile(Arn=GetAtt(profile, "Arn")),
                MetadataOptions=ec2.MetadataOptions(HttpTokens="required", HttpEndpoint="enabled", HttpPutResponseHopLimit=1),
                NetworkInterfaces=[
                    ec2.NetworkInterfaces(
                        DeviceIndex=0, AssociatePublicIpAddress=True, Groups=[Ref(sg)], DeleteOnTermination=True
                    )
                ],
                BlockDeviceMappings=[
                    ec2.LaunchTemplateBlockDeviceMapping(
                        DeviceName="/dev/xvda",
                        Ebs=ec2.EBSBlockDevice(VolumeType="gp3", VolumeSize=8, Encrypted=True, DeleteOnTermination=True),
                    )
                ],
                UserData=Base64(
                    Sub(
                        NAT_USER_DATA,
                        VpcCidr=GetAtt(vpc, "CidrBlock"),
                        PrivateRouteTable1=Ref(private_rts[0]),
                        PrivateRouteTable2=Ref(private_rts[1]),
                    )
                ),
                TagSpecifications=[
                    ec2.TagSpecifications(ResourceType="instance", Tags=platform_tags(("Name", Sub("${PlatformName}-nat")))),
                ],
            ),
        )
    )
    add_checkov_skip(
        lt,
        "CKV_AWS_88",
        "A NAT instance forwards the private subnets' traffic to the internet and needs a public address for it; its security group admits only the VPC's range and it requires IMDSv2",
    )
    group = b.add(
        autoscaling.AutoScalingGroup(
            "NatInstanceGroup",
            Condition="UseNatInstance",
            MinSize="1",
            MaxSize="1",
            DesiredCapacity="1",
            LaunchTemplate=autoscaling.LaunchTemplateSpecification(
                LaunchTemplateId=Ref(lt), Version=GetAtt(lt, "LatestVersionNumber")
            ),
            VPCZoneIdentifier=[Ref(s) for s in public],
            HealthCheckType="EC2",
            Tags=[
                autoscaling.Tag(names.TAG_PLATFORM, Ref(names.PLATFORM_NAME), True),
            ],
        )
    )
    add_nat_schedule(b, group)
    add_nat_egress_function(b, group)
    return group


def add_nat_schedule(b: Builder, group) -> None:
    """Business-hours schedule. The start raises the floor, the maximum and the desired capacity
    to 1; the stop lowers only the floor (MinSize 0): whether the NAT keeps running after hours
    is the NAT egress function's decision (any on-demand hub pending or running)."""
    days = unix_cron_days()
    for title, minute, hour, sizes in (
        ("NatInstanceStart", NAT_START_MINUTE, BUSINESS_HOURS_START, dict(MinSize=1, MaxSize=1, DesiredCapacity=1)),
        ("NatInstanceStop", NAT_STOP_MINUTE, BUSINESS_HOURS_END, dict(MinSize=0)),
    ):
        b.add(
            autoscaling.ScheduledAction(
                title,
                Condition="UseNatInstanceOnSchedule",
                AutoScalingGroupName=Ref(group),
                Recurrence=Sub(f"{minute} ${{{hour}}} * * ${{Days}}", Days=days),
                TimeZone=Ref(SCHEDULE_TIMEZONE),
                **sizes,
            )
        )


# The function runs this often besides EC2 state changes: it lowers the NAT after business
# hours (within this many minutes of the stop action) and recovers from a missed event.
NAT_EGRESS_RECONCILE_MINUTES = 5
# EC2 instance states that start or end a hub's need for egress (all six).
EC2_STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")


# Deliberate checkov exceptions for the NAT egress function (docs/SECURITY.md lists each).
NAT_EGRESS_SKIPS = {
    "CKV_AWS_116": (
        "EventBridge invokes the function asynchronously and Lambda retries a failed run twice; every later EC2 state "
        f"change and the run every {NAT_EGRESS_RECONCILE_MINUTES} minutes decide again from the current state, so a dead-letter queue "
        "would hold events no one needs to replay"
    ),
    "CKV_AWS_117": (
        "The function starts and stops the NAT instance: inside the VPC it would reach the Auto Scaling and EC2 APIs only "
        "through the NAT it stops (or through interface endpoints that cost more than the NAT); it serves no network clients"
    ),
    "CKV_AWS_115": (
        "Reserving concurrency fails the stack in accounts whose Lambda concurrency quota is low (new accounts: the account "
        "must keep 100 unreserved); concurrent runs reach the same decision from the same state, so a reservation protects "
        "nothing (rule no-reserved-concurrency, docs/AWS_NOTES.md)"
    ),
    "CKV_AWS_173": (
        "The environment holds the NAT group's name, the platform name and a tag value, no secret; Lambda encrypts "
        "environment variables at rest with an AWS-managed key, and a customer-managed key would add cost and a key policy"
    ),
}


def add_nat_egress_function(b: Builder, group) -> awslambda.Function:
    """The NAT egress function and what invokes it: EC2 state changes and a periodic run."""
    condition = "UseNatInstanceOnSchedule"
    fn = add_function(
        b,
        "NatEgressFunction",
        "nat_egress",
        "lakehub: keeps the NAT instance up while business hours or any on-demand hub of the platform need egress",
        [
            Statement(
                Effect=Allow,
                Action=[awacs_autoscaling.SetDesiredCapacity],
                Resource=[
                    Sub(
                        "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/${Group}",
                        Group=Ref(group),
                    )
                ],
            ),
            # Describe calls support no resource-level permissions.
            Statement(
                Effect=Allow,
                Action=[awacs_autoscaling.DescribeAutoScalingGroups, awacs_ec2.DescribeInstances],
                Resource=["*"],
            ),
        ],
        timeout=60,
        memory=128,
        environment={
            "NAT_GROUP_NAME": Ref(group),
            "PLATFORM_NAME": Ref(names.PLATFORM_NAME),
            "HUB_PRODUCT": names.ON_DEMAND_HUB_PRODUCT,
        },
        condition=condition,
        skip_reasons=NAT_EGRESS_SKIPS,
    )
    rules = [
        b.add(
            events.Rule(
                "NatEgressOnInstanceStateRule",
                Condition=condition,
                Description=Sub(
                    "lakehub ${PlatformName}: an EC2 instance changed state; the NAT egress function decides whether egress stays up"
                ),
                EventPattern={
                    "source": ["aws.ec2"],
                    "detail-type": ["EC2 Instance State-change Notification"],
                    "detail": {"state": list(EC2_STATES)},
                },
                State="ENABLED",
                Targets=[events.Target(Id="NatEgressFunction", Arn=GetAtt(fn, "Arn"))],
            )
        ),
        b.add(
            events.Rule(
                "NatEgressReconcileRule",
                Condition=condition,
                Description=Sub("lakehub ${PlatformName}: lowers the NAT after business hours once no on-demand hub runs"),
                ScheduleExpression=f"rate({NAT_EGRESS_RECONCILE_MINUTES} minutes)",
                State="ENABLED",
                Targets=[events.Target(Id="NatEgressFunction", Arn=GetAtt(fn, "Arn"))],
            )
        ),
    ]
    for rule in rules:
        b.add(
            awslambda.Permission(
                rule.title.replace("Rule", "Permission"),
                Condition=condition,
                Action="lambda:InvokeFunction",
                FunctionName=Ref(fn),
                Principal="events.amazonaws.com",
                SourceArn=GetAtt(rule, "Arn"),
            )
        )
    return fn
