"""AppSync Events authorization: the header object each auth mode sends (PROTOCOL.md "Authorization").

Every auth object has `headers(body) -> dict[str, str]`, where `body` is the compact JSON that the
request stands for (`{}` to connect, `{"channel":...}` to subscribe, the publish body to publish);
only IAM uses it. The header object always includes `host`, the HTTP host of the API.

botocore is imported only inside `IamAuth.headers` (it costs ~100 ms of cold start).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from stub_runtime.errors import LocalProtocolError

IAM_FIXED_HEADERS = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}


class Auth(Protocol):
    host: str
    #: True when publishes must go over HTTP (IAM: WebSocket publish breaks on `<`/`>` in events).
    publish_over_http: bool
    #: False when headers() ignores the body (API key, token): a publish then skips serializing it.
    signs_body: bool

    def headers(self, body: str) -> dict[str, str]: ...


class AuthConfigError(LocalProtocolError):
    error_type = "Livelambda.AuthConfigError"


class ApiKeyAuth:
    """API_KEY mode: `{"x-api-key": ..., "host": ...}`."""

    publish_over_http = False
    signs_body = False

    def __init__(self, api_key: str, host: str) -> None:
        if not api_key or not host:
            raise AuthConfigError("ApiKeyAuth needs a non-empty api_key and the API's HTTP host")
        self.api_key = api_key
        self.host = host

    def headers(self, body: str = "{}") -> dict[str, str]:
        return {"x-api-key": self.api_key, "host": self.host}

    def __repr__(self) -> str:
        return f"ApiKeyAuth(host={self.host!r}, api_key='{self.api_key[:4]}...')"


class TokenAuth:
    """Cognito / OIDC / Lambda authorizer modes: `{"Authorization": token, "host": ...}`."""

    publish_over_http = False
    signs_body = False

    def __init__(self, token: str | Callable[[], str], host: str) -> None:
        self._token = token
        self.host = host

    def headers(self, body: str = "{}") -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        return {"Authorization": token, "host": self.host}


class _StaticCredentials:
    """What botocore's SigV4Auth reads: access_key, secret_key, token."""

    __slots__ = ("access_key", "secret_key", "token")

    def __init__(self, access_key: str, secret_key: str, token: str | None = None) -> None:
        self.access_key, self.secret_key, self.token = access_key, secret_key, token


def env_or_botocore_credentials() -> Any:
    """Default provider: the Lambda sandbox's env credentials (no botocore.session import), else
    botocore's credential chain (profiles, SSO, IMDS, ...), refreshed by botocore when they expire."""
    akid, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if akid and secret:
        return _StaticCredentials(akid, secret, os.environ.get("AWS_SESSION_TOKEN") or None)
    return _botocore_chain()


_chain_lock = threading.Lock()
_chain: Any = None


def _botocore_chain() -> Any:
    global _chain
    with _chain_lock:
        if _chain is None:
            import botocore.session

            creds = botocore.session.get_session().get_credentials()
            if creds is None:
                raise AuthConfigError(
                    "IamAuth found no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                    "AWS_PROFILE, or pass credentials_provider="
                )
            _chain = creds
        return _chain


def _freeze(creds: Any) -> Any:
    """Turn what a provider returned into an object with access_key/secret_key/token, read once
    (a refreshable botocore Credentials is frozen so one signature never mixes two key pairs)."""
    if hasattr(creds, "get_frozen_credentials"):
        creds = creds.get_frozen_credentials()
    elif isinstance(creds, tuple) and len(creds) in (2, 3) and not hasattr(creds, "access_key"):
        creds = _StaticCredentials(*creds)
    if not getattr(creds, "access_key", None) or not getattr(creds, "secret_key", None):
        raise AuthConfigError(
            "IamAuth's credentials_provider returned no usable credentials (need access_key and secret_key)"
        )
    return creds


class IamAuth:
    """AWS_IAM mode: SigV4 over `POST https://{host}/event`, service `appsync`, with the three fixed
    headers and the request's compact JSON body (PROTOCOL.md). Each call to `headers` asks the
    provider again, so rotated or refreshed credentials are picked up."""

    publish_over_http = True

    def __init__(
        self,
        host: str,
        region: str,
        credentials_provider: Callable[[], Any] | None = None,
    ) -> None:
        if not host or not region:
            raise AuthConfigError("IamAuth needs the API's HTTP host and its region")
        self.host = host
        self.region = region
        self._provider = credentials_provider or env_or_botocore_credentials

    @classmethod
    def from_keys(
        cls, host: str, region: str, access_key: str, secret_key: str, token: str | None = None
    ) -> IamAuth:
        creds = _StaticCredentials(access_key, secret_key, token)
        return cls(host, region, lambda: creds)

    def headers(self, body: str = "{}") -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        creds = _freeze(self._provider())
        request = AWSRequest(
            method="POST",
            url=f"https://{self.host}/event",
            data=body.encode(),
            headers=dict(IAM_FIXED_HEADERS),
        )
        SigV4Auth(creds, "appsync", self.region).add_auth(request)
        out = dict(IAM_FIXED_HEADERS)
        out["host"] = self.host
        out["x-amz-date"] = request.headers["X-Amz-Date"]
        if creds.token:
            out["X-Amz-Security-Token"] = creds.token
        out["Authorization"] = request.headers["Authorization"]
        return out

    def __repr__(self) -> str:
        return f"IamAuth(host={self.host!r}, region={self.region!r})"
