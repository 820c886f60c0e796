"""The floor of the live path's worker hop: a bare Lambda Runtime API round trip to awslambdaric.

The dev server hands each live event to a worker process running awslambdaric through the Runtime API
(GET /2018-06-01/runtime/invocation/next answered with the event, then POST .../response). Here the
smallest server that speaks it, an asyncio Protocol on loopback in the caller's own event loop (one
kept-alive connection, httptools parsing, TCP_NODELAY, each answer written in one piece), drives a real
awslambdaric process started the way the dev server starts one (`awslambdaric_argv`). One round trip:
the event written to the pending long poll -> awslambdaric runs the handler -> its POST arrives.

bench/live.py measures it beside its other references; nothing here is asserted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httptools

from devserver.processes import stop_process
from devserver.runtime.launcher import awslambdaric_argv

NEXT_PATH = b"/2018-06-01/runtime/invocation/next"
_OK = b'{"status":"OK"}'
_ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n" + _OK
# awslambdaric's native client needs Content-Type and Lambda-Runtime-Trace-Id (it crashes without them).
_EVENT_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"lambda-runtime-aws-request-id: %d\r\nlambda-runtime-deadline-ms: %d\r\n"
    b"lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:000000000000:function:echo\r\n"
    b"lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n"
    b"content-length: %d\r\n\r\n"
)


class _Connection(asyncio.Protocol):
    """awslambdaric's connection: a long poll answered when an event is handed over, a result posted."""

    def __init__(self, hop: WorkerHop) -> None:
        self._hop = hop
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._expect = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is not a subclass)
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._hop._lost(self)

    def on_message_begin(self) -> None:
        self._url, self._body, self._expect = b"", [], False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            self._expect = True

    def on_headers_complete(self) -> None:
        if self._expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl's habit for large bodies

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_method() == b"GET" and self._url == NEXT_PATH:
            self._hop._polled(self)
            return
        assert self.transport is not None
        self.transport.write(_ACCEPTED)
        self._hop._posted(self._url, b"".join(self._body))


class WorkerHop:
    """The Runtime API server of one awslambdaric worker, in the running event loop. `start`, then
    `invoke` one event at a time, then `close`."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._poll: _Connection | None = None  # the long poll waiting for an event
        self._event: bytes | None = None  # an event handed over before the poll arrived
        self._answer: asyncio.Future[bytes] | None = None
        self._first_poll: asyncio.Future[None] | None = None
        self._request_id = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, app: Path, handler: str, log: Path, timeout_s: float) -> None:
        """Serve on a loopback port, start awslambdaric for `handler` in `app` (its output to `log`),
        and return once its first long poll has arrived: the handler is imported, the worker warm."""
        self._loop = loop = asyncio.get_running_loop()
        self._first_poll = loop.create_future()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIVELAMBDA_", "_LAMBDA"))}
        env.update({  # what the dev server's workers see that changes how awslambdaric runs
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}", "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(app), "PYTHONPATH": str(app),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",  # (3.12+: awslambdaric polls in a thread)
            "AWS_LAMBDA_FUNCTION_NAME": "echo", "AWS_REGION": "us-east-1", "LAMBDA_DISABLE_PREVIEW_WARN": "1",
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        argv = awslambdaric_argv(Path(sys.executable), handler)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self._first_poll.done():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("awslambdaric did not poll:\n" + log.read_text(errors="replace")[-2000:])
            await asyncio.wait({self._first_poll}, timeout=0.05)

    def invoke(self, event: bytes) -> asyncio.Future[bytes]:
        """Hand `event` to the worker; the future gets the body it posts back. Called with the loop
        running or not (then: `loop.run_until_complete(hop.invoke(event))`, no Task in between)."""
        assert self._loop is not None and (self._answer is None or self._answer.done()), "one at a time"
        self._answer = self._loop.create_future()
        if self._poll is not None:
            self._send(self._poll, event)
        else:
            self._event = event  # the worker has not polled again yet: the poll takes it
        return self._answer

    async def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 10.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- from the connection
    def _send(self, connection: _Connection, event: bytes) -> None:
        self._poll, self._event = None, None
        self._request_id += 1
        deadline_ms = int(time.time() * 1000) + 30_000
        assert connection.transport is not None
        connection.transport.write(_EVENT_HEAD % (self._request_id, deadline_ms, len(event)) + event)

    def _polled(self, connection: _Connection) -> None:
        if self._first_poll is not None and not self._first_poll.done():
            self._first_poll.set_result(None)
        if self._event is not None:
            self._send(connection, self._event)
        else:
            self._poll = connection

    def _posted(self, url: bytes, body: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return  # an init error: start() sees the worker exit
        if url == b"/2018-06-01/runtime/invocation/%d/response" % self._request_id:
            answer.set_result(body)
        else:
            answer.set_exception(RuntimeError(f"awslambdaric posted {url.decode()}: {body[:300]!r}"))

    def _lost(self, connection: _Connection) -> None:
        if self._poll is connection:
            self._poll = None
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(RuntimeError("awslambdaric closed its Runtime API connection"))
