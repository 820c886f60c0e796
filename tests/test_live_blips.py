"""The live path when AppSync misbehaves, for real: `livelambda cloud --live`, the real stub in sandbox
processes (awslambdaric), a Bridge in the test standing in for the dev server. Counts come from the
emulator's stats; the one bound on elapsed time is the requirement itself (a black hole costs one
connect timeout, plus a margin), read from Lambda's own REPORT line.

- Refusal blips (HTTP 503 on the upgrade, connections dropped): the invocation that meets one retries
  within its own time and succeeds; no breaker fails the next ones.
- A black hole (the upgrade never answered), with the stub's defaults (3 s connect timeout): the first
  invocation fails after one dial, within the connect timeout, whether the function has 10 s or 30 s;
  the next ones fail fast without dialling.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devserver.config import load_config
from stub_runtime.reconnect import PolicyConfig
from stub_runtime.settings import StubSettings
from tests.live_fixtures import FUNCS_PY, LiveCloud, running_live_cloud

# The stub's defaults: no LIVELAMBDA_CONNECT_TIMEOUT_MS, no other timeout changed.
APP_TOML = """
app = "blips"
stage = "test"

[functions.echo10]
handler = "funcs.echo"
timeout = 10

[functions.vpc10]
handler = "funcs.echo"
timeout = 10
environment = { LIVELAMBDA_VPC = "subnet-0abc (no NAT)" }

[functions.vpc30]
handler = "funcs.echo"
timeout = 30
environment = { LIVELAMBDA_VPC = "subnet-0abc (no NAT)" }
"""

CONNECT_TIMEOUT_S = StubSettings.connect_timeout_s  # 3.0, LIVELAMBDA_CONNECT_TIMEOUT_MS unset
MARGIN_S = 1.5


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveCloud]:
    root = tmp_path / "app"
    root.mkdir()
    (root / "livelambda.toml").write_text(APP_TOML)
    (root / "funcs.py").write_text(FUNCS_PY)
    async with running_live_cloud(tmp_path / "cloud", load_config(root)) as live:
        yield live


async def invoke(live: LiveCloud, function: str, event: Any) -> tuple[Any, float]:
    """Invoke through boto3 with the log tail; returns the payload and Lambda's reported Duration (s)."""

    def call() -> dict[str, Any]:
        return live.lambda_client().invoke(FunctionName=function, Payload=json.dumps(event), LogType="Tail")

    response = await asyncio.to_thread(call)
    report = base64.b64decode(response["LogResult"]).decode()
    duration = re.search(r"REPORT RequestId: \S+\tDuration: ([\d.]+) ms", report)
    assert duration is not None, report
    return json.loads(response["Payload"].read()), float(duration.group(1)) / 1000


def counts(live: LiveCloud) -> dict[str, int]:
    stats = live.cloud.stats()
    return {k: stats[k] for k in ("connections_total", "connections_refused", "connections_stalled")}


async def test_refusal_blips_cost_no_invocation_and_trip_no_breaker(live: LiveCloud) -> None:
    bridge = await live.bridge()
    payload, _ = await invoke(live, "echo10", {"n": -1})  # a warm sandbox, connected
    assert payload["echo"] == {"n": -1}
    bound = PolicyConfig().dial_bound(10.0)  # the stub dials only within its invocation (<= 10 s)
    for n in range(3):
        before, bridge_failed = counts(live), bridge.connection.stats.failures
        # A 2 s blip: every connection dropped (the sandbox is frozen), new ones refused with 503.
        live.cloud.faults(refuse_connections_for_s=2.0, drop_connections=True, abrupt=True)
        payload, _ = await invoke(live, "echo10", {"n": n})
        assert payload == {"echo": {"n": n}, "function": "echo10"}
        after = counts(live)
        # Refusals the stub met: the emulator's, less the bridge's own refused dials.
        stub_refused = after["connections_refused"] - before["connections_refused"]
        stub_refused -= bridge.connection.stats.failures - bridge_failed
        assert 1 <= stub_refused <= bound, stub_refused
        assert after["connections_total"] - before["connections_total"] == 2  # the stub's and the bridge's
        assert len(live.stub_connections()) == 1
    # Nothing fails fast afterwards: the next invocation reuses the connection, no dial at all.
    before = counts(live)
    payload, _ = await invoke(live, "echo10", {"n": 3})
    assert payload["echo"] == {"n": 3} and counts(live) == before


@pytest.mark.parametrize("function", ["vpc10", "vpc30"])
async def test_a_black_hole_fails_the_first_invocation_within_one_connect_timeout(
    live: LiveCloud, function: str
) -> None:
    live.cloud.faults(stall_connections_for_s=600)  # the upgrade is accepted by TCP, never answered
    before = counts(live)
    payload, duration_s = await invoke(live, function, {})
    assert payload["errorType"] == "Livelambda.EndpointUnreachable"
    message = payload["errorMessage"]
    assert re.search(r"no answer from AppSync after 1 dial\(s\) over 3\.\d s", message), message
    assert "subnet-0abc" in message and "NAT" in message and "--vpc detach" in message
    assert counts(live)["connections_stalled"] - before["connections_stalled"] == 1
    assert duration_s <= CONNECT_TIMEOUT_S + MARGIN_S, duration_s  # the requirement itself
    print(f"{function}: {duration_s:.3f} s: {message}")

    # The same sandbox's next invocations fail fast, without a dial, until the cool-down (2.5-5 s)
    # allows one probe (a very slow machine may get there: then that one dials, once).
    fast = probes = 0
    for _ in range(3):
        payload, _ = await invoke(live, function, {})
        assert payload["errorType"] == "Livelambda.EndpointUnreachable"
        assert "NAT" in payload["errorMessage"]
        if "cool-down" in payload["errorMessage"]:
            fast += 1
            print(f"{function}, next: {payload['errorMessage']}")
        else:
            assert "no answer from AppSync after 1 dial(s)" in payload["errorMessage"]
            probes += 1
    assert fast >= 1
    assert counts(live)["connections_stalled"] - before["connections_stalled"] == 1 + probes
    assert len(live.lambda_stats()["functions"][function]["sandboxes"]) == 1
