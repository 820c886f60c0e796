"""What a live invocation's handler gets for a timeout, and what a timeout says: the function's
timeout less the answer's way back, said so in the error and the dashboard; a replay (not from a
stub) gets the function's whole timeout."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.dev_fixtures import running_dev

HANDLER = """
import time


def handler(event, context):
    if event.get("hang"):
        time.sleep(60)
    return {"remaining_ms": context.get_remaining_time_in_millis()}
"""


def test_live_timeout_is_the_functions_less_the_way_back_and_says_so(tmp_path: Path) -> None:
    with running_dev(tmp_path, hello=HANDLER) as dev:  # examples/hello: timeout = 3
        _, payload = dev.invoke("hello", {})
        assert 0 < payload["remaining_ms"] <= 2600, payload  # the stub's deadline less 0.4 s

        _, payload = dev.invoke("hello", {"hang": True})
        assert payload["errorType"] == "Sandbox.Timedout", payload
        message = payload["errorMessage"]
        said = "Task timed out after 2.60 seconds: the function's 3 s less 0.4 s for the answer's way back"
        assert said in message, message
        assert "[functions.hello] in livelambda.toml" in message, message  # the local cloud: the config

        live = next(r for r in dev.api("invocations") if r["status"] == "timeout")
        assert live["timeout_s"] == 2.6 and "less 0.4 s for the answer's way back" in live["timeout_note"]

        # A replay does not come from a stub: the function's whole timeout, and Lambda's own wording.
        replayed = httpx.post(f"{dev.dashboard_url}api/invocations/{live['id']}/replay", timeout=30).json()
        assert replayed["status"] == "timeout" and replayed["timeout_s"] == 3.0, replayed
        assert replayed["timeout_note"] is None
        assert replayed["error_message"].endswith("Task timed out after 3.00 seconds"), replayed
