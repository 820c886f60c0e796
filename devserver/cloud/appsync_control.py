"""The AppSync control plane for Event APIs, as `livelambda cloud` serves it to boto3's `appsync` client.

`livelambda aws up/down` finds or creates an Event API, a channel namespace per live session and, in
API-key mode, an API key per session. Pointed at `livelambda cloud` (`endpoint_url`, or
`AWS_ENDPOINT_URL_APPSYNC`), those calls land here, and what they create is real in the emulator's data
plane: a namespace created on any API accepts publishes and subscriptions, a deleted one is refused
again, and a created key authorizes until it expires or is deleted (see appsync_emulator.py).

Two parts:
- `EventApiStore`: the state, sans-I/O. Plain methods, the wall clock injected, typed errors
  (`ControlPlaneError` subclasses, named as the service's error shapes). After every change it rebuilds
  the indices the data plane reads (`namespace_names`, `publish_modes`, `subscribe_modes`, the keys) and
  calls `on_change`, so that a publish costs a set lookup and never walks the store.
- `build_control_router`: the thin restJson shell, each operation at the method and path of botocore's
  model (`botocore/data/appsync/2017-07-25/service-2.json`): `/v2/apis...` for APIs and channel
  namespaces, `/v1/apis/{apiId}/apikeys...` for keys, `/v1/tags/{resourceArn}` for tags. An error is
  answered with the model's HTTP status, the `x-amzn-ErrorType` header naming the error shape and a
  `{"message": ...}` body, which is what botocore reads to raise a `ClientError` with that code.

Like moto, the control plane does not check request signatures: any credentials will do. (The data plane
does check its API keys and SigV4.)

Where the model and the documentation leave a choice we answered as below; marked *(inferred)* where we
could not confirm it against the real service, so that a difference found against AWS is fixed here:
- `dns` holds the cloud's own `host:port` for both HTTP and REALTIME (it serves /event and
  /event/realtime on one port). ListApis leaves `dns` out, as AWS does (PROTOCOL.md).
- One data plane for all the APIs of a cloud: the realtime and HTTP endpoints do not know which API a
  client meant, so a namespace of any API is open to all, an API key of any API is accepted everywhere,
  and `connectionAuthModes` is not enforced. A namespace's effective publish/subscribe modes are its
  own, or else its API's defaults; two APIs with a same-named namespace allow the union of their modes.
  The built-in namespaces (`--namespace`s of the cloud) always take both API_KEY and AWS_IAM.
- Messages of NotFoundException, BadRequestException and ConflictException are our wording *(inferred)*;
  the two ApiKeyValidityOutOfBoundsException messages are AWS's.
- A duplicate namespace name is ConflictException (409), the model's only "already exists"-like error
  of CreateChannelNamespace *(inferred)*. Duplicate API names are allowed *(inferred)*.
- API key expiry: the requested time must be 1 to 365 days ahead (checked before it is rounded down to
  the hour) *(inferred: before or after rounding)*; default 7 days; kept 60 days after expiry; at most
  50 keys per API (ApiKeyLimitExceededException) *(inferred from the GraphQL quota)*.
- Updates replace: UpdateApi and UpdateChannelNamespace clear optional fields left out (ownerContact,
  auth modes, handlers), as AppSync's update operations do for GraphQL APIs *(inferred for Event APIs)*;
  UpdateApiKey keeps a description or expiry left out *(inferred)*.
- Auth modes must name a type among the API's `authProviders`, lists given must not be empty, and an
  auth type appears once in `authProviders` *(inferred)*. `codeHandlers` and `handlerConfigs` are kept
  and returned but never run.
- `maxResults` 0 or absent means 25; over 25 is BadRequestException *(inferred)*. Pages follow creation
  order; a `nextToken` is opaque and survives deletions between pages.
- TagResource, UntagResource and ListTagsForResource take Event API ARNs only (the model's pattern);
  another well-formed ARN that names no API of this cloud is NotFoundException.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import itertools
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from stub_runtime.errors import RemoteProtocolError

ACCOUNT_ID = "123456789012"  # the account every ARN of the cloud names (moto's default account)
API_KEY = "API_KEY"
AWS_IAM = "AWS_IAM"
AUTH_TYPES = frozenset({API_KEY, AWS_IAM, "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA"})
LOG_LEVELS = frozenset({"NONE", "ERROR", "ALL", "INFO", "DEBUG"})
HANDLER_BEHAVIORS = frozenset({"CODE", "DIRECT"})

DAY_S = 86_400
API_KEY_DEFAULT_S = 7 * DAY_S
API_KEY_MIN_S = DAY_S
API_KEY_MAX_S = 365 * DAY_S
API_KEY_KEPT_S = 60 * DAY_S  # an expired key can be extended until then, and is deleted after
MAX_API_KEYS_PER_API = 50
MAX_RESULTS = 25
MAX_TAGS = 50

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# Patterns of botocore's model (the shapes ApiName, Namespace, OwnerContact, TagKey, TagValue, ResourceArn).
_API_NAME = re.compile(r"[A-Za-z0-9_\- ]{1,50}")
_NAMESPACE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")
_OWNER_CONTACT = re.compile(r"[A-Za-z0-9_\- .]{0,250}")
_TAG_KEY = re.compile(r"(?!aws:)[ a-zA-Z+-=._:/]{1,128}")
_TAG_VALUE = re.compile(r"[\s\w+-=.:/@]{0,256}")
_API_ARN = re.compile(r"arn:aws:appsync:([A-Za-z0-9_/.-]{0,63}):(\d{12}):apis/([0-9A-Za-z_-]{26})")

log = logging.getLogger("livelambda.cloud.control")


def random_id(length: int = 26) -> str:
    """Lowercase letters and digits, as AppSync's API ids (26 of them) and key ids are made."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_api_key_id() -> str:
    """A key shaped like AppSync's: `da2-` and 26 lowercase letters and digits."""
    return "da2-" + random_id(26)


# ----- errors: the model's error shapes ----------------------------------------------------------------


class ControlPlaneError(RemoteProtocolError):
    """A request the control plane refuses; `code` is the model's error shape, `status` its HTTP status."""

    code: ClassVar[str] = "InternalFailureException"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message


class InternalFailure(ControlPlaneError):
    code, status = "InternalFailureException", 500


class BadRequest(ControlPlaneError):
    code, status = "BadRequestException", 400


class NotFound(ControlPlaneError):
    code, status = "NotFoundException", 404


class Conflict(ControlPlaneError):
    code, status = "ConflictException", 409


class ApiKeyValidityOutOfBounds(ControlPlaneError):
    code, status = "ApiKeyValidityOutOfBoundsException", 400


class ApiKeyLimitExceeded(ControlPlaneError):
    code, status = "ApiKeyLimitExceededException", 400


# ----- records --------------------------------------------------------------------------------------


@dataclass
class ApiKey:
    id: str
    api_id: str
    description: str | None
    expires: int  # epoch seconds, on the hour
    seq: int

    @property
    def deletes(self) -> int:
        return self.expires + API_KEY_KEPT_S

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"id": self.id, "expires": self.expires, "deletes": self.deletes}
        if self.description is not None:
            wire["description"] = self.description
        return wire


@dataclass
class ChannelNamespace:
    api_id: str
    api_arn: str
    name: str
    subscribe_auth_modes: list[dict[str, str]] | None
    publish_auth_modes: list[dict[str, str]] | None
    code_handlers: str | None
    handler_configs: dict[str, Any] | None
    tags: dict[str, str]
    created: float
    last_modified: float
    seq: int

    @property
    def arn(self) -> str:
        # The IAM resource of EventPublish/EventSubscribe (PROTOCOL.md): `<api ARN>/channelNamespace/<ns>`.
        return f"{self.api_arn}/channelNamespace/{self.name}"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "apiId": self.api_id,
            "name": self.name,
            "channelNamespaceArn": self.arn,
            "created": self.created,
            "lastModified": self.last_modified,
        }
        optional = {
            "subscribeAuthModes": self.subscribe_auth_modes,
            "publishAuthModes": self.publish_auth_modes,
            "codeHandlers": self.code_handlers,
            "handlerConfigs": self.handler_configs,
            "tags": self.tags or None,
        }
        wire.update({k: copy.deepcopy(v) for k, v in optional.items() if v is not None})
        return wire


@dataclass
class EventApi:
    api_id: str
    arn: str
    name: str
    event_config: dict[str, Any]
    owner_contact: str | None
    tags: dict[str, str]
    created: float
    seq: int
    namespaces: dict[str, ChannelNamespace] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)

    def to_wire(self, host: str | None) -> dict[str, Any]:
        """The `Api` shape; `host` (the cloud's `host:port`) fills `dns`, None leaves it out (ListApis)."""
        wire: dict[str, Any] = {
            "apiId": self.api_id,
            "name": self.name,
            "apiArn": self.arn,
            "created": self.created,
            "xrayEnabled": False,
            "eventConfig": copy.deepcopy(self.event_config),
        }
        if host is not None:
            wire["dns"] = {"HTTP": host, "REALTIME": host}
        if self.owner_contact is not None:
            wire["ownerContact"] = self.owner_contact
        if self.tags:
            wire["tags"] = dict(self.tags)
        return wire


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_token: str | None


# ----- the store ------------------------------------------------------------------------------------


class EventApiStore:
    """Event APIs, their channel namespaces and API keys, in memory. Not thread-safe: the cloud calls
    it from its event loop only (async route handlers), as it does the data plane.

    Data-plane view, rebuilt after each change (then `on_change()` is called):
    `namespace_names` (every namespace of every API), `publish_modes` / `subscribe_modes` (namespace ->
    auth types allowed) and `api_key_valid()`.
    """

    def __init__(
        self,
        *,
        region: str,
        account_id: str = ACCOUNT_ID,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        new_id: Callable[[], str] = random_id,
        new_key_id: Callable[[], str] = new_api_key_id,
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.on_change = on_change
        self._new_id = new_id
        self._new_key_id = new_key_id
        self._seq = itertools.count(1)
        self.apis: dict[str, EventApi] = {}
        self.namespace_names: frozenset[str] = frozenset()
        self.publish_modes: dict[str, frozenset[str]] = {}
        self.subscribe_modes: dict[str, frozenset[str]] = {}
        self._keys: dict[str, ApiKey] = {}

    # ----- APIs --------------------------------------------------------------------------------------

    def create_api(
        self,
        *,
        name: object,
        event_config: object,
        owner_contact: object = None,
        tags: object = None,
    ) -> EventApi:
        name_ = _api_name(name)
        config = _event_config(event_config)
        contact = _owner_contact(owner_contact)
        tags_ = _tags(tags, "tags") if tags is not None else {}
        api_id = self._new_id()
        while api_id in self.apis:
            api_id = self._new_id()
        api = EventApi(
            api_id=api_id,
            arn=f"arn:aws:appsync:{self.region}:{self.account_id}:apis/{api_id}",
            name=name_,
            event_config=config,
            owner_contact=contact,
            tags=tags_,
            created=self._now(),
            seq=next(self._seq),
        )
        self.apis[api_id] = api
        self._changed()
        return api

    def get_api(self, api_id: str) -> EventApi:
        api = self.apis.get(api_id)
        if api is None:
            raise NotFound(f"API {api_id} not found.")
        return api

    def list_apis(self, *, next_token: str | None = None, max_results: int | None = None) -> Page:
        return _paginate(list(self.apis.values()), "apis", next_token, max_results)

    def update_api(
        self, api_id: str, *, name: object, event_config: object, owner_contact: object = None
    ) -> EventApi:
        api = self.get_api(api_id)
        name_ = _api_name(name)
        config = _event_config(event_config)
        contact = _owner_contact(owner_contact)
        api.name, api.event_config, api.owner_contact = name_, config, contact
        self._changed()  # the default auth modes may have changed
        return api

    def delete_api(self, api_id: str) -> None:
        self.get_api(api_id)
        del self.apis[api_id]  # its namespaces and keys go with it
        self._changed()

    # ----- channel namespaces --------------------------------------------------------------------------

    def create_channel_namespace(
        self,
        api_id: str,
        *,
        name: object,
        subscribe_auth_modes: object = None,
        publish_auth_modes: object = None,
        code_handlers: object = None,
        handler_configs: object = None,
        tags: object = None,
    ) -> ChannelNamespace:
        api = self.get_api(api_id)
        name_ = _namespace_name(name)
        providers = _provider_types(api.event_config)
        subscribe = _optional_auth_modes(subscribe_auth_modes, "subscribeAuthModes", providers)
        publish = _optional_auth_modes(publish_auth_modes, "publishAuthModes", providers)
        handlers = _optional_code(code_handlers)
        configs = _optional_handler_configs(handler_configs)
        tags_ = _tags(tags, "tags") if tags is not None else {}
        if name_ in api.namespaces:
            raise Conflict(f"Channel namespace {name_} already exists in API {api_id}.")
        now = self._now()
        namespace = ChannelNamespace(
            api_id=api_id,
            api_arn=api.arn,
            name=name_,
            subscribe_auth_modes=subscribe,
            publish_auth_modes=publish,
            code_handlers=handlers,
            handler_configs=configs,
            tags=tags_,
            created=now,
            last_modified=now,
            seq=next(self._seq),
        )
        api.namespaces[name_] = namespace
        self._changed()
        return namespace

    def get_channel_namespace(self, api_id: str, name: str) -> ChannelNamespace:
        api = self.get_api(api_id)
        namespace = api.namespaces.get(name)
        if namespace is None:
            raise NotFound(f"Channel namespace {name} not found in API {api_id}.")
        return namespace

    def list_channel_namespaces(
        self, api_id: str, *, next_token: str | None = None, max_results: int | None = None
    ) -> Page:
        api = self.get_api(api_id)
        return _paginate(list(api.namespaces.values()), f"ns/{api_id}", next_token, max_results)

    def update_channel_namespace(
        self,
        api_id: str,
        name: str,
        *,
        subscribe_auth_modes: object = None,
        publish_auth_modes: object = None,
        code_handlers: object = None,
        handler_configs: object = None,
    ) -> ChannelNamespace:
        namespace = self.get_channel_namespace(api_id, name)
        providers = _provider_types(self.apis[api_id].event_config)
        subscribe = _optional_auth_modes(subscribe_auth_modes, "subscribeAuthModes", providers)
        publish = _optional_auth_modes(publish_auth_modes, "publishAuthModes", providers)
        handlers = _optional_code(code_handlers)
        configs = _optional_handler_configs(handler_configs)
        namespace.subscribe_auth_modes, namespace.publish_auth_modes = subscribe, publish
        namespace.code_handlers, namespace.handler_configs = handlers, configs
        namespace.last_modified = self._now()
        self._changed()
        return namespace

    def delete_channel_namespace(self, api_id: str, name: str) -> None:
        self.get_channel_namespace(api_id, name)
        del self.apis[api_id].namespaces[name]
        self._changed()

    # ----- API keys ------------------------------------------------------------------------------------

    def create_api_key(self, api_id: str, *, description: object = None, expires: object = None) -> ApiKey:
        api = self.get_api(api_id)
        self._forget_deleted_keys()
        description_ = _optional_string(description, "description")
        expiry = self._expiry(expires)
        if len(api.api_keys) >= MAX_API_KEYS_PER_API:
            raise ApiKeyLimitExceeded(
                f"API {api_id} already has {MAX_API_KEYS_PER_API} API keys, the most an API can have."
            )
        key_id = self._new_key_id()
        while key_id in self._keys:
            key_id = self._new_key_id()
        key = ApiKey(id=key_id, api_id=api_id, description=description_, expires=expiry, seq=next(self._seq))
        api.api_keys[key_id] = key
        self._changed()
        return key

    def list_api_keys(
        self, api_id: str, *, next_token: str | None = None, max_results: int | None = None
    ) -> Page:
        api = self.get_api(api_id)
        self._forget_deleted_keys()
        return _paginate(list(api.api_keys.values()), f"keys/{api_id}", next_token, max_results)

    def update_api_key(
        self, api_id: str, key_id: str, *, description: object = None, expires: object = None
    ) -> ApiKey:
        key = self._api_key(api_id, key_id)
        description_ = _optional_string(description, "description")
        expiry = self._expiry(expires) if expires is not None else key.expires
        if description_ is not None:
            key.description = description_
        key.expires = expiry
        self._changed()
        return key

    def delete_api_key(self, api_id: str, key_id: str) -> None:
        self._api_key(api_id, key_id)
        del self.apis[api_id].api_keys[key_id]
        self._changed()

    def api_key_valid(self, key_id: str) -> bool:
        """Whether the data plane accepts `key_id` now: created here, neither deleted nor expired."""
        key = self._keys.get(key_id)
        return key is not None and self.clock() < key.expires

    def _api_key(self, api_id: str, key_id: str) -> ApiKey:
        api = self.get_api(api_id)
        self._forget_deleted_keys()
        key = api.api_keys.get(key_id)
        if key is None:
            raise NotFound(f"API key {key_id} not found in API {api_id}.")
        return key

    def _expiry(self, expires: object) -> int:
        now = self.clock()
        if expires is None:
            requested = now + API_KEY_DEFAULT_S
        elif isinstance(expires, int) and not isinstance(expires, bool):
            requested = float(expires)
        else:
            raise BadRequest("expires must be a whole number of seconds since the epoch.")
        if requested - now < API_KEY_MIN_S:
            raise ApiKeyValidityOutOfBounds("API key must be valid for a minimum of 1 days.")
        if requested - now > API_KEY_MAX_S:
            raise ApiKeyValidityOutOfBounds("API key can be valid for a maximum of 365 days.")
        return int(requested) // 3600 * 3600  # "rounded down to the nearest hour"

    def _forget_deleted_keys(self) -> None:
        now = self.clock()
        gone = [
            (api, key_id)
            for api in self.apis.values()
            for key_id, key in api.api_keys.items()
            if key.deletes <= now
        ]
        for api, key_id in gone:
            del api.api_keys[key_id]
        if gone:
            self._changed()

    # ----- tags --------------------------------------------------------------------------------------

    def tag_resource(self, resource_arn: str, tags: object) -> None:
        api = self._tagged(resource_arn)
        merged = {**api.tags, **_tags(tags, "tags")}
        if len(merged) > MAX_TAGS:
            raise BadRequest(f"A resource can have at most {MAX_TAGS} tags.")
        api.tags = merged

    def untag_resource(self, resource_arn: str, tag_keys: Iterable[str]) -> None:
        api = self._tagged(resource_arn)
        keys = list(tag_keys)
        if not keys:
            raise BadRequest("tagKeys must name at least one tag key.")
        for key in keys:
            api.tags.pop(key, None)

    def list_tags_for_resource(self, resource_arn: str) -> dict[str, str]:
        return dict(self._tagged(resource_arn).tags)

    def _tagged(self, resource_arn: str) -> EventApi:
        match = _API_ARN.fullmatch(resource_arn)
        if match is None:
            raise BadRequest(f"Invalid resource ARN {resource_arn!r}: expected an Event API ARN.")
        region, account, api_id = match.groups()
        api = self.apis.get(api_id)
        if api is None or region != self.region or account != self.account_id:
            raise NotFound(f"Resource {resource_arn} not found.")
        return api

    # ----- views -------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """For `/_livelambda/stats`: APIs, channel namespaces and API keys (expired ones until deleted)."""
        self._forget_deleted_keys()
        return {
            "apis": len(self.apis),
            "channel_namespaces": sum(len(api.namespaces) for api in self.apis.values()),
            "api_keys": sum(len(api.api_keys) for api in self.apis.values()),
        }

    def _now(self) -> float:
        return round(self.clock(), 3)

    def _changed(self) -> None:
        """Rebuild the data plane's view (control-plane rates: a few calls a session) and tell it."""
        names: set[str] = set()
        publish: dict[str, set[str]] = {}
        subscribe: dict[str, set[str]] = {}
        keys: dict[str, ApiKey] = {}
        for api in self.apis.values():
            default_publish = _types(api.event_config["defaultPublishAuthModes"])
            default_subscribe = _types(api.event_config["defaultSubscribeAuthModes"])
            for ns in api.namespaces.values():
                names.add(ns.name)
                own_publish, own_subscribe = ns.publish_auth_modes, ns.subscribe_auth_modes
                publish.setdefault(ns.name, set()).update(
                    default_publish if own_publish is None else _types(own_publish)
                )
                subscribe.setdefault(ns.name, set()).update(
                    default_subscribe if own_subscribe is None else _types(own_subscribe)
                )
            keys.update(api.api_keys)
        self.namespace_names = frozenset(names)
        self.publish_modes = {name: frozenset(modes) for name, modes in publish.items()}
        self.subscribe_modes = {name: frozenset(modes) for name, modes in subscribe.items()}
        self._keys = keys
        if self.on_change is not None:
            self.on_change()


# ----- validation (what the service answers BadRequestException for) ---------------------------------


def _api_name(value: object) -> str:
    if not isinstance(value, str) or not _API_NAME.fullmatch(value):
        raise BadRequest(f"Invalid API name {value!r}: 1-50 characters of A-Z, a-z, 0-9, '_', '-' and space.")
    return value


def _namespace_name(value: object) -> str:
    if not isinstance(value, str) or not _NAMESPACE.fullmatch(value):
        raise BadRequest(
            f"Invalid channel namespace name {value!r}: 1-50 characters of A-Z, a-z, 0-9 and '-', "
            "starting and ending with a letter or digit."
        )
    return value


def _owner_contact(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _OWNER_CONTACT.fullmatch(value):
        raise BadRequest(f"Invalid ownerContact {value!r}: up to 250 of A-Z, a-z, 0-9, '_', '-', '.', space.")
    return value


def _optional_string(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name} must be a string.")
    return value


def _optional_code(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 32_768:
        raise BadRequest("codeHandlers must be a string of 1 to 32768 characters.")
    return value


def _tags(value: object, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise BadRequest(f"{name} must be a map of at least one tag.")
    if len(value) > MAX_TAGS:
        raise BadRequest(f"A resource can have at most {MAX_TAGS} tags.")
    for key, val in value.items():
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise BadRequest(f"Invalid tag key {key!r}.")
        if not isinstance(val, str) or not _TAG_VALUE.fullmatch(val):
            raise BadRequest(f"Invalid value for tag {key!r}.")
    return dict(value)


def _auth_modes(value: object, name: str, providers: frozenset[str]) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{name} must be a list of at least one auth mode.")
    modes = []
    for mode in value:
        auth_type = mode.get("authType") if isinstance(mode, dict) else None
        if auth_type not in AUTH_TYPES:
            raise BadRequest(f"Invalid authType {auth_type!r} in {name}.")
        if auth_type not in providers:
            raise BadRequest(f"{name} names {auth_type}, which is not among the API's authProviders.")
        modes.append({"authType": auth_type})
    return modes


def _optional_auth_modes(value: object, name: str, providers: frozenset[str]) -> list[dict[str, str]] | None:
    return None if value is None else _auth_modes(value, name, providers)


def _types(modes: Iterable[Mapping[str, str]]) -> set[str]:
    return {mode["authType"] for mode in modes}


def _provider_types(event_config: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(_types(event_config["authProviders"]))


_PROVIDER_CONFIGS = {  # authType -> (its config member, that member's required strings)
    "AMAZON_COGNITO_USER_POOLS": ("cognitoConfig", ("userPoolId", "awsRegion")),
    "OPENID_CONNECT": ("openIDConnectConfig", ("issuer",)),
    "AWS_LAMBDA": ("lambdaAuthorizerConfig", ("authorizerUri",)),
}


def _event_config(value: object) -> dict[str, Any]:
    if value is None:
        raise BadRequest("eventConfig is required for an Event API.")
    if not isinstance(value, dict):
        raise BadRequest("eventConfig must be an object.")
    providers = value.get("authProviders")
    if not isinstance(providers, list) or not providers:
        raise BadRequest("eventConfig.authProviders must be a list of at least one auth provider.")
    normalized_providers: list[dict[str, Any]] = []
    for provider in providers:
        auth_type = provider.get("authType") if isinstance(provider, dict) else None
        if auth_type not in AUTH_TYPES:
            raise BadRequest(f"Invalid authType {auth_type!r} in eventConfig.authProviders.")
        assert isinstance(provider, dict)
        if any(p["authType"] == auth_type for p in normalized_providers):
            raise BadRequest(f"eventConfig.authProviders names {auth_type} more than once.")
        entry: dict[str, Any] = {"authType": auth_type}
        if auth_type in _PROVIDER_CONFIGS:
            member, required = _PROVIDER_CONFIGS[auth_type]
            given = provider.get(member)
            if not isinstance(given, dict) or not all(isinstance(given.get(k), str) for k in required):
                raise BadRequest(f"An {auth_type} auth provider needs {member} with {', '.join(required)}.")
            entry[member] = copy.deepcopy(given)
        normalized_providers.append(entry)
    types = frozenset(p["authType"] for p in normalized_providers)
    config: dict[str, Any] = {"authProviders": normalized_providers}
    for member in ("connectionAuthModes", "defaultPublishAuthModes", "defaultSubscribeAuthModes"):
        if value.get(member) is None:
            raise BadRequest(f"eventConfig.{member} is required.")
        config[member] = _auth_modes(value[member], f"eventConfig.{member}", types)
    log_config = value.get("logConfig")
    if log_config is not None:
        if (
            not isinstance(log_config, dict)
            or log_config.get("logLevel") not in LOG_LEVELS
            or not isinstance(log_config.get("cloudWatchLogsRoleArn"), str)
        ):
            raise BadRequest("eventConfig.logConfig needs a logLevel and a cloudWatchLogsRoleArn.")
        config["logConfig"] = {
            "logLevel": log_config["logLevel"],
            "cloudWatchLogsRoleArn": log_config["cloudWatchLogsRoleArn"],
        }
    return config


def _optional_handler_configs(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"onPublish", "onSubscribe"}:
        raise BadRequest("handlerConfigs may hold onPublish and onSubscribe only.")
    for which, handler in value.items():
        if (
            not isinstance(handler, dict)
            or handler.get("behavior") not in HANDLER_BEHAVIORS
            or not isinstance(handler.get("integration"), dict)
            or not isinstance(handler["integration"].get("dataSourceName"), str)
        ):
            raise BadRequest(f"handlerConfigs.{which} needs a behavior and an integration.dataSourceName.")
    return copy.deepcopy(value)


# ----- pagination --------------------------------------------------------------------------------------


def _paginate(items: list[Any], kind: str, next_token: str | None, max_results: int | None) -> Page:
    """`items` in creation order (each has `seq`); a token names the kind of list and the last seq sent,
    so a deletion between two pages neither repeats nor skips an item."""
    limit = max_results or MAX_RESULTS
    if not 0 < limit <= MAX_RESULTS:
        raise BadRequest(f"maxResults must be between 0 and {MAX_RESULTS}.")
    after = 0
    if next_token is not None:
        after = _token_position(next_token, kind)
    rest = [item for item in items if item.seq > after]
    page = rest[:limit]
    more = len(rest) > limit
    token = _token(kind, page[-1].seq) if more else None
    return Page(page, token)


def _token(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, seq]).encode()).decode()


def _token_position(token: str, kind: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        decoded = None
    if not (
        isinstance(decoded, list) and len(decoded) == 2 and decoded[0] == kind and isinstance(decoded[1], int)
    ):
        raise BadRequest("Invalid nextToken.")
    return decoded[1]


# ----- the restJson shell ------------------------------------------------------------------------------


def error_response(error: ControlPlaneError) -> Response:
    """What AppSync answers for an error: botocore takes the code from `x-amzn-ErrorType`."""
    return JSONResponse(
        {"message": error.message},
        status_code=error.status,
        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def _ok(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers={"x-amzn-RequestId": str(uuid.uuid4())})


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _paging(request: Request) -> dict[str, Any]:
    token = request.query_params.get("nextToken")
    raw = request.query_params.get("maxResults")
    if raw is None:
        return {"next_token": token, "max_results": None}
    try:
        max_results = int(raw)
    except ValueError:
        raise BadRequest(f"maxResults must be an integer, not {raw!r}.") from None
    return {"next_token": token, "max_results": max_results}


def _own_host(request: Request) -> str:
    """The cloud's `host:port` as the data plane's auth objects must name it (see api_hosts)."""
    server = request.scope.get("server") or ("127.0.0.1", 0)
    address, port = server[0], server[1]
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _answering(
    handler: Callable[..., Awaitable[dict[str, Any]]],
) -> Callable[..., Awaitable[Response]]:
    """Turn a handler's dict into a 200 answer and an error into the service's error answer."""

    @functools.wraps(handler)  # FastAPI reads the path parameters from the handler's signature
    async def answer(**kwargs: Any) -> Response:
        try:
            return _ok(await handler(**kwargs))
        except ControlPlaneError as exc:
            return error_response(exc)
        except Exception:  # our bug: answer as the service would, so that botocore names it
            log.exception("control plane: %s failed", handler.__name__)
            return error_response(InternalFailure("An internal failure occurred."))

    return answer


def build_control_router(store: EventApiStore) -> APIRouter:
    """The control-plane routes, at the model's methods and paths. Handlers are `async` so that they
    run on the event loop, as the data plane does: the store needs no lock."""
    router = APIRouter()
    s = store

    Handler = Callable[..., Awaitable[dict[str, Any]]]

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            router.add_api_route(path, _answering(handler), methods=[method], response_model=None)
            return handler

        return register

    # ----- APIs
    @route("POST", "/v2/apis")
    async def create_api(request: Request) -> dict[str, Any]:
        b = await _body(request)
        api = s.create_api(
            name=b.get("name"),
            event_config=b.get("eventConfig"),
            owner_contact=b.get("ownerContact"),
            tags=b.get("tags"),
        )
        return {"api": api.to_wire(_own_host(request))}

    @route("GET", "/v2/apis")
    async def list_apis(request: Request) -> dict[str, Any]:
        page = s.list_apis(**_paging(request))
        return _listing("apis", [api.to_wire(None) for api in page.items], page)

    @route("GET", "/v2/apis/{api_id}")
    async def get_api(request: Request, api_id: str) -> dict[str, Any]:
        return {"api": s.get_api(api_id).to_wire(_own_host(request))}

    @route("POST", "/v2/apis/{api_id}")
    async def update_api(request: Request, api_id: str) -> dict[str, Any]:
        b = await _body(request)
        api = s.update_api(
            api_id, name=b.get("name"), event_config=b.get("eventConfig"), owner_contact=b.get("ownerContact")
        )
        return {"api": api.to_wire(_own_host(request))}

    @route("DELETE", "/v2/apis/{api_id}")
    async def delete_api(api_id: str) -> dict[str, Any]:
        s.delete_api(api_id)
        return {}

    # ----- channel namespaces
    @route("POST", "/v2/apis/{api_id}/channelNamespaces")
    async def create_channel_namespace(request: Request, api_id: str) -> dict[str, Any]:
        b = await _body(request)
        namespace = s.create_channel_namespace(
            api_id,
            name=b.get("name"),
            subscribe_auth_modes=b.get("subscribeAuthModes"),
            publish_auth_modes=b.get("publishAuthModes"),
            code_handlers=b.get("codeHandlers"),
            handler_configs=b.get("handlerConfigs"),
            tags=b.get("tags"),
        )
        return {"channelNamespace": namespace.to_wire()}

    @route("GET", "/v2/apis/{api_id}/channelNamespaces")
    async def list_channel_namespaces(request: Request, api_id: str) -> dict[str, Any]:
        page = s.list_channel_namespaces(api_id, **_paging(request))
        return _listing("channelNamespaces", [ns.to_wire() for ns in page.items], page)

    @route("GET", "/v2/apis/{api_id}/channelNamespaces/{name}")
    async def get_channel_namespace(api_id: str, name: str) -> dict[str, Any]:
        return {"channelNamespace": s.get_channel_namespace(api_id, name).to_wire()}

    @route("POST", "/v2/apis/{api_id}/channelNamespaces/{name}")
    async def update_channel_namespace(request: Request, api_id: str, name: str) -> dict[str, Any]:
        b = await _body(request)
        namespace = s.update_channel_namespace(
            api_id,
            name,
            subscribe_auth_modes=b.get("subscribeAuthModes"),
            publish_auth_modes=b.get("publishAuthModes"),
            code_handlers=b.get("codeHandlers"),
            handler_configs=b.get("handlerConfigs"),
        )
        return {"channelNamespace": namespace.to_wire()}

    @route("DELETE", "/v2/apis/{api_id}/channelNamespaces/{name}")
    async def delete_channel_namespace(api_id: str, name: str) -> dict[str, Any]:
        s.delete_channel_namespace(api_id, name)
        return {}

    # ----- API keys
    @route("POST", "/v1/apis/{api_id}/apikeys")
    async def create_api_key(request: Request, api_id: str) -> dict[str, Any]:
        b = await _body(request)
        key = s.create_api_key(api_id, description=b.get("description"), expires=b.get("expires"))
        return {"apiKey": key.to_wire()}

    @route("GET", "/v1/apis/{api_id}/apikeys")
    async def list_api_keys(request: Request, api_id: str) -> dict[str, Any]:
        page = s.list_api_keys(api_id, **_paging(request))
        return _listing("apiKeys", [key.to_wire() for key in page.items], page)

    @route("POST", "/v1/apis/{api_id}/apikeys/{key_id}")
    async def update_api_key(request: Request, api_id: str, key_id: str) -> dict[str, Any]:
        b = await _body(request)
        key = s.update_api_key(api_id, key_id, description=b.get("description"), expires=b.get("expires"))
        return {"apiKey": key.to_wire()}

    @route("DELETE", "/v1/apis/{api_id}/apikeys/{key_id}")
    async def delete_api_key(api_id: str, key_id: str) -> dict[str, Any]:
        s.delete_api_key(api_id, key_id)
        return {}

    # ----- tags (botocore percent-encodes the ARN's '/' and ':'; the path converter takes them back)
    @route("POST", "/v1/tags/{resource_arn:path}")
    async def tag_resource(request: Request, resource_arn: str) -> dict[str, Any]:
        s.tag_resource(resource_arn, (await _body(request)).get("tags"))
        return {}

    @route("DELETE", "/v1/tags/{resource_arn:path}")
    async def untag_resource(request: Request, resource_arn: str) -> dict[str, Any]:
        s.untag_resource(resource_arn, request.query_params.getlist("tagKeys"))
        return {}

    @route("GET", "/v1/tags/{resource_arn:path}")
    async def list_tags_for_resource(resource_arn: str) -> dict[str, Any]:
        return {"tags": s.list_tags_for_resource(resource_arn)}

    return router


def _listing(member: str, items: list[dict[str, Any]], page: Page) -> dict[str, Any]:
    body: dict[str, Any] = {member: items}
    if page.next_token is not None:
        body["nextToken"] = page.next_token
    return body
