"""Fixtures for the Lambda side: a test app full of well- and ill-behaved functions, worker pools, and
the Lambda emulator's Invoke API served in-process. Imported by conftest.py.

    lambda_app            AppConfig of a generated app (session-wide); its functions:
                          echo, boom, ctx, slow (timeout 1 s), sleepy (timeout 30 s), exit, segv, noisy,
                          rendezvous (waits for N concurrent invocations), bigresp, touch (writes
                          the event to event["path"]), importerr, missing, syntax; see FNS_PY below
    make_pool             make_pool("echo", **WorkerPool options) -> WorkerPool, closed after the test
    lambda_endpoint       LambdaEndpoint: the Invoke API on 127.0.0.1:PORT (uvicorn in a thread),
                          emulator concurrency 3; .url, .client() (boto3, no retries), .stats(),
                          .emulator
    lambda_endpoint_factory  start_endpoint(**LambdaEmulator options) -> LambdaEndpoint, stopped after
    process_state(pid)    "R"/"S"/"T"/... from /proc/PID/stat, None when the process is gone
    wait_until(predicate, timeout=...)  poll until true (raise AssertionError on timeout)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devserver.config import AppConfig, load_config
from devserver.runtime.app_env import ensure_for_app
from devserver.runtime.pool import WorkerPool

FNS_PY = '''
import ctypes, json, os, sys, time
from pathlib import Path

def echo(event, context):
    print("echo got", json.dumps(event))
    return {"event": event, "pid": os.getpid()}

def boom(event, context):
    raise ValueError("boom: " + str(event.get("why")))

def ctx(event, context):
    cc = context.client_context
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client_custom": cc.custom if cc else None,
        "cognito_identity_id": context.identity.cognito_identity_id if context.identity else None,
        "cwd": os.getcwd(),
        "env": {k: os.environ.get(k) for k in (
            "_HANDLER", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
            "LAMBDA_TASK_ROOT", "TZ", "GREETING", "_X_AMZN_TRACE_ID", "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_RUNTIME_API")},
    }

def sleep(event, context):
    print("going to sleep")
    time.sleep(event.get("s", 30))
    return "woke"

def exit(event, context):
    print("bye", flush=True)
    os._exit(event.get("code", 3))

def segv(event, context):
    print("about to crash", flush=True)
    ctypes.string_at(0)

def noisy(event, context):
    line = "x" * 1023 + "\\n"
    for _ in range(event.get("mb", 10) * 1024):
        sys.stdout.write(line)
    print("the end")
    return "done"

def rendezvous(event, context):
    """Wait until event["n"] invocations are inside this handler at once (proves they run in parallel)."""
    room = Path(event["dir"])
    (room / context.aws_request_id).touch()
    deadline = time.time() + 20
    while len(list(room.iterdir())) < event["n"]:
        if time.time() > deadline:
            raise TimeoutError("the others never came")
        time.sleep(0.01)
    return {"pid": os.getpid()}

def bigresp(event, context):
    return "x" * 6_300_000

def touch(event, context):
    Path(event["path"]).write_text(json.dumps(event))
    return "ok"
'''

LIVELAMBDA_TOML = """
app = "testapp"
region = "us-east-1"

[functions.echo]
handler = "fns.echo"

[functions.boom]
handler = "fns.boom"

[functions.ctx]
handler = "fns.ctx"
memory = 256
timeout = 30
environment = { GREETING = "hi" }

[functions.slow]
handler = "fns.sleep"
timeout = 1

[functions.sleepy]
handler = "fns.sleep"
timeout = 30

[functions.exit]
handler = "fns.exit"

[functions.segv]
handler = "fns.segv"

[functions.noisy]
handler = "fns.noisy"
timeout = 60

[functions.rendezvous]
handler = "fns.rendezvous"
timeout = 30

[functions.bigresp]
handler = "fns.bigresp"

[functions.touch]
handler = "fns.touch"

[functions.importerr]
handler = "nomod.handler"

[functions.missing]
handler = "fns.nothere"

[functions.syntax]
handler = "syn.handler"
"""


def write_test_app(root: Path) -> AppConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fns.py").write_text(FNS_PY)
    (root / "syn.py").write_text("def handler(event, context)\n    return 1\n")
    (root / "livelambda.toml").write_text(LIVELAMBDA_TOML)
    config = load_config(root)
    ensure_for_app(config)  # its functions' venv, as `livelambda cloud --app` makes it before they run
    return config


@pytest.fixture(scope="session")
def lambda_app(tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    """The generated test app (see the module docstring)."""
    return write_test_app(tmp_path_factory.mktemp("lambda-app"))


@pytest.fixture
async def make_pool(lambda_app: AppConfig) -> AsyncIterator[Callable[..., WorkerPool]]:
    """make_pool(function_name, **WorkerPool options); every pool is closed after the test."""
    pools: list[WorkerPool] = []

    def make(name: str, **options: Any) -> WorkerPool:
        pool = WorkerPool(lambda_app.functions[name], **options)
        pools.append(pool)
        return pool

    yield make
    await asyncio.gather(*(p.close() for p in pools))


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R running, S sleeping, T stopped, Z zombie), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    output: Callable[[], str] | None = None,
) -> Any:
    """The predicate's first truthy value, polled until `timeout`; else an AssertionError that says
    what was awaited, the last value, and the end of `output` (a process's log) if given."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n{output()[-3000:]}" if output is not None else ""
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r}){tail}")
        time.sleep(0.02)


async def async_wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


def lambda_client(url: str, *, retries: int = 0) -> Any:
    """A boto3 Lambda client for a local endpoint: dummy credentials, no retries unless asked
    (a 429 must surface), enough pooled connections for concurrent callers."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(
            retries={"total_max_attempts": retries + 1, "mode": "standard"},
            read_timeout=120,
            connect_timeout=10,
            max_pool_connections=50,
        ),
    )


# Handlers that hang, exit or crash: (function, event, status, errorType, end of the message).
MISBEHAVING = [
    ("slow", {"s": 30}, "timeout", "Sandbox.Timedout", "Task timed out after 1.00 seconds"),
    ("exit", {"code": 7}, "crashed", "Runtime.ExitError", "Runtime exited with error: exit status 7"),
    ("segv", {}, "crashed", "Runtime.ExitError", "Runtime exited with error: signal: segmentation fault"),
]


@dataclass
class LambdaEndpoint:
    """The Invoke API served in-process by uvicorn on its own thread and event loop."""

    url: str
    emulator: Any  # LambdaEmulator; it lives on the server's loop
    server: Any
    thread: threading.Thread

    def client(self) -> Any:
        return lambda_client(self.url)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_livelambda/lambda/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_lambda_endpoint(app: AppConfig, **options: Any) -> LambdaEndpoint:
    import uvicorn
    from fastapi import FastAPI

    from devserver.cloud.lambda_api import lambda_router
    from devserver.cloud.lambda_emulator import LambdaEmulator

    emulator = LambdaEmulator(app.functions, **options)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await emulator.close()

    api = FastAPI(lifespan=lifespan)
    api.include_router(lambda_router(emulator))
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="lambda-endpoint", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), timeout=30, what="uvicorn listening")
    assert server.started, "the in-process Lambda endpoint did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    return LambdaEndpoint(f"http://127.0.0.1:{port}", emulator, server, thread)


@pytest.fixture
def lambda_endpoint_factory(lambda_app: AppConfig) -> Iterator[Callable[..., LambdaEndpoint]]:
    """start(**LambdaEmulator options) -> LambdaEndpoint serving `lambda_app`; stopped after the test."""
    endpoints: list[LambdaEndpoint] = []

    def start(**options: Any) -> LambdaEndpoint:
        endpoint = start_lambda_endpoint(lambda_app, **options)
        endpoints.append(endpoint)
        return endpoint

    yield start
    for endpoint in endpoints:
        endpoint.stop()


@pytest.fixture
def lambda_endpoint(lambda_endpoint_factory: Callable[..., LambdaEndpoint]) -> LambdaEndpoint:
    """The Invoke API for `lambda_app`, concurrency limit 3 per function."""
    return lambda_endpoint_factory(concurrency=3)
