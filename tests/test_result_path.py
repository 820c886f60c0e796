"""One result path: a request's `on_result` hook gets the outcome the moment it is known, and `invoke`
returns that same object, whose payload is parsed once, by whoever reads it first."""

from __future__ import annotations

import json
from typing import Any

from devserver.runtime import InvocationOutcome, InvocationRequest


async def test_the_hook_gets_the_very_outcome_invoke_returns(make_pool: Any) -> None:
    pool = make_pool("echo")
    seen: list[InvocationOutcome] = []
    outcome = await pool.invoke(InvocationRequest(payload=b'{"n": 1}', on_result=seen.append))
    assert outcome.ok and len(seen) == 1 and seen[0] is outcome
    assert outcome.value["event"] == {"n": 1}
    assert outcome.value is outcome.value  # parsed once, kept


async def test_a_timeout_reaches_the_hook_too(make_pool: Any) -> None:
    pool = make_pool("slow")  # timeout 1 s, the handler sleeps 30 s
    seen: list[InvocationOutcome] = []
    request = InvocationRequest(payload=json.dumps({"s": 30}).encode(), on_result=seen.append)
    outcome = await pool.invoke(request)
    assert outcome.status == "timeout" and len(seen) == 1 and seen[0] is outcome
    assert outcome.value["errorType"] == "Sandbox.Timedout"


async def test_a_hook_that_fails_does_not_lose_the_outcome(make_pool: Any) -> None:
    def broken(outcome: InvocationOutcome) -> None:
        raise RuntimeError("the bridge is gone")

    pool = make_pool("echo")
    outcome = await pool.invoke(InvocationRequest(payload=b"{}", on_result=broken))
    assert outcome.ok and outcome.value["event"] == {}
