"""The dev server's own decisions, without the network: which local function serves a live
invocation, and what the caller gets when none does."""

from __future__ import annotations

import io
import time
from pathlib import Path

from devserver.config import load_config
from devserver.live.bridge import Endpoint, LiveInvocation
from devserver.live.session import LiveSession
from devserver.server import DevServer, DevSettings
from devserver.ui.terminal import Terminal


def _dev(tmp_path: Path) -> tuple[DevServer, io.StringIO]:
    (tmp_path / "livelambda.toml").write_text(
        'app = "shop"\nstage = "dev"\n[functions.orders]\nhandler = "orders.handler"\n'
    )
    out = io.StringIO()
    settings = DevSettings(
        app=load_config(tmp_path),
        session=LiveSession("shop-dev-1", b"k" * 32),
        endpoint=Endpoint(
            "http://127.0.0.1:9/event", "ws://127.0.0.1:9/event/realtime", "api_key", "k", "eu-west-1"
        ),
    )
    return DevServer(settings, Terminal(file=out, color=False)), out


def test_deployed_names_map_to_configured_functions(tmp_path: Path) -> None:
    dev, _ = _dev(tmp_path)
    assert dev.resolve("orders").name == "orders"
    assert dev.resolve("shop-dev-orders").name == "orders"  # the deployed name: app-stage-function


async def test_an_invocation_of_an_unknown_function_is_answered_and_recorded(tmp_path: Path) -> None:
    dev, out = _dev(tmp_path)
    now = int(time.time() * 1000)
    body = await dev.execute(
        LiveInvocation(
            "r-1",
            "sb",
            {"x": 1},
            {"function_name": "payments", "deadline_ms": now + 3000},
            None,
            None,
            now,
            now,
        )
    )
    assert body["status"] == "livelambda_error"
    assert body["error"]["errorType"] == "Livelambda.UnknownFunction"
    message = body["error"]["errorMessage"]
    assert "payments" in message and "livelambda.toml" in message and "orders" in message
    record = dev.store.get("r-1")
    assert record is not None and record.status == "livelambda_error"
    assert "Livelambda.UnknownFunction" in out.getvalue()


def test_the_function_aws_up_named_wins_and_deployed_names_match(tmp_path: Path) -> None:
    (tmp_path / "livelambda.toml").write_text(
        'app = "shop"\n[functions.orders]\nhandler = "orders.handler"\n'
        '[functions.legacy]\nhandler = "legacy.handler"\n'
        'deployed = "arn:aws:lambda:us-east-1:123456789012:function:OldOrdersFn"\n'
    )
    settings = DevSettings(
        app=load_config(tmp_path),
        session=LiveSession("shop-dev-1", b"k" * 32),
        endpoint=Endpoint(
            "http://127.0.0.1:9/event", "ws://127.0.0.1:9/event/realtime", "iam", None, "eu-west-1"
        ),
    )
    dev = DevServer(settings, Terminal(file=io.StringIO(), color=False))
    assert dev.resolve("OldOrdersFn").name == "legacy"  # its `deployed` ARN's name
    assert dev.resolve("anything-at-all", "orders").name == "orders"  # LIVELAMBDA_FUNCTION from `aws up`
    assert dev.resolve("orders", "no-such-local").name == "orders"  # a stale name falls back to matching
