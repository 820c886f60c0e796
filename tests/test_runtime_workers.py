"""Worker processes running the real awslambdaric behind our Runtime API: results, Lambda's errors,
timeouts, crashes, big output, concurrency, freezing and recycling."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devserver.config import AppConfig, FunctionConfig
from devserver.runtime import InvocationRequest, TooManyRequests, Worker
from devserver.runtime.environment import lambda_environment
from devserver.runtime.logs import LogBuffer
from devserver.runtime.runtime_api import RuntimeApiServer
from tests.lambda_fixtures import async_wait_until, process_state


def event(value: object) -> InvocationRequest:
    return InvocationRequest(payload=json.dumps(value).encode())


async def test_result_logs_and_warm_reuse(make_pool) -> None:
    pool = make_pool("echo")
    first = await pool.invoke(event({"n": 1}))
    assert first.status == "ok", first
    body = json.loads(first.payload)
    assert body["event"] == {"n": 1}
    assert first.cold and first.init_duration_ms is not None and first.init_duration_ms > 0
    assert 'echo got {"n": 1}' in first.logs
    second = await pool.invoke(event({"n": 2}))
    assert second.status == "ok" and not second.cold and second.init_duration_ms is None
    assert json.loads(second.payload)["pid"] == body["pid"]  # the same warm process
    assert second.logs == 'echo got {"n": 2}\n'  # only this invocation's output
    assert second.worker_id == first.worker_id
    stats = pool.stats()
    assert (stats.invocations, stats.cold_starts, len(stats.sandboxes)) == (2, 1, 1)


async def test_handler_exception_is_reported_as_lambda_does(make_pool) -> None:
    pool = make_pool("boom")
    outcome = await pool.invoke(event({"why": "testing"}))
    assert outcome.status == "handler_error"
    assert outcome.error_type == "ValueError"
    error = json.loads(outcome.payload)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "boom: testing"
    assert any("fns.py" in line and "in boom" in line for line in error["stackTrace"])
    assert "[ERROR] ValueError: boom: testing" in outcome.logs
    # the worker survives a handler error
    again = await pool.invoke(event({"why": "again"}))
    assert again.status == "handler_error" and not again.cold


async def test_context_and_environment_visible_to_handler(make_pool, lambda_app: AppConfig) -> None:
    pool = make_pool("ctx", region="eu-west-1")
    request = InvocationRequest(
        payload=b"{}",
        client_context=json.dumps({"custom": {"k": "v"}, "env": {}, "client": {}}),
        cognito_identity=json.dumps({"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}),
    )
    outcome = await pool.invoke(request)
    assert outcome.status == "ok", outcome
    seen = json.loads(outcome.payload)
    source = lambda_app.functions["ctx"].source
    assert seen["function_name"] == "ctx"
    assert seen["function_version"] == "$LATEST"
    assert seen["aws_request_id"] == request.request_id
    assert seen["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:000000000000:function:ctx"
    assert seen["memory_limit_in_mb"] == "256"
    assert seen["log_group_name"] == "/aws/lambda/ctx"
    assert "[$LATEST]" in seen["log_stream_name"]
    assert 0 < seen["remaining_ms"] <= 30_000
    assert seen["client_custom"] == {"k": "v"}
    assert seen["cognito_identity_id"] == "id-1"
    assert seen["cwd"] == str(source)
    env = seen["env"]
    assert env["_HANDLER"] == "fns.ctx"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ctx"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}"
    assert env["LAMBDA_TASK_ROOT"] == str(source)
    assert env["TZ"] == ":UTC"
    assert env["GREETING"] == "hi"
    assert env["_X_AMZN_TRACE_ID"] == request.trace_id
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")


async def test_outside_deadline_caps_the_function_timeout(make_pool) -> None:
    pool = make_pool("sleepy")  # timeout 30 s
    request = event({"s": 30})
    request.deadline_ms = int(time.time() * 1000) + 500
    outcome = await pool.invoke(request)
    assert outcome.status == "timeout"
    assert outcome.error_type == "Sandbox.Timedout"


@pytest.mark.parametrize(
    ("name", "error_type", "message"),
    [
        (
            "importerr",
            "Runtime.ImportModuleError",
            "Unable to import module 'nomod': No module named 'nomod'",
        ),
        ("missing", "Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'fns'"),
        ("syntax", "Runtime.UserCodeSyntaxError", "Syntax error in module 'syn'"),
    ],
)
async def test_init_errors(make_pool, name: str, error_type: str, message: str) -> None:
    pool = make_pool(name)
    outcome = await pool.invoke(event({}))
    assert outcome.status == "init_error"
    assert outcome.error_type == error_type
    error = json.loads(outcome.payload)
    assert error["errorType"] == error_type
    assert error["errorMessage"].startswith(message)
    assert f"[ERROR] {error_type}" in outcome.logs
    assert outcome.cold
    # the worker is gone; the next invocation gets a fresh one (which fails the same way)
    await async_wait_until(lambda: not pool.workers, what="the failed worker removed")
    again = await pool.invoke(event({}))
    assert again.status == "init_error" and again.worker_id != outcome.worker_id


async def test_timeout_kills_and_replaces_the_worker(make_pool) -> None:
    pool = make_pool("slow")  # timeout 1 s, the handler sleeps 30 s
    first = await pool.invoke(event({"s": 30}))
    assert first.status == "timeout"
    error = json.loads(first.payload)
    assert error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {first.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert "going to sleep" in first.logs
    assert not pool.workers
    second = await pool.invoke(event({"s": 0}))
    assert second.status == "ok" and json.loads(second.payload) == "woke"
    assert second.cold and second.worker_id != first.worker_id


async def test_exit_mid_invocation_is_runtime_exit_error(make_pool) -> None:
    pool = make_pool("exit")
    outcome = await pool.invoke(event({"code": 3}))
    assert outcome.status == "crashed"
    assert outcome.error_type == "Runtime.ExitError"
    assert json.loads(outcome.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {outcome.request_id} Error: Runtime exited with error: exit status 3",
    }
    assert "bye" in outcome.logs


async def test_segfault_is_runtime_exit_error_and_a_fresh_worker_follows(make_pool) -> None:
    pool = make_pool("segv")
    outcome = await pool.invoke(event({}))
    assert outcome.status == "crashed"
    assert json.loads(outcome.payload)["errorMessage"] == (
        f"RequestId: {outcome.request_id} Error: Runtime exited with error: signal: segmentation fault"
    )
    assert "about to crash" in outcome.logs
    # the crashed pool starts a fresh worker for its next call
    again = await pool.invoke(event({}))
    assert again.status == "crashed" and again.worker_id != outcome.worker_id and again.cold


async def test_ten_megabytes_of_output_completes_and_is_cut(make_pool) -> None:
    pool = make_pool("noisy", log_limit=64 * 1024)
    outcome = await pool.invoke(event({"mb": 10}))
    assert outcome.status == "ok", outcome.payload
    assert json.loads(outcome.payload) == "done"
    assert outcome.logs_cut_bytes > 9 * 1024 * 1024
    assert "of log output cut here" in outcome.logs
    assert outcome.logs.rstrip().endswith("the end")
    assert len(outcome.logs) < 70 * 1024
    small = await pool.invoke(event({"mb": 0}))
    assert small.status == "ok" and small.logs == "the end\n" and small.logs_cut_bytes == 0


async def test_parallel_invocations_get_their_own_workers_then_reuse_them(make_pool, tmp_path: Path) -> None:
    pool = make_pool("rendezvous", max_workers=4)
    room = tmp_path / "room"
    room.mkdir()
    outcomes = await asyncio.gather(*(pool.invoke(event({"dir": str(room), "n": 4})) for _ in range(4)))
    assert all(o.status == "ok" for o in outcomes), [o.payload for o in outcomes]
    pids = {json.loads(o.payload)["pid"] for o in outcomes}
    assert len(pids) == 4 and all(o.cold for o in outcomes)
    # afterwards: warm reuse, no new workers
    for _ in range(3):
        again = await pool.invoke(event({"dir": str(room), "n": 4}))
        assert again.ok and not again.cold and json.loads(again.payload)["pid"] in pids
    stats = pool.stats()
    assert len(stats.sandboxes) == 4 and stats.cold_starts == 4 and stats.invocations == 7


async def test_full_pool_throttles_when_told_not_to_queue(make_pool, tmp_path: Path) -> None:
    pool = make_pool("rendezvous", max_workers=1, queue=False)
    room = tmp_path / "room"
    room.mkdir()
    running = asyncio.ensure_future(pool.invoke(event({"dir": str(room), "n": 2})))
    await async_wait_until(lambda: any(room.iterdir()), what="the first invocation running")
    with pytest.raises(TooManyRequests):
        await pool.invoke(event({"dir": str(room), "n": 2}))
    assert pool.stats().throttles == 1
    # queued callers wait for the worker instead; this one completes the rendezvous
    (room / "stand-in").touch()
    first = await running
    assert first.ok
    queued = await pool.invoke(event({"dir": str(room), "n": 1}), queue=True)
    assert queued.ok and not queued.cold


async def test_idle_worker_is_frozen_and_thawed(make_pool) -> None:
    pool = make_pool("echo", freeze_idle=True)
    first = await pool.invoke(event({}))
    pid = json.loads(first.payload)["pid"]
    await async_wait_until(lambda: process_state(pid) == "T", what="the worker stopped (state T)")
    assert [s.state for s in pool.stats().sandboxes] == ["frozen"]
    second = await pool.invoke(event({"again": True}))
    assert second.ok and json.loads(second.payload)["pid"] == pid
    await async_wait_until(lambda: process_state(pid) == "T", what="frozen again")


async def test_idle_workers_are_recycled(make_pool) -> None:
    pool = make_pool("echo", freeze_idle=True, idle_recycle_s=0.2)
    first = await pool.invoke(event({}))
    pid = json.loads(first.payload)["pid"]
    await async_wait_until(lambda: not pool.workers, what="the idle worker recycled")
    await async_wait_until(lambda: process_state(pid) is None, what="its process gone")
    second = await pool.invoke(event({}))
    assert second.ok and second.cold


async def test_oversized_response_is_lambdas_error(make_pool) -> None:
    outcome = await make_pool("bigresp").invoke(event({}))
    assert outcome.status == "handler_error"
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    assert (
        "exceeded maximum allowed payload size (6291556 bytes)" in json.loads(outcome.payload)["errorMessage"]
    )


async def test_missing_interpreter_is_invalid_entrypoint(lambda_app: AppConfig, make_pool) -> None:
    from devserver.runtime import WorkerPool

    function = FunctionConfig(
        name="nopython", handler="fns.echo", source=lambda_app.root, python=Path("/nonexistent/python")
    )
    pool = WorkerPool(function)
    try:
        outcome = await pool.invoke(event({}))
    finally:
        await pool.close()
    assert outcome.status == "init_error" and outcome.error_type == "Runtime.InvalidEntrypoint"
    assert "/nonexistent/python" in json.loads(outcome.payload)["errorMessage"]


async def test_worker_can_be_warmed_before_the_first_invocation(lambda_app: AppConfig) -> None:
    worker = Worker(lambda_app.functions["echo"])
    try:
        await worker.start()
        assert await worker.wait_ready(timeout=30)
        assert worker.state == "idle" and worker.init_duration_ms is not None
        outcome = await worker.invoke(event({}))
        assert outcome.ok and outcome.cold and outcome.init_duration_ms == worker.init_duration_ms
    finally:
        await worker.stop()
    assert worker.state == "dead"
    assert process_state(worker.pid or 0) is None


# -- pieces, without processes ---------------------------------------------------------------------


class _FakeSandbox:
    def __init__(self) -> None:
        self.responses: list[tuple[str, bytes]] = []

    def next_invocation(self, deliver: Callable[[InvocationRequest], None]) -> Callable[[], None]:
        deliver(self.event())
        return lambda: None

    def event(self) -> InvocationRequest:
        return InvocationRequest(
            payload=b'{"a": 1}',
            request_id="r-1",
            deadline_ms=123,
            invoked_function_arn="arn:x",
            trace_id="Root=1",
        )

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        self.responses.append((request_id, body))
        return request_id == "r-1"

    def invocation_error(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        return False

    def init_error(self, body: bytes, error_type: str | None) -> None:
        pass


async def test_runtime_api_speaks_the_protocol() -> None:
    sandbox = _FakeSandbox()
    server = RuntimeApiServer(sandbox)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{server.address}/2018-06-01/runtime") as client:
            nxt = await client.get("/invocation/next")
            assert nxt.status_code == 200 and nxt.content == b'{"a": 1}'
            assert nxt.headers["lambda-runtime-aws-request-id"] == "r-1"
            assert nxt.headers["lambda-runtime-deadline-ms"] == "123"
            assert nxt.headers["lambda-runtime-invoked-function-arn"] == "arn:x"
            assert nxt.headers["lambda-runtime-trace-id"] == "Root=1"
            assert nxt.headers["content-type"] == "application/json"
            assert "lambda-runtime-client-context" not in nxt.headers
            ok = await client.post("/invocation/r-1/response", content=b'"done"')
            assert ok.status_code == 202
            unknown = await client.post("/invocation/nope/response", content=b"1")
            assert unknown.status_code == 400 and unknown.json()["errorType"] == "InvalidRequestID"
            assert (await client.get("/nothing")).status_code == 404
        assert sandbox.responses == [("r-1", b'"done"'), ("nope", b"1")]
    finally:
        await server.close()


async def test_runtime_api_reads_chunked_bodies_and_answers_expect_continue() -> None:
    """What an HTTP client may send besides Content-Length: `Expect: 100-continue` (libcurl does for
    large bodies, and would otherwise wait a second) and a chunked body."""
    sandbox = _FakeSandbox()
    server = RuntimeApiServer(sandbox)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        path = b"/2018-06-01/runtime/invocation/r-1/response"
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n" % path
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b'"a"')
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 202 ")
        assert await reader.readexactly(len(b'{"status":"OK"}')) == b'{"status":"OK"}'
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b'3\r\n"bc\r\n1\r\n"\r\n0\r\n\r\n' % path
        )
        assert (await reader.read()).startswith(b"HTTP/1.1 202 ")  # and then closed, as asked
        writer.close()
        assert sandbox.responses == [("r-1", b'"a"'), ("r-1", b'"bc"')]
    finally:
        await server.close()


async def test_runtime_api_answers_pipelined_requests_in_order_and_drops_garbage() -> None:
    """Two requests in one write get their answers in order, each in one piece; bytes that are not
    HTTP end that connection only; a line break in a header value cannot split the header."""
    sandbox = _FakeSandbox()
    server = RuntimeApiServer(sandbox)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        nxt = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
        post = (
            b"POST /2018-06-01/runtime/invocation/r-1/response HTTP/1.1\r\n"
            b"Host: x\r\nContent-Length: 2\r\n\r\nok"
        )
        writer.write(nxt + post)
        first = await reader.readuntil(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"lambda-runtime-aws-request-id: r-1" in first
        assert await reader.readexactly(len(b'{"a": 1}')) == b'{"a": 1}'
        second = await reader.readuntil(b"\r\n\r\n")
        assert second.startswith(b"HTTP/1.1 202 Accepted\r\n")
        assert await reader.readexactly(len(b'{"status":"OK"}')) == b'{"status":"OK"}'
        assert sandbox.responses == [("r-1", b"ok")]

        bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", server.port)
        bad_writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        assert await bad_reader.read() == b""  # that connection is dropped...
        writer.write(nxt)  # ...the runtime's own keeps working
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
        await reader.readexactly(len(b'{"a": 1}'))
        writer.close()
        bad_writer.close()
    finally:
        await server.close()


async def test_runtime_api_header_values_cannot_split_a_header() -> None:
    class Sneaky(_FakeSandbox):
        def event(self) -> InvocationRequest:
            return InvocationRequest(payload=b"{}", request_id="r-2", client_context='{"a": 1}\r\nx-evil: 1')

    server = RuntimeApiServer(Sneaky())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{server.address}/2018-06-01/runtime") as client:
            nxt = await client.get("/invocation/next")
        assert nxt.headers["lambda-runtime-client-context"] == '{"a": 1}x-evil: 1'
        assert "x-evil" not in nxt.headers
    finally:
        await server.close()


def test_log_buffer_keeps_head_and_tail() -> None:
    buffer = LogBuffer(limit=100)
    buffer.write(b"H" * 50)
    for _ in range(100):
        buffer.write(b"m" * 100)
    buffer.write(b"T" * 50)
    text = buffer.text()
    assert text.startswith("H" * 50 + "\n[livelambda: ")
    assert text.endswith("T" * 50)
    assert buffer.total_cut() == 100 * 100
    small = LogBuffer(limit=100)
    small.write(b"line\r\n")
    assert small.text() == "line\n" and small.total_cut() == 0


def test_environment_layers(lambda_app: AppConfig) -> None:
    function = lambda_app.functions["ctx"]
    env = lambda_environment(
        function,
        runtime_api="127.0.0.1:1",
        region="us-west-2",
        handler="stub_runtime.handler.handler",
        extra_env={"LIVELAMBDA_SESSION": "s"},
        extra_pythonpath=["/opt/stub"],
        base_env={"HOME": "/home/me", "AWS_LAMBDA_MAX_CONCURRENCY": "4", "PYTHONPATH": "/inherited"},
    )
    assert env["HOME"] == "/home/me"
    assert "AWS_LAMBDA_MAX_CONCURRENCY" not in env  # would switch awslambdaric to another mode
    assert env["_HANDLER"] == "stub_runtime.handler.handler"
    assert env["LIVELAMBDA_SESSION"] == "s" and env["GREETING"] == "hi"
    assert env["PYTHONPATH"] == os.pathsep.join([str(function.source), "/opt/stub", "/inherited"])
    assert (
        env["AWS_LAMBDA_LOG_STREAM_NAME"]
        != lambda_environment(function, runtime_api="x", region="us-west-2")["AWS_LAMBDA_LOG_STREAM_NAME"]
    )
