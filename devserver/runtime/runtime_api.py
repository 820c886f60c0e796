"""The Lambda Runtime API (2018-06-01) served on loopback for ONE worker process.

The API's paths carry no worker id, so every worker gets its own server on its own loopback port
(`AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT`). A path prefix (`127.0.0.1:PORT/w/ID`) does not work:
awslambdaric's native client would accept it, but its Python client (used for `/init/error`) parses
the value as `host:port` and fails, so an init error could never be reported.

HTTP is spoken with h11 over asyncio streams, TCP_NODELAY on every connection (a hop must stay well
under a millisecond). The server knows nothing of processes: it hands each call to a
`RuntimeApiHandler` (the Worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Protocol

import h11

from devserver.runtime.invocation import InvocationRequest

PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "lambda-runtime-function-error-type"
_READ_SIZE = 256 * 1024
_ACCEPTED = b'{"status":"OK"}'


class RuntimeApiHandler(Protocol):
    """What the server asks of the sandbox behind it."""

    async def next_invocation(self) -> InvocationRequest:
        """Long poll: return the next event, its `deadline_ms` and `invoked_function_arn` filled in."""
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
    def __init__(self, handler: RuntimeApiHandler, host: str = "127.0.0.1") -> None:
        self._handler = handler
        self._host = host
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        """The value for AWS_LAMBDA_RUNTIME_API."""
        return f"{self._host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _next_event(conn, reader)
                if not isinstance(request, h11.Request):
                    return  # closed by the runtime (or it sent garbage)
                if conn.they_are_waiting_for_100_continue:  # curl's habit for large bodies
                    writer.write(
                        conn.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
                        or b""
                    )
                body = bytearray()
                while True:
                    event = await _next_event(conn, reader)
                    if isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                status, headers, payload = await self._dispatch(request, bytes(body))
                if request.method == b"POST":
                    # Let the answer reach whoever waits for it before the runtime gets its 202 and
                    # polls again: that poll would compete with the answer on its way out.
                    await asyncio.sleep(0)
                headers = [*headers, (b"content-length", str(len(payload)).encode())]
                # One write, one segment: headers and body apart would wake the runtime twice.
                response = (h11.Response(status_code=status, headers=headers), h11.Data(data=payload))
                writer.write(b"".join(conn.send(event) or b"" for event in (*response, h11.EndOfMessage())))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _dispatch(
        self, request: h11.Request, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        method = request.method.decode()
        path = request.target.decode().split("?", 1)[0]
        if not path.startswith(PREFIX + "/"):
            return _json(404, {"errorMessage": f"Unknown path {path}", "errorType": "NotFound"})
        parts = path[len(PREFIX) + 1 :].split("/")
        error_type = _header(request, ERROR_TYPE_HEADER)
        if method == "GET" and parts == ["invocation", "next"]:
            invocation = await self._handler.next_invocation()
            return 200, _next_headers(invocation), invocation.payload
        if method == "POST" and len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response":
            if self._handler.invocation_response(parts[1], body):
                return 202, [(b"content-type", b"application/json")], _ACCEPTED
            return _invalid_request_id()
        if method == "POST" and len(parts) == 3 and parts[0] == "invocation" and parts[2] == "error":
            if self._handler.invocation_error(parts[1], body, error_type):
                return 202, [(b"content-type", b"application/json")], _ACCEPTED
            return _invalid_request_id()
        if method == "POST" and parts == ["init", "error"]:
            self._handler.init_error(body, error_type)
            return 202, [(b"content-type", b"application/json")], _ACCEPTED
        return _json(404, {"errorMessage": f"Unknown resource {method} {path}", "errorType": "NotFound"})


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(_READ_SIZE))


def _header(request: h11.Request, name: str) -> str | None:
    for key, value in request.headers:
        if key == name.encode():
            return value.decode("latin-1")
    return None


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


def _json(status: int, body: dict[str, str]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps(body).encode()


def _invalid_request_id() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return _json(400, {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"})
