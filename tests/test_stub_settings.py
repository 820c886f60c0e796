"""The stub's settings and the live protocol's small helpers: what a misconfigured function says,
and that nothing secret leaves the sandbox in the hello."""

from __future__ import annotations

import pytest

from stub_runtime import live_protocol as lp
from stub_runtime.settings import StubMisconfigured, StubSettings

GOOD = {
    "LIVELAMBDA_SESSION": "app-dev-1234",
    "LIVELAMBDA_SECRET": "ab" * 32,
    "LIVELAMBDA_HTTP_URL": "https://x.appsync-api.eu-west-1.amazonaws.com/event",
    "LIVELAMBDA_REALTIME_URL": "wss://x.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime",
    "LIVELAMBDA_API_KEY": "da2-abc",
    "AWS_REGION": "eu-west-1",
}


def test_settings_from_a_configured_function() -> None:
    s = StubSettings.from_env({**GOOD, "LIVELAMBDA_ACK_TIMEOUT_MS": "1500", "LIVELAMBDA_VPC": "subnet-1"})
    assert s.secret == bytes.fromhex("ab" * 32)
    assert s.auth == "api_key" and s.region == "eu-west-1"
    assert s.ack_timeout_s == 1.5
    assert s.in_vpc and s.vpc_detail == "subnet-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LIVELAMBDA_SESSION": ""}, "LIVELAMBDA_SESSION is not set"),
        ({"LIVELAMBDA_SECRET": "zz"}, "LIVELAMBDA_SECRET is not hex"),
        ({"LIVELAMBDA_AUTH": "cognito"}, "must be api_key or iam"),
        ({"LIVELAMBDA_ACK_TIMEOUT_MS": "soon"}, "whole number of milliseconds"),
        ({"LIVELAMBDA_ACK_TIMEOUT_MS": "0"}, "must be positive"),
    ],
)
def test_misconfigured_function_says_what_to_do(change: dict[str, str], message: str) -> None:
    with pytest.raises(StubMisconfigured, match=message) as info:
        StubSettings.from_env({**GOOD, **change})
    assert info.value.error_type == "Livelambda.StubMisconfigured"


def test_iam_needs_no_api_key() -> None:
    env = {k: v for k, v in GOOD.items() if k != "LIVELAMBDA_API_KEY"}
    assert StubSettings.from_env({**env, "LIVELAMBDA_AUTH": "iam"}).api_key is None


def test_hello_environment_keeps_configuration_and_drops_secrets() -> None:
    env = {
        "TABLE_NAME": "orders",
        "LOG_LEVEL": "debug",
        "DB_PASSWORD": "hunter2",
        "STRIPE_API_KEY": "sk_live",
        "GITHUB_TOKEN": "ghp",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SESSION_TOKEN": "tok",
        "LIVELAMBDA_SECRET": "ab",
        "_HANDLER": "stub_runtime.handler.handler",
        "PATH": "/usr/bin",
        "LAMBDA_DISABLE_PREVIEW_WARN": "1",
    }
    assert lp.public_environment(env) == {"TABLE_NAME": "orders", "LOG_LEVEL": "debug"}


@pytest.mark.parametrize(
    ("text", "segment"),
    [("my app/dev", "my-app-dev"), ("--x--", "x"), ("", "x"), ("a" * 80, "a" * 50), ("ü", "x")],
)
def test_safe_segment(text: str, segment: str) -> None:
    assert lp.safe_segment(text) == segment


def test_channels_are_valid_appsync_channels() -> None:
    from stub_runtime.channels import validate_channel

    validate_channel(lp.request_channel("app-dev-1234"), subscribe=False)
    validate_channel(lp.response_channel("app-dev-1234", "0123abcd"), subscribe=False)
