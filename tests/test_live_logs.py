"""A live invocation's handler output reaches the function's own log (CloudWatch in AWS) and so the
caller's log tail (`LogType=Tail`, what `livelambda invoke` prints on stderr), as it would if the
handler ran in Lambda: the stub prints what the dev server sends back with the result."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from devserver.live.bridge import output_tail, result_body
from tests.dev_fixtures import running_dev

HANDLER = """
def handler(event, context):
    print("charging card for", event.get("name"))
    for n in range(event.get("lines", 0)):
        print("line", n)
    if event.get("fail"):
        raise ValueError("card declined")
    return {"ok": True}
"""


def _tail(response: dict) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def test_the_handlers_output_is_in_the_callers_log_tail(tmp_path: Path) -> None:
    with running_dev(tmp_path, hello=HANDLER) as dev:
        client = dev.client()
        response = client.invoke(FunctionName="hello", Payload=json.dumps({"name": "Ada"}), LogType="Tail")
        assert json.loads(response["Payload"].read()) == {"ok": True}
        tail = _tail(response)
        assert "charging card for Ada" in tail, tail
        start, printed, end = (tail.index(t) for t in ("START RequestId", "charging card", "END RequestId"))
        assert start < printed < end, tail

        # A handler error: its output, and the error reported once (by the stub's runtime, as Lambda does).
        response = client.invoke(
            FunctionName="hello", Payload=json.dumps({"name": "Bob", "fail": True}), LogType="Tail"
        )
        assert response["FunctionError"] == "Unhandled"
        tail = _tail(response)
        assert "charging card for Bob" in tail and tail.count("[ERROR] ValueError: card declined") == 1, tail

        # What `livelambda invoke` prints on stderr.
        proc = subprocess.run(
            [sys.executable, "-m", "devserver", "invoke", "hello", '{"name": "Grace"}',
             "--endpoint-url", dev.cloud_url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "charging card for Grace" in proc.stderr, proc.stderr

        # Megabytes of output: the result carries its end only (the dashboard has it all).
        response = client.invoke(
            FunctionName="hello", Payload=json.dumps({"name": "Ken", "lines": 20000}), LogType="Tail"
        )
        tail = _tail(response)
        assert "line 19999" in tail and "charging card for Ken" not in tail


def test_a_result_carries_output_only_when_there_is_some() -> None:
    assert result_body("ok", {"a": 1}, "") == {"status": "ok", "response": {"a": 1}}
    assert result_body("ok", 1, "hello\n")["logs"] == "hello\n"
    long = "".join(f"line {n}\n" for n in range(2000))
    cut = output_tail(long)
    assert cut.startswith("[livelambda: ") and cut.endswith("line 1999\n") and len(cut.encode()) < 4300
