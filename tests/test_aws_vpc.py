"""The VPC preflight of `aws up`: the pure core with hand-built EC2 answers, then the boto3 shell
against moto in-process."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from devserver.aws.vpc import (
    ENV_DETAIL_MAX,
    Verdict,
    VpcAssessment,
    VpcCheckDenied,
    assess_vpc,
    check_function_vpc,
)
from stub_runtime.errors import LivelambdaError
from stub_runtime.outcomes import EndpointUnreachable

VPC = "vpc-1"
REGION = "eu-west-1"
APPSYNC_SERVICE = f"com.amazonaws.{REGION}.appsync-api"


# --- hand-built EC2 answers, shaped as boto3 returns them ----------------------------------------


def config(*subnets: str, vpc: str | None = VPC) -> dict[str, Any]:
    cfg: dict[str, Any] = {"SubnetIds": list(subnets), "SecurityGroupIds": ["sg-1"]}
    if vpc is not None:
        cfg["VpcId"] = vpc
    return cfg


def subnet(subnet_id: str, vpc: str = VPC) -> dict[str, Any]:
    return {"SubnetId": subnet_id, "VpcId": vpc, "CidrBlock": "10.0.0.0/24", "State": "available"}


def route(
    target_key: str | None = None,
    target: str | None = None,
    *,
    state: str = "active",
    dest: str = "0.0.0.0/0",
) -> dict[str, Any]:
    r: dict[str, Any] = {"DestinationCidrBlock": dest, "State": state, "Origin": "CreateRoute"}
    if target_key:
        r[target_key] = target
    return r


LOCAL = route("GatewayId", "local", dest="10.0.0.0/16")


def table(
    table_id: str, *routes: dict[str, Any], subnets: tuple[str, ...] = (), main: bool = False, vpc: str = VPC
) -> dict[str, Any]:
    assocs: list[dict[str, Any]] = [
        {
            "Main": False,
            "RouteTableId": table_id,
            "SubnetId": s,
            "RouteTableAssociationId": f"a-{s}",
            "AssociationState": {"State": "associated"},
        }
        for s in subnets
    ]
    if main:
        assocs.append(
            {
                "Main": True,
                "RouteTableId": table_id,
                "RouteTableAssociationId": f"a-main-{table_id}",
                "AssociationState": {"State": "associated"},
            }
        )
    return {"RouteTableId": table_id, "VpcId": vpc, "Routes": [LOCAL, *routes], "Associations": assocs}


def appsync_endpoint(private_dns: bool = True, vpc: str = VPC) -> dict[str, Any]:
    return {
        "VpcEndpointId": "vpce-1",
        "VpcEndpointType": "Interface",
        "VpcId": vpc,
        "ServiceName": APPSYNC_SERVICE,
        "State": "available",
        "PrivateDnsEnabled": private_dns,
    }


NAT = route("NatGatewayId", "nat-1")
IGW = route("GatewayId", "igw-1")


def one(
    cfg: dict[str, Any],
    tables: list[dict[str, Any]],
    endpoints: list[dict[str, Any]] | None = None,
) -> VpcAssessment:
    subnets = [subnet(s) for s in cfg["SubnetIds"]]
    return assess_vpc(cfg, subnets, tables, endpoints or [])


# --- the pure core ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [None, {}, {"SubnetIds": [], "SecurityGroupIds": [], "VpcId": ""}])
def test_no_vpc_config_is_outside_a_vpc_and_reachable(cfg: Any) -> None:
    a = assess_vpc(cfg, [], [], [])
    assert (a.in_vpc, a.reachable, a.subnets, a.warnings) == (False, True, (), ())
    assert a.env_detail == ""
    assert a.refusal_message() is None


def test_nat_gateway_in_explicitly_associated_table() -> None:
    a = one(
        config("subnet-a"), [table("rtb-main", IGW, main=True), table("rtb-a", NAT, subnets=("subnet-a",))]
    )
    assert a.in_vpc and a.reachable and a.vpc_id == VPC
    (f,) = a.subnets
    assert (f.subnet_id, f.route_table_id, f.main_table, f.verdict, f.target) == (
        "subnet-a",
        "rtb-a",
        False,
        Verdict.NAT_GATEWAY,
        "nat-1",
    )
    assert a.refusal_message() is None
    assert a.env_detail == "vpc-1 via nat-1"


def test_explicit_association_wins_over_the_main_table() -> None:
    # The main table has a NAT route, but subnet-a is bound to a table with only an igw route.
    a = one(
        config("subnet-a"), [table("rtb-main", NAT, main=True), table("rtb-a", IGW, subnets=("subnet-a",))]
    )
    assert not a.reachable
    (f,) = a.subnets
    assert (f.route_table_id, f.main_table, f.verdict) == ("rtb-a", False, Verdict.INTERNET_GATEWAY_ONLY)


def test_subnet_without_association_uses_the_main_table() -> None:
    a = one(
        config("subnet-b"), [table("rtb-a", IGW, subnets=("subnet-a",)), table("rtb-main", NAT, main=True)]
    )
    assert a.reachable
    (f,) = a.subnets
    assert (f.route_table_id, f.main_table, f.verdict) == ("rtb-main", True, Verdict.NAT_GATEWAY)


def test_disassociated_association_does_not_bind_the_subnet() -> None:
    stale = table("rtb-old", IGW, subnets=("subnet-a",))
    stale["Associations"][0]["AssociationState"] = {"State": "disassociated"}
    a = one(config("subnet-a"), [stale, table("rtb-main", NAT, main=True)])
    assert a.subnets[0].route_table_id == "rtb-main" and a.reachable


def test_internet_gateway_only_is_refused_with_the_reason() -> None:
    a = one(config("subnet-a"), [table("rtb-a", IGW, subnets=("subnet-a",), main=True)])
    assert a.in_vpc and not a.reachable
    (f,) = a.subnets
    assert f.verdict is Verdict.INTERNET_GATEWAY_ONLY and not f.reachable
    assert f.reason == (
        "routes 0.0.0.0/0 to an internet gateway, which a Lambda ENI cannot use (it has no public address)"
    )


@pytest.mark.parametrize("key,target", [("InstanceId", "i-1"), ("NetworkInterfaceId", "eni-1")])
def test_instance_or_eni_is_assumed_to_be_a_nat_instance(key: str, target: str) -> None:
    a = one(config("subnet-a"), [table("rtb-a", route(key, target), main=True)])
    (f,) = a.subnets
    assert a.reachable and f.verdict is Verdict.NAT_INSTANCE and f.target == target
    assert "assumed to be a NAT instance" in f.reason
    assert a.unverified


def test_nat_instance_route_showing_both_instance_and_eni_names_the_instance() -> None:
    r = route("InstanceId", "i-9")
    r["NetworkInterfaceId"] = "eni-9"
    a = one(config("subnet-a"), [table("rtb-a", r, main=True)])
    assert a.subnets[0].target == "i-9"


def test_transit_gateway_is_reachable_but_unverified() -> None:
    a = one(config("subnet-a"), [table("rtb-a", route("TransitGatewayId", "tgw-1"), main=True)])
    (f,) = a.subnets
    assert a.reachable and f.verdict is Verdict.TRANSIT_GATEWAY and "unverified" in f.reason
    assert a.unverified
    assert a.env_detail == "vpc-1 via tgw-1 (unverified)"


def test_nat_gateway_is_verified() -> None:
    a = one(config("subnet-a"), [table("rtb-a", NAT, main=True)])
    assert a.reachable and not a.unverified


def test_blackhole_nat_route_does_not_count() -> None:
    a = one(
        config("subnet-a"), [table("rtb-a", route("NatGatewayId", "nat-gone", state="blackhole"), main=True)]
    )
    (f,) = a.subnets
    assert not a.reachable and f.verdict is Verdict.BLACKHOLE
    assert "nat-gone" in f.reason and "blackhole" in f.reason


def test_no_default_route() -> None:
    a = one(
        config("subnet-a"), [table("rtb-a", route("NatGatewayId", "nat-1", dest="10.1.0.0/16"), main=True)]
    )
    assert not a.reachable and a.subnets[0].verdict is Verdict.NO_DEFAULT_ROUTE


@pytest.mark.parametrize(
    "key,target",
    [
        ("VpcPeeringConnectionId", "pcx-1"),
        ("GatewayId", "vgw-1"),
        ("EgressOnlyInternetGatewayId", "eigw-1"),
    ],
)
def test_other_targets_are_not_a_nat(key: str, target: str) -> None:
    a = one(config("subnet-a"), [table("rtb-a", route(key, target), main=True)])
    (f,) = a.subnets
    assert not a.reachable and f.verdict is Verdict.OTHER_TARGET and target in f.reason


def test_mixed_subnets_all_must_reach_a_nat() -> None:
    tables = [
        table("rtb-main", main=True),  # no default route
        table("rtb-nat", NAT, subnets=("subnet-a",)),
        table("rtb-pub", IGW, subnets=("subnet-b",)),
    ]
    a = one(config("subnet-a", "subnet-b", "subnet-c"), tables)
    assert not a.reachable
    verdicts = {f.subnet_id: f.verdict for f in a.subnets}
    assert verdicts == {
        "subnet-a": Verdict.NAT_GATEWAY,
        "subnet-b": Verdict.INTERNET_GATEWAY_ONLY,
        "subnet-c": Verdict.NO_DEFAULT_ROUTE,
    }
    assert [f.subnet_id for f in a.unreachable_subnets] == ["subnet-b", "subnet-c"]

    message = a.refusal_message("orders-api")
    assert message is not None
    assert "orders-api" in message and VPC in message
    assert "subnet-b (route table rtb-pub)" in message
    assert "subnet-c (route table rtb-main, the VPC's main table)" in message
    assert "subnet-a" not in message  # the good subnet is not blamed
    assert "livelambda aws up --vpc detach" in message and "livelambda aws up --vpc keep" in message
    assert "livelambda aws down" in message

    assert a.env_detail == "vpc-1 subnets subnet-b,subnet-c: no NAT route"


def test_subnet_missing_from_describe_subnets_is_unreachable() -> None:
    cfg = config("subnet-a", "subnet-gone")
    a = assess_vpc(cfg, [subnet("subnet-a")], [table("rtb", NAT, main=True)], [])
    assert not a.reachable
    assert {f.subnet_id: f.verdict for f in a.subnets}["subnet-gone"] is Verdict.SUBNET_NOT_FOUND


def test_vpc_id_comes_from_the_subnets_when_the_config_lacks_it() -> None:
    a = assess_vpc(
        config("subnet-a", vpc=None),
        [subnet("subnet-a", vpc="vpc-9")],
        [table("rtb-other", NAT, main=True, vpc="vpc-other"), table("rtb", IGW, main=True, vpc="vpc-9")],
        [],
    )
    assert a.vpc_id == "vpc-9"
    assert a.subnets[0].route_table_id == "rtb"  # the other VPC's main table is not this one's


def test_no_route_table_at_all() -> None:
    a = one(config("subnet-a"), [])
    assert not a.reachable and a.subnets[0].verdict is Verdict.NO_ROUTE_TABLE


def test_appsync_endpoint_with_private_dns_warns() -> None:
    a = one(config("subnet-a"), [table("rtb", NAT, main=True)], [appsync_endpoint(private_dns=True)])
    assert a.reachable
    (w,) = a.warnings
    assert APPSYNC_SERVICE in w and "private DNS" in w and "vpce-1" in w
    assert "appsync-api" in a.env_detail


def test_appsync_endpoint_without_private_dns_is_fine() -> None:
    a = one(config("subnet-a"), [table("rtb", NAT, main=True)], [appsync_endpoint(private_dns=False)])
    assert a.warnings == ()


def test_endpoints_for_other_services_or_vpcs_do_not_warn() -> None:
    sqs = {**appsync_endpoint(), "ServiceName": f"com.amazonaws.{REGION}.sqs"}
    elsewhere = appsync_endpoint(vpc="vpc-other")
    a = one(config("subnet-a"), [table("rtb", NAT, main=True)], [sqs, elsewhere])
    assert a.warnings == ()
    assert "appsync-api" not in a.env_detail


def test_appsync_endpoint_warning_is_in_the_refusal_too() -> None:
    a = one(config("subnet-a"), [table("rtb", IGW, main=True)], [appsync_endpoint()])
    message = a.refusal_message()
    assert message is not None and "Warning:" in message and APPSYNC_SERVICE in message


def test_env_detail_stays_short_with_many_subnets() -> None:
    ids = [f"subnet-0123456789abcdef{i:01x}" for i in range(16)]
    a = one(config(*ids), [table("rtb", IGW, main=True)])
    detail = a.env_detail
    assert len(detail) <= ENV_DETAIL_MAX and "\n" not in detail
    assert detail.startswith("vpc-1 subnets subnet-0123456789abcdef0,") and "more: no NAT route" in detail


def test_env_detail_is_what_the_stub_quotes() -> None:
    # The stub's EndpointUnreachable puts the detail in parentheses; "" or "1" would be dropped.
    a = one(config("subnet-a"), [table("rtb", IGW, main=True)])
    message = str(EndpointUnreachable("wss://x", "timed out", in_vpc=True, vpc_detail=a.env_detail))
    assert "(vpc-1 subnets subnet-a: no NAT route)" in message


# --- properties -------------------------------------------------------------------------------------

TARGETS = st.sampled_from(
    [
        ("NatGatewayId", "nat-1"),
        ("InstanceId", "i-1"),
        ("NetworkInterfaceId", "eni-1"),
        ("TransitGatewayId", "tgw-1"),
        ("GatewayId", "igw-1"),
        ("GatewayId", "vgw-1"),
        ("VpcPeeringConnectionId", "pcx-1"),
        ("EgressOnlyInternetGatewayId", "eigw-1"),
    ]
)
ROUTES = st.builds(
    lambda t, state, dest: route(t[0], t[1], state=state, dest=dest),
    TARGETS,
    st.sampled_from(["active", "blackhole"]),
    st.sampled_from(["0.0.0.0/0", "10.9.0.0/16", "::/0"]),
)
SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]


@st.composite
def vpcs(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    n_tables = draw(st.integers(1, 4))
    main_index = draw(st.one_of(st.none(), st.integers(0, n_tables - 1)))
    owner = {s: draw(st.one_of(st.none(), st.integers(0, n_tables - 1))) for s in SUBNETS}
    tables = [
        table(
            f"rtb-{i}",
            *draw(st.lists(ROUTES, max_size=3)),
            subnets=tuple(s for s in SUBNETS if owner[s] == i),
            main=(i == main_index),
        )
        for i in range(n_tables)
    ]
    chosen = draw(st.lists(st.sampled_from(SUBNETS), min_size=1, max_size=3, unique=True))
    return config(*chosen), tables


def oracle_reachable(subnet_id: str, tables: list[dict[str, Any]]) -> bool:
    """Independent statement of the rule: effective table, then an active 0.0.0.0/0 NAT-ish route."""
    explicit = [t for t in tables if any(a.get("SubnetId") == subnet_id for a in t["Associations"])]
    mains = [t for t in tables if any(a.get("Main") for a in t["Associations"])]
    effective = (explicit or mains or [None])[0]
    if effective is None:
        return False
    return any(
        r["DestinationCidrBlock"] == "0.0.0.0/0"
        and r["State"] == "active"
        and any(k in r for k in ("NatGatewayId", "InstanceId", "NetworkInterfaceId", "TransitGatewayId"))
        for r in effective["Routes"]
    )


@given(vpcs())
def test_property_subnet_reachable_iff_its_table_has_an_active_nat_route(case: Any) -> None:
    cfg, tables = case
    a = one(cfg, tables)
    for f in a.subnets:
        assert f.reachable == oracle_reachable(f.subnet_id, tables), f
    assert a.reachable == all(oracle_reachable(s, tables) for s in cfg["SubnetIds"])


@given(vpcs(), st.integers(0, 3), st.sampled_from(["active", "blackhole"]))
def test_property_an_igw_route_never_makes_a_subnet_reachable(case: Any, where: int, state: str) -> None:
    cfg, tables = case
    before = one(cfg, tables)
    target = tables[where % len(tables)]
    target["Routes"].append(route("GatewayId", "igw-new", state=state))
    after = one(cfg, tables)
    assert [f.reachable for f in after.subnets] == [f.reachable for f in before.subnets]
    assert after.reachable == before.reachable


@given(vpcs())
def test_property_refusal_exactly_when_unreachable_and_names_every_bad_subnet(case: Any) -> None:
    cfg, tables = case
    a = one(cfg, tables)
    message = a.refusal_message()
    assert (message is None) == a.reachable
    if message is not None:
        for f in a.unreachable_subnets:
            assert f.subnet_id in message
            assert f.subnet_id in a.env_detail
    assert len(a.env_detail) <= ENV_DETAIL_MAX


# --- the boto3 shell against moto -------------------------------------------------------------------


@pytest.fixture
def ec2() -> Any:
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION)


def build_vpc(ec2: Any, *, nat: bool) -> tuple[str, str, str]:
    """A VPC with a public subnet (igw) and a private one; the private one gets a NAT route if `nat`."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=public_rt, SubnetId=public)
    if nat:
        eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat_id = ec2.create_nat_gateway(SubnetId=public, AllocationId=eip)["NatGateway"]["NatGatewayId"]
        private_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=private_rt, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id)
        ec2.associate_route_table(RouteTableId=private_rt, SubnetId=private)
    return vpc, public, private


def test_shell_private_subnet_behind_a_nat_gateway(ec2: Any) -> None:
    vpc, _, private = build_vpc(ec2, nat=True)
    a = check_function_vpc(ec2, {"SubnetIds": [private], "SecurityGroupIds": [], "VpcId": vpc}, REGION)
    assert a.in_vpc and a.reachable and a.vpc_id == vpc
    (f,) = a.subnets
    assert f.verdict is Verdict.NAT_GATEWAY and f.target is not None and f.target.startswith("nat-")
    assert a.env_detail == f"{vpc} via {f.target}"


def test_shell_internet_gateway_only(ec2: Any) -> None:
    vpc, public, private = build_vpc(ec2, nat=False)
    a = check_function_vpc(
        ec2, {"SubnetIds": [public, private], "SecurityGroupIds": [], "VpcId": vpc}, REGION
    )
    assert not a.reachable
    verdicts = {f.subnet_id: f.verdict for f in a.subnets}
    # The public subnet routes to the igw (useless to Lambda); the private one falls to the main
    # table, which has only the local route.
    assert verdicts == {public: Verdict.INTERNET_GATEWAY_ONLY, private: Verdict.NO_DEFAULT_ROUTE}
    message = a.refusal_message()
    assert message is not None and public in message and private in message


def test_shell_finds_the_vpc_from_the_subnets_and_warns_about_the_appsync_endpoint(ec2: Any) -> None:
    vpc, _, private = build_vpc(ec2, nat=True)
    ec2.create_vpc_endpoint(
        VpcId=vpc,
        ServiceName=APPSYNC_SERVICE,
        VpcEndpointType="Interface",
        SubnetIds=[private],
        PrivateDnsEnabled=True,
    )
    # An endpoint for another service with private DNS is no concern of ours.
    ec2.create_vpc_endpoint(
        VpcId=vpc,
        ServiceName=f"com.amazonaws.{REGION}.sqs",
        VpcEndpointType="Interface",
        SubnetIds=[private],
        PrivateDnsEnabled=True,
    )
    a = check_function_vpc(ec2, {"SubnetIds": [private]}, REGION)
    assert a.vpc_id == vpc and a.reachable
    (w,) = a.warnings
    assert APPSYNC_SERVICE in w


def test_shell_reports_a_deleted_subnet_instead_of_failing(ec2: Any) -> None:
    vpc, _, private = build_vpc(ec2, nat=True)
    a = check_function_vpc(ec2, {"SubnetIds": [private, "subnet-0000000000deadbee"], "VpcId": vpc}, REGION)
    assert not a.reachable
    assert [f.verdict for f in a.subnets] == [Verdict.NAT_GATEWAY, Verdict.SUBNET_NOT_FOUND]


def test_shell_makes_no_call_outside_a_vpc() -> None:
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:  # any call would fail: nothing is queued
        a = check_function_vpc(client, {"SubnetIds": [], "SecurityGroupIds": []}, REGION)
        stubber.assert_no_pending_responses()
    assert not a.in_vpc and a.reachable


def test_shell_makes_three_calls_with_the_right_filters() -> None:
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_subnets",
            {"Subnets": [subnet("subnet-a")]},
            {"Filters": [{"Name": "subnet-id", "Values": ["subnet-a"]}]},
        )
        stubber.add_response(
            "describe_route_tables",
            {"RouteTables": [table("rtb", NAT, main=True)]},
            {"Filters": [{"Name": "vpc-id", "Values": [VPC]}]},
        )
        stubber.add_response(
            "describe_vpc_endpoints",
            {"VpcEndpoints": []},
            {
                "Filters": [
                    {"Name": "vpc-id", "Values": [VPC]},
                    {"Name": "service-name", "Values": [APPSYNC_SERVICE]},
                ]
            },
        )
        a = check_function_vpc(client, config("subnet-a"), REGION)
        stubber.assert_no_pending_responses()
    assert a.reachable


@pytest.mark.parametrize(
    "failing,permission",
    [
        ("describe_subnets", "ec2:DescribeSubnets"),
        ("describe_route_tables", "ec2:DescribeRouteTables"),
        ("describe_vpc_endpoints", "ec2:DescribeVpcEndpoints"),
    ],
)
@pytest.mark.parametrize("code", ["UnauthorizedOperation", "AccessDenied"])
def test_shell_permission_error_names_the_permission_and_the_way_out(
    failing: str, permission: str, code: str
) -> None:
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    ok = {
        "describe_subnets": {"Subnets": [subnet("subnet-a")]},
        "describe_route_tables": {"RouteTables": [table("rtb", NAT, main=True)]},
        "describe_vpc_endpoints": {"VpcEndpoints": []},
    }
    with Stubber(client) as stubber:
        for op in ("describe_subnets", "describe_route_tables", "describe_vpc_endpoints"):
            if op == failing:
                stubber.add_client_error(
                    op, service_error_code=code, service_message="not authorized", http_status_code=403
                )
                break
            stubber.add_response(op, ok[op])
        with pytest.raises(VpcCheckDenied) as caught:
            check_function_vpc(client, config("subnet-a"), REGION)
    assert isinstance(caught.value, LivelambdaError)
    assert caught.value.permission == permission
    message = str(caught.value)
    assert permission in message and "livelambda aws up --vpc keep" in message


def test_shell_other_client_errors_propagate() -> None:
    client = boto3.client("ec2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "describe_subnets", service_error_code="InvalidParameterValue", http_status_code=400
        )
        with pytest.raises(ClientError):
            check_function_vpc(client, config("subnet-a"), REGION)
