"""A small harness serving the dashboard router with a real InvocationStore on a real uvicorn port.

Tests use `DashboardServer` (uvicorn in a thread, its own event loop) and change what the page sees
with `server.add(...)`, `server.finish(...)`, `server.set_connection(...)`: every change runs on the
server's loop, where the store's listeners live.

Run it by hand to look at the page with sample data:
    .venv/bin/python -m tests.dashboard_app --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from devserver.status import ConnectionStatus, FunctionStatus, Rejection, WorkerStatus
from devserver.ui.dashboard import mount_dashboard
from devserver.ui.invocations import InvocationRecord, InvocationStore
from devserver.ui.triggers import guess_trigger

T = TypeVar("T")


class HarnessSources:
    """A DashboardSources without a dev server: functions and connection are snapshots the test
    changes (`update_function`, `update_connection`); a replay echoes its event back
    (`{"echo": event}`) unless the event asks to fail."""

    def __init__(self, keep: int = 500) -> None:
        self.store = InvocationStore(keep=keep)
        self.replays: list[tuple[str, Any]] = []
        self._functions: list[FunctionStatus] = [default_function()]
        now = time.time()
        self._connection = ConnectionStatus(
            state="connected",
            since=now - 90,
            endpoint="wss://example.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime",
            session="dev-alice-3f9a",
            attempts=0,
            failures=0,
            losses=0,
            next_retry_at=None,
            backoff_s=0.0,
            last_error=None,
            last_frame_at=now - 4,
            rejected={},
            duplicates=0,
            duplicates_answered=0,
            recent_rejections=(),
        )

    def functions(self) -> list[FunctionStatus]:
        return list(self._functions)

    def connection(self) -> ConnectionStatus:
        return self._connection

    def update_function(self, index: int = 0, **fields: Any) -> None:
        self._functions[index] = dataclasses.replace(self._functions[index], **fields)

    def update_connection(self, **fields: Any) -> None:
        """`recent_rejections` may be given as dicts."""
        if "recent_rejections" in fields:
            fields["recent_rejections"] = tuple(
                r if isinstance(r, Rejection) else Rejection(**r) for r in fields["recent_rejections"]
            )
        self._connection = dataclasses.replace(self._connection, **fields)

    async def replay(self, invocation_id: str, event: Any | None) -> InvocationRecord:
        original = self.store.get(invocation_id)
        if original is None:
            raise KeyError(invocation_id)
        self.replays.append((invocation_id, event))
        ran = original.event if event is None else event
        record = make_record(
            function=original.function,
            event=ran,
            source="replay",
            replay_of=invocation_id,
            status="running",
            cold=False,
            generation=original.generation,
        )
        self.store.add(record)
        await asyncio.sleep(0.05)
        if isinstance(ran, dict) and ran.get("fail"):
            self.store.finish(
                record,
                status="handler_error",
                duration_ms=3.2,
                error_type="ValueError",
                error_message=str(ran["fail"]),
                stack_trace=['  File "/var/task/app.py", line 7, in handler\n    raise ValueError(msg)\n'],
                logs="replaying\n",
            )
        else:
            self.store.finish(
                record, status="ok", duration_ms=2.5, response={"echo": ran}, logs="replaying\n"
            )
        return record


def default_function(name: str = "hello") -> FunctionStatus:
    return FunctionStatus(
        name=name,
        handler="app.handler",
        source="/home/alice/src/shop/functions/hello",
        python="3.12.3",
        python_path="/home/alice/src/shop/.venv/bin/python",
        timeout=30.0,
        memory_mb=128,
        environment={"TABLE_NAME": "orders-dev", "LOG_LEVEL": "debug", "STRIPE_API_KEY": "sk_test_51Hx"},
        generation=3,
        last_reload_at=time.time() - 42,
        last_reload_reason="file saved",
        last_reload_error=None,
        last_reload_error_summary=None,
        last_reload_error_type=None,
        error=None,
        invocations=12,
        launcher="fork",
        launcher_note=None,
        forkserver=None,
        workers=(
            WorkerStatus("w1", 41230, "idle", 3, invocations=9, launcher="fork", cold_start_ms=212.4),
            WorkerStatus("w2", 41311, "busy", 3, invocations=3, launcher="fork", cold_start_ms=6.1),
        ),
    )


_counter = itertools.count(1)


def make_record(
    *,
    function: str = "hello",
    event: Any = None,
    status: str = "ok",
    response: Any = None,
    logs: str = "",
    started_at: float | None = None,
    **fields: Any,
) -> InvocationRecord:
    """An InvocationRecord with sensible defaults (a finished, warm, live invocation)."""
    if event is None:
        event = {"name": f"world-{next(_counter)}"}
    started = time.time() if started_at is None else started_at
    record = InvocationRecord(
        id=fields.pop("id", str(uuid.uuid4())),
        function=function,
        source=fields.pop("source", "live"),
        event=event,
        trigger=fields.pop("trigger", guess_trigger(event)),
        started_at=started,
        deadline_ms=int(started * 1000) + 30_000,
        status=status,  # type: ignore[arg-type]
        response=response,
        logs=logs,
    )
    record.cold = fields.pop("cold", False)
    record.generation = fields.pop("generation", 3)
    if status != "running":
        record.duration_ms = fields.pop("duration_ms", 4.2)
        record.finished_at = started + (record.duration_ms or 0) / 1000
    for name, value in fields.items():
        setattr(record, name, value)
    return record


class DashboardServer:
    """The dashboard on 127.0.0.1:<free port>, served by uvicorn in a thread."""

    def __init__(
        self, sources: HarnessSources | None = None, *, port: int = 0, poll_interval_s: float = 0.2
    ) -> None:
        self.sources = sources or HarnessSources()
        self.app = FastAPI(title="livelambda dashboard (test harness)", docs_url=None, redoc_url=None)
        self._stop = asyncio.Event()
        mount_dashboard(self.app, self.sources, poll_interval_s=poll_interval_s, stop=self._stop)
        self.config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(self.config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-harness", daemon=True)
        self.port = 0

    @property
    def store(self) -> InvocationStore:
        return self.sources.store

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve())
        finally:
            self.loop.close()

    def start(self) -> DashboardServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dashboard harness did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.server.should_exit = True
            self._thread.join(timeout=15)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- changing what the page sees (on the server's loop) -----------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        assert self.loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def add(self, record: InvocationRecord) -> InvocationRecord:
        self.call(lambda: self.store.add(record))
        return record

    def finish(self, record: InvocationRecord, **fields: Any) -> None:
        self.call(lambda: self.store.finish(record, **fields))

    def set_connection(self, **fields: Any) -> None:
        self.call(lambda: self.sources.update_connection(**fields))

    def set_function(self, index: int = 0, **fields: Any) -> None:
        self.call(lambda: self.sources.update_function(index, **fields))


# -- sample data (for screenshots and for looking at the page by hand) ------------------------------


def api_gateway_event(body: dict[str, Any] | None = None) -> dict[str, Any]:
    import json

    return {
        "version": "2.0",
        "routeKey": "POST /login",
        "rawPath": "/login",
        "headers": {
            "content-type": "application/json",
            "authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig",
            "cookie": "sid=8f2c1a; theme=dark",
            "user-agent": "curl/8.5.0",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3",
            "domainName": "a1b2c3.execute-api.us-east-1.amazonaws.com",
            "http": {"method": "POST", "path": "/login", "sourceIp": "203.0.113.7"},
            "requestId": "Xk2fGj0aIAMEbQw=",
            "stage": "$default",
        },
        "body": json.dumps(body or {"username": "alice", "password": "hunter2"}),
        "isBase64Encoded": False,
    }


def sqs_event(n: int = 2) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": str(uuid.UUID(int=i + 1)),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
                "body": f'{{"order": {1000 + i}, "qty": {i + 1}}}',
                "attributes": {"ApproximateReceiveCount": "1"},
            }
            for i in range(n)
        ]
    }


TRACEBACK = [
    '  File "/var/task/app.py", line 18, in handler\n    order = parse(event["body"])\n',
    '  File "/var/task/orders.py", line 9, in parse\n'
    '    raise ValueError(f"qty must be positive, got {qty}")\n',
]


def sample_records(now: float | None = None) -> list[InvocationRecord]:
    """A feed with one of everything, oldest first."""
    now = time.time() if now is None else now
    login = make_record(
        event=api_gateway_event(),
        response={"statusCode": 200, "body": '{"token": "eyJ0b2tlbiI6InNlY3JldCJ9", "user": "alice"}'},
        logs="START\nlogin attempt for alice\nWARNING slow password hash: 180 ms\nEND\n",
        started_at=now - 300,
        cold=True,
        duration_ms=231.7,
        generation=2,
    )
    t0 = login.started_at * 1000
    login.timings = {
        "sent": t0 - 9.1,
        "received": t0 - 1.3,
        "started": t0,
        "finished": t0 + 231.7,
        "published": t0 + 236.2,
    }
    orders = make_record(
        function="orders-worker",
        event=sqs_event(3),
        response={"batchItemFailures": []},
        logs="processed 3 messages\n",
        started_at=now - 240,
        duration_ms=18.4,
    )
    failing = make_record(
        function="orders-worker",
        event=sqs_event(1),
        status="handler_error",
        error_type="ValueError",
        error_message="qty must be positive, got -2",
        stack_trace=TRACEBACK,
        logs="processing order 1000\n[ERROR] ValueError: qty must be positive, got -2\n",
        started_at=now - 180,
        duration_ms=7.9,
    )
    timeout = make_record(
        event={"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
        status="timeout",
        error_type="Sandbox.Timedout",
        error_message="Task timed out after 30.00 seconds",
        started_at=now - 120,
        duration_ms=30000.0,
        logs="nightly report: fetching 12,000 rows\n",
    )
    lost = make_record(
        event={"name": "bob"},
        status="livelambda_error",
        error_type="Livelambda.DevServerLost",
        error_message="the livelambda dev server went silent while running request …",
        started_at=now - 60,
        duration_ms=3012.0,
    )
    replay = make_record(
        event={"name": "world"},
        response={"statusCode": 200, "body": "hello world"},
        source="replay",
        replay_of=login.id,
        started_at=now - 30,
        duration_ms=3.1,
        generation=3,
    )
    running = make_record(event={"name": "slow"}, status="running", started_at=now - 2, logs="working…\n")
    return [login, orders, failing, timeout, lost, replay, running]


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the dashboard with sample data")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    sources = HarnessSources()
    sources._functions.append(default_function("orders-worker"))
    for record in sample_records():
        sources.store.add(record)
    server = DashboardServer(sources, port=args.port).start()
    print(f"dashboard at {server.url}/  (Ctrl+C to stop)")
    try:
        while True:
            time.sleep(5)
            server.add(make_record(event=sqs_event(1), function="orders-worker"))
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
