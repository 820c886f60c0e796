"""The Lambda emulator's Invoke API, driven by boto3 as a developer's code would drive AWS."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from devserver.processes import stop_process
from tests.lambda_fixtures import lambda_client, process_state, wait_until

REPO = Path(__file__).resolve().parent.parent


def payload_of(response: dict[str, Any]) -> Any:
    return json.loads(response["Payload"].read())


def test_request_response(lambda_endpoint) -> None:
    client = lambda_endpoint.client()
    response = client.invoke(FunctionName="echo", Payload=json.dumps({"hello": "world"}))
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert payload_of(response)["event"] == {"hello": "world"}
    # by ARN, and with no payload at all (Lambda passes {})
    arn = "arn:aws:lambda:us-east-1:000000000000:function:echo"
    assert payload_of(client.invoke(FunctionName=arn))["event"] == {}
    assert payload_of(client.invoke(FunctionName="echo", Qualifier="$LATEST"))["event"] == {}


def test_handler_error_is_unhandled_function_error(lambda_endpoint) -> None:
    response = lambda_endpoint.client().invoke(FunctionName="boom", Payload=b'{"why": "because"}')
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = payload_of(response)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "boom: because"
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]


def test_timeout_and_init_error_are_unhandled_too(lambda_endpoint) -> None:
    client = lambda_endpoint.client()
    timed_out = client.invoke(FunctionName="slow", Payload=b'{"s": 30}')
    assert timed_out["FunctionError"] == "Unhandled"
    assert payload_of(timed_out)["errorType"] == "Sandbox.Timedout"
    init = client.invoke(FunctionName="importerr", Payload=b"{}")
    assert init["FunctionError"] == "Unhandled"
    assert payload_of(init)["errorType"] == "Runtime.ImportModuleError"


def test_tail_logs(lambda_endpoint) -> None:
    client = lambda_endpoint.client()
    response = client.invoke(FunctionName="echo", Payload=b'{"n": 1}', LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert 'echo got {"n": 1}' in lines
    assert f"END RequestId: {request_id}" in lines
    report = lines[-1]
    assert report.startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert "\tBilled Duration: " in report and "\tMemory Size: 128 MB\t" in report
    assert "\tInit Duration: " in report  # a cold start
    warm = client.invoke(FunctionName="echo", Payload=b"{}", LogType="Tail")
    assert "Init Duration" not in base64.b64decode(warm["LogResult"]).decode()
    assert "LogResult" not in client.invoke(FunctionName="echo", Payload=b"{}")


def test_tail_logs_keep_the_last_4_kb(lambda_endpoint) -> None:
    response = lambda_endpoint.client().invoke(FunctionName="noisy", Payload=b'{"mb": 1}', LogType="Tail")
    log = base64.b64decode(response["LogResult"])
    assert len(log) <= 4096
    assert log.decode().splitlines()[-1].startswith("REPORT RequestId: ")


def test_event_invocation_runs_in_the_background(lambda_endpoint, tmp_path: Path) -> None:
    target = tmp_path / "touched.json"
    response = lambda_endpoint.client().invoke(
        FunctionName="touch", InvocationType="Event", Payload=json.dumps({"path": str(target)})
    )
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    wait_until(target.exists, timeout=30, what="the Event invocation ran")
    assert json.loads(target.read_text())["path"] == str(target)


def test_dry_run(lambda_endpoint) -> None:
    response = lambda_endpoint.client().invoke(FunctionName="echo", InvocationType="DryRun")
    assert response["StatusCode"] == 204
    assert lambda_endpoint.stats()["functions"]["echo"]["invocations"] == 0


def test_unknown_function_is_resource_not_found(lambda_endpoint) -> None:
    client = lambda_endpoint.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.invoke(FunctionName="nope", Payload=b"{}")
    error = caught.value.response["Error"]
    assert error["Code"] == "ResourceNotFoundException"
    assert error["Message"] == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="echo", Qualifier="7", Payload=b"{}")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="nope", InvocationType="DryRun")


def test_payload_over_6_mb_is_too_large(lambda_endpoint) -> None:
    client = lambda_endpoint.client()
    payload = b'"' + b"x" * (6_291_456 - 1) + b'"'  # valid JSON, one byte over
    # Lambda answers with a code its API model does not list, so botocore raises a plain ClientError
    with pytest.raises(ClientError) as caught:
        client.invoke(FunctionName="echo", Payload=payload)
    assert caught.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291456 bytes" in caught.value.response["Error"]["Message"]
    exact = client.invoke(FunctionName="bigresp", Payload=b'"' + b"x" * (6_291_456 - 2) + b'"')
    assert exact["StatusCode"] == 200  # exactly 6 MB is accepted


def test_non_json_payload_is_invalid_request_content(lambda_endpoint) -> None:
    client = lambda_endpoint.client()
    with pytest.raises(client.exceptions.InvalidRequestContentException) as caught:
        client.invoke(FunctionName="echo", Payload=b"not json")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert caught.value.response["Error"]["Message"].startswith("Could not parse request body into json")


def test_beyond_the_concurrency_limit_is_too_many_requests(lambda_endpoint, tmp_path: Path) -> None:
    room = tmp_path / "room"
    room.mkdir()
    client = lambda_endpoint.client()
    results: list[dict[str, Any]] = []

    def occupy() -> None:  # three invocations that wait for a fourth (concurrency limit: 3)
        own = lambda_client(lambda_endpoint.url)
        results.append(own.invoke(FunctionName="rendezvous", Payload=json.dumps({"dir": str(room), "n": 4})))

    threads = [threading.Thread(target=occupy) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(list(room.iterdir())) == 3, timeout=30, what="three invocations running")
    with pytest.raises(client.exceptions.TooManyRequestsException) as caught:
        client.invoke(FunctionName="rendezvous", Payload=json.dumps({"dir": str(room), "n": 4}))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert caught.value.response["Error"]["Message"] == "Rate Exceeded."
    assert caught.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    (room / "stand-in").touch()
    for thread in threads:
        thread.join(timeout=60)
    assert [r["StatusCode"] for r in results] == [200, 200, 200]
    assert all("FunctionError" not in r for r in results)
    stats = lambda_endpoint.stats()["functions"]["rendezvous"]
    assert stats["throttles"] == 1 and stats["cold_starts"] == 3 and stats["concurrency_limit"] == 3


def test_stats_report_sandboxes(lambda_endpoint_factory) -> None:
    endpoint = lambda_endpoint_factory(concurrency=2)
    client = endpoint.client()
    for _ in range(3):
        client.invoke(FunctionName="echo", Payload=b"{}")
    client.invoke(FunctionName="boom", Payload=b"{}")

    def settled() -> dict[str, Any] | None:
        stats = endpoint.stats()["functions"]
        states = [s["state"] for f in ("echo", "boom") for s in stats[f]["sandboxes"]]
        return stats if states == ["frozen", "frozen"] else None

    stats = wait_until(settled, what="both sandboxes frozen")
    echo = stats["echo"]
    assert (echo["invocations"], echo["cold_starts"], echo["errors"]) == (3, 1, 0)
    [sandbox] = echo["sandboxes"]
    assert sandbox["invocations"] == 3 and sandbox["state"] == "frozen"
    assert process_state(sandbox["pid"]) == "T"
    assert stats["boom"]["errors"] == 1
    assert stats["ctx"] == {
        "invocations": 0,
        "cold_starts": 0,
        "throttles": 0,
        "errors": 0,
        "sandboxes": [],
        "concurrency_limit": 2,
    }


def test_client_context_reaches_the_handler(lambda_endpoint) -> None:
    context = base64.b64encode(json.dumps({"custom": {"user": "ada"}}).encode()).decode()
    response = lambda_endpoint.client().invoke(FunctionName="ctx", Payload=b"{}", ClientContext=context)
    assert payload_of(response)["client_custom"] == {"user": "ada"}


# -- `livelambda cloud --app examples/hello`, a real subprocess ---------------------------------------


@pytest.fixture
def hello_cloud(tmp_path: Path) -> Any:
    ready = tmp_path / "ready.json"
    log = (tmp_path / "cloud.log").open("wb")
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "livelambda"), "cloud", "--port", "0", "--ready-file", str(ready),
         "--app", str(REPO / "examples" / "hello")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_until(
            lambda: ready.exists() or proc.poll() is not None, timeout=30, what="livelambda cloud ready"
        )
        assert proc.poll() is None, (tmp_path / "cloud.log").read_text()
        yield proc, f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
    finally:
        stop_process(proc, signal.SIGTERM, timeout=15)
        log.close()


def test_livelambda_cloud_serves_the_example_app(hello_cloud) -> None:
    proc, url = hello_cloud
    client = lambda_client(url)
    hello = payload_of(client.invoke(FunctionName="hello", Payload=b'{"name": "Ada"}'))
    assert hello["message"] == "Hello, Ada!" and hello["function"] == "hello"
    api_event = {
        "version": "2.0",
        "rawPath": "/greet",
        "queryStringParameters": {"name": "Grace"},
        "requestContext": {"http": {"method": "GET", "path": "/greet"}},
        "isBase64Encoded": False,
    }
    api = payload_of(client.invoke(FunctionName="api", Payload=json.dumps(api_event)))
    assert api["statusCode"] == 200
    assert json.loads(api["body"])["message"] == "Hello, Grace!"

    def frozen_pids() -> list[int] | None:
        stats = httpx.get(f"{url}/_livelambda/lambda/stats", timeout=10).json()["functions"]
        sandboxes = stats["hello"]["sandboxes"] + stats["api"]["sandboxes"]
        return [s["pid"] for s in sandboxes] if [s["state"] for s in sandboxes] == ["frozen"] * 2 else None

    pids = wait_until(frozen_pids, what="the sandboxes frozen")
    assert [process_state(pid) for pid in pids] == ["T", "T"]
    # a frozen sandbox thaws for the next call
    again = payload_of(client.invoke(FunctionName="hello", Payload=b"{}"))
    assert again["message"] == "Hello, world!"
    # stopping the cloud takes its sandboxes with it, frozen or not
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    wait_until(lambda: all(process_state(pid) in (None, "Z") for pid in pids), what="sandboxes gone")


def test_unknown_function_over_plain_http(hello_cloud) -> None:
    _, url = hello_cloud
    response = httpx.post(f"{url}/2015-03-31/functions/nope/invocations", content=b"{}", timeout=10)
    assert response.status_code == 404
    assert response.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert response.json() == {
        "Type": "User",
        "message": "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope",
    }
    bad = httpx.post(f"{url}/2015-03-31/functions/hello/invocations", content=b"[1,", timeout=10)
    assert bad.status_code == 400
    assert bad.headers["x-amzn-errortype"] == "InvalidRequestContentException"
