"""`livelambda aws up / down`: against moto's server on loopback (Lambda, IAM, SSM, AppSync, EC2,
CloudFormation, CloudWatch, tagging). What `up` writes, what `down` puts back, and what each refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devserver.aws.down import Detach, DownOptions, DownRefused, DownResult
from devserver.aws.live_config import STUB_HANDLER
from devserver.aws.progress import SilentProgress
from devserver.aws.up import Attach, UpOptions, UpResult
from devserver.config import load_config
from devserver.live.session import aws_file, load_or_create
from tests.aws_fixtures import AwsServer


def up(aws: AwsServer, app_dir: Path, **options: Any) -> UpResult:
    app = load_config(app_dir)
    session = load_or_create(app.root, app.app, app.stage)
    return Attach(aws.context(), app, session, UpOptions(**options), SilentProgress()).run()


def down(aws: AwsServer, app_dir: Path, **options: Any) -> DownResult:
    app = load_config(app_dir)
    session = load_or_create(app.root, app.app, app.stage)
    return Detach(aws.context(), session.id, DownOptions(**options), SilentProgress(), app.root).run()


def statuses(result: UpResult | DownResult) -> dict[str, str]:
    return {r.function: r.status for r in result.results}


def detail(result: UpResult | DownResult, name: str) -> str:
    return next(r.detail for r in result.results if r.function == name)


def count_calls(ctx: Any, service: str, operation: str) -> list[int]:
    """A counter of `operation` calls made through ctx's client for `service`."""
    calls = [0]

    def seen(**_: Any) -> None:
        calls[0] += 1

    ctx.client(service).meta.events.register(f"before-call.*.{operation}", seen)
    return calls


def test_up_switches_and_down_puts_back_exactly(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders", environment={"TABLE": "orders", "LOG_LEVEL": "debug"}, timeout=7)
    aws.function("payments")
    before = aws.snapshot(["orders", "payments"])
    app = aws.app(tmp_path / "shop", ["orders", "payments"])

    result = up(aws, app)
    assert statuses(result) == {"orders": "live", "payments": "live"}
    live = aws.snapshot(["orders", "payments"])["orders"]
    session = load_or_create(app, "shop", "dev")
    assert live["Handler"] == STUB_HANDLER
    assert len(live["Layers"]) == 1 and ":layer:livelambda-stub:" in live["Layers"][0]
    env = live["Environment"]
    assert env["TABLE"] == "orders" and env["LOG_LEVEL"] == "debug"  # the function's own stay
    assert env["LIVELAMBDA_SESSION"] == session.id and env["LIVELAMBDA_SECRET"] == session.secret.hex()
    assert env["LIVELAMBDA_AUTH"] == "iam" and "LIVELAMBDA_API_KEY" not in env
    assert env["LIVELAMBDA_NAMESPACE"] == session.id and env["LIVELAMBDA_FUNCTION"] == "orders"
    assert env["LIVELAMBDA_ORIGINAL_HANDLER"] == "app.handler"
    assert env["LIVELAMBDA_HTTP_URL"].startswith("https://") and env["LIVELAMBDA_HTTP_URL"].endswith("/event")
    assert env["LIVELAMBDA_REALTIME_URL"].startswith("wss://")
    assert live["Timeout"] == 7
    assert aws.parameters() == ["/livelambda/live/orders", "/livelambda/live/payments"]
    # what `livelambda dev` connects with
    endpoint = json.loads(aws_file(app).read_text())
    assert endpoint["namespace"] == session.id and endpoint["auth"] == "iam" and endpoint["api_key"] is None

    restored = down(aws, app)
    assert statuses(restored) == {"orders": "restored", "payments": "restored"}
    assert "restored exactly" in detail(restored, "orders")
    assert aws.snapshot(["orders", "payments"]) == before
    assert aws.parameters() == []
    assert aws.role_policies() == []
    assert not aws_file(app).exists()
    namespaces = aws.client("appsync").list_channel_namespaces(apiId=result.endpoint.api_id)[
        "channelNamespaces"
    ]
    assert session.id not in [n["name"] for n in namespaces]


def test_iam_mode_scopes_the_role_to_the_api_and_the_session_namespace(
    aws: AwsServer, tmp_path: Path
) -> None:
    aws.function("orders")
    app = aws.app(tmp_path / "shop", ["orders"])
    result = up(aws, app)
    session = load_or_create(app, "shop", "dev")
    iam = aws.client("iam")
    assert aws.role_policies() == [f"livelambda-{session.id}"]
    document = iam.get_role_policy(RoleName="fn-role", PolicyName=f"livelambda-{session.id}")[
        "PolicyDocument"
    ]
    if isinstance(document, str):
        document = json.loads(document)
    api = aws.client("appsync").get_api(apiId=result.endpoint.api_id)["api"]
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert statements["LivelambdaConnect"]["Action"] == "appsync:EventConnect"
    assert statements["LivelambdaConnect"]["Resource"] == api["apiArn"]
    channels = statements["LivelambdaSessionChannels"]
    assert sorted(channels["Action"]) == ["appsync:EventPublish", "appsync:EventSubscribe"]
    assert channels["Resource"] == f"{api['apiArn']}/channelNamespace/{session.id}"
    assert len(document["Statement"]) == 2  # nothing else
    keys = aws.client("appsync").list_api_keys(apiId=result.endpoint.api_id)["apiKeys"]
    assert keys == []  # IAM mode: no API key exists at all


def test_api_key_mode_makes_a_session_key_and_down_removes_it(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders")
    app = aws.app(tmp_path / "shop", ["orders"])
    result = up(aws, app, auth="api_key")
    appsync = aws.client("appsync")
    keys = appsync.list_api_keys(apiId=result.endpoint.api_id)["apiKeys"]
    assert len(keys) == 1 and result.endpoint.api_key == keys[0]["id"]
    env = aws.snapshot(["orders"])["orders"]["Environment"]
    assert env["LIVELAMBDA_AUTH"] == "api_key" and env["LIVELAMBDA_API_KEY"] == keys[0]["id"]
    assert aws.role_policies() == []  # api-key mode changes no role
    up(aws, app, auth="api_key")  # again: the same key, not a second one
    assert len(appsync.list_api_keys(apiId=result.endpoint.api_id)["apiKeys"]) == 1
    down(aws, app)
    assert appsync.list_api_keys(apiId=result.endpoint.api_id)["apiKeys"] == []


def test_up_again_changes_nothing(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders")
    app = aws.app(tmp_path / "shop", ["orders"])
    up(aws, app)
    first = aws.snapshot(["orders"])
    ctx = aws.context()
    updates = count_calls(ctx, "lambda", "UpdateFunctionConfiguration")
    puts = count_calls(ctx, "ssm", "PutParameter")
    app_config = load_config(app)
    session = load_or_create(app, "shop", "dev")
    again = Attach(ctx, app_config, session, UpOptions(), SilentProgress()).run()
    assert statuses(again) == {"orders": "already live"}
    assert updates == [0] and puts == [0]
    assert aws.snapshot(["orders"]) == first
    restored = down(aws, app)
    assert statuses(restored) == {"orders": "restored"}


def test_functions_that_cannot_go_live_are_skipped_with_the_reason(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders")
    aws.function("web", runtime="nodejs20.x", handler="index.handler")
    aws.function("other", handler="elsewhere.main")
    app = aws.app(tmp_path / "shop", ["orders", "web", "missing"])
    # `other` is matched by nothing in the config: only config functions are candidates
    result = up(aws, app)
    assert statuses(result) == {"orders": "live", "web": "skipped", "missing": "skipped"}
    assert "nodejs20.x is not Python" in detail(result, "web")
    assert "no such function" in detail(result, "missing")
    assert aws.snapshot(["web"])["web"]["Handler"] == "index.handler"
    assert aws.parameters() == ["/livelambda/live/orders"]


def test_an_environment_too_large_for_the_settings_is_refused_untouched(
    aws: AwsServer, tmp_path: Path
) -> None:
    aws.function("orders", environment={"BIG": "x" * 3900})
    before = aws.snapshot(["orders"])
    app = aws.app(tmp_path / "shop", ["orders"])
    result = up(aws, app)
    assert statuses(result) == {"orders": "refused"}
    message = detail(result, "orders")
    assert "4,096-byte limit" in message and "3,903 bytes" in message and "livelambda aws up" in message
    assert aws.snapshot(["orders"]) == before
    assert aws.parameters() == []


def test_a_function_live_for_another_session_is_refused_then_taken_over(
    aws: AwsServer, tmp_path: Path
) -> None:
    aws.function("orders", timeout=5)
    before = aws.snapshot(["orders"])
    mine = aws.app(tmp_path / "a" / "shop", ["orders"])
    theirs = aws.app(tmp_path / "b" / "shop", ["orders"])
    assert statuses(up(aws, mine)) == {"orders": "live"}
    mine_session = load_or_create(mine, "shop", "dev").id

    refused = up(aws, theirs)
    assert statuses(refused) == {"orders": "refused"}
    message = detail(refused, "orders")
    assert mine_session in message and "since" in message and "--take-over" in message

    taken = up(aws, theirs, take_over=True)
    assert statuses(taken) == {"orders": "live"}
    theirs_session = load_or_create(theirs, "shop", "dev").id
    env = aws.snapshot(["orders"])["orders"]["Environment"]
    assert env["LIVELAMBDA_SESSION"] == theirs_session
    assert f"livelambda-{mine_session}" not in aws.role_policies()  # the old session lost its access
    assert down(aws, mine).results == []  # nothing is live for the first session any more
    assert statuses(down(aws, theirs)) == {"orders": "restored"}
    assert aws.snapshot(["orders"]) == before  # the original, not the first session's live state


def test_down_refuses_to_overwrite_a_change_made_while_live(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders", timeout=5)
    before = aws.snapshot(["orders"])
    app = aws.app(tmp_path / "shop", ["orders"])
    up(aws, app)
    lam = aws.client("lambda")
    env = lam.get_function_configuration(FunctionName="orders")["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName="orders", Timeout=60, Environment={"Variables": {**env, "NEW": "1"}}
    )
    refused = down(aws, app)
    assert statuses(refused) == {"orders": "refused"}
    message = detail(refused, "orders")
    assert "timeout: 5 -> 60" in message and "environment NEW: added" in message and "--force" in message
    assert aws.snapshot(["orders"])["orders"]["Timeout"] == 60  # left alone
    assert aws.parameters() == ["/livelambda/live/orders"]  # still restorable
    forced = down(aws, app, force=True)
    assert statuses(forced) == {"orders": "restored"}
    assert aws.snapshot(["orders"]) == before


def test_an_original_layer_deleted_since_is_named_and_skipped_only_when_asked(
    aws: AwsServer, tmp_path: Path
) -> None:
    lam = aws.client("lambda")
    dep = lam.publish_layer_version(LayerName="deps", Content={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    aws.function("orders", layers=[dep["LayerVersionArn"]])
    app = aws.app(tmp_path / "shop", ["orders"])
    up(aws, app)
    live_layers = aws.snapshot(["orders"])["orders"]["Layers"]
    assert live_layers[0] == dep["LayerVersionArn"] and ":layer:livelambda-stub:" in live_layers[1]
    lam.delete_layer_version(LayerName="deps", VersionNumber=dep["Version"])
    refused = down(aws, app)
    assert statuses(refused) == {"orders": "refused"}
    assert dep["LayerVersionArn"] in detail(refused, "orders")
    assert "--skip-missing-layers" in detail(refused, "orders")
    restored = down(aws, app, skip_missing_layers=True)
    assert statuses(restored) == {"orders": "restored"}
    after = aws.snapshot(["orders"])["orders"]
    assert after["Handler"] == "app.handler" and after["Layers"] == []
    assert "layers" in detail(restored, "orders")  # says what differs from the original


def test_production_looking_names_need_force(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders")
    app = aws.app(tmp_path / "shop", ["orders"], stage="prod")
    refused = up(aws, app)
    assert statuses(refused) == {"orders": "refused"}
    assert "production" in detail(refused, "orders") and "--force" in detail(refused, "orders")
    assert aws.parameters() == []
    assert statuses(up(aws, app, force=True)) == {"orders": "live"}
    down(aws, app)


def test_timeout_is_raised_while_live_and_restored(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders", timeout=3)
    app = aws.app(tmp_path / "shop", ["orders"])
    up(aws, app, timeout=30)
    assert aws.snapshot(["orders"])["orders"]["Timeout"] == 30
    down(aws, app)
    assert aws.snapshot(["orders"])["orders"]["Timeout"] == 3


def test_deployed_names_and_tags_pick_the_functions(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("shop-dev-orders", tags={"team": "shop"})
    aws.function("billing-prd", tags={"team": "billing"})
    aws.function("legacy-name", tags={"team": "shop"})
    app = aws.app(tmp_path / "shop", ["orders"])
    (app / "livelambda.toml").write_text(
        (app / "livelambda.toml").read_text() + '\n[functions.legacy]\nhandler = "app.handler"\n'
        'deployed = "arn:aws:lambda:us-east-1:123456789012:function:legacy-name"\n'
    )
    result = up(aws, app, tag="team=shop")
    assert statuses(result) == {"shop-dev-orders": "live", "legacy-name": "live"}
    envs = aws.snapshot(["shop-dev-orders", "legacy-name"])
    assert envs["shop-dev-orders"]["Environment"]["LIVELAMBDA_FUNCTION"] == "orders"
    assert envs["legacy-name"]["Environment"]["LIVELAMBDA_FUNCTION"] == "legacy"
    assert statuses(down(aws, app)) == {"shop-dev-orders": "restored", "legacy-name": "restored"}


def _private_subnet(aws: AwsServer, *, nat: bool) -> tuple[str, str, str]:
    """A VPC with one subnet whose route table sends 0.0.0.0/0 to a NAT gateway, or only to an
    internet gateway; (vpc id, subnet id, security group id)."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    if nat:
        public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
        eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
        gateway = ec2.create_nat_gateway(SubnetId=public, AllocationId=eip)["NatGateway"]["NatGatewayId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=gateway)
    else:
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    group = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc)["GroupId"]
    return vpc, subnet, group


def test_a_vpc_without_a_nat_is_refused_then_detached_and_put_back(aws: AwsServer, tmp_path: Path) -> None:
    _, subnet, group = _private_subnet(aws, nat=False)
    aws.function("orders", vpc={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
    before = aws.snapshot(["orders"])
    assert before["orders"]["SubnetIds"] == [subnet]
    app = aws.app(tmp_path / "shop", ["orders"])
    refused = up(aws, app)
    assert statuses(refused) == {"orders": "refused"}
    message = detail(refused, "orders")
    assert subnet in message and "--vpc detach" in message and "--vpc keep" in message
    assert aws.snapshot(["orders"]) == before and aws.parameters() == []

    detached = up(aws, app, vpc="detach")
    assert statuses(detached) == {"orders": "live"}
    assert aws.snapshot(["orders"])["orders"]["SubnetIds"] == []
    assert statuses(down(aws, app)) == {"orders": "restored"}
    assert aws.snapshot(["orders"]) == before  # back in its VPC


def test_a_vpc_with_a_nat_goes_live_in_place_and_tells_the_stub(aws: AwsServer, tmp_path: Path) -> None:
    vpc, subnet, group = _private_subnet(aws, nat=True)
    aws.function("orders", vpc={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
    app = aws.app(tmp_path / "shop", ["orders"])
    assert statuses(up(aws, app)) == {"orders": "live"}
    live = aws.snapshot(["orders"])["orders"]
    assert live["SubnetIds"] == [subnet]
    assert vpc in live["Environment"]["LIVELAMBDA_VPC"]  # quoted by the stub if it cannot connect
    down(aws, app)


def test_a_stack_s_functions_are_matched_by_logical_id(aws: AwsServer, tmp_path: Path) -> None:
    role = aws.role()
    code = "def handler(event, context):\n    return 1\n"
    template = {
        "Resources": {
            name: {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.12",
                    "Handler": handler,
                    "Role": role,
                    "Code": {"ZipFile": code},
                },
            }
            for name, handler in (("OrdersFunction", "orders.handler"), ("PaymentsFunction", "pay.handler"))
        }
    }
    aws.client("cloudformation").create_stack(StackName="shop-dev", TemplateBody=json.dumps(template))
    resources = aws.client("cloudformation").list_stack_resources(StackName="shop-dev")[
        "StackResourceSummaries"
    ]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    app = aws.app(tmp_path / "shop", ["orders"])  # payments has no local code
    result = up(aws, app, stack="shop-dev")
    assert statuses(result) == {physical["OrdersFunction"]: "live", physical["PaymentsFunction"]: "skipped"}
    assert "logical id OrdersFunction" in detail(result, physical["OrdersFunction"])
    assert "set `deployed =" in detail(result, physical["PaymentsFunction"])
    env = aws.snapshot([physical["OrdersFunction"]])[physical["OrdersFunction"]]["Environment"]
    assert env["LIVELAMBDA_FUNCTION"] == "orders"
    assert statuses(down(aws, app)) == {physical["OrdersFunction"]: "restored"}


def test_purge_removes_the_shared_parts_once_no_session_uses_them(aws: AwsServer, tmp_path: Path) -> None:
    aws.function("orders")
    aws.function("payments")
    mine = aws.app(tmp_path / "a" / "shop", ["orders"])
    theirs = aws.app(tmp_path / "b" / "shop", ["payments"])
    up(aws, mine)
    up(aws, theirs)
    appsync, lam = aws.client("appsync"), aws.client("lambda")
    with pytest.raises(DownRefused, match="still have live functions"):
        down(aws, mine, purge=True)
    assert statuses(down(aws, theirs)) == {"payments": "restored"}
    assert len(appsync.list_apis()["apis"]) == 1
    down(aws, mine, purge=True)
    assert appsync.list_apis()["apis"] == []
    assert lam.list_layer_versions(LayerName="livelambda-stub")["LayerVersions"] == []
    assert aws.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
