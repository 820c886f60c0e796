"""Fixtures for live mode: `livelambda cloud --app DIR --live` as a real subprocess, its functions
running the real stub in sandbox processes (awslambdaric), and a Bridge in the test standing in for
the dev server. Imported by conftest.py.

    live_cloud           LiveCloud: .cloud (CloudProcess, see conftest), .app (AppConfig), .session,
                         .lambda_client(retries=0), .endpoint(), .bridge(execute, **kw) (started in the
                         test's loop; closed after the test), .lambda_stats(), .stub_connections()
    echo_executor        an Executor that answers {"echo": event, "function": name}
    LIVE_APP_TOML        the app: echo (3 s), lost (10 s, short silence timeout), quick (short ack
                         timeout), vpc (flagged as in a VPC)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devserver.config import AppConfig, load_config
from devserver.live.bridge import Bridge, Endpoint, Executor, LiveInvocation
from devserver.live.session import LiveSession, load_or_create
from stub_runtime.reconnect import PolicyConfig
from tests.lambda_fixtures import lambda_client

LIVE_APP_TOML = """
app = "liveapp"
stage = "test"

[functions.echo]
handler = "funcs.echo"
timeout = 3
environment = { LIVELAMBDA_ACK_TIMEOUT_MS = "1500" }

[functions.lost]
handler = "funcs.echo"
timeout = 10
environment = { LIVELAMBDA_SILENCE_TIMEOUT_MS = "1500" }

[functions.quick]
handler = "funcs.echo"
timeout = 3
environment = { LIVELAMBDA_ACK_TIMEOUT_MS = "300" }

[functions.vpc]
handler = "funcs.echo"
timeout = 4
environment = { LIVELAMBDA_VPC = "subnet-0abc, subnet-0def (no NAT)", LIVELAMBDA_CONNECT_TIMEOUT_MS = "500" }
"""

FUNCS_PY = """
def echo(event, context):
    return {"local": event}
"""


def write_live_app(root: Path) -> AppConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "livelambda.toml").write_text(LIVE_APP_TOML)
    (root / "funcs.py").write_text(FUNCS_PY)
    return load_config(root)


async def echo_executor(inv: LiveInvocation) -> dict[str, Any]:
    return {"status": "ok", "response": {"echo": inv.event, "function": inv.context.get("function_name")}}


@dataclass
class LiveCloud:
    cloud: Any  # tests.conftest.CloudProcess
    app: AppConfig
    session: LiveSession
    bridges: list[Bridge] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def lambda_client(self, retries: int = 0) -> Any:
        return lambda_client(self.cloud.base_url, retries=retries)

    def invoke(self, function: str, event: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
        """Invoke through boto3; returns (response, decoded payload)."""
        response = self.lambda_client(**kw).invoke(FunctionName=function, Payload=json.dumps(event))
        return response, json.loads(response["Payload"].read())

    def endpoint(self) -> Endpoint:
        c = self.cloud
        return Endpoint(c.http_url, c.realtime_url, "api_key", c.api_key, c.region)

    async def bridge(self, execute: Executor = echo_executor, **kw: Any) -> Bridge:
        """A dev-server bridge on this session, connected and subscribed before it returns."""
        kw.setdefault("policy", PolicyConfig(mode="persistent", base_delay_s=0.05, max_delay_s=0.5))
        connected = asyncio.Event()
        states: list[str] = []

        def on_state(state: Any) -> None:
            states.append(state.state)
            if state.state == "connected":
                connected.set()

        bridge = Bridge(
            self.endpoint(), self.session.id, self.session.secret, execute, on_state=on_state, **kw
        )
        bridge.states = states  # type: ignore[attr-defined]  (for tests that watch reconnects)
        self.bridges.append(bridge)
        self.tasks.append(asyncio.ensure_future(bridge.run()))
        await asyncio.wait_for(connected.wait(), 30)
        return bridge

    def lambda_stats(self) -> dict[str, Any]:
        return self.cloud._client().get(f"{self.cloud.base_url}/_livelambda/lambda/stats").json()

    def stub_connections(self) -> list[dict[str, Any]]:
        """The emulator's current connections that a stub opened (subscribed to a response channel)."""
        prefix = f"/livelambda/{self.session.id}/res/"
        return [
            c
            for c in self.cloud.stats()["connections"]
            if any(s["channel"].startswith(prefix) for s in c["subscriptions"])
        ]


@pytest.fixture
def live_app(tmp_path: Path) -> AppConfig:
    return write_live_app(tmp_path / "app")


@pytest.fixture
async def live_cloud(tmp_path: Path, live_app: AppConfig) -> AsyncIterator[LiveCloud]:
    async with running_live_cloud(tmp_path / "cloud", live_app) as live:
        yield live


@contextlib.asynccontextmanager
async def running_live_cloud(workdir: Path, app: AppConfig) -> AsyncIterator[LiveCloud]:
    """`livelambda cloud --app APP --live` (it inherits this process's environment); its bridges
    and the process stopped on exit."""
    from tests.conftest import _launch

    process = await asyncio.to_thread(_launch, workdir, ("--app", str(app.root), "--live"))
    live = LiveCloud(process, app, load_or_create(app.root, app.app, app.stage))
    try:
        yield live
    finally:
        for bridge in live.bridges:
            with contextlib.suppress(Exception):
                await bridge.close()
        await asyncio.to_thread(process.close)
