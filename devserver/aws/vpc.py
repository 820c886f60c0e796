"""The VPC preflight of `livelambda aws up`: can a function's subnets reach AppSync Events?

AppSync Event APIs have only public endpoints (no private API, no PrivateLink), and a Lambda ENI in
a VPC has no public address, so a function in a VPC reaches them only through a NAT: its subnet's
route table needs an active `0.0.0.0/0` route to a NAT gateway (or a NAT instance). A route to an
internet gateway alone does not help. Lambda may place a sandbox in any of the function's subnets,
so the function can reach AppSync only when *every* one of them can; one subnet without a NAT is
enough for some invocations to fail.

`assess_vpc` is the pure core: it takes the dicts exactly as Lambda's `get_function_configuration`
(`VpcConfig`) and EC2's `describe_subnets`, `describe_route_tables` and `describe_vpc_endpoints`
return them and judges each subnet. `check_function_vpc` is the boto3 shell that makes those three
calls.

What it cannot see, and so takes on trust (the developer can always choose `--vpc keep`):
- a NAT gateway's connectivity type (a *private* NAT gateway gives no internet) and whether the NAT
  gateway's own subnet routes to an internet gateway;
- that an instance or ENI target is a NAT instance, and that a transit gateway leads to a NAT
  (these are reported as assumed / unverified);
- IPv6 egress (an egress-only internet gateway), which only dual-stack functions could use.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stub_runtime.errors import CallerFault

DEFAULT_ROUTE = "0.0.0.0/0"
# The stub quotes LIVELAMBDA_VPC in its error; the function's whole environment is capped at 4 KB.
ENV_DETAIL_MAX = 200

_IGW_REASON = (
    "routes 0.0.0.0/0 to an internet gateway, which a Lambda ENI cannot use (it has no public address)"
)
# Association states that no longer (or never did) bind a subnet to a table.
_DEAD_ASSOCIATION_STATES = frozenset({"disassociating", "disassociated", "failed"})


class Verdict(str, enum.Enum):
    """How one subnet reaches (or fails to reach) the internet."""

    NAT_GATEWAY = "nat-gateway"
    NAT_INSTANCE = "nat-instance"  # an instance or ENI target, assumed to be a NAT instance
    TRANSIT_GATEWAY = "transit-gateway"  # assumed to lead to a NAT: unverified
    INTERNET_GATEWAY_ONLY = "internet-gateway-only"
    BLACKHOLE = "blackhole"
    OTHER_TARGET = "other-target"
    NO_DEFAULT_ROUTE = "no-default-route"
    NO_ROUTE_TABLE = "no-route-table"
    SUBNET_NOT_FOUND = "subnet-not-found"

    @property
    def reachable(self) -> bool:
        return self in _REACHABLE

    @property
    def verified(self) -> bool:
        """Reachable, and livelambda did not have to assume what the route's target is."""
        return self is Verdict.NAT_GATEWAY


_REACHABLE = frozenset({Verdict.NAT_GATEWAY, Verdict.NAT_INSTANCE, Verdict.TRANSIT_GATEWAY})
# Which target wins when a (hand-built) table holds several active default routes: the surest first.
_RANK = {"NatGatewayId": 0, "InstanceId": 1, "NetworkInterfaceId": 1, "TransitGatewayId": 2}


@dataclass(frozen=True)
class SubnetFinding:
    subnet_id: str
    route_table_id: str | None  # the table that applies to the subnet (None: none found)
    main_table: bool  # the table applies because the subnet has no explicit association
    verdict: Verdict
    reason: str
    target: str | None = None  # the default route's target (nat-…, i-…, tgw-…, igw-…), if any

    @property
    def reachable(self) -> bool:
        return self.verdict.reachable


@dataclass(frozen=True)
class VpcAssessment:
    """What the preflight found for one function.

    `reachable` is true only when *every* subnet of the function reaches a NAT, because Lambda may
    put any sandbox in any of the function's subnets. A function outside a VPC is reachable.
    """

    in_vpc: bool
    vpc_id: str | None
    reachable: bool
    subnets: tuple[SubnetFinding, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def unreachable_subnets(self) -> tuple[SubnetFinding, ...]:
        return tuple(f for f in self.subnets if not f.reachable)

    @property
    def unverified(self) -> bool:
        """Reachable only on an assumption (a NAT instance, a transit gateway)."""
        return any(f.reachable and not f.verdict.verified for f in self.subnets)

    def refusal_message(self, function_name: str | None = None) -> str | None:
        """Why `aws up` will not switch this function to live mode, or None when it may."""
        if self.reachable:
            return None
        who = f"function {function_name}" if function_name else "the function"
        bad = self.unreachable_subnets
        lines = [
            f"{who} runs in VPC {self.vpc_id or '(unknown)'}, and {len(bad)} of its {len(self.subnets)} "
            "subnets have no route to a NAT, so the stub could not reach AppSync Events from them "
            "(AppSync Events has public endpoints only):"
        ]
        for f in bad:
            if f.route_table_id is None:
                table = ""
            elif f.main_table:
                table = f" (route table {f.route_table_id}, the VPC's main table)"
            else:
                table = f" (route table {f.route_table_id})"
            lines.append(f"  {f.subnet_id}{table}: {f.reason}")
        lines.append(
            "Lambda may place the function in any of its subnets, so every subnet needs an active "
            "0.0.0.0/0 route to a NAT gateway. Add one, or choose:"
        )
        lines.append(
            "  livelambda aws up --vpc detach   run the function outside its VPC while live "
            "(`livelambda aws down` puts the VPC config back)"
        )
        lines.append(
            "  livelambda aws up --vpc keep     keep the VPC config: you know these subnets reach the "
            "internet another way"
        )
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    @property
    def env_detail(self) -> str:
        """A one-line summary for the stub's LIVELAMBDA_VPC ("" outside a VPC: leave it unset).

        The stub quotes it when it cannot connect, so it says where the function is and which
        subnets lack a NAT, e.g. "vpc-1 subnets subnet-a,subnet-b: no NAT route" or "vpc-1 via nat-1".
        """
        if not self.in_vpc:
            return ""
        vpc = self.vpc_id or "vpc"
        bad = self.unreachable_subnets
        if bad:
            detail = f"{vpc} subnets {_joined([f.subnet_id for f in bad], 90)}: no NAT route"
        else:
            targets = list(dict.fromkeys(f.target for f in self.subnets if f.target))
            detail = f"{vpc} via {_joined(targets, 90)}"
            if self.unverified:
                detail += " (unverified)"
        if any("appsync-api" in w for w in self.warnings):
            detail += "; an appsync-api VPC endpoint with private DNS blocks public AppSync URLs"
        return detail[:ENV_DETAIL_MAX]


class VpcCheckDenied(CallerFault):
    """The caller may not read the VPC's network configuration: the preflight could not run."""

    error_type = "Livelambda.VpcCheckDenied"

    def __init__(self, permission: str, detail: str) -> None:
        self.permission = permission
        super().__init__(
            f"cannot check the function's VPC: AWS denied {permission} ({detail}). Grant your "
            f"credentials {permission} (the preflight also needs ec2:DescribeSubnets, "
            "ec2:DescribeRouteTables and ec2:DescribeVpcEndpoints), or run "
            "`livelambda aws up --vpc keep` to skip the check if you know the subnets reach the "
            "internet through a NAT."
        )


def _joined(items: Sequence[str], limit: int) -> str:
    """Comma-joined, cut to about `limit` characters with a count of what was left out."""
    shown: list[str] = []
    for i, item in enumerate(items):
        if shown and len(",".join([*shown, item])) > limit:
            return ",".join(shown) + f" +{len(items) - i} more"
        shown.append(item)
    return ",".join(shown)


def _subnet_ids(vpc_config: Mapping[str, Any] | None) -> list[str]:
    return list(dict.fromkeys((vpc_config or {}).get("SubnetIds") or []))


def _live_associations(table: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for assoc in table.get("Associations") or []:
        state = (assoc.get("AssociationState") or {}).get("State")
        if state not in _DEAD_ASSOCIATION_STATES:
            yield assoc


def _effective_table(
    subnet_id: str, vpc_id: str | None, tables: Sequence[Mapping[str, Any]]
) -> tuple[Mapping[str, Any] | None, bool]:
    """The table that routes the subnet's traffic, and whether it is the VPC's main table."""
    in_vpc = [t for t in tables if vpc_id is None or t.get("VpcId") in (None, vpc_id)]
    for table in in_vpc:
        if any(a.get("SubnetId") == subnet_id for a in _live_associations(table)):
            return table, False
    for table in in_vpc:
        if any(a.get("Main") for a in _live_associations(table)):
            return table, True
    return None, False


def _route_target(route: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, id) of a route's target; kind is the boto3 key that names it."""
    for key in (
        "NatGatewayId",
        "InstanceId",  # before NetworkInterfaceId: a NAT instance's route shows both
        "NetworkInterfaceId",
        "TransitGatewayId",
        "GatewayId",
        "VpcPeeringConnectionId",
        "EgressOnlyInternetGatewayId",
        "LocalGatewayId",
        "CarrierGatewayId",
        "CoreNetworkArn",
    ):
        if route.get(key):
            return key, str(route[key])
    return "unknown", "an unknown target"


def _judge_table(subnet_id: str, table: Mapping[str, Any], main: bool) -> SubnetFinding:
    table_id = str(table.get("RouteTableId") or "") or None
    defaults = [r for r in table.get("Routes") or [] if r.get("DestinationCidrBlock") == DEFAULT_ROUTE]

    def finding(verdict: Verdict, reason: str, target: str | None = None) -> SubnetFinding:
        return SubnetFinding(subnet_id, table_id, main, verdict, reason, target)

    active = [r for r in defaults if r.get("State", "active") != "blackhole"]
    # AWS allows one route a destination; judge the best one in case a hand-built table has several.
    ranked = sorted(active, key=lambda r: _RANK.get(_route_target(r)[0], len(_RANK)))
    if ranked:
        kind, target = _route_target(ranked[0])
        if kind == "NatGatewayId":
            return finding(Verdict.NAT_GATEWAY, f"routes 0.0.0.0/0 to NAT gateway {target}", target)
        if kind in ("InstanceId", "NetworkInterfaceId"):
            return finding(
                Verdict.NAT_INSTANCE,
                f"routes 0.0.0.0/0 to {target}, assumed to be a NAT instance",
                target,
            )
        if kind == "TransitGatewayId":
            return finding(
                Verdict.TRANSIT_GATEWAY,
                f"routes 0.0.0.0/0 to transit gateway {target}, assumed to lead to a NAT (unverified)",
                target,
            )
        if kind == "GatewayId" and target.startswith("igw-"):
            return finding(Verdict.INTERNET_GATEWAY_ONLY, _IGW_REASON, target)
        return finding(
            Verdict.OTHER_TARGET,
            f"routes 0.0.0.0/0 to {target}, which is not a NAT (livelambda cannot tell whether it "
            "leads to the internet)",
            target,
        )
    if defaults:
        _, target = _route_target(defaults[0])
        return finding(
            Verdict.BLACKHOLE,
            f"its 0.0.0.0/0 route to {target} is a blackhole (the target was deleted or is unavailable)",
            target,
        )
    return finding(Verdict.NO_DEFAULT_ROUTE, "has no route for 0.0.0.0/0 (no way to the internet)")


def _endpoint_warnings(vpc_id: str | None, endpoints: Sequence[Mapping[str, Any]]) -> list[str]:
    warnings = []
    for ep in endpoints:
        service = str(ep.get("ServiceName") or "")
        if (
            service.endswith(".appsync-api")
            and ep.get("PrivateDnsEnabled")
            and ep.get("VpcEndpointType", "Interface") == "Interface"
            and (vpc_id is None or ep.get("VpcId") in (None, vpc_id))
            and ep.get("State", "available") not in ("deleted", "deleting", "rejected", "failed")
        ):
            warnings.append(
                f"VPC {vpc_id or ep.get('VpcId')} has an interface endpoint {ep.get('VpcEndpointId', '')} "
                f"for {service} with private DNS enabled: from inside the VPC, calls to public AppSync "
                "URLs (livelambda's Event API) resolve to that endpoint and fail. Turn its private DNS "
                "off, or use `livelambda aws up --vpc detach`."
            )
    return warnings


def assess_vpc(
    vpc_config: Mapping[str, Any] | None,
    subnets: Sequence[Mapping[str, Any]],
    route_tables: Sequence[Mapping[str, Any]],
    vpc_endpoints: Sequence[Mapping[str, Any]],
) -> VpcAssessment:
    """Judge every subnet of `vpc_config` (Lambda's `VpcConfig`) against the VPC's route tables.

    A subnet's table is the one explicitly associated with it, else the VPC's main table. It reaches
    the internet only through an active 0.0.0.0/0 route to a NAT gateway, an instance or ENI (assumed
    to be a NAT instance) or a transit gateway (assumed to lead to a NAT). A function with no
    VpcConfig or no subnets is not in a VPC and is reachable.
    """
    subnet_ids = _subnet_ids(vpc_config)
    if not subnet_ids:
        return VpcAssessment(in_vpc=False, vpc_id=None, reachable=True)
    known = {str(s.get("SubnetId")): s for s in subnets}
    vpc_id = next(
        (known[s].get("VpcId") for s in subnet_ids if s in known and known[s].get("VpcId")), None
    ) or (vpc_config or {}).get("VpcId")
    findings = []
    for subnet_id in subnet_ids:
        if subnet_id not in known:
            findings.append(
                SubnetFinding(
                    subnet_id,
                    None,
                    False,
                    Verdict.SUBNET_NOT_FOUND,
                    "subnet not found in this account and region (deleted?)",
                )
            )
            continue
        table, main = _effective_table(subnet_id, known[subnet_id].get("VpcId") or vpc_id, route_tables)
        if table is None:
            findings.append(
                SubnetFinding(
                    subnet_id,
                    None,
                    False,
                    Verdict.NO_ROUTE_TABLE,
                    "no route table found for it (neither an associated one nor the VPC's main table)",
                )
            )
        else:
            findings.append(_judge_table(subnet_id, table, main))
    return VpcAssessment(
        in_vpc=True,
        vpc_id=vpc_id,
        reachable=all(f.reachable for f in findings),
        subnets=tuple(findings),
        warnings=tuple(_endpoint_warnings(vpc_id, vpc_endpoints)),
    )


# --- the boto3 shell -------------------------------------------------------------------------------

_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


def _all_pages(ec2: Any, operation: str, key: str, permission: str, **kwargs: Any) -> list[dict[str, Any]]:
    import botocore.exceptions

    try:
        items: list[dict[str, Any]] = []
        for page in ec2.get_paginator(operation).paginate(**kwargs):
            items.extend(page.get(key) or [])
        return items
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in _DENIED_CODES:
            raise VpcCheckDenied(permission, str(error.get("Message") or error.get("Code"))) from None
        raise


def check_function_vpc(ec2: Any, vpc_config: Mapping[str, Any] | None, region: str) -> VpcAssessment:
    """Run the preflight for one function: at most three EC2 calls (each paginated), none outside a VPC.

    Raises `VpcCheckDenied` when the credentials may not describe the VPC.
    """
    subnet_ids = _subnet_ids(vpc_config)
    if not subnet_ids:
        return assess_vpc(vpc_config, [], [], [])
    # A filter rather than SubnetIds: a deleted subnet is then missing from the answer (and reported
    # as such) instead of failing the whole call with InvalidSubnetID.NotFound.
    subnets = _all_pages(
        ec2,
        "describe_subnets",
        "Subnets",
        "ec2:DescribeSubnets",
        Filters=[{"Name": "subnet-id", "Values": subnet_ids}],
    )
    # The subnets say which VPC they are in; Lambda's VpcId is only a fallback (moto's is made up).
    vpc_id = next((s.get("VpcId") for s in subnets if s.get("VpcId")), None) or (vpc_config or {}).get(
        "VpcId"
    )
    if not vpc_id:
        return assess_vpc(vpc_config, subnets, [], [])
    tables = _all_pages(
        ec2,
        "describe_route_tables",
        "RouteTables",
        "ec2:DescribeRouteTables",
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}],
    )
    endpoints = _all_pages(
        ec2,
        "describe_vpc_endpoints",
        "VpcEndpoints",
        "ec2:DescribeVpcEndpoints",
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "service-name", "Values": [f"com.amazonaws.{region}.appsync-api"]},
        ],
    )
    return assess_vpc(vpc_config, subnets, tables, endpoints)
