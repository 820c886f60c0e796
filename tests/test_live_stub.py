"""The whole live path, offline: boto3 -> Lambda emulator sandbox (awslambdaric, frozen between
invocations) -> the real stub -> AppSync Events emulator -> a dev-server bridge in this test -> back.
Every livelambda failure outcome is checked for its errorType, its message, and that it is ours (it
arrived before Lambda's own timeout would have produced Sandbox.Timedout)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from devserver.live.bridge import Bridge, LiveInvocation
from devserver.live.conversation import Reply
from stub_runtime import live_protocol as lp
from stub_runtime.reconnect import PolicyConfig
from tests.live_fixtures import LiveCloud, echo_executor

WAIT_S = 20.0


async def invoke(live: LiveCloud, function: str, event: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
    return await asyncio.to_thread(live.invoke, function, event, **kw)


class Dropped:
    """Wakes the test as `bridge` drops messages: each one it counts goes through its
    RejectionSummary (which says it), so `await dropped.reach(n)` returns once n were counted."""

    def __init__(self, bridge: Bridge) -> None:
        self.count = 0
        self._changed = asyncio.Event()
        rejected = bridge.rejections.rejected

        def counted(reason: str, detail: str, now: float) -> str | None:
            self.count += 1
            self._changed.set()
            return rejected(reason, detail, now)

        bridge.rejections.rejected = counted  # type: ignore[method-assign]

    async def reach(self, n: int) -> None:
        async def wait() -> None:
            while self.count < n:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


async def test_round_trip_carries_event_context_and_hello(live_cloud: LiveCloud) -> None:
    seen: list[LiveInvocation] = []

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        seen.append(inv)
        return {"status": "ok", "response": {"echo": inv.event}}

    await live_cloud.bridge(execute)
    event = {"name": "Ada", "nested": {"list": [1, 2.5, None, "ü"]}}
    response, payload = await invoke(live_cloud, "echo", event)
    assert "FunctionError" not in response
    assert payload == {"echo": event}
    inv = seen[0]
    assert inv.context["function_name"] == "echo"
    assert inv.context["invoked_function_arn"].endswith(":function:echo")
    assert inv.context["memory_limit_in_mb"] == "128"
    assert inv.context["deadline_ms"] > inv.sent_ms
    assert inv.hello is not None and inv.hello["function_name"] == "echo"
    env = inv.hello["environment"]
    assert not any(k.startswith(("LIVELAMBDA_", "AWS_")) for k in env), env
    # A warm sandbox sends no second hello, and reuses its connection.
    _, payload = await invoke(live_cloud, "echo", {"n": 2})
    assert payload == {"echo": {"n": 2}}
    assert seen[1].hello is None
    assert seen[1].sandbox_id == inv.sandbox_id
    assert len(live_cloud.stub_connections()) == 1


async def test_handler_error_arrives_as_lambda_reports_it(live_cloud: LiveCloud) -> None:
    trace = ['  File "/home/dev/app/funcs.py", line 3, in echo\n    raise ValueError("bad input")\n']

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        return {
            "status": "handler_error",
            "error": {"errorType": "ValueError", "errorMessage": "bad input", "stackTrace": trace},
        }

    await live_cloud.bridge(execute)
    response, payload = await invoke(live_cloud, "echo", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "bad input"
    assert payload["stackTrace"] == trace


async def test_no_dev_server_is_a_clear_error(live_cloud: LiveCloud) -> None:
    response, payload = await invoke(live_cloud, "echo", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Livelambda.DevServerNotRunning"
    assert live_cloud.session.id in payload["errorMessage"]
    assert "make dev" in payload["errorMessage"] and "aws down" in payload["errorMessage"]
    assert "may have run there" in payload["errorMessage"]  # it was sent: a late dev server may run it


async def test_dev_server_lost_mid_invocation(live_cloud: LiveCloud) -> None:
    started = asyncio.Event()

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    bridge = await live_cloud.bridge(execute)
    heartbeating = asyncio.Event()
    wake = bridge.conversation.wake

    def beats(now: float) -> list[Reply]:  # the acks and heartbeats the bridge sends, as they go
        replies = wake(now)
        if any(reply.kind == lp.HEARTBEAT for reply in replies):
            heartbeating.set()  # after the ack, which went out a heartbeat interval before
        return replies

    bridge.conversation.wake = beats  # type: ignore[method-assign]
    call = asyncio.ensure_future(invoke(live_cloud, "lost", {}))
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.wait_for(heartbeating.wait(), WAIT_S)  # acknowledged and heartbeating
    await bridge.close()  # the dev server dies mid-invocation
    _response, payload = await call
    assert payload["errorType"] == "Livelambda.DevServerLost"
    assert "no heartbeat" in payload["errorMessage"]


async def test_duplicate_delivery_runs_the_handler_once(live_cloud: LiveCloud) -> None:
    calls: list[str] = []

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        calls.append(inv.request_id)
        await asyncio.sleep(0.2)
        return {"status": "ok", "response": len(calls)}

    await live_cloud.bridge(execute)
    live_cloud.cloud.faults(duplicate_delivery=True)
    _, payload = await invoke(live_cloud, "echo", {})
    assert payload == 1
    assert len(calls) == 1


async def test_endpoint_unreachable_in_a_vpc_fails_fast_with_the_fix(live_cloud: LiveCloud) -> None:
    live_cloud.cloud.faults(stall_connections_for_s=120)  # a black-holed network: no answer at all
    _response, payload = await invoke(live_cloud, "vpc", {})
    assert payload["errorType"] == "Livelambda.EndpointUnreachable"
    message = payload["errorMessage"]
    assert "subnet-0abc" in message and "NAT" in message and "--vpc detach" in message
    assert "may have run" not in message  # nothing was sent


async def test_large_payloads_both_ways(live_cloud: LiveCloud) -> None:
    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        return {"status": "ok", "response": {"size": len(inv.event["blob"]), "back": inv.event["blob"][::-1]}}

    await live_cloud.bridge(execute)
    blob = "".join(f"{i:07d}" for i in range(700_000))[:5_000_000]  # 5 MB, over 20 AppSync events
    _, payload = await invoke(live_cloud, "lost", {"blob": blob})
    assert payload["size"] == len(blob)
    assert payload["back"] == blob[::-1]


async def test_reconnects_after_the_connection_dies_while_frozen(live_cloud: LiveCloud) -> None:
    await live_cloud.bridge()
    _, first = await invoke(live_cloud, "echo", {"n": 1})
    before = live_cloud.cloud.stats()["connections_total"]
    live_cloud.cloud.faults(drop_connections=True, abrupt=True)  # the sandbox is frozen now
    _, second = await invoke(live_cloud, "echo", {"n": 2})
    assert first == {"echo": {"n": 1}, "function": "echo"}
    assert second == {"echo": {"n": 2}, "function": "echo"}
    # The bridge and the stub each dialled once more, no more.
    assert live_cloud.cloud.stats()["connections_total"] - before <= 2
    assert len(live_cloud.stub_connections()) == 1


def _sandbox_ids(live: LiveCloud) -> set[str]:
    prefix = f"/livelambda/{live.session.id}/res/"
    return {
        s["channel"][len(prefix) :]
        for c in live.cloud.stats()["connections"]
        for s in c["subscriptions"]
        if s["channel"].startswith(prefix)
    }


async def test_twenty_concurrent_invocations_ten_sandboxes_one_connection_each(
    live_cloud: LiveCloud,
) -> None:
    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        await asyncio.sleep(0.3)
        return {"status": "ok", "response": inv.event}

    await live_cloud.bridge(execute)
    before = live_cloud.cloud.stats()["connections_total"]
    results = await asyncio.gather(
        *(asyncio.to_thread(live_cloud.invoke, "lost", {"i": i}, retries=8) for i in range(20))
    )
    assert sorted(p["i"] for _, p in results) == list(range(20))
    sandboxes = live_cloud.lambda_stats()["functions"]["lost"]["sandboxes"]
    assert 1 <= len(sandboxes) <= 10
    stub_connections = live_cloud.stub_connections()
    # One connection per sandbox, never more: each holds exactly one subscription of its own.
    assert len(stub_connections) <= len(sandboxes)
    assert len(_sandbox_ids(live_cloud)) == len(stub_connections)
    assert live_cloud.cloud.stats()["connections_total"] - before == len(stub_connections)


async def test_refusals_are_retried_within_each_invocation_and_bounded(live_cloud: LiveCloud) -> None:
    """An endpoint that refuses (HTTP 503) for longer than the function lives: each invocation
    retries within its own time and ends with EndpointUnreachable saying what it tried; refusals
    never open the breaker, and the dials stay within the policy's bound (tests/test_live_blips.py
    has the blips that end)."""
    live_cloud.cloud.faults(refuse_connections_for_s=600)
    refused_before = live_cloud.cloud.stats()["connections_refused"]
    began = time.monotonic()
    for i in range(3):
        _, payload = await invoke(live_cloud, "quick", {"i": i})
        assert payload["errorType"] == "Livelambda.EndpointUnreachable"
        assert "dial(s) over" in payload["errorMessage"] and "503" in payload["errorMessage"]
        assert "cool-down" not in payload["errorMessage"]  # nobody failed fast
    sandboxes = live_cloud.lambda_stats()["functions"]["quick"]["sandboxes"]
    assert len(sandboxes) == 1  # one warm sandbox served them all
    dials = live_cloud.cloud.stats()["connections_refused"] - refused_before
    assert 3 <= dials <= PolicyConfig().dial_bound(time.monotonic() - began), dials


async def test_dev_server_absent_for_thirty_invocations_costs_one_connection(live_cloud: LiveCloud) -> None:
    before = live_cloud.cloud.stats()["connections_total"]
    for i in range(30):
        _, payload = await invoke(live_cloud, "quick", {"i": i})
        assert payload["errorType"] == "Livelambda.DevServerNotRunning"
    assert live_cloud.cloud.stats()["connections_total"] - before == 1
    assert json.dumps(payload)  # the error body is plain JSON


async def test_forged_and_malformed_messages_are_dropped_and_counted(live_cloud: LiveCloud) -> None:
    """Anyone with the API key can publish to the channel: only messages signed with the session's
    secret run, the rest are counted by reason and the dev server keeps working."""
    from stub_runtime.appsync.auth import ApiKeyAuth
    from stub_runtime.appsync.client import AppSyncEventsClient
    from stub_runtime.envelope import Message, encode

    calls: list[str] = []

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        calls.append(inv.request_id)
        return {"status": "ok", "response": "ran"}

    bridge = await live_cloud.bridge(execute)
    dropped = Dropped(bridge)
    c = live_cloud.cloud
    attacker = AppSyncEventsClient(c.http_url, c.realtime_url, ApiKeyAuth(c.api_key, c.host))
    await attacker.connect()
    try:
        session = live_cloud.session.id
        forged = Message(lp.INVOKE, session, "forged-1", "sb", {"event": {}, "context": {}})
        events = encode(forged, b"not the session secret", int(time.time() * 1000))
        await attacker.publish(lp.request_channel(session), events)
        await attacker.publish(
            lp.request_channel(session), [json.dumps({"livelambda": 1, "junk": True}), "42"]
        )
        stale = encode(
            Message(lp.INVOKE, session, "stale-1", "sb", {}), live_cloud.session.secret, 1_000_000_000_000
        )
        await attacker.publish(lp.request_channel(session), stale)
        await dropped.reach(4)
    finally:
        await attacker.close()
    rejected = bridge.status().rejected
    assert rejected.get("bad_signature") == 1, rejected
    assert rejected.get("malformed") == 2, rejected
    assert rejected.get("stale") == 1, rejected
    assert calls == []
    # ...and a real invocation still runs.
    _, payload = await invoke(live_cloud, "echo", {})
    assert payload == "ran"


async def test_dev_server_on_iam_auth(live_cloud: LiveCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dev server signing with the developer's AWS credentials (SigV4; publishes over HTTP) serves
    a stub on an API key, as against a real AppSync Events API with both auth modes."""
    from devserver.live.bridge import Endpoint

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", live_cloud.cloud.iam.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", live_cloud.cloud.iam.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    c = live_cloud.cloud
    monkeypatch.setattr(
        live_cloud, "endpoint", lambda: Endpoint(c.http_url, c.realtime_url, "iam", None, c.region)
    )
    publishes_before = c.stats()["publishes"]
    await live_cloud.bridge()
    _, payload = await invoke(live_cloud, "echo", {"signed": True})
    assert payload == {"echo": {"signed": True}, "function": "echo"}
    assert c.stats()["publishes"] - publishes_before >= 2  # the invoke (WS) and the result (HTTP)
    # Wrong credentials: the emulator refuses them and the bridge stays down, saying why.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    states: list[Any] = []
    refused = asyncio.Event()

    def on_state(state: Any) -> None:
        states.append(state)
        if state.state == "backoff" and state.last_error:
            refused.set()

    bad = Bridge(
        live_cloud.endpoint(),
        live_cloud.session.id,
        live_cloud.session.secret,
        echo_executor,
        on_state=on_state,
    )
    task = asyncio.ensure_future(bad.run())
    try:
        await asyncio.wait_for(refused.wait(), WAIT_S)
        errors = [s.last_error for s in states if s.state == "backoff"]
        assert errors and "Unauthorized" in errors[0], states
    finally:
        await bad.close()
        task.cancel()


async def test_a_replay_after_a_dev_server_restart_and_an_expired_invocation_never_run(
    live_cloud: LiveCloud, tmp_path: Any
) -> None:
    """Someone with the API key keeps a genuine `invoke` and publishes it again after the developer
    restarts the dev server: refused and counted as `replay`, the handler not run a second time. An
    invocation whose deadline has passed is never handed to a worker: `expired`. Each refusal is
    answered with a signed `reject` on the sandbox's channel, which a stub verifies as any message
    and ends with at once."""
    from devserver.live.executed import ExecutedLog
    from stub_runtime.appsync.auth import ApiKeyAuth
    from stub_runtime.appsync.client import AppSyncEventsClient
    from stub_runtime.envelope import Message, Reassembler, encode

    calls: list[str] = []

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        calls.append(inv.request_id)
        return {"status": "ok", "response": "ran"}

    path = tmp_path / "executed.log"
    first = await live_cloud.bridge(execute, executed=ExecutedLog(path, int(time.time() * 1000)))
    c = live_cloud.cloud
    session = live_cloud.session.id
    eavesdropper = AppSyncEventsClient(c.http_url, c.realtime_url, ApiKeyAuth(c.api_key, c.host))
    await eavesdropper.connect()
    try:
        kept = await eavesdropper.subscribe(lp.request_channel(session))
        _, payload = await invoke(live_cloud, "echo", {"n": 1})
        assert payload == "ran" and len(calls) == 1
        genuine = (await kept.get_data()).raw  # the invoke as it crossed the channel
        # The developer restarts `livelambda dev`: a new bridge, the same app state directory.
        first.executed.close()  # type: ignore[union-attr]
        await first.close()
        second = await live_cloud.bridge(execute, executed=ExecutedLog(path, int(time.time() * 1000)))
        responses = await eavesdropper.subscribe(f"/{lp.NAMESPACE}/{session}/res/*")
        await eavesdropper.publish(lp.request_channel(session), [genuine])
        # A genuine envelope, fresh and signed, for an invocation whose deadline passed a second ago.
        now_ms = int(time.time() * 1000)
        late = Message(
            lp.INVOKE, session, "late-1", "sb", {"event": {}, "context": {"deadline_ms": now_ms - 1000}}
        )
        await eavesdropper.publish(
            lp.request_channel(session), encode(late, live_cloud.session.secret, now_ms)
        )
        # What a stub would get: signed by the session's secret, for its invocation.
        stub = Reassembler(live_cloud.session.secret, session)
        rejects: dict[str, str] = {}
        while len(rejects) < 2:
            data = await asyncio.wait_for(responses.get_data(), WAIT_S)
            message = stub.feed(data.raw, int(time.time() * 1000))
            if message is not None and message.kind == lp.REJECT:
                rejects[message.invocation_id] = message.body["message"]
    finally:
        await eavesdropper.close()
    rejected = second.status().rejected
    assert rejected.get("replay") == 1 and rejected.get("expired") == 1, rejected
    assert "before it restarted" in rejects[json.loads(genuine)["invocation_id"]], rejects
    assert "after its deadline" in rejects["late-1"], rejects
    assert len(calls) == 1  # neither ran
    _, payload = await invoke(live_cloud, "echo", {"n": 2})  # and the next genuine one does
    assert payload == "ran" and len(calls) == 2


async def test_an_error_after_the_invoke_went_out_says_the_handler_may_have_run(
    live_cloud: LiveCloud,
) -> None:
    """The handler runs on the laptop, then AppSync drops every connection and refuses new ones: the
    caller gets a livelambda error, and it must not hide that the handler ran."""
    calls: list[str] = []

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        calls.append(inv.request_id)
        await asyncio.to_thread(live_cloud.cloud.faults, refuse_connections_for_s=60, drop_connections=True)
        return {"status": "ok", "response": "ran"}

    await live_cloud.bridge(execute)
    try:
        _response, payload = await invoke(live_cloud, "echo", {})
    finally:
        live_cloud.cloud.faults(reset=True)
    assert calls, "the handler ran"
    assert payload["errorType"].startswith("Livelambda."), payload
    message = payload["errorMessage"]
    assert "may have run there" in message or "still running on the dev server" in message, message
