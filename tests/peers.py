"""Scripted WebSocket peers for the AppSync client tests: a websockets server in a thread, with TLS
from a self-signed certificate when a test needs `wss`."""

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


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` and 127.0.0.1, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def self_signed_tls(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """The certificate file (for the client to trust) and a server TLS context that uses it."""
    cert, key = self_signed_certificate(directory)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    return cert, server_tls
