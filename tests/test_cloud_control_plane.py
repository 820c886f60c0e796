"""The AppSync control plane of `livelambda cloud` (devserver/cloud/appsync_control.py), driven by a real
boto3 `appsync` client over HTTP, and the data plane following it: namespaces and API keys created
through the control plane are real for HTTP publish and the realtime WebSocket.

Most tests share one cloud (`shared_cloud`) and delete what they create; counts are compared before
and after. The store's clock-driven behaviour (key expiry, deletion 60 days later) is tested on
`EventApiStore` directly with a fake clock."""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devserver.cloud.appsync_control import (
    API_KEY_KEPT_S,
    ApiKeyValidityOutOfBounds,
    BadRequest,
    EventApiStore,
    NotFound,
)
from tests.conftest import CloudProcess
from tests.test_appsync_emulator import INVALID_CHANNEL, UNAUTHORIZED, realtime, recv, send

DAY = 86_400
HOUR = 3_600
API_ID = re.compile(r"[a-z0-9]{26}")
KEY_ID = re.compile(r"da2-[a-z0-9]{26}")


def modes(*types: str) -> list[dict[str, str]]:
    return [{"authType": t} for t in types]


def event_config(
    *,
    providers: tuple[str, ...] = ("API_KEY", "AWS_IAM"),
    publish: tuple[str, ...] | None = None,
    subscribe: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """An eventConfig: every mode allows `providers` unless `publish` / `subscribe` narrow the defaults."""
    return {
        "authProviders": modes(*providers),
        "connectionAuthModes": modes(*providers),
        "defaultPublishAuthModes": modes(*(publish or providers)),
        "defaultSubscribeAuthModes": modes(*(subscribe or providers)),
    }


def fresh(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def appsync_client(cloud: CloudProcess, **config: Any) -> Any:
    """boto3's appsync client pointed at the cloud, with dummy credentials (the control plane checks no
    signatures) and no retries, so that every error reaches the test as the cloud answered it."""
    return boto3.client(
        "appsync",
        endpoint_url=cloud.base_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


@pytest.fixture
def appsync(shared_cloud: CloudProcess) -> Any:
    return appsync_client(shared_cloud)


@pytest.fixture
def unchecked(shared_cloud: CloudProcess) -> Any:
    """A client that sends what botocore would refuse to, to reach the service's own validation."""
    return appsync_client(shared_cloud, parameter_validation=False)


@pytest.fixture
def new_api(appsync: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Create an Event API (deleted after the test): `new_api(name=..., eventConfig=..., ...)`."""
    created: list[str] = []

    def create(**kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("name", fresh("api-"))
        kwargs.setdefault("eventConfig", event_config())
        api = appsync.create_api(**kwargs)["api"]
        created.append(api["apiId"])
        return api

    yield create
    for api_id in created:
        try:
            appsync.delete_api(apiId=api_id)
        except appsync.exceptions.NotFoundException:
            pass  # the test deleted it


def error_of(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


def code(error: ClientError) -> str:
    return error.response["Error"]["Code"]


def control_counts(cloud: CloudProcess) -> tuple[int, int, int]:
    stats = cloud.stats()
    return stats["apis"], stats["channel_namespaces"], stats["api_keys"]


# ----- APIs -----------------------------------------------------------------------------------------


def test_create_get_update_delete_api(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    before = control_counts(shared_cloud)
    config = event_config(publish=("AWS_IAM",))
    api = new_api(name="livelambda dev", eventConfig=config, ownerContact="team-a", tags={"owner": "me"})
    assert API_ID.fullmatch(api["apiId"])
    assert api["apiArn"] == f"arn:aws:appsync:us-east-1:123456789012:apis/{api['apiId']}"
    assert api["dns"] == {"HTTP": shared_cloud.host, "REALTIME": shared_cloud.host}
    assert api["name"] == "livelambda dev" and api["ownerContact"] == "team-a"
    assert api["eventConfig"] == config and api["xrayEnabled"] is False
    assert api["tags"] == {"owner": "me"}
    assert isinstance(api["created"], datetime.datetime)
    assert control_counts(shared_cloud) == (before[0] + 1, before[1], before[2])

    assert appsync.get_api(apiId=api["apiId"])["api"] == api

    new_config = event_config(providers=("AWS_IAM",))
    updated = appsync.update_api(apiId=api["apiId"], name="renamed", eventConfig=new_config)["api"]
    assert updated["name"] == "renamed" and updated["eventConfig"] == new_config
    assert "ownerContact" not in updated  # an update replaces: left out is cleared
    assert updated["apiId"] == api["apiId"] and updated["created"] == api["created"]
    assert updated["tags"] == {"owner": "me"}  # tags are not part of an update
    assert appsync.get_api(apiId=api["apiId"])["api"] == updated

    appsync.delete_api(apiId=api["apiId"])
    assert code(error_of(lambda: appsync.get_api(apiId=api["apiId"]))) == "NotFoundException"
    assert control_counts(shared_cloud) == before


def test_list_apis_paginates_in_creation_order_without_dns(
    appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    mine = [new_api()["apiId"] for _ in range(5)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = appsync.list_apis(maxResults=2, **({"nextToken": token} if token else {}))
        assert len(page["apis"]) <= 2
        assert all("dns" not in api for api in page["apis"])  # as AWS: GetApi has it, ListApis not
        seen += [api["apiId"] for api in page["apis"]]
        pages += 1
        token = page.get("nextToken")
        if token is None:
            break
    assert [api_id for api_id in seen if api_id in mine] == mine
    assert len(seen) == len(set(seen)) and pages >= 3

    paginated = [
        api["apiId"]
        for page in appsync.get_paginator("list_apis").paginate(PaginationConfig={"PageSize": 2})
        for api in page["apis"]
    ]
    assert paginated == seen
    everything = appsync.list_apis()  # no maxResults: up to 25 a page
    assert len(everything["apis"]) == min(25, len(seen))


def test_api_errors(appsync: Any, unchecked: Any, new_api: Callable[..., dict[str, Any]]) -> None:
    api_id = new_api()["apiId"]
    missing = "a" * 26
    for call in (
        lambda: appsync.get_api(apiId=missing),
        lambda: appsync.update_api(apiId=missing, name="x", eventConfig=event_config()),
        lambda: appsync.delete_api(apiId=missing),
    ):
        error = error_of(call)
        assert code(error) == "NotFoundException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert isinstance(error, appsync.exceptions.NotFoundException)
        assert missing in error.response["Error"]["Message"]

    bad_requests = [
        lambda: unchecked.create_api(name="no-event-config"),
        lambda: unchecked.update_api(apiId=api_id, name="no-event-config"),
        lambda: appsync.create_api(name="bad/name", eventConfig=event_config()),
        lambda: appsync.create_api(name="n" * 51, eventConfig=event_config()),
        lambda: appsync.create_api(
            name="mode-without-provider",
            eventConfig={**event_config(providers=("AWS_IAM",)), "defaultPublishAuthModes": modes("API_KEY")},
        ),
        lambda: unchecked.create_api(name="no-auth-modes", eventConfig={"authProviders": modes("API_KEY")}),
        lambda: appsync.list_apis(nextToken="not-a-token"),
        lambda: appsync.list_apis(maxResults=26),
    ]
    for call in bad_requests:
        error = error_of(call)
        assert code(error) == "BadRequestException", error.response
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert isinstance(error, appsync.exceptions.BadRequestException)
        assert error.response["Error"]["Message"]


def test_errors_are_answered_in_the_rest_json_shape(shared_cloud: CloudProcess) -> None:
    response = httpx.get(f"{shared_cloud.base_url}/v2/apis/{'b' * 26}")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "NotFoundException"
    assert response.headers["x-amzn-RequestId"]
    assert set(response.json()) == {"message"}
    malformed = httpx.post(f"{shared_cloud.base_url}/v2/apis", content=b"{not json")
    assert malformed.status_code == 400
    assert malformed.headers["x-amzn-ErrorType"] == "BadRequestException"


# ----- channel namespaces ---------------------------------------------------------------------------


def test_channel_namespace_lifecycle(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    api = new_api()
    api_id = api["apiId"]
    before = control_counts(shared_cloud)
    names = [fresh("ns-") for _ in range(3)]
    first = appsync.create_channel_namespace(
        apiId=api_id, name=names[0], publishAuthModes=modes("AWS_IAM"), tags={"session": "s1"}
    )["channelNamespace"]
    assert first["apiId"] == api_id and first["name"] == names[0]
    assert first["channelNamespaceArn"] == f"{api['apiArn']}/channelNamespace/{names[0]}"
    assert first["publishAuthModes"] == modes("AWS_IAM") and "subscribeAuthModes" not in first
    assert first["tags"] == {"session": "s1"}
    assert first["created"] == first["lastModified"]
    for name in names[1:]:
        appsync.create_channel_namespace(apiId=api_id, name=name)
    assert control_counts(shared_cloud) == (before[0], before[1] + 3, before[2])

    assert appsync.get_channel_namespace(apiId=api_id, name=names[0])["channelNamespace"] == first

    page = appsync.list_channel_namespaces(apiId=api_id, maxResults=2)
    assert [ns["name"] for ns in page["channelNamespaces"]] == names[:2]
    rest = appsync.list_channel_namespaces(apiId=api_id, maxResults=2, nextToken=page["nextToken"])
    assert [ns["name"] for ns in rest["channelNamespaces"]] == names[2:] and "nextToken" not in rest
    paginator = appsync.get_paginator("list_channel_namespaces")
    listed = [ns["name"] for p in paginator.paginate(apiId=api_id) for ns in p["channelNamespaces"]]
    assert listed == names

    updated = appsync.update_channel_namespace(
        apiId=api_id, name=names[0], subscribeAuthModes=modes("API_KEY")
    )["channelNamespace"]
    assert updated["subscribeAuthModes"] == modes("API_KEY")
    assert "publishAuthModes" not in updated  # an update replaces: left out is cleared
    assert updated["tags"] == {"session": "s1"} and updated["created"] == first["created"]
    assert updated["lastModified"] >= first["lastModified"]

    appsync.delete_channel_namespace(apiId=api_id, name=names[0])
    for call in (
        lambda: appsync.get_channel_namespace(apiId=api_id, name=names[0]),
        lambda: appsync.delete_channel_namespace(apiId=api_id, name=names[0]),
        lambda: appsync.update_channel_namespace(apiId=api_id, name=names[0]),
    ):
        assert code(error_of(call)) == "NotFoundException"
    assert [ns["name"] for ns in appsync.list_channel_namespaces(apiId=api_id)["channelNamespaces"]] == names[
        1:
    ]
    assert control_counts(shared_cloud) == (before[0], before[1] + 2, before[2])


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bad_name", id="underscore"),
        pytest.param("-leading", id="leading-dash"),
        pytest.param("trailing-", id="trailing-dash"),
        pytest.param("n" * 51, id="51-chars"),
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
    ],
)
def test_invalid_namespace_name_is_a_bad_request(
    unchecked: Any, new_api: Callable[..., dict[str, Any]], name: str
) -> None:
    api_id = new_api()["apiId"]
    error = error_of(lambda: unchecked.create_channel_namespace(apiId=api_id, name=name))
    assert code(error) == "BadRequestException"
    assert isinstance(error, unchecked.exceptions.BadRequestException)


def test_namespace_errors(appsync: Any, new_api: Callable[..., dict[str, Any]]) -> None:
    api_id = new_api(eventConfig=event_config(providers=("AWS_IAM",)))["apiId"]
    appsync.create_channel_namespace(apiId=api_id, name="n-1-a")  # dashes inside, 50 chars: both valid
    appsync.create_channel_namespace(apiId=api_id, name="n" * 50)

    duplicate = error_of(lambda: appsync.create_channel_namespace(apiId=api_id, name="n-1-a"))
    assert code(duplicate) == "ConflictException"
    assert duplicate.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert isinstance(duplicate, appsync.exceptions.ConflictException)

    unknown_api = error_of(lambda: appsync.create_channel_namespace(apiId="c" * 26, name="x"))
    assert isinstance(unknown_api, appsync.exceptions.NotFoundException)
    assert code(error_of(lambda: appsync.list_channel_namespaces(apiId="c" * 26))) == "NotFoundException"

    not_a_provider = error_of(
        lambda: appsync.create_channel_namespace(
            apiId=api_id, name="keyed", publishAuthModes=modes("API_KEY")
        )
    )
    assert code(not_a_provider) == "BadRequestException"


# ----- API keys ---------------------------------------------------------------------------------------


def test_api_key_lifecycle_and_expiry_rounding(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    api_id = new_api()["apiId"]
    before = control_counts(shared_cloud)

    t0 = int(time.time())
    default = appsync.create_api_key(apiId=api_id)["apiKey"]
    t1 = int(time.time())
    assert KEY_ID.fullmatch(default["id"]) and "description" not in default
    # 7 days from creation, rounded down to the hour (the call happened between t0 and t1)
    assert default["expires"] in {(t + 7 * DAY) // HOUR * HOUR for t in (t0, t1)}
    assert default["deletes"] == default["expires"] + 60 * DAY

    requested = int(time.time()) + 3 * DAY + 1234
    explicit = appsync.create_api_key(apiId=api_id, description="session s1", expires=requested)["apiKey"]
    assert explicit["expires"] == requested - requested % HOUR
    assert explicit["description"] == "session s1" and explicit["id"] != default["id"]
    assert control_counts(shared_cloud) == (before[0], before[1], before[2] + 2)

    first = appsync.list_api_keys(apiId=api_id, maxResults=1)
    second = appsync.list_api_keys(apiId=api_id, maxResults=1, nextToken=first["nextToken"])
    assert [k["id"] for k in first["apiKeys"] + second["apiKeys"]] == [default["id"], explicit["id"]]
    assert "nextToken" not in second
    assert appsync.list_api_keys(apiId=api_id)["apiKeys"] == [default, explicit]

    described = appsync.update_api_key(apiId=api_id, id=default["id"], description="renamed")["apiKey"]
    assert described == {**default, "description": "renamed"}  # expiry kept when left out
    later = int(time.time()) + 300 * DAY
    extended = appsync.update_api_key(apiId=api_id, id=default["id"], expires=later)["apiKey"]
    assert extended["expires"] == later - later % HOUR and extended["description"] == "renamed"
    assert extended["deletes"] == extended["expires"] + 60 * DAY

    appsync.delete_api_key(apiId=api_id, id=default["id"])
    assert [k["id"] for k in appsync.list_api_keys(apiId=api_id)["apiKeys"]] == [explicit["id"]]
    for call in (
        lambda: appsync.delete_api_key(apiId=api_id, id=default["id"]),
        lambda: appsync.update_api_key(apiId=api_id, id=default["id"], description="x"),
        lambda: appsync.create_api_key(apiId="d" * 26),
        lambda: appsync.list_api_keys(apiId="d" * 26),
    ):
        error = error_of(call)
        assert code(error) == "NotFoundException" and isinstance(error, appsync.exceptions.NotFoundException)
    assert control_counts(shared_cloud) == (before[0], before[1], before[2] + 1)


@pytest.mark.parametrize(
    ("ahead_s", "word"),
    [
        pytest.param(HOUR, "minimum", id="one-hour"),
        pytest.param(-DAY, "minimum", id="in-the-past"),
        pytest.param(366 * DAY, "maximum", id="366-days"),
        pytest.param(400 * DAY, "maximum", id="400-days"),
    ],
)
def test_api_key_validity_out_of_bounds(
    appsync: Any, new_api: Callable[..., dict[str, Any]], ahead_s: int, word: str
) -> None:
    api_id = new_api()["apiId"]
    key_id = appsync.create_api_key(apiId=api_id)["apiKey"]["id"]
    for call in (
        lambda: appsync.create_api_key(apiId=api_id, expires=int(time.time()) + ahead_s),
        lambda: appsync.update_api_key(apiId=api_id, id=key_id, expires=int(time.time()) + ahead_s),
    ):
        error = error_of(call)
        assert code(error) == "ApiKeyValidityOutOfBoundsException"
        assert isinstance(error, appsync.exceptions.ApiKeyValidityOutOfBoundsException)
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert word in error.response["Error"]["Message"]
    assert [k["id"] for k in appsync.list_api_keys(apiId=api_id)["apiKeys"]] == [key_id]


def test_api_key_expiry_within_bounds_is_accepted(
    appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    api_id = new_api()["apiId"]
    # What `aws up` asks for, and a comfortable minimum: both accepted.
    for ahead in (364 * DAY, 2 * DAY):
        expires = int(time.time()) + ahead
        assert (
            appsync.create_api_key(apiId=api_id, expires=expires)["apiKey"]["expires"]
            == expires // HOUR * HOUR
        )


# ----- tags -------------------------------------------------------------------------------------------


def test_tags_on_event_apis(appsync: Any, new_api: Callable[..., dict[str, Any]]) -> None:
    api = new_api(tags={"a": "1"})
    arn = api["apiArn"]
    assert appsync.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1"}
    appsync.tag_resource(resourceArn=arn, tags={"b": "2", "a": "one"})
    assert appsync.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "one", "b": "2"}
    appsync.untag_resource(resourceArn=arn, tagKeys=["a", "not-there"])
    assert appsync.list_tags_for_resource(resourceArn=arn)["tags"] == {"b": "2"}
    assert appsync.get_api(apiId=api["apiId"])["api"]["tags"] == {"b": "2"}

    unknown = arn.rsplit("/", 1)[0] + "/" + "e" * 26
    for call in (
        lambda: appsync.list_tags_for_resource(resourceArn=unknown),
        lambda: appsync.tag_resource(resourceArn=unknown, tags={"x": "y"}),
        lambda: appsync.untag_resource(resourceArn=unknown, tagKeys=["x"]),
    ):
        assert code(error_of(call)) == "NotFoundException"
    for bad in (
        f"{arn}/channelNamespace/x-and-more",
        "arn:aws:s3:::a-bucket-with-a-name-long-enough-for-the-botocore-min-length",
    ):
        assert code(error_of(lambda bad=bad: appsync.list_tags_for_resource(resourceArn=bad))) == (
            "BadRequestException"
        )
    assert code(error_of(lambda: appsync.tag_resource(resourceArn=arn, tags={"aws:reserved": "x"}))) == (
        "BadRequestException"
    )


# ----- the data plane follows the control plane --------------------------------------------------------


async def subscribe_with(ws: Any, channel: str, auth: dict[str, str]) -> dict[str, Any]:
    sub_id = str(uuid.uuid4())
    await send(ws, {"type": "subscribe", "id": sub_id, "channel": channel, "authorization": auth})
    reply = await recv(ws)
    assert reply["id"] == sub_id
    return reply


async def publish_with(ws: Any, channel: str, events: list[str], auth: dict[str, str]) -> dict[str, Any]:
    pub_id = str(uuid.uuid4())
    frame = {"type": "publish", "id": pub_id, "channel": channel, "events": events, "authorization": auth}
    await send(ws, frame)
    reply = await recv(ws)
    assert reply["id"] == pub_id
    return reply


def http_publish(
    cloud: CloudProcess, channel: str, events: list[str], headers: dict[str, str]
) -> httpx.Response:
    return httpx.post(cloud.http_url, json={"channel": channel, "events": events}, headers=headers)


def key_auth(cloud: CloudProcess, key: str) -> dict[str, str]:
    return {"x-api-key": key, "host": cloud.host}


async def test_a_created_namespace_takes_http_and_websocket_publishes_until_deleted(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    cloud = shared_cloud
    api_id = new_api()["apiId"]
    namespace = fresh("sess-")
    channel = f"/{namespace}/req"
    key = {"x-api-key": cloud.api_key}
    refused = http_publish(cloud, channel, ["1"], key)  # not created yet
    assert refused.status_code == 400 and refused.json() == {"errors": [INVALID_CHANNEL]}

    appsync.create_channel_namespace(apiId=api_id, name=namespace)
    async with realtime(cloud) as ws:
        sub = await subscribe_with(ws, f"/{namespace}/*", cloud.api_key_auth())
        assert sub["type"] == "subscribe_success"
        response = http_publish(cloud, channel, ['{"over":"http"}'], key)
        assert response.status_code == 200 and len(response.json()["successful"]) == 1
        assert await recv(ws) == {"type": "data", "id": sub["id"], "event": '{"over":"http"}'}
        reply = await publish_with(ws, channel, ['{"over":"ws"}'], cloud.api_key_auth())
        assert reply["type"] == "publish_success"
        assert await recv(ws) == {"type": "data", "id": sub["id"], "event": '{"over":"ws"}'}

        appsync.delete_channel_namespace(apiId=api_id, name=namespace)
        gone = http_publish(cloud, channel, ["1"], key)
        assert gone.status_code == 400 and gone.json() == {"errors": [INVALID_CHANNEL]}
        reply = await publish_with(ws, channel, ["1"], cloud.api_key_auth())
        assert reply == {"type": "publish_error", "id": reply["id"], "errors": [INVALID_CHANNEL]}
        refused_sub = await subscribe_with(ws, f"/{namespace}/other", cloud.api_key_auth())
        assert refused_sub == {
            "type": "subscribe_error",
            "id": refused_sub["id"],
            "errors": [INVALID_CHANNEL],
        }
    # the built-in namespaces are untouched by all this
    assert http_publish(cloud, "/default/x", ["1"], key).status_code == 200


async def test_a_namespace_of_any_api_is_open_and_same_names_on_two_apis_live_independently(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    cloud = shared_cloud
    first, second = new_api()["apiId"], new_api()["apiId"]
    namespace = fresh("both-")
    appsync.create_channel_namespace(apiId=first, name=namespace)
    appsync.create_channel_namespace(apiId=second, name=namespace)
    appsync.delete_channel_namespace(apiId=first, name=namespace)
    key = {"x-api-key": cloud.api_key}
    assert http_publish(cloud, f"/{namespace}/a", ["1"], key).status_code == 200  # still on `second`
    appsync.delete_api(apiId=second)  # takes its namespaces along
    assert http_publish(cloud, f"/{namespace}/a", ["1"], key).json() == {"errors": [INVALID_CHANNEL]}


async def test_a_created_api_key_authorizes_until_deleted(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    cloud = shared_cloud
    api_id = new_api()["apiId"]
    namespace = fresh("keyed-")
    appsync.create_channel_namespace(apiId=api_id, name=namespace)
    key_id = appsync.create_api_key(apiId=api_id, description="session key")["apiKey"]["id"]
    auth = key_auth(cloud, key_id)
    before = cloud.stats()

    async with realtime(cloud, auth) as ws:  # connect with it
        sub = await subscribe_with(ws, f"/{namespace}/res", auth)
        assert sub["type"] == "subscribe_success"
        response = http_publish(cloud, f"/{namespace}/res", ['"over http"'], {"x-api-key": key_id})
        assert response.status_code == 200
        assert await recv(ws) == {"type": "data", "id": sub["id"], "event": '"over http"'}
        assert (await publish_with(ws, f"/{namespace}/res", ['"over ws"'], auth))["type"] == "publish_success"
        assert await recv(ws) == {"type": "data", "id": sub["id"], "event": '"over ws"'}

        appsync.delete_api_key(apiId=api_id, id=key_id)
        assert (await subscribe_with(ws, f"/{namespace}/other", auth))["errors"] == [UNAUTHORIZED]
        reply = await publish_with(ws, f"/{namespace}/res", ['"no"'], auth)
        assert reply == {"type": "publish_error", "id": reply["id"], "errors": [UNAUTHORIZED]}
        # the cloud's own key is unaffected
        assert (await publish_with(ws, f"/{namespace}/res", ['"yes"'], cloud.api_key_auth()))["type"] == (
            "publish_success"
        )
        assert await recv(ws) == {"type": "data", "id": sub["id"], "event": '"yes"'}

    refused = http_publish(cloud, f"/{namespace}/res", ["1"], {"x-api-key": key_id})
    assert refused.status_code == 401 and refused.json() == {"errors": [UNAUTHORIZED]}
    async with realtime(cloud, auth, init=False) as ws:  # a new connection with it is refused
        await send(ws, {"type": "connection_init"})
        assert await recv(ws) == {"type": "connection_error", "errors": [UNAUTHORIZED]}
    after = cloud.stats()
    assert after["connections_total"] == before["connections_total"] + 1
    assert after["connections_unauthorized"] == before["connections_unauthorized"] + 1


async def test_auth_modes_of_a_namespace_and_of_its_api_limit_publish_and_subscribe(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    cloud = shared_cloud
    api_id = new_api()["apiId"]  # defaults: API_KEY and AWS_IAM
    iam_only = fresh("iam-")
    appsync.create_channel_namespace(
        apiId=api_id, name=iam_only, publishAuthModes=modes("AWS_IAM"), subscribeAuthModes=modes("AWS_IAM")
    )
    channel = f"/{iam_only}/req"
    body = json.dumps({"channel": channel, "events": ["1"]}).encode()

    refused = http_publish(cloud, channel, ["1"], {"x-api-key": cloud.api_key})
    assert refused.status_code == 401 and refused.json() == {"errors": [UNAUTHORIZED]}
    signed = httpx.post(cloud.http_url, content=body, headers=cloud.iam_auth(body))
    assert signed.status_code == 200 and len(signed.json()["successful"]) == 1

    async with realtime(cloud) as ws:  # connected with the API key: connection modes are not per API
        reply = await publish_with(ws, channel, ["1"], cloud.api_key_auth())
        assert reply == {"type": "publish_error", "id": reply["id"], "errors": [UNAUTHORIZED]}
        assert (await subscribe_with(ws, channel, cloud.api_key_auth()))["errors"] == [UNAUTHORIZED]
        sub = await subscribe_with(ws, channel, cloud.iam_auth({"channel": channel}))
        assert sub["type"] == "subscribe_success"

        # An update that lets API keys publish takes effect at once (subscribe is cleared to defaults).
        appsync.update_channel_namespace(apiId=api_id, name=iam_only, publishAuthModes=modes("API_KEY"))
        assert (await publish_with(ws, channel, ['"now"'], cloud.api_key_auth()))["type"] == "publish_success"
        assert await recv(ws) == {"type": "data", "id": sub["id"], "event": '"now"'}
        signed = httpx.post(cloud.http_url, content=body, headers=cloud.iam_auth(body))
        assert signed.status_code == 401  # IAM no longer may publish there

    # A namespace without modes of its own follows its API's defaults, and their updates.
    inherits = fresh("inh-")
    appsync.create_channel_namespace(apiId=api_id, name=inherits)
    assert http_publish(cloud, f"/{inherits}/a", ["1"], {"x-api-key": cloud.api_key}).status_code == 200
    appsync.update_api(apiId=api_id, name="iam-publish", eventConfig=event_config(publish=("AWS_IAM",)))
    assert http_publish(cloud, f"/{inherits}/a", ["1"], {"x-api-key": cloud.api_key}).status_code == 401


async def test_deleting_the_api_removes_its_namespaces_and_keys_from_the_data_plane(
    shared_cloud: CloudProcess, appsync: Any, new_api: Callable[..., dict[str, Any]]
) -> None:
    cloud = shared_cloud
    before = control_counts(cloud)
    api_id = new_api()["apiId"]
    namespace = fresh("gone-")
    appsync.create_channel_namespace(apiId=api_id, name=namespace)
    key_id = appsync.create_api_key(apiId=api_id)["apiKey"]["id"]
    assert control_counts(cloud) == (before[0] + 1, before[1] + 1, before[2] + 1)
    assert http_publish(cloud, f"/{namespace}/a", ["1"], {"x-api-key": key_id}).status_code == 200

    appsync.delete_api(apiId=api_id)
    assert control_counts(cloud) == before
    assert http_publish(cloud, f"/{namespace}/a", ["1"], {"x-api-key": cloud.api_key}).status_code == 400
    assert http_publish(cloud, "/default/a", ["1"], {"x-api-key": key_id}).status_code == 401


def test_a_fresh_cloud_counts_what_the_control_plane_created(cloud: CloudProcess) -> None:
    assert control_counts(cloud) == (0, 0, 0)
    client = appsync_client(cloud)
    api_id = client.create_api(name="livelambda", eventConfig=event_config())["api"]["apiId"]
    client.create_channel_namespace(apiId=api_id, name="s1")
    client.create_channel_namespace(apiId=api_id, name="s2")
    client.create_api_key(apiId=api_id)
    assert control_counts(cloud) == (1, 2, 1)
    assert client.list_apis()["apis"][0]["apiId"] == api_id


# ----- the store, with a fake clock ------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_store_keys_expire_stay_listed_can_be_extended_then_are_deleted() -> None:
    clock = FakeClock()
    changes: list[None] = []
    store = EventApiStore(region="us-east-1", clock=clock, on_change=lambda: changes.append(None))
    api = store.create_api(name="a", event_config=event_config())
    key = store.create_api_key(api.api_id, expires=int(clock.now) + 2 * DAY)
    assert store.api_key_valid(key.id) and not store.api_key_valid("da2-" + "x" * 26)

    clock.now = key.expires  # expired: refused by the data plane, still listed, can be extended
    assert not store.api_key_valid(key.id)
    assert store.list_api_keys(api.api_id).items == [key]
    store.update_api_key(api.api_id, key.id, expires=int(clock.now) + DAY + HOUR)
    assert store.api_key_valid(key.id)

    clock.now = key.expires + API_KEY_KEPT_S  # 60 days after expiry: gone
    assert store.list_api_keys(api.api_id).items == []
    assert not store.api_key_valid(key.id)
    with pytest.raises(NotFound):
        store.update_api_key(api.api_id, key.id, expires=int(clock.now) + 2 * DAY)
    assert store.counts() == {"apis": 1, "channel_namespaces": 0, "api_keys": 0}
    assert len(changes) >= 4  # create api, create key, update, forget


def test_store_expiry_bounds_and_rounding() -> None:
    clock = FakeClock(1_800_000_000.0 + 1234)
    store = EventApiStore(region="us-east-1", clock=clock)
    api_id = store.create_api(name="a", event_config=event_config()).api_id
    default = store.create_api_key(api_id)
    assert default.expires == (int(clock.now) + 7 * DAY) // HOUR * HOUR
    assert (
        store.create_api_key(api_id, expires=int(clock.now) + DAY).expires
        == (int(clock.now) + DAY) // HOUR * HOUR
    )
    assert store.create_api_key(api_id, expires=int(clock.now) + 365 * DAY)
    for ahead in (DAY - 1, 365 * DAY + 1):
        with pytest.raises(ApiKeyValidityOutOfBounds):
            store.create_api_key(api_id, expires=int(clock.now) + ahead)
    with pytest.raises(BadRequest):
        store.create_api_key(api_id, expires="tomorrow")


def test_store_pages_survive_deletions_between_pages() -> None:
    store = EventApiStore(region="us-east-1", clock=FakeClock())
    ids = [store.create_api(name=f"a{i}", event_config=event_config()).api_id for i in range(5)]
    first = store.list_apis(max_results=2)
    assert [a.api_id for a in first.items] == ids[:2]
    store.delete_api(ids[1])  # the last one sent
    store.delete_api(ids[2])  # the next one
    rest = store.list_apis(next_token=first.next_token, max_results=2)
    assert [a.api_id for a in rest.items] == ids[3:] and rest.next_token is None
    api_id = ids[0]
    store.create_channel_namespace(api_id, name="x")
    with pytest.raises(BadRequest):  # a token of another list
        store.list_channel_namespaces(api_id, next_token=first.next_token)


def test_store_data_plane_view() -> None:
    store = EventApiStore(region="us-east-1", clock=FakeClock())
    a = store.create_api(name="a", event_config=event_config(publish=("AWS_IAM",))).api_id
    b = store.create_api(name="b", event_config=event_config()).api_id
    store.create_channel_namespace(a, name="shared")
    store.create_channel_namespace(a, name="own", subscribe_auth_modes=modes("API_KEY"))
    store.create_channel_namespace(b, name="shared", publish_auth_modes=modes("API_KEY"))
    assert store.namespace_names == {"shared", "own"}
    assert store.publish_modes == {"shared": {"AWS_IAM", "API_KEY"}, "own": {"AWS_IAM"}}
    assert store.subscribe_modes == {"shared": {"AWS_IAM", "API_KEY"}, "own": {"API_KEY"}}
    store.delete_api(b)
    assert store.publish_modes == {"shared": {"AWS_IAM"}, "own": {"AWS_IAM"}}
