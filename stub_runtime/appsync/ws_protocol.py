"""The asyncio client's WebSocket: websockets' sans-I/O `ClientProtocol` on an asyncio transport.

Each complete text message goes to `on_text` inside `data_received`, and each send is one
`transport.write`: no reader task, queue or send lock between the socket and the AppSync frames (the
dev server relays every invocation through here twice). The blocking shell, `blocking.py`, drives the
same websockets protocol over a socket of its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidState, InvalidStatus
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.uri import parse_uri

from stub_runtime.appsync.errors import (
    ConnectionLost,
    handshake_failed,
    no_answer,
    unreachable,
    upgrade_refused,
)
from stub_runtime.appsync.publishing import default_tls_context
from stub_runtime.appsync.ws_messages import DATA_OPCODES, MessageAssembler, text_of


class WebSocketProtocol(asyncio.Protocol):
    """One client WebSocket. `on_text(text)` gets each message (binary ones as None); `on_lost(code)`
    once when the connection is gone (the close code received, 1006 without one)."""

    def __init__(self, ws: ClientProtocol, on_text: Callable[[str | None], None],
                 on_lost: Callable[[int], None]) -> None:  # fmt: skip
        self.ws = ws
        self.on_text = on_text
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._messages = MessageAssembler()

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    @property
    def close_code(self) -> int:
        return self.ws.close_rcvd.code if self.ws.close_rcvd is not None else 1006

    # ----- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        self._handle()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._handle()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionLost("the connection closed during the upgrade"))
        if not self.lost.done():
            self.lost.set_result(None)
            self.on_lost(self.close_code)

    def _handle(self) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if not self.handshake.done():
                    self.handshake.set_result(event)
            elif isinstance(event, Frame) and event.opcode in DATA_OPCODES:
                message = self._messages.feed(event)
                if message is not None:
                    self.on_text(text_of(message))
        self._flush()  # pongs, the answer to a close frame

    # ----- writing
    def send_text(self, text: str) -> None:
        """Write one text frame now; ConnectionLost when the connection can no longer take it."""
        if self.transport is None:
            raise ConnectionLost(f"the connection to AppSync is gone (code {self.close_code}); reconnect")
        try:
            self.ws.send_text(text.encode())
        except InvalidState:
            raise ConnectionLost(
                f"the connection to AppSync is closing (code {self.close_code}); reconnect"
            ) from None
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    async def close(self, timeout_s: float) -> None:
        """A close frame, then wait up to `timeout_s` for the server to end the connection."""
        if self.transport is None:
            return
        try:
            self.ws.send_close(1000)
            self._flush()
        except InvalidState:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), timeout_s)
        except asyncio.TimeoutError:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_websocket(
    url: str,
    subprotocols: Sequence[str],
    on_text: Callable[[str | None], None],
    on_lost: Callable[[int], None],
    *,
    timeout_s: float,
    max_size: int,
    ssl_context: ssl.SSLContext | None = None,
) -> WebSocketProtocol:
    """Dial `url` (ws:// or wss://) and complete the upgrade within `timeout_s`. Raises ConnectFailed
    (unreachable, no answer, refused upgrade, failed TLS or WebSocket handshake)."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    ws = ClientProtocol(parse_uri(url), subprotocols=subprotocols, max_size=max_size)  # type: ignore[arg-type]
    protocol = WebSocketProtocol(ws, on_text, on_lost)
    loop = asyncio.get_running_loop()
    context = (ssl_context or default_tls_context()) if secure else None
    try:
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: protocol, host, port, ssl=context,
                                         server_hostname=host if secure else None)  # fmt: skip
            await protocol.handshake
    except TimeoutError:
        protocol.abort()
        raise no_answer(url, timeout_s) from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        protocol.abort()
        raise handshake_failed(url, exc) from exc
    except ConnectionLost as exc:
        raise handshake_failed(url, exc) from exc
    except OSError as exc:
        protocol.abort()
        raise unreachable(url, exc) from exc
    if isinstance(ws.handshake_exc, InvalidStatus):
        protocol.abort()
        raise upgrade_refused(url, ws.handshake_exc.response.status_code)
    if isinstance(ws.handshake_exc, InvalidHandshake):
        protocol.abort()
        raise handshake_failed(url, ws.handshake_exc)
    return protocol
