"""The Lambda Runtime API (2018-06-01) served on loopback for ONE worker process.

The API's paths carry no worker id, so every worker gets its own server on its own loopback port
(`AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT`). A path prefix (`127.0.0.1:PORT/w/ID`) does not work:
awslambdaric's native client would accept it, but its Python client (used for `/init/error`) parses
the value as `host:port` and fails, so an init error could never be reported.

HTTP is parsed by httptools (llhttp, the parser uvicorn uses) in an asyncio Protocol, TCP_NODELAY on
every connection, each answer written in one piece: a hop must stay well under a millisecond, and an
invocation takes two. The server knows nothing of processes: it hands each call to a
`RuntimeApiHandler` (the Worker).

Bounds (any local process can connect; devserver/servers/limits.py): a request must arrive whole within
`request_timeout_s` of its first byte (of the connect, for the first one), else the connection is
closed; at most `max_connections` at once, the rest refused with a 503. Once a request has arrived, it
waits as long as it must (the `/invocation/next` long poll), and a connection idle between requests is
left alone: the runtime's own sits idle for as long as its handler runs, up to 15 minutes, and the cap
bounds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol

import httptools

from devserver.runtime.invocation import InvocationRequest
from devserver.servers.limits import RUNTIME_API_MAX_CONNECTIONS, BurstLog, RequestDeadline, ServerLimits

log = logging.getLogger("livelambda.runtime_api")

PREFIX = "/2018-06-01/runtime"
NEXT_PATH = PREFIX + "/invocation/next"
ERROR_TYPE_HEADER = b"lambda-runtime-function-error-type"

_Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())


# The two every invocation sends (an HTTPStatus lookup is an Enum call).
_STATUS_LINES = {code: _status_line(code) for code in (200, 202)}
_ACCEPTED: _Reply = (202, [(b"content-type", b"application/json")], b'{"status":"OK"}')
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class RuntimeApiHandler(Protocol):
    """What the server asks of the sandbox behind it."""

    def next_invocation(self, deliver: Callable[[InvocationRequest], None]) -> Callable[[], None]:
        """Long poll: call `deliver` with the next event, its `deadline_ms` and `invoked_function_arn`
        filled in, now or later (it writes the answer at once). Returns what withdraws the poll: the
        server calls it if the runtime goes away first."""
        ...

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        """The handler's result. False: no such invocation in flight (the runtime gets a 400)."""
        ...

    def invocation_error(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        """The handler raised. False: no such invocation in flight."""
        ...

    def init_error(self, body: bytes, error_type: str | None) -> None:
        """The runtime could not load the handler (import error, handler missing, ...)."""
        ...


class RuntimeApiServer:
    def __init__(
        self,
        handler: RuntimeApiHandler,
        host: str = "127.0.0.1",
        *,
        request_timeout_s: float | None = None,  # None: ServerLimits.from_env()
        max_connections: int = RUNTIME_API_MAX_CONNECTIONS,
    ) -> None:
        self._handler = handler
        self._host = host
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.port = 0
        if request_timeout_s is None:
            request_timeout_s = ServerLimits.from_env().request_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self.refused = BurstLog(log, "")  # (their messages name the address once it is known)
        self.timed_out = BurstLog(log, "")

    @property
    def address(self) -> str:
        """The value for AWS_LAMBDA_RUNTIME_API."""
        return f"{self._host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        where = f"Runtime API {self.address}"
        self.refused.message = where + ": {count} connection(s) refused over its cap, the last from {remote}"
        self.timed_out.message = where + ": closed {count} connection(s) whose request was not whole in time"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def poll(self, deliver: Callable[[InvocationRequest], None]) -> Callable[[], None]:
        """`GET /invocation/next`: the handler's long poll."""
        return self._handler.next_invocation(deliver)

    def dispatch(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes) -> _Reply:
        """Every call but `GET /invocation/next` (see `poll`), answered at once."""
        if not path.startswith(PREFIX + "/"):
            return _json(404, {"errorMessage": f"Unknown path {path}", "errorType": "NotFound"})
        parts = path[len(PREFIX) + 1 :].split("/")
        raw_type = headers.get(ERROR_TYPE_HEADER)
        error_type = raw_type.decode("latin-1") if raw_type is not None else None
        if method == "POST" and len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response":
            if self._handler.invocation_response(parts[1], body):
                return _ACCEPTED
            return _invalid_request_id()
        if method == "POST" and len(parts) == 3 and parts[0] == "invocation" and parts[2] == "error":
            if self._handler.invocation_error(parts[1], body, error_type):
                return _ACCEPTED
            return _invalid_request_id()
        if method == "POST" and parts == ["init", "error"]:
            self._handler.init_error(body, error_type)
            return _ACCEPTED
        return _json(404, {"errorMessage": f"Unknown resource {method} {path}", "errorType": "NotFound"})


class _Connection(asyncio.Protocol):
    """One runtime's connection. Requests are answered in order, one at a time (a runtime sends the
    next only after the answer; anything pipelined waits its turn). No Task per request: a call is
    answered from the parser's callback, a long poll when the sandbox delivers the event."""

    def __init__(self, server: RuntimeApiServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._queue: list[tuple[str, str, dict[bytes, bytes], bytes, bool]] = []
        self._busy = False  # a request is being answered: the next ones wait
        self._withdraw: Callable[[], None] | None = None  # the pending long poll's
        self._deadline = RequestDeadline(server.request_timeout_s, self._expired)  # the request arriving

    # -- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        if len(server._connections) >= server.max_connections:
            server.refused.note(_peer(transport))
            transport.write(_BUSY)  # type: ignore[attr-defined]
            transport.close()
            return
        self._transport = transport  # type: ignore[assignment]  # (uvloop's is not a subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server._connections.add(self)
        self._deadline.start()  # a connection that never sends a whole request is closed

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return  # refused over the cap, closing
        self._deadline.start()  # the first bytes of a request: it must be whole in time
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.abort()  # not HTTP: no runtime sends that

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.stop()
        self._server._connections.discard(self)
        self._transport = None
        if self._withdraw is not None:
            self._withdraw()  # a poll whose answer nobody can receive any more
            self._withdraw = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _expired(self) -> None:
        if self._transport is not None:
            self._server.timed_out.note(_peer(self._transport))
        self.abort()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body = b"", {}, []
        self._deadline.start()  # a pipelined request: its own deadline

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        if self._headers.get(b"expect", b"").lower() == b"100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl's habit for large bodies

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._deadline.stop()  # arrived: from now on it waits as long as it must (the long poll)
        method = self._parser.get_method().decode("latin-1")
        path = self._url.decode("latin-1").split("?", 1)[0]
        keep_alive = self._parser.should_keep_alive()
        self._queue.append((method, path, self._headers, b"".join(self._body), keep_alive))
        self._serve()

    # -- answering
    def _serve(self) -> None:
        while self._queue and not self._busy and self._transport is not None:
            method, path, headers, body, keep_alive = self._queue.pop(0)
            if method == "GET" and path == NEXT_PATH:
                self._busy = True
                self._withdraw = self._server.poll(functools.partial(self._deliver, keep_alive))
                return
            reply = self._server.dispatch(method, path, headers, body)
            if method == "POST":
                # Let the answer reach whoever waits for it (its wakeup is already scheduled) before
                # the runtime gets its 202 and polls again: that poll would compete with the answer
                # on its way out.
                self._busy = True
                asyncio.get_running_loop().call_soon(self._answer, reply, keep_alive)
                return
            self._write(*reply, keep_alive)

    def _deliver(self, keep_alive: bool, invocation: InvocationRequest) -> None:
        self._withdraw = None
        self._answer((200, _next_headers(invocation), invocation.payload), keep_alive)

    def _answer(self, reply: _Reply, keep_alive: bool) -> None:
        self._busy = False
        self._write(*reply, keep_alive)
        self._serve()

    def _write(
        self, status: int, headers: list[tuple[bytes, bytes]], payload: bytes, keep_alive: bool
    ) -> None:
        transport = self._transport
        if transport is None:
            return
        lines = [_STATUS_LINES.get(status) or _status_line(status)]
        # The values come from authenticated messages, but a line break would still split a header.
        lines += [name + b": " + value.replace(b"\r", b"").replace(b"\n", b"") for name, value in headers]
        lines.append(b"content-length: %d" % len(payload))
        if not keep_alive:
            lines.append(b"connection: close")
        # One write, one segment: headers and body apart would wake the runtime twice.
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + payload)
        if not keep_alive:
            transport.close()


def _next_headers(invocation: InvocationRequest) -> list[tuple[bytes, bytes]]:
    # awslambdaric's native client segfaults when Lambda-Runtime-Trace-Id or Content-Type is missing.
    headers = [
        (b"content-type", b"application/json"),
        (b"lambda-runtime-aws-request-id", invocation.request_id.encode()),
        (b"lambda-runtime-deadline-ms", str(invocation.deadline_ms).encode()),
        (b"lambda-runtime-invoked-function-arn", (invocation.invoked_function_arn or "").encode()),
        (b"lambda-runtime-trace-id", invocation.trace_id.encode()),
    ]
    if invocation.client_context is not None:
        headers.append((b"lambda-runtime-client-context", invocation.client_context.encode()))
    if invocation.cognito_identity is not None:
        headers.append((b"lambda-runtime-cognito-identity", invocation.cognito_identity.encode()))
    return headers


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


def _json(status: int, body: dict[str, str]) -> _Reply:
    return status, [(b"content-type", b"application/json")], json.dumps(body).encode()


def _invalid_request_id() -> _Reply:
    return _json(400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
