"""The shared AppSync Events API (one per account and region, named `livelambda`), a channel namespace
per live session, and in api-key mode a short-lived key per session.

IAM scopes AppSync Events to an API and a namespace, never to a channel, so each session gets a
namespace of its own: the stub's role may then use only its session's channels."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stub_runtime.errors import ConnectionFault

API_NAME = "livelambda"
KEY_DAYS = 7  # an api-key mode session key lives a week; `aws up` renews it
KEY_RENEW_BELOW_S = 2 * 86400
_AUTH_TYPES = {"iam": "AWS_IAM", "api_key": "API_KEY"}


class EventApiError(ConnectionFault):
    error_type = "Livelambda.EventApiError"


@dataclass(frozen=True)
class EventApi:
    api_id: str
    arn: str
    http_host: str
    realtime_host: str

    @classmethod
    def from_api(cls, api: dict[str, Any]) -> EventApi:
        dns = api.get("dns") or {}
        if not dns.get("HTTP") or not dns.get("REALTIME"):
            raise EventApiError(f"the AppSync API {api.get('apiId')} has no endpoints (dns) yet; try again")
        return cls(str(api["apiId"]), str(api["apiArn"]), str(dns["HTTP"]), str(dns["REALTIME"]))

    def urls(self, control_plane_url: str) -> tuple[str, str]:
        """The HTTP publish and realtime URLs. TLS, as AppSync serves them; plain http/ws only where
        the control plane itself is a plain-http server on the same host (`livelambda cloud`)."""
        control = urlsplit(control_plane_url)
        plain = control.scheme == "http" and control.netloc == self.http_host
        http, ws = ("http", "ws") if plain else ("https", "wss")
        return f"{http}://{self.http_host}/event", f"{ws}://{self.realtime_host}/event/realtime"


def namespace_for(session: str) -> str:
    """The session's channel namespace: 1-50 of [A-Za-z0-9-], alphanumeric at both ends (a session id
    already is; see devserver/live/session.py)."""
    return session[:50].strip("-")


def event_config() -> dict[str, Any]:
    both = [{"authType": "AWS_IAM"}, {"authType": "API_KEY"}]
    return {
        "authProviders": both,
        "connectionAuthModes": both,
        # Each session's namespace says which of the two it takes; IAM unless a namespace says otherwise.
        "defaultPublishAuthModes": [{"authType": "AWS_IAM"}],
        "defaultSubscribeAuthModes": [{"authType": "AWS_IAM"}],
    }


def _ours(appsync: Any) -> list[dict[str, Any]]:
    found = []
    for page in appsync.get_paginator("list_apis").paginate():
        for api in page.get("apis", ()):
            if api.get("name") == API_NAME and api.get("eventConfig"):
                found.append(api)
    # The oldest wins when two were made at once (by two developers' first `aws up`).
    return sorted(found, key=lambda a: (str(a.get("created", "")), a["apiId"]))


def find_api(appsync: Any) -> EventApi | None:
    apis = _ours(appsync)
    if not apis:
        return None
    return EventApi.from_api(appsync.get_api(apiId=apis[0]["apiId"])["api"])


def find_or_create_api(appsync: Any) -> tuple[EventApi, bool]:
    """The account's livelambda API in this region; made when there is none (True: made now)."""
    existing = find_api(appsync)
    if existing is not None:
        return existing, False
    made = appsync.create_api(name=API_NAME, eventConfig=event_config(), tags={"livelambda": "shared"})["api"]
    winner = _ours(appsync)[0]
    if winner["apiId"] != made["apiId"]:  # another `up` made one first: use that one, drop ours
        appsync.delete_api(apiId=made["apiId"])
        return EventApi.from_api(appsync.get_api(apiId=winner["apiId"])["api"]), False
    return EventApi.from_api(appsync.get_api(apiId=made["apiId"])["api"]), True


def ensure_namespace(appsync: Any, api_id: str, name: str, auth: str) -> bool:
    """The session's namespace, taking only `auth` ("iam" | "api_key"); True when made now."""
    modes = [{"authType": _AUTH_TYPES[auth]}]
    try:
        appsync.create_channel_namespace(
            apiId=api_id, name=name, publishAuthModes=modes, subscribeAuthModes=modes
        )
        return True
    except appsync.exceptions.ConflictException:
        pass  # made by an earlier `up` of this session: make sure it takes this auth mode
    appsync.update_channel_namespace(
        apiId=api_id, name=name, publishAuthModes=modes, subscribeAuthModes=modes
    )
    return False


def delete_namespace(appsync: Any, api_id: str, name: str) -> bool:
    try:
        appsync.delete_channel_namespace(apiId=api_id, name=name)
    except appsync.exceptions.NotFoundException:
        return False
    return True


def _key_description(session: str) -> str:
    return f"livelambda session {session}"


def _session_keys(appsync: Any, api_id: str, session: str) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = []
    for page in appsync.get_paginator("list_api_keys").paginate(apiId=api_id):
        keys.extend(k for k in page.get("apiKeys", ()) if k.get("description") == _key_description(session))
    return keys


def ensure_session_key(appsync: Any, api_id: str, session: str, now: float | None = None) -> str:
    """The session's API key, made or renewed so that it lives KEY_DAYS more."""
    now = time.time() if now is None else now
    expires = int(now) + KEY_DAYS * 86400
    for key in _session_keys(appsync, api_id, session):
        if int(key.get("expires", 0)) - now < KEY_RENEW_BELOW_S:
            appsync.update_api_key(apiId=api_id, id=key["id"], expires=expires)
        return str(key["id"])
    made = appsync.create_api_key(apiId=api_id, description=_key_description(session), expires=expires)
    return str(made["apiKey"]["id"])


def delete_session_keys(appsync: Any, api_id: str, session: str) -> int:
    keys = _session_keys(appsync, api_id, session)
    for key in keys:
        appsync.delete_api_key(apiId=api_id, id=key["id"])
    return len(keys)
