"""The stub's settings, read once per sandbox from the environment `aws up` (or `livelambda cloud`)
gives the function. Nothing here is a credential the stub sends anywhere: the secret only signs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from stub_runtime.errors import CallerFault
from stub_runtime.live_protocol import NAMESPACE


class StubMisconfigured(CallerFault):
    error_type = "Livelambda.StubMisconfigured"


@dataclass(frozen=True)
class StubSettings:
    session: str
    secret: bytes
    http_url: str
    realtime_url: str
    auth: str  # "api_key" | "iam"
    api_key: str | None
    region: str
    ack_timeout_s: float = 3.0
    silence_timeout_s: float = 5.0  # no heartbeat for this long: the dev server is gone
    connect_timeout_s: float = 3.0
    deadline_margin_s: float = 0.25  # answer this long before Lambda's own timeout
    in_vpc: bool = False
    vpc_detail: str = ""
    namespace: str = NAMESPACE  # the channel namespace: the session's own when `aws up` set it up
    function: str = ""  # the local function (config name) this deployed function runs, if `aws up` said

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StubSettings:
        env = os.environ if env is None else env

        def need(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise StubMisconfigured(
                    f"live mode is on but {name} is not set on this function; "
                    "run `livelambda aws up` again (or `livelambda aws down` to restore the function)"
                )
            return value

        try:
            secret = bytes.fromhex(need("LIVELAMBDA_SECRET"))
        except ValueError:
            raise StubMisconfigured(
                "LIVELAMBDA_SECRET is not hex; run `livelambda aws up` again"
            ) from None
        auth = env.get("LIVELAMBDA_AUTH", "api_key")
        if auth not in ("api_key", "iam"):
            raise StubMisconfigured(f"LIVELAMBDA_AUTH must be api_key or iam, got {auth!r}")
        return cls(
            session=need("LIVELAMBDA_SESSION"),
            secret=secret,
            http_url=need("LIVELAMBDA_HTTP_URL"),
            realtime_url=need("LIVELAMBDA_REALTIME_URL"),
            auth=auth,
            api_key=need("LIVELAMBDA_API_KEY") if auth == "api_key" else None,
            region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
            ack_timeout_s=_seconds(env, "LIVELAMBDA_ACK_TIMEOUT_MS", 3.0),
            silence_timeout_s=_seconds(env, "LIVELAMBDA_SILENCE_TIMEOUT_MS", 5.0),
            connect_timeout_s=_seconds(env, "LIVELAMBDA_CONNECT_TIMEOUT_MS", 3.0),
            in_vpc=env.get("LIVELAMBDA_VPC", "") not in ("", "0", "false"),
            vpc_detail=env.get("LIVELAMBDA_VPC", ""),
            namespace=env.get("LIVELAMBDA_NAMESPACE") or NAMESPACE,
            function=env.get("LIVELAMBDA_FUNCTION", ""),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw) / 1000
    except ValueError:
        raise StubMisconfigured(f"{name} must be a whole number of milliseconds, got {raw!r}") from None
    if value <= 0:
        raise StubMisconfigured(f"{name} must be positive, got {raw!r}")
    return value
