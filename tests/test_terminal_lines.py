"""What `livelambda dev` prints: a handler error's traceback once, one line per save naming the files
and the functions reloaded, and one line per connection change (not one per reconnect attempt)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from pathlib import Path

from devserver.config import FunctionConfig
from devserver.live.bridge import Bridge, Endpoint
from devserver.runtime.invocation import InvocationRequest
from devserver.runtime.worker import Worker
from devserver.ui.invocations import InvocationRecord
from devserver.ui.terminal import Terminal
from stub_runtime.reconnect import PolicyConfig

FAILING = '''
def helper():
    raise ValueError("the order has no lines")


def handler(event, context):
    print("checking the order")
    helper()
'''


async def test_a_handler_errors_traceback_is_printed_once(tmp_path: Path) -> None:
    (tmp_path / "orders.py").write_text(FAILING)
    worker = Worker(FunctionConfig("orders", "orders.handler", tmp_path, Path(sys.executable)))
    try:
        outcome = await worker.invoke(InvocationRequest(payload=b"{}"))
    finally:
        await worker.stop()
    error = json.loads(outcome.payload)
    assert outcome.status == "handler_error" and "[ERROR] ValueError" in outcome.logs  # the runtime's report
    record = InvocationRecord(
        id=outcome.request_id, function="orders", source="replay", event={}, trigger="direct",
        started_at=time.time(), deadline_ms=0, status="handler_error", logs=outcome.logs,
        error_type=error["errorType"], error_message=error["errorMessage"], stack_trace=error["stackTrace"],
    )  # fmt: skip
    out = io.StringIO()
    Terminal(file=out, color=False).invocation(record)
    text = out.getvalue()
    assert "checking the order" in text  # the handler's own output stays
    assert text.count("ValueError: the order has no lines") == 1, text
    assert text.count('raise ValueError("the order has no lines")') == 1, text
    assert text.count("in handler") == 1, text


def test_one_line_per_save_names_the_files_and_functions() -> None:
    out = io.StringIO()
    terminal = Terminal(file=out, color=False)
    terminal.saved(["hello.py"], {"api": 4, "hello": 4}, {})
    terminal.saved(
        ["hello.py", "templates/a.html", "b.py", "c.py"],
        {"api": 5, "hello": 5},
        {"hello": "Runtime.UserCodeSyntaxError: Syntax error in module 'hello'"},
    )
    lines = out.getvalue().splitlines()
    assert lines == [
        "↻ hello.py changed: reloaded api, hello (gen 4)",
        "✗ hello.py, templates/a.html, b.py and 1 more changed: hello: Runtime.UserCodeSyntaxError: "
        "Syntax error in module 'hello'; reloaded api (gen 5)  (fix and save: it reloads by itself)",
    ]


async def test_an_outage_prints_one_line_down_and_one_back_whatever_the_attempts(cloud) -> None:
    out = io.StringIO()
    terminal = Terminal(file=out, color=False)
    states: list[str] = []

    def on_state(state: object) -> None:
        states.append(state.state)  # type: ignore[attr-defined]
        terminal.connection(state)

    async def execute(_: object) -> dict[str, object]:
        return {"status": "ok", "response": None}

    endpoint = Endpoint(cloud.http_url, cloud.realtime_url, "api_key", cloud.api_key, cloud.region)
    policy = PolicyConfig(mode="persistent", base_delay_s=0.05, max_delay_s=0.1)
    bridge = Bridge(endpoint, "s-1", b"k" * 32, execute, policy=policy, on_state=on_state)
    task = asyncio.ensure_future(bridge.run())
    try:
        await _until(lambda: states.count("connected") == 1)
        await asyncio.to_thread(cloud.stop)
        await _until(lambda: bridge.connection.stats.failures >= 4)  # four refused dials, at least
        await asyncio.to_thread(cloud.start)
        await _until(lambda: states.count("connected") == 2)
    finally:
        await bridge.close()
        task.cancel()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("● connected to ws://")
    assert lines[1].startswith("○ AppSync connection down") and "next attempt in" in lines[1]
    assert lines[2].startswith("● connected again to ws://") and "attempts)" in lines[2]


async def _until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)
