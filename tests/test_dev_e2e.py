"""`livelambda dev --cloud` on a temp copy of examples/hello, as a user runs it: invocations go
boto3 -> livelambda cloud (sandbox running the stub) -> AppSync emulator -> dev server (worker running
the handler) -> back. Edits reload the code without restarting anything."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dev_fixtures import HELLO, DevProcess, running_dev


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    with running_dev(tmp_path, hello=HELLO.format(version="v1")) as process:
        yield process


def test_edit_break_fix_without_restarting(dev: DevProcess) -> None:
    response, payload = dev.invoke("hello", {"name": "Ada"})
    assert payload == {"version": "v1", "message": "Hello, Ada!"}, payload

    dev.write_hello("v2")
    dev.wait_for(lambda: dev.invoke("hello", {})[1].get("version") == "v2", "the new code answers")

    (dev.app / "hello.py").write_text("def handler(event, context)\n    return 1\n")  # mid-edit
    response, payload = dev.wait_for(
        lambda: (r := dev.invoke("hello", {}))[1].get("errorType") == "Runtime.UserCodeSyntaxError" and r,
        "the syntax error reaches the caller",
    )
    assert response["FunctionError"] == "Unhandled"
    assert "hello" in payload["errorMessage"]

    (dev.app / "hello.py").write_text("import not_a_module_anywhere\n\ndef handler(e, c):\n    return 1\n")
    dev.wait_for(
        lambda: dev.invoke("hello", {})[1].get("errorType") == "Runtime.ImportModuleError",
        "the import error reaches the caller",
    )

    dev.write_hello("v3")
    dev.wait_for(lambda: dev.invoke("hello", {})[1].get("version") == "v3", "a good save recovers")
    # The terminal told the developer, one line per invocation (written after the answer went out).
    out = dev.wait_for(lambda: "running version v3" in (o := dev.output()) and o, "the terminal's lines")
    assert "UserCodeSyntaxError" in out and "ImportModuleError" in out


def test_in_flight_invocation_finishes_on_old_code(dev: DevProcess) -> None:
    assert dev.invoke("hello", {})[1]["version"] == "v1"
    result: dict[str, Any] = {}

    def slow() -> None:
        result["slow"] = dev.invoke("hello", {"sleep": 1.5})[1]

    thread = threading.Thread(target=slow)
    thread.start()
    # Save while it runs: wait until the dev server shows it running.
    dashboard = dev.info["dashboard_url"]
    dev.wait_for(
        lambda: any(r["status"] == "running" for r in httpx.get(dashboard + "api/invocations").json()),
        "the slow invocation is running",
    )
    dev.write_hello("v2")
    dev.wait_for(lambda: dev.invoke("hello", {})[1].get("version") == "v2", "the next one runs the new code")
    thread.join(30)
    assert result["slow"]["version"] == "v1"


def test_api_gateway_function_and_dashboard_record(dev: DevProcess) -> None:
    event = {
        "version": "2.0",
        "rawPath": "/greet",
        "queryStringParameters": {"name": "Grace"},
        "requestContext": {"http": {"method": "GET", "path": "/greet"}},
    }
    _, payload = dev.invoke("api", event)
    assert payload["statusCode"] == 200
    assert json.loads(payload["body"])["message"] == "Hello, Grace!"
    records = httpx.get(dev.info["dashboard_url"] + "api/invocations").json()
    record = next(r for r in records if r["function"] == "api")
    assert record["trigger"] == "API Gateway HTTP"
    assert record["status"] == "ok"
    detail = httpx.get(dev.info["dashboard_url"] + f"api/invocations/{record['id']}").json()
    assert "GET /greet name=Grace" in detail["logs"]


def test_ctrl_c_stops_everything(dev: DevProcess) -> None:
    dev.invoke("hello", {})
    cloud_pid = dev.info["cloud"]["pid"]
    dev.proc.send_signal(signal.SIGINT)
    assert dev.proc.wait(timeout=30) == 0
    dev.wait_for(lambda: not Path(f"/proc/{cloud_pid}").exists() or _zombie(cloud_pid), "the cloud stopped")
    assert "stopped" in dev.output()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True
