"""Scripted WebSocket peers for the AppSync client tests: a websockets server in a thread, with TLS
from a test CA's certificate when a test needs `wss`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from bench.certs import make_certificates

WAIT_S = 15.0


Publish = Callable[[ServerConnection, dict[str, Any], "str | None"], Awaitable[None]]


def appsync_peer(on_publish: Publish | None = None) -> Callable[[ServerConnection], Awaitable[None]]:
    """A well-behaved AppSync peer: it acks the connection and every subscription, and hands each
    publish to `on_publish(ws, frame, last subscription id)`; without one, publishes go unanswered."""

    async def handler(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv()) == {"type": "connection_init"}
        await ws.send('{"type":"connection_ack","connectionTimeoutMs":300000}')
        sub_id = None
        async for text in ws:
            frame = json.loads(text)
            if frame["type"] == "subscribe":
                sub_id = frame["id"]
                await ws.send(json.dumps({"type": "subscribe_success", "id": sub_id}))
            elif on_publish is not None:
                await on_publish(ws, frame, sub_id)

    return handler


async def _echo(ws: ServerConnection, frame: dict[str, Any], sub_id: str | None) -> None:
    ok = [{"identifier": "s", "index": 0}]
    await ws.send(json.dumps({"type": "publish_success", "id": frame["id"], "successful": ok, "failed": []}))
    await ws.send(json.dumps({"type": "data", "id": sub_id, "event": frame["events"][0]}))


echo_peer = appsync_peer(_echo)  # acks each publish, then sends its first event back


@contextlib.contextmanager
def scripted_peer(handler: Callable[[Any], Any], tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """A websockets server speaking whatever `handler` scripts, in a thread; yields its port."""
    from websockets.asyncio.server import serve

    ready = threading.Event()
    stop: list[Callable[[], None]] = []
    port: list[int] = []

    def serve_forever() -> None:
        async def main() -> None:
            subprotocols = ["aws-appsync-event-ws"]
            async with serve(handler, "127.0.0.1", 0, subprotocols=subprotocols, ssl=tls) as server:  # type: ignore[arg-type]
                port.append(server.sockets[0].getsockname()[1])
                done = asyncio.Event()
                loop = asyncio.get_running_loop()
                stop.append(lambda: loop.call_soon_threadsafe(done.set))
                ready.set()
                await done.wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert ready.wait(WAIT_S)
    try:
        yield port[0]
    finally:
        stop[0]()
        thread.join(WAIT_S)


def self_signed_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """The CA file for the client to trust, and a server TLS context with a certificate it signed
    (for `localhost` and 127.0.0.1; see bench/certs.py, shared with the benchmarks)."""
    certs = make_certificates(directory)
    return certs.ca, certs.server_context()
