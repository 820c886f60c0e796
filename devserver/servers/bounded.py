"""uvicorn, as both our servers run it: the port it got, the bounds it lacks, a clean stop."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from devserver.servers.limits import (
    MAX_CONNECTIONS_ENV,
    REQUEST_TIMEOUT_ENV,
    BurstLog,
    RequestDeadline,
    ServerLimits,
)

log = logging.getLogger("livelambda.serving")
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class ReadyServer(uvicorn.Server):
    """A uvicorn.Server that reports its real port once its sockets listen (so `--port 0` works), and
    serves HTTP with the bounds of `limits` (see `BoundedHttpProtocol`; default: from the environment).

    uvicorn binds the socket itself: a socket handed to it would lack TCP_NODELAY (~88 ms a call)."""

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[int], None], limits: ServerLimits | None = None
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self.limits = limits or ServerLimits.from_env()
        self.http_protocol = bounded_http_protocol(self.limits, getattr(config.app, "title", "server"))
        config.http = self.http_protocol  # (read when uvicorn loads the config, as it starts)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1]
            self.http_protocol.named(f"{self.http_protocol.name} on port {port}")
            self._on_ready(port)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with what it lacks against a local flood (it only times out a
    connection idle after a response, `timeout_keep_alive`):
    - a request must arrive whole, headers and body, within `request_timeout_s` of its first byte (of
      the connect, for the first one), else 408 and close. Once whole it waits as long as its app
      takes (a 15-minute Lambda invoke, the dashboard's live feed); a WebSocket upgrade is handed over
      with the deadline cleared (realtime.py has its own, for `connection_init`);
    - at most `max_connections` connections (WebSockets included: uvicorn counts them in the same set),
      the rest answered 503 and closed, one log line per burst.
    Subclassed per server by `bounded_http_protocol`, which sets the class attributes."""

    limits: ServerLimits = ServerLimits()
    name = "server"
    refused: BurstLog
    timed_out: BurstLog

    _deadline: RequestDeadline | None = None  # made on connect (not for a refused connection)
    _refused = False
    _headers_done = False

    @classmethod
    def named(cls, name: str) -> None:
        """What its log lines call this server (its port is known only once it listens)."""
        cls.name = name
        cls.refused.message = (
            f"{name}: {cls.limits.max_connections} connections open, its cap ({MAX_CONNECTIONS_ENV}): "
            "refused {count} new one(s), the last from {remote}"
        )
        cls.timed_out.message = (
            f"{name}: closed {{count}} connection(s) whose request was not whole within "
            f"{cls.limits.request_timeout_s:g} s ({REQUEST_TIMEOUT_ENV}), the last from {{remote}}"
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.limits.max_connections:
            self._refused = True
            self.refused.note(_peer(transport))
            transport.write(_BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._deadline = RequestDeadline(self.limits.request_timeout_s, self._expired)
        self._deadline.start()  # a connection that never sends a whole request is closed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.stop()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            return  # refused over the cap, closing
        self._deadline.start()  # the first bytes of the next request
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done = False
        if self._deadline is not None:
            self._deadline.start()  # a pipelined request: its own deadline

    def on_headers_complete(self) -> None:
        self._headers_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._deadline is not None:
            self._deadline.stop()  # whole: it waits for its app as long as it takes
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        if self._deadline is not None:
            self._deadline.stop()
        super().handle_websocket_upgrade()

    def _expired(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.timed_out.note(_peer(self.transport))
        if not self._headers_done:  # no app has it yet: say why (an app that has it sees the close)
            self.transport.write(_TOO_SLOW)
        self.transport.close()


def bounded_http_protocol(limits: ServerLimits, name: str) -> type[BoundedHttpProtocol]:
    """`BoundedHttpProtocol` for one server (uvicorn's `http` setting takes a class)."""

    class Bounded(BoundedHttpProtocol):
        pass

    Bounded.limits = limits
    Bounded.refused = BurstLog(log, "")
    Bounded.timed_out = BurstLog(log, "")
    Bounded.named(name)
    return Bounded


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Written whole, then renamed, so a reader (a test, `livelambda dev`) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class _Stopped(Exception):
    """SIGTERM arrived (after uvicorn's graceful shutdown)."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (uvicorn[standard] brings it): ~0.2 ms less per live round trip."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_until_stopped(server: uvicorn.Server) -> bool:
    """Serve until Ctrl+C or SIGTERM; True if the server started.

    uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: turn both into a
    normal return, so that the caller's clean-up (stopping child processes) runs."""
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(server.serve())
    except (KeyboardInterrupt, _Stopped):
        pass
    except SystemExit:  # uvicorn exits this way when it cannot bind; it logged why
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return bool(server.started)
