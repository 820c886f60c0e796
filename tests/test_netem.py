"""bench/netem.py, the delaying TCP proxy the benchmarks put between two local processes: the schedule
(a pure function) on a fake clock, then real sockets on loopback. Timings are checked only as lower
bounds (a byte never arrives before its delay); nothing here sleeps for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import socketserver
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.netem import DelayProxy, Slot, running_proxy, schedule

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
D = 0.03  # one-way delay of the socket tests
TIMEOUT = 30.0  # a generous bound on each wait, so that a bug fails instead of hanging


# ----------------------------------------------------------------------------- the schedule, pure

arrivals = st.lists(
    st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 1_000_000)),  # (gap since previous, size)
    max_size=40,
)


def run(
    items: list[tuple[float, int]], start: float, delay: float, rate: float | None
) -> list[tuple[float, int, Slot]]:
    now, free, out = 0.0, start, []
    for gap, size in items:
        now += gap
        slot = schedule(now, size, free, one_way_delay_s=delay, rate_bytes_per_s=rate)
        free = slot.link_free_at
        out.append((now, size, slot))
    return out


def close_to(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


@given(
    arrivals,
    st.floats(0, 5),
    st.floats(0, 2),
    st.one_of(st.none(), st.floats(1, 1e9)),
)
def test_schedule_in_order_never_early_and_rate_bound(
    items: list[tuple[float, int]], start: float, delay: float, rate: float | None
) -> None:
    slots = run(items, start, delay, rate)
    for (_, _, a), (_, _, b) in itertools.pairwise(slots):
        assert b.deliver_at >= a.deliver_at  # order kept: delivery times never go back
    for now, size, slot in slots:
        assert slot.deliver_at >= now + delay
        assert slot.deliver_at >= start + delay  # not before the link opened
        assert slot.link_free_at >= now
        if rate is not None:
            assert slot.deliver_at >= now + size / rate + delay or close_to(
                slot.deliver_at, now + size / rate + delay
            )
    if rate is not None:
        # Chunks i..j cannot all have left faster than the rate allows, from when chunk i arrived.
        for i, (now_i, _, _) in enumerate(slots):
            sent = 0
            for _, size_j, slot_j in slots[i:]:
                sent += size_j
                bound = now_i + sent / rate + delay
                assert slot_j.deliver_at >= bound or close_to(slot_j.deliver_at, bound)


@given(arrivals, st.floats(0, 5), st.floats(0, 2), st.floats(1, 1e9))
def test_schedule_is_a_work_conserving_line(
    items: list[tuple[float, int]], start: float, delay: float, rate: float
) -> None:
    """Exactly: chunk j arrives when the busiest stretch of the line before it ends, plus the delay."""
    slots = run(items, start, delay, rate)
    for j in range(len(slots)):
        backlog = [start + sum(s for _, s, _ in slots[: j + 1]) / rate]
        backlog += [
            now_i + sum(s for _, s, _ in slots[i : j + 1]) / rate
            for i, (now_i, _, _) in enumerate(slots[: j + 1])
        ]
        assert close_to(slots[j][2].deliver_at, max(backlog) + delay)


@given(arrivals, st.floats(0, 5), st.floats(0, 2))
def test_schedule_without_rate_delays_do_not_add_up(
    items: list[tuple[float, int]], start: float, delay: float
) -> None:
    for now, _, slot in run(items, start, delay, None):
        assert slot.deliver_at == max(now, start) + delay


def test_schedule_examples() -> None:
    assert schedule(10.0, 1000, 0.0, one_way_delay_s=0.05) == Slot(10.05, 10.0)
    assert schedule(0.0, 1000, 0.0, one_way_delay_s=0.05, rate_bytes_per_s=10_000) == pytest.approx(
        (0.15, 0.1)
    )
    # The line is still busy with the previous chunk until t=1: this one starts then.
    assert schedule(0.5, 1000, 1.0, one_way_delay_s=0.05, rate_bytes_per_s=10_000) == pytest.approx(
        (1.15, 1.1)
    )


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        DelayProxy("127.0.0.1", 1, one_way_delay_s=-1)
    with pytest.raises(ValueError):
        DelayProxy("127.0.0.1", 1, one_way_delay_s=0, rate_bytes_per_s=0)


# ----------------------------------------------------------------------------- real sockets


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def proxied(port: int, delay: float = D, **kw: float) -> AsyncIterator[DelayProxy]:
    proxy = DelayProxy("127.0.0.1", port, one_way_delay_s=delay, **kw)  # type: ignore[arg-type]
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(50_000):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def round_trip(port: int, payload: bytes, seed: int) -> bytes:
    """Send `payload` in writes of random sizes, half-close, and read until EOF at the same time."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(seed)

    async def send() -> None:
        view, at = memoryview(payload), 0
        while at < len(payload):
            n = rng.randint(1, 70_000)
            writer.write(view[at : at + n])
            await writer.drain()
            at += n
        writer.write_eof()

    _, got = await asyncio.wait_for(asyncio.gather(send(), reader.read()), TIMEOUT)
    writer.close()
    return got


async def test_large_payload_arrives_intact_and_in_order_both_ways() -> None:
    payload = random.Random(1).randbytes(4 * 1024 * 1024)
    async with serve(echo) as port, proxied(port) as proxy:
        assert await round_trip(proxy.port, payload, seed=2) == payload
    assert proxy.counters.bytes_up == proxy.counters.bytes_down == len(payload)


async def test_concurrent_connections_keep_their_own_bytes_and_are_counted() -> None:
    payloads = [random.Random(i).randbytes(200_000 + i * 1000) for i in range(8)]
    async with serve(echo) as port, proxied(port) as proxy:
        got = await asyncio.gather(*(round_trip(proxy.port, p, seed=i) for i, p in enumerate(payloads)))
    assert got == payloads
    assert proxy.counters.connections == len(payloads)
    assert proxy.counters.bytes_up == proxy.counters.bytes_down == sum(map(len, payloads))
    assert proxy.counters.resets == 0


async def test_client_eof_reaches_the_server_and_the_other_direction_stays_open() -> None:
    async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # returns only once the client's EOF has arrived
        writer.write(b"got:" + data)
        writer.close()

    async with serve(answer_after_eof) as port, proxied(port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"hello")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"got:hello"
        assert reader.at_eof()
        writer.close()


async def test_server_eof_reaches_the_client() -> None:
    async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        writer.write_eof()
        await reader.read()
        writer.close()

    async with serve(bye) as port, proxied(port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"bye"
        writer.close()


async def test_no_byte_arrives_before_its_delay() -> None:
    loop = asyncio.get_running_loop()
    one_way: list[float] = []

    async def stamp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Each line carries the client's send time (same process, same monotonic clock).
        while line := await reader.readline():
            one_way.append(loop.time() - float(line))
            writer.write(line)
            await writer.drain()
        writer.close()

    async with serve(stamp) as port, proxied(port) as proxy:
        started = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        round_trips = []
        for _ in range(5):
            sent = loop.time()
            writer.write(f"{sent!r}\n".encode())
            assert float(await asyncio.wait_for(reader.readline(), TIMEOUT)) == sent
            round_trips.append(loop.time() - sent)
            if len(round_trips) == 1:
                # A new connection: SYN + SYN-ACK first, then the request, then the answer.
                assert loop.time() - started >= 4 * D
        writer.close()
    assert len(one_way) == 5
    assert min(one_way) >= D
    assert min(round_trips) >= 2 * D


async def test_rate_cap_bounds_throughput() -> None:
    rate, size = 2_000_000.0, 200_000
    loop = asyncio.get_running_loop()
    received = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        received.set_result((loop.time(), len(data)))
        writer.close()

    async with serve(sink) as port, proxied(port, rate_bytes_per_s=rate) as proxy:
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = loop.time()
        writer.write(bytes(size))
        writer.write_eof()
        done_at, got = await asyncio.wait_for(received, TIMEOUT)
        writer.close()
    assert got == size
    assert done_at - started >= size / rate + D


async def test_a_reset_closes_both_sides() -> None:
    server_saw: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def wait_for_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
            server_saw.set_result("eof")
        except ConnectionError:
            server_saw.set_result("reset")
        writer.close()

    async with serve(wait_for_end) as port, proxied(port) as proxy:
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"partial")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # with SO_LINGER 0: an RST
        assert await asyncio.wait_for(server_saw, TIMEOUT) in ("eof", "reset")
        assert proxy.counters.resets == 1


async def test_an_unreachable_target_resets_the_client() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    async with proxied(dead) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        assert proxy.counters.resets == 1


async def test_close_ends_open_connections_and_stops_listening() -> None:
    async with serve(echo) as port:
        proxy = DelayProxy("127.0.0.1", port, one_way_delay_s=D)
        await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        await writer.drain()
        await asyncio.wait_for(proxy.close(), TIMEOUT)
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)


# ----------------------------------------------------------------------------- the threaded runner


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while chunk := self.request.recv(65536):
            self.request.sendall(chunk)
        self.request.shutdown(socket.SHUT_WR)


def test_running_proxy_serves_synchronous_callers() -> None:
    payload = random.Random(3).randbytes(500_000)
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with running_proxy("127.0.0.1", server.server_address[1], one_way_delay_s=D) as proxy:
                with socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as conn:

                    def send() -> None:
                        conn.sendall(payload)
                        conn.shutdown(socket.SHUT_WR)

                    sender = threading.Thread(target=send)
                    sender.start()
                    got = bytearray()
                    while chunk := conn.recv(65536):
                        got += chunk
                    sender.join()
                assert bytes(got) == payload
                counters = proxy.counters.copy()
                port = proxy.port
        finally:
            server.shutdown()
    assert counters.connections == 1
    assert counters.bytes_up == counters.bytes_down == len(payload)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
