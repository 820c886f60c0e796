"""A delaying TCP proxy on loopback: a WAN link between two local processes, for the benchmarks.

    proxy = DelayProxy("127.0.0.1", 8080, one_way_delay_s=0.025)   # 50 ms RTT
    port = await proxy.start()          # listens on 127.0.0.1:<port>, forwards to 127.0.0.1:8080
                                        # (listen_port=: a given one, e.g. the target's own port)
    ...
    await proxy.close()

    with running_proxy("127.0.0.1", 8080, one_way_delay_s=0.025) as proxy:   # synchronous callers
        connect_to(proxy.port)

The link. Every chunk read from one side is written to the other `one_way_delay_s` after it was read,
in order; chunks in flight overlap (a queue with each chunk's delivery time, not a sleep per chunk,
so delays never add up serially). With `rate_bytes_per_s` each direction is also a serial line of that
rate, shared by all the proxy's connections as one link's bandwidth is: a chunk starts only when the
previous one (of any connection) has left, and takes len/rate to leave (`schedule`, a pure function, is
the whole model). The rate may be changed between runs (`proxy.rate_bytes_per_s = ...`). A half-close
(EOF) travels like a chunk; a reset, or an error on either socket, resets both sides at once;
`drop_connections()` resets every open connection, as a server or a NAT dropping them would.

The handshake. On loopback the kernel completes a client's connect() at once, before the proxy even
accepts, so per-chunk delays alone would make a new connection free. On a real link SYN and SYN-ACK
cost one round trip before the first byte can leave; so, with `handshake=True` (the default), nothing
is read in either direction before accept + 2 x one_way_delay_s. A new connection thus costs one RTT
more than a request on a warm one, as it does over a WAN. TLS passes through untouched (bytes are bytes):
its own handshake costs its round trips through the delays, one more for TLS 1.3.

The buffers between the sides are unbounded (a link with an infinite queue): fine for benchmark
payloads, not a model of TCP's window.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

__all__ = ["Counters", "DelayProxy", "Slot", "running_proxy", "schedule"]

READ_SIZE = 64 * 1024
T = TypeVar("T")
_EOF = b""  # queued like a chunk: the half-close travels in order, with the same delay


class Slot(NamedTuple):
    deliver_at: float  # when the chunk (its last byte) reaches the other side
    link_free_at: float  # when this direction's line can start sending the next chunk


def schedule(
    now: float,
    size: int,
    link_free_at: float,
    *,
    one_way_delay_s: float,
    rate_bytes_per_s: float | None = None,
) -> Slot:
    """When a chunk of `size` bytes read at `now` reaches the other side.

    The line starts sending it at max(now, link_free_at), takes size / rate to send it (nothing
    without a rate), and the chunk then travels `one_way_delay_s`. Feed each result's `link_free_at`
    to the next call of the same direction. Times are any one clock's floats; nothing is read here.
    """
    start = max(now, link_free_at)
    end = start + (size / rate_bytes_per_s if rate_bytes_per_s else 0.0)
    return Slot(end + one_way_delay_s, end)


@dataclass
class Counters:
    """What went through a proxy so far; bytes are counted when delivered to the other side."""

    connections: int = 0  # TCP connections accepted
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client
    resets: int = 0  # connections ended by a reset or a socket error

    def copy(self) -> Counters:
        return Counters(self.connections, self.bytes_up, self.bytes_down, self.resets)


class DelayProxy:
    """Listens on 127.0.0.1 and forwards each connection to (target_host, target_port), delayed."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        one_way_delay_s: float,
        rate_bytes_per_s: float | None = None,
        handshake: bool = True,
    ) -> None:
        if one_way_delay_s < 0 or (rate_bytes_per_s is not None and rate_bytes_per_s <= 0):
            raise ValueError("one_way_delay_s must be >= 0 and rate_bytes_per_s > 0 (or None)")
        self.target = (target_host, target_port)
        self.one_way_delay_s = one_way_delay_s
        self.rate_bytes_per_s = rate_bytes_per_s
        self.handshake = handshake
        self.counters = Counters()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._line_free_at = {True: 0.0, False: 0.0}  # per direction (upstream?): the shared line
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, listen_port: int = 0) -> int:
        """Listen on 127.0.0.1:`listen_port` (0: a free port); return the port."""
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", listen_port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def drop_connections(self) -> int:
        """Reset every open connection, both sides, as a server or a NAT dropping them would, and
        return once they are gone (how many there were); keep listening."""
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the proxy's loop from another thread (running_proxy's callers); its result."""
        assert self._loop is not None, "the proxy is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def close(self) -> None:
        """Stop listening and reset every open connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.counters.connections += 1
        accepted = asyncio.get_running_loop().time()
        writers = [client_w]
        clean = False  # both directions ended with a delivered EOF
        try:
            target_r, target_w = await asyncio.open_connection(*self.target)
            writers.append(target_w)
            clean = await self._pipe_both(accepted, client_r, client_w, target_r, target_w)
        except (OSError, asyncio.CancelledError):
            # OSError: the target is unreachable. CancelledError: close() ends this connection, and
            # a handler task that ends cancelled makes asyncio's start_server log an error.
            pass
        finally:
            self._connections.discard(task)
            for writer in writers:
                if clean:
                    writer.close()
                else:
                    _reset(writer)
            if not clean:
                self.counters.resets += 1

    async def _pipe_both(
        self,
        accepted: float,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        target_r: asyncio.StreamReader,
        target_w: asyncio.StreamWriter,
    ) -> bool:
        """Move bytes both ways until both directions delivered their EOF (True) or one failed."""
        # Nothing leaves before the emulated SYN / SYN-ACK round trip is over (see the module doc).
        opens_at = accepted + (2 * self.one_way_delay_s if self.handshake else 0.0)
        up: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        down: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        tasks = [
            asyncio.ensure_future(self._read(client_r, up, opens_at, upstream=True)),
            asyncio.ensure_future(self._write(up, target_w, upstream=True)),
            asyncio.ensure_future(self._read(target_r, down, opens_at, upstream=False)),
            asyncio.ensure_future(self._write(down, client_w, upstream=False)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            return all(t.exception() is None for t in done) and len(done) == len(tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(
        self,
        source: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        opens_at: float,
        *,
        upstream: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        # Until the handshake's round trip is over, bytes wait in the socket: read now, they would
        # hold the shared line from `opens_at` on against the other connections' chunks.
        while (wait := opens_at - loop.time()) > 0:
            await asyncio.sleep(wait)
        while True:
            chunk = await source.read(READ_SIZE)
            slot = schedule(
                loop.time(),
                len(chunk),
                self._line_free_at[upstream],
                one_way_delay_s=self.one_way_delay_s,
                rate_bytes_per_s=self.rate_bytes_per_s,
            )
            self._line_free_at[upstream] = slot.link_free_at
            queue.put_nowait((slot.deliver_at, chunk))
            if chunk == _EOF:
                return

    async def _write(
        self, queue: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deliver_at, chunk = await queue.get()
            # A loop: a timer may fire a hair early, and a byte must never arrive before its time.
            while (wait := deliver_at - loop.time()) > 0:
                await asyncio.sleep(wait)
            if chunk == _EOF:
                if sink.can_write_eof():
                    sink.write_eof()
                await sink.drain()
                return
            if upstream:
                self.counters.bytes_up += len(chunk)
            else:
                self.counters.bytes_down += len(chunk)
            sink.write(chunk)
            await sink.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), so the peer sees a reset, not an orderly EOF."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def running_proxy(
    target_host: str,
    target_port: int,
    *,
    one_way_delay_s: float,
    rate_bytes_per_s: float | None = None,
    handshake: bool = True,
    listen_port: int = 0,
) -> Iterator[DelayProxy]:
    """A DelayProxy on its own event loop in a background thread, for synchronous callers.

    Yields the started proxy: connect to 127.0.0.1:`proxy.port` (`listen_port`, or a free one); read
    `proxy.counters` (plain ints, updated by the proxy's thread) at any time; run its coroutines with
    `proxy.call(...)`, e.g. `proxy.call(proxy.drop_connections())`.
    """
    proxy = DelayProxy(
        target_host,
        target_port,
        one_way_delay_s=one_way_delay_s,
        rate_bytes_per_s=rate_bytes_per_s,
        handshake=handshake,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"netem-{target_port}", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(listen_port), loop).result()
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
