"""Async AppSync Events client: one WebSocket connection, plus HTTP publish over a small pool of
kept-alive HTTP/1.1 connections (httpx, imported only when used: the stub's layer has no httpx).

    client = AppSyncEventsClient(http_url, realtime_url, ApiKeyAuth(key, host))
    await client.connect()
    sub = await client.subscribe("/livelambda/s1/*")
    await client.publish("/livelambda/s1/req", ['{"a":1}'])
    event = await sub.get()            # or: async for event in sub: ...
    await client.close()

The connection is dead when no frame arrived within `connectionTimeoutMs` (from connection_ack): the
watchdog then aborts it and every pending operation and subscription fails with `ConnectionLost`.
`wait_closed()` returns why it ended. This class never reconnects: `reconnecting.ReconnectingClient`
does, under a `ReconnectPolicy`.

With an auth that publishes over HTTP (IAM), `connect()` also opens HTTP_WARM pooled connections while
the WebSocket dials: on a real link a new TCP + TLS connection costs two round trips, which the first
results would otherwise pay. The pool is closed with the client (after its publishes in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import Auth
from stub_runtime.appsync.errors import (
    AppSyncConnectionError,
    ClientClosed,
    ConnectFailed,
    ConnectionLost,
    HttpPublishFailed,
    InvalidEvents,
    OperationTimeout,
    closed_before_ack,
    no_answer,
)
from stub_runtime.appsync.frames import AppSyncServiceError
from stub_runtime.appsync.publishing import (
    PublishResult,
    check_channel,
    default_tls_context,
    http_publish_answer,
    http_publish_request,
    merge,
    merge_reply,
    normalise_http_url,
    plan_publish,
    publish_frame,
    raise_reply,
    sorted_result,
)
from stub_runtime.appsync.ws_protocol import WebSocketProtocol, open_websocket
from stub_runtime.channels import InvalidChannel
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError

log = logging.getLogger("livelambda.appsync")
T = TypeVar("T")

HTTP_POOL = 8  # kept-alive HTTP connections at most: results, acks and heartbeats in flight at once
HTTP_WARM = 2  # opened on connect: a result and an ack, or a large result's two publishes, at once
HTTP_KEEPALIVE_S = 300.0  # an idle one is kept this long (a closed one is noticed before reuse)


_END = object()
_Sent = list[tuple[list[int], str, "asyncio.Future[f.ServerFrame]"]]  # publishes written, answers awaited


class Subscription:
    """Events of one subscription, decoded. `await sub.get()` or `async for event in sub`.

    When the subscription ends, `get()` raises (ConnectionLost if the connection died, ClientClosed
    after unsubscribe/close) and iteration stops (re-raising ConnectionLost, ending quietly otherwise).
    """

    def __init__(self, client: AppSyncEventsClient, channel: str, sub_id: str) -> None:
        self.client = client
        self.channel = channel
        self.id = sub_id
        self.active = False
        self.broadcast_errors: list[f.ServiceErrorDetail] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._end_exc: BaseException | None = None
        self._ended = False
        self._listener: Callable[[f.Data], None] | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} id={self.id[:8]} active={self.active}>"

    async def get_data(self) -> f.Data:
        """The next `Data` frame (decoded `event` and the `raw` JSON string)."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later call ends too
            raise self._end_exc or ClientClosed(f"subscription to {self.channel} ended")
        return item

    async def get(self) -> Any:
        return (await self.get_data()).event

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except ClientClosed:
            raise StopAsyncIteration from None

    def listen(self, listener: Callable[[f.Data], None]) -> None:
        """Hand every `Data` frame to `listener` as the connection reads it, instead of queueing it
        for `get()` (one task switch less an event, for a reader that only dispatches). Frames
        already queued go first."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _END:
                self._queue.put_nowait(_END)
                break
            listener(item)
        self._listener = listener

    def _deliver(self, data: f.Data) -> None:
        if self._listener is not None:
            self._listener(data)
        else:
            self._queue.put_nowait(data)

    def _end(self, exc: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self.active = False
            self._end_exc = exc
            self._queue.put_nowait(_END)


# ------------------------------------------------------------------------------------------ the client
def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


async def _gather(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Run all; once all are done, raise the first failure (none is left unretrieved)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for item in results:
        if isinstance(item, BaseException):
            raise item
    return results  # type: ignore[return-value]


class AppSyncEventsClient:
    """One AppSync Events connection. Not reusable: after `close()` or a loss, make a new one.

    - `http_url`: `https://{HTTP host}/event` (a bare `https://{host}` gets `/event` appended);
      `realtime_url`: `wss://{REALTIME host}/event/realtime`; `auth`: ApiKeyAuth / IamAuth / TokenAuth.
    - `open_timeout_s` bounds TCP + TLS + upgrade, `ack_timeout_s` the connection_ack and each
      subscribe/unsubscribe/publish answer, `http_timeout_s` each HTTP publish request.
    - liveness is AppSync's `ka` frames (no WebSocket pings, as AppSync clients do).
    - `silence_timeout_s`: declare the connection dead after this much silence when shorter than
      connectionTimeoutMs (300 s on AppSync).
    - `max_event_bytes`: events above it are not sent and come back as local failures (None: send
      anyway and let the service judge). `clock`: for `last_frame_at` / `is_stale` (monotonic).
    """

    def __init__(
        self,
        http_url: str,
        realtime_url: str,
        auth: Auth,
        *,
        open_timeout_s: float = 10.0,
        ack_timeout_s: float = 10.0,
        http_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        silence_timeout_s: float | None = None,
        max_event_bytes: int | None = f.MAX_EVENT_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http_url = normalise_http_url(http_url)
        self.realtime_url = realtime_url
        self.auth = auth
        self.open_timeout_s = open_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.http_timeout_s = http_timeout_s
        self.ssl_context = ssl_context
        self.silence_timeout_s = silence_timeout_s
        self.max_event_bytes = max_event_bytes
        self.clock = clock
        self.connection_timeout_ms: int | None = None
        self.connected_at: float | None = None
        self.last_frame_at: float | None = None
        self.last_error: f.Error | None = None
        self.stats = {"frames": 0, "keepalives": 0, "malformed": 0, "unroutable": 0, "broadcast_errors": 0}
        self._ws: WebSocketProtocol | None = None
        self._connecting: asyncio.Queue[str | None] | None = None  # frames until connection_ack
        self._pending: dict[str, asyncio.Future[f.ServerFrame]] = {}
        self._subs: dict[str, Subscription] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._done: asyncio.Event | None = None
        self._end_exc: BaseException | None = None
        self._state = "new"  # new -> connecting -> open -> closed
        self._http: Any = None  # httpx.AsyncClient, made on first use
        self._http_busy = 0  # HTTP publishes in flight
        self._http_closed = False
        self._http_tasks: set[asyncio.Future[Any]] = set()  # the warm-up, a deferred close

    def __repr__(self) -> str:
        return f"<AppSyncEventsClient {self.realtime_url} {self._state}>"

    # ---------------------------------------------------------------------------- state
    @property
    def state(self) -> str:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    @property
    def close_reason(self) -> BaseException | None:
        """Why the connection ended: a ConnectionLost, or None after `close()`."""
        return self._end_exc

    @property
    def timeout_s(self) -> float:
        """Silence after which the connection is dead: connectionTimeoutMs, or `silence_timeout_s`
        when that is shorter."""
        timeout = (self.connection_timeout_ms or f.DEFAULT_CONNECTION_TIMEOUT_MS) / 1000
        if self.silence_timeout_s is not None:
            timeout = min(timeout, self.silence_timeout_s)
        return timeout

    def is_stale(self, now: float | None = None) -> bool:
        """True when the socket must not be trusted: not open, or no frame within connectionTimeoutMs.

        A thawed Lambda sandbox calls this before it uses a connection kept from an earlier invocation.
        """
        if self._state != "open" or self.last_frame_at is None:
            return True
        now = self.clock() if now is None else now
        return now - self.last_frame_at > self.timeout_s

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection ends; returns the ConnectionLost, or None after `close()`."""
        if self._done is None:
            raise ClientClosed("wait_closed() before connect()")
        await self._done.wait()
        return self._end_exc

    # ---------------------------------------------------------------------------- connect
    async def connect(self, *, timeout_s: float | None = None) -> None:
        """Open the WebSocket, send connection_init, wait for connection_ack.

        `timeout_s` bounds the whole thing (default open_timeout_s + ack_timeout_s). Raises
        ConnectFailed, or AppSyncServiceError for a `connection_error` (e.g. UnauthorizedException).
        """
        if self._state != "new":
            raise ClientClosed(f"connect() on a client that is {self._state}: make a new client")
        self._state = "connecting"
        self._done = asyncio.Event()
        if self.auth.publish_over_http:
            self._spawn_http(self.warm_http())
        budget = self.open_timeout_s + self.ack_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._connect(), max(budget, 0.0))
        except BaseException as exc:
            self._state = "closed"
            self._end_exc = exc
            self._done.set()
            ws, self._ws = self._ws, None
            if ws is not None:
                ws.abort()
            if isinstance(exc, asyncio.TimeoutError):
                raise no_answer(self.realtime_url, budget) from None
            raise

    async def _connect(self) -> None:
        auth_headers = self.auth.headers(f.connect_body())
        self._connecting = asyncio.Queue()
        ws = await open_websocket(
            self.realtime_url,
            f.subprotocols(auth_headers),
            self._on_text,
            self._on_lost,
            timeout_s=self.open_timeout_s,
            max_size=4 * 1024 * 1024,
            ssl_context=self.ssl_context,
        )
        self._ws = ws
        if ws.subprotocol != f.SUBPROTOCOL:
            raise RemoteProtocolError(
                f"server at {self.realtime_url} selected subprotocol {ws.subprotocol!r}, "
                f"not {f.SUBPROTOCOL!r}: is this an AppSync Events endpoint?"
            )
        ws.send_text(f.ConnectionInit().encode())
        ack = None
        while ack is None:
            text = await self._connecting.get()
            if text is None:
                raise closed_before_ack(self.realtime_url, ws.close_code)
            ack = f.acked(f.parse_server_frame(text), self.realtime_url)
        if self._state != "connecting":  # close() was called meanwhile
            raise ClientClosed("the AppSync client was closed while it was connecting")
        self.connection_timeout_ms = ack.connection_timeout_ms
        self.connected_at = self.last_frame_at = self.clock()
        self._state = "open"
        early, self._connecting = self._connecting, None
        while not early.empty():  # frames that came with the ack (a first `ka`)
            self._on_text(early.get_nowait())
        self._tasks.append(asyncio.ensure_future(self._watchdog()))

    # ---------------------------------------------------------------------------- the connection's calls
    def _on_text(self, text: str | None) -> None:
        """A message, as the connection reads it (None: a binary one, which AppSync never sends)."""
        if self._connecting is not None:
            self._connecting.put_nowait(text)
            return
        if self._state != "open":
            return
        self.last_frame_at = self.clock()
        self.stats["frames"] += 1
        try:
            if text is None:
                raise RemoteProtocolError("a binary frame; AppSync Events frames are JSON text")
            frame = f.parse_server_frame(text)
        except RemoteProtocolError:
            self.stats["malformed"] += 1
            return
        try:
            self._dispatch(frame)
        except Exception as exc:  # a bug here must not leave waiters hanging
            log.exception("AppSync dispatch failed")
            self._lose(ConnectionLost(f"the AppSync reader failed: {exc!r}"))

    def _on_lost(self, code: int) -> None:
        if self._connecting is not None:
            self._connecting.put_nowait(None)
            return
        self._lose(ConnectionLost(f"AppSync closed the connection (code {code}); reconnect"))

    def _dispatch(self, frame: f.ServerFrame) -> None:
        if isinstance(frame, f.Data):
            sub = self._subs.get(frame.id)
            if sub is None:
                self.stats["unroutable"] += 1
            else:
                sub._deliver(frame)
        elif isinstance(frame, f.KeepAlive):
            self.stats["keepalives"] += 1
        elif isinstance(frame, f.BroadcastError):
            self.stats["broadcast_errors"] += 1
            sub = self._subs.get(frame.id)
            if sub is not None:
                sub.broadcast_errors.extend(frame.errors)
        elif isinstance(frame, f.Error) and frame.id is None:
            self.last_error = frame
        elif isinstance(frame, (f.ConnectionAck, f.ConnectionError)):
            self.stats["unroutable"] += 1
        else:
            fut = self._pending.get(frame.id)  # type: ignore[union-attr]
            if fut is None or fut.done():
                self.stats["unroutable"] += 1
            else:
                fut.set_result(frame)

    async def _watchdog(self) -> None:
        while self._state == "open":
            assert self.last_frame_at is not None
            delay = self.last_frame_at + self.timeout_s - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            # A thawed sandbox may have frames already read but not yet dispatched: let the reader run.
            for _ in range(3):
                await asyncio.sleep(0)
            if self.last_frame_at + self.timeout_s - self.clock() <= 0:
                self._lose(
                    ConnectionLost(
                        f"no frame from AppSync for {self.timeout_s:g}s (connectionTimeoutMs "
                        f"{self.connection_timeout_ms}): the connection is dead; reconnect"
                    )
                )
                return

    def _lose(self, exc: BaseException) -> None:
        """End the connection because it died: abort it, fail every waiter with `exc`."""
        self._finish(exc)
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.abort()

    def _finish(self, exc: BaseException | None) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        self._end_exc = exc
        failure = exc or ClientClosed("the AppSync client was closed")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(failure)
        self._pending.clear()
        for sub in self._subs.values():
            sub._end(exc)
        self._subs.clear()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._done is not None:
            self._done.set()

    def abort(self, reason: BaseException | None = None) -> None:
        """Drop the connection at once, without a closing handshake (for a dead or stale socket).
        Waiters fail with `reason` (default: ConnectionLost)."""
        if self._state == "new":
            self._state = "closed"
            return
        self._lose(reason or ConnectionLost("the connection was aborted; reconnect"))

    async def close(self) -> None:
        """Close the connection; pending operations fail with ClientClosed, subscriptions end."""
        if self._state == "new":
            self._state = "closed"
            await self._close_http()
            return
        self._finish(None)
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close(timeout_s=2.0)
        await self._close_http()

    # ---------------------------------------------------------------------------- request/reply
    def _require_open(self) -> WebSocketProtocol:
        if self._state != "open" or self._ws is None:
            if isinstance(self._end_exc, ConnectionLost):
                raise ConnectionLost(f"{self._end_exc} (the connection is already gone)")
            raise ClientClosed(f"the AppSync client is {self._state}: connect() first or make a new client")
        return self._ws

    def _send_request(self, frame_id: str, text: str, what: str) -> asyncio.Future[f.ServerFrame]:
        """Write a frame that AppSync answers by its id; the future gets the answer."""
        ws = self._require_open()
        fut: asyncio.Future[f.ServerFrame] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = fut
        try:
            ws.send_text(text)
        except ConnectionLost as exc:
            self._pending.pop(frame_id, None)
            lost = ConnectionLost(f"the connection broke while sending {what}: {exc}")
            self._lose(lost)
            raise (self._end_exc or lost) from None
        return fut

    async def _answer(
        self, frame_id: str, fut: asyncio.Future[f.ServerFrame], what: str, deadline: float
    ) -> f.ServerFrame:
        # A timer that fails the future, rather than wait_for (a second future and a task step more).
        timeout = OperationTimeout(f"AppSync did not answer {what} within {self.ack_timeout_s:g}s")
        timer = asyncio.get_running_loop().call_at(deadline, _fail, fut, timeout)
        try:
            return await fut
        finally:
            timer.cancel()
            self._forget(frame_id, fut)

    def _forget(self, frame_id: str, fut: asyncio.Future[f.ServerFrame]) -> None:
        self._pending.pop(frame_id, None)
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()  # retrieved: a loss fails every pending answer at once

    async def _request(self, frame_id: str, text: str, what: str) -> f.ServerFrame:
        fut = self._send_request(frame_id, text, what)
        return await self._answer(frame_id, fut, what, asyncio.get_running_loop().time() + self.ack_timeout_s)

    async def subscribe(self, channel: str) -> Subscription:
        """Subscribe and wait for subscribe_success; a subscribe_error raises AppSyncServiceError."""
        check_channel(channel, subscribe=True)
        self._require_open()
        frame = f.Subscribe(channel, self.auth.headers(f.subscribe_body(channel)))
        sub = Subscription(self, channel, frame.id)
        self._subs[frame.id] = sub
        what = f"the subscription to {channel}"
        try:
            reply = await self._request(frame.id, frame.encode(), what)
            raise_reply(reply, what)
        except BaseException:
            self._subs.pop(frame.id, None)
            raise
        sub.active = True
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Unsubscribe and wait for unsubscribe_success (an early unsubscribe may be ignored by AppSync).
        A subscription of a connection that is already gone needs nothing: this returns at once."""
        if sub.client is not self:
            raise LocalProtocolError("unsubscribe() with a subscription of another client")
        if not sub.active or self._state != "open":
            return
        what = f"unsubscribing from {sub.channel}"
        reply = await self._request(sub.id, f.Unsubscribe(sub.id).encode(), what)
        raise_reply(reply, what)
        self._subs.pop(sub.id, None)
        sub._end(None)

    # ---------------------------------------------------------------------------- publish
    async def publish(self, channel: str, events: Sequence[str]) -> PublishResult:
        """Publish JSON-encoded events, 5 a request. Over the WebSocket, except with an auth whose
        `publish_over_http` is set (IAM), which goes over HTTP. Oversized events are not sent and come
        back in `failed` with `local=True`; a request-level error raises AppSyncServiceError."""
        if self.auth.publish_over_http:
            return await self.publish_http(channel, events)
        return await self.publish_ws(channel, events)

    async def publish_ws(self, channel: str, events: Sequence[str]) -> PublishResult:
        return await self._collect(channel, *self._send_publishes(channel, events))

    def publish_nowait(self, channel: str, events: Sequence[str]) -> asyncio.Future[PublishResult]:
        """`publish`, with every frame written before this returns; the future gets the result. For a
        caller inside a protocol callback (the dev server publishes a result from the Runtime API's)."""
        if self.auth.publish_over_http:
            return asyncio.ensure_future(self.publish_http(channel, events))
        return asyncio.ensure_future(self._collect(channel, *self._send_publishes(channel, events)))

    def _send_publishes(self, channel: str, events: Sequence[str]) -> tuple[PublishResult, _Sent]:
        batches, result = plan_publish(channel, events, self.max_event_bytes)
        self._require_open()
        what = f"a publish to {channel}"
        sent: _Sent = []
        try:
            for batch in batches:
                frame = publish_frame(self.auth, channel, [events[i] for i in batch])
                sent.append((batch, frame.id, self._send_request(frame.id, frame.encode(), what)))
        except BaseException:
            for _, frame_id, fut in sent:
                self._forget(frame_id, fut)
            raise
        return result, sent

    async def _collect(self, channel: str, result: PublishResult, sent: _Sent) -> PublishResult:
        what = f"a publish to {channel}"
        deadline = asyncio.get_running_loop().time() + self.ack_timeout_s
        try:
            for batch, frame_id, fut in sent:
                merge_reply(result, batch, await self._answer(frame_id, fut, what, deadline), what)
        finally:
            for _, frame_id, fut in sent:  # after a failure, the rest is not waited for
                self._forget(frame_id, fut)
        return sorted_result(result)

    async def publish_http(self, channel: str, events: Sequence[str]) -> PublishResult:
        """POST /event with the auth headers, over the kept-alive pool; needs no WebSocket connection.
        Raises ClientClosed after `close()`."""
        batches, result = plan_publish(channel, events, self.max_event_bytes)
        http = self._http_client()
        replies = await _gather(self._post(http, channel, [events[i] for i in b]) for b in batches)
        for batch, (successful, failed) in zip(batches, replies, strict=True):
            merge(result, batch, successful, failed)
        return sorted_result(result)

    async def _post(self, http: Any, channel: str, payload: list[str]) -> f.PublishEntries:
        import httpx

        body, headers = http_publish_request(self.auth, channel, payload)
        self._http_busy += 1
        try:
            for attempt in (1, 2):
                try:
                    response = await http.post(self.http_url, content=body, headers=headers)
                    break
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    # A kept connection the server closed as the request went: once more, on a new one.
                    if attempt == 2:
                        raise HttpPublishFailed(f"HTTP publish to {self.http_url} failed: {exc!r}") from exc
                except httpx.HTTPError as exc:  # refused, TLS, timeouts
                    raise HttpPublishFailed(f"HTTP publish to {self.http_url} failed: {exc!r}") from exc
        finally:
            self._http_busy -= 1
            if self._http_closed and not self._http_busy:
                self._spawn_http(self._close_http())
        return http_publish_answer(self.http_url, channel, response.status_code, response.content)

    def _http_client(self) -> Any:
        if self._http_closed:
            raise ClientClosed("the AppSync client was closed: make a new client")
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                verify=self.ssl_context or default_tls_context(),  # what the WebSocket trusts
                limits=httpx.Limits(
                    max_connections=HTTP_POOL,
                    max_keepalive_connections=HTTP_POOL,
                    keepalive_expiry=HTTP_KEEPALIVE_S,
                ),
                timeout=self.http_timeout_s,
            )
        return self._http

    async def warm_http(self, connections: int = HTTP_WARM) -> None:
        """Open `connections` pooled HTTP connections, best effort; `connect()` starts this for an auth
        that publishes over HTTP. Each with `OPTIONS /event`: no body, no auth, nothing published or
        billed (a CORS preflight); whatever the answer, the connection stays in the pool."""
        if self._http_closed:
            return
        http = self._http_client()

        async def one() -> None:
            with contextlib.suppress(Exception):
                await http.request("OPTIONS", self.http_url)

        await asyncio.gather(*(one() for _ in range(connections)))

    def _spawn_http(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._http_tasks.add(task)
        task.add_done_callback(self._http_tasks.discard)

    async def _close_http(self) -> None:
        """Close the pool with the client; publishes in flight end first (the last one closes it)."""
        self._http_closed = True
        current = asyncio.current_task()
        for task in list(self._http_tasks):
            if task is not current:
                task.cancel()  # the warm-up
        if self._http is None or self._http_busy:
            return
        http, self._http = self._http, None
        await http.aclose()


__all__ = [
    "AppSyncConnectionError",
    "AppSyncEventsClient",
    "AppSyncServiceError",
    "ClientClosed",
    "ConnectFailed",
    "ConnectionLost",
    "HttpPublishFailed",
    "InvalidChannel",
    "InvalidEvents",
    "OperationTimeout",
    "PublishResult",
    "Subscription",
    "check_channel",
]
