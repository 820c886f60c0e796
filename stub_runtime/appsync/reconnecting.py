"""The asyncio shell around `stub_runtime.reconnect.ReconnectPolicy` in persistent mode (the dev
server): one connection kept up, subscriptions restored after each reconnect, dialled only when the
policy says::

    await rc.run(["/livelambda/s1/req"], on_event, on_state=show)    # until rc.close()

Every dial goes through the policy (so it is counted, backed off and bounded) and an asyncio lock, so
two dials never overlap. The stub's on_demand counterpart, blocking, is `blocking.OnDemandConnection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stub_runtime.appsync.client import AppSyncEventsClient, Subscription
from stub_runtime.appsync.errors import DIAL_ERRORS, ConnectGiveUp
from stub_runtime.appsync.frames import Data
from stub_runtime.errors import LocalProtocolError
from stub_runtime.reconnect import Dial, PolicyStats, ReconnectPolicy, Wait

log = logging.getLogger("livelambda.appsync")


@dataclass(slots=True)  # the dev server's: not on the stub's cold start, where frames keep their records
class ConnectionState:
    """What a dashboard shows. `state`: "connecting" | "connected" | "backoff" | "stopped".

    `attempt` is the current dial's number since the last success; `attempts` counts every dial ever
    started; `retry_at` (the client's clock) and `retry_in_s` are set in "backoff"."""

    state: str
    attempt: int
    attempts: int
    at: float
    retry_at: float | None = None
    retry_in_s: float | None = None
    last_error: str | None = None
    endpoint: str | None = None


class ReconnectingClient:
    """Owns at most one AppSyncEventsClient at a time and (re)dials it under a ReconnectPolicy.

    `client_factory()` returns a new, unconnected AppSyncEventsClient. `clock` must be the clock the
    deadlines are given on (monotonic); `sleep` is injectable for tests.
    """

    def __init__(
        self,
        client_factory: Callable[[], AppSyncEventsClient],
        policy: ReconnectPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if policy.config.mode != "persistent":
            raise LocalProtocolError(
                "ReconnectingClient needs a ReconnectPolicy in 'persistent' mode "
                "(on_demand is the stub's: blocking.OnDemandConnection)"
            )
        self._factory = client_factory
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._client: AppSyncEventsClient | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._running = False
        self._run_task: asyncio.Task[Any] | None = None
        self._on_state: Callable[[ConnectionState], Any] | None = None
        self.last_error: BaseException | None = None
        self.endpoint: str | None = None
        self.state = ConnectionState("stopped", 0, 0, clock())
        self.callback_errors = 0
        self._subs: list[Subscription] = []
        self._callbacks: set[asyncio.Future[Any]] = set()  # on_event coroutines still running

    # ---------------------------------------------------------------------------- queries
    @property
    def client(self) -> AppSyncEventsClient | None:
        """The current open client, or None."""
        c = self._client
        return c if c is not None and c.is_open else None

    @property
    def stats(self) -> PolicyStats:
        return self.policy.stats

    # ---------------------------------------------------------------------------- waiting
    async def ensure_connected(self, deadline: float | None = None) -> AppSyncEventsClient:
        """The connection that `run()` keeps, waited for up to `deadline` (this object's clock) when
        there is none right now; raises ConnectGiveUp("deadline") then."""
        if self._closed:
            raise LocalProtocolError("ensure_connected() after close()")
        return await self._wait_persistent(deadline)

    async def _wait_persistent(self, deadline: float | None) -> AppSyncEventsClient:
        while True:
            client = self.client
            if client is not None:
                return client
            now = self._clock()
            timeout = None if deadline is None else deadline - now
            if timeout is not None and timeout <= 0:
                raise ConnectGiveUp(
                    "deadline",
                    self.state.retry_at,
                    now=now,
                    attempts=self.stats.attempts,
                    endpoint=self.endpoint,
                    last_error=self.last_error,
                )
            if self._client is not None:  # it died; run() has yet to notice: wait for the next one
                self._connected.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._connected.wait(), timeout)

    # ---------------------------------------------------------------------------- dialling
    async def _dial(
        self,
        action: Dial,
        *,
        channels: Sequence[str] = (),
    ) -> AppSyncEventsClient | None:
        """One dial, as the policy granted it (lock held). Returns the client, or None if it failed."""
        client = self._factory()
        self.endpoint = client.realtime_url
        self.policy.dial_started(self._clock())
        self._report("connecting", attempt=action.attempt)
        subs: list[Subscription] = []
        default = client.open_timeout_s + client.ack_timeout_s
        try:
            await client.connect(timeout_s=default)
            for channel in channels:
                subs.append(await client.subscribe(channel))
        except DIAL_ERRORS as exc:
            await client.close()
            self.policy.dial_failed(self._clock())
            self.last_error = exc
            log.info("AppSync dial %d failed: %s", action.attempt, exc)
            return None
        except BaseException:
            await client.close()
            self.policy.dial_failed(self._clock())
            raise
        self.policy.dial_succeeded(self._clock())
        self._client = client
        self._subs = subs
        self._connected.set()
        self._report("connected", attempt=action.attempt)
        return client

    async def _lost(self, client: AppSyncEventsClient, reason: BaseException | None) -> None:
        """Tell the policy (once) that the current connection ended."""
        if self._client is not client:
            return
        self._client = None
        self._connected.clear()
        if reason is not None:
            self.last_error = reason
        await client.close()
        self.policy.connection_lost(self._clock())

    # ---------------------------------------------------------------------------- persistent
    async def run(
        self,
        channels: Sequence[str],
        on_event: Callable[[str, Any], Any],
        *,
        on_state: Callable[[ConnectionState], Any] | None = None,
    ) -> None:
        """persistent mode: keep one connection with `channels` subscribed until `close()`.

        `on_event(channel, event)` is called for each decoded event (a coroutine result is awaited);
        its exceptions are logged and counted in `callback_errors`. `on_state(ConnectionState)` is
        called on every change: connecting (each attempt), connected, backoff (with the next retry
        time), stopped. A subscribe_error retries like a failed dial, at the policy's floor rate.
        """
        if self.policy.config.mode != "persistent":
            raise LocalProtocolError("run() needs a ReconnectPolicy in 'persistent' mode")
        if self._running:
            raise LocalProtocolError("run() is already running on this ReconnectingClient")
        self._running = True
        self._on_state = on_state
        self._run_task = asyncio.current_task()
        try:
            while not self._closed:
                now = self._clock()
                action = self.policy.next_action(now)
                if isinstance(action, Wait):
                    self._report("backoff", retry_at=action.until)
                    await self._sleep(max(0.0, action.until - now))
                    continue
                if not isinstance(action, Dial):  # Ready or GiveUp cannot happen in persistent mode
                    raise LocalProtocolError(f"persistent policy returned {action!r}")
                async with self._lock:
                    client = await self._dial(action, channels=channels)
                if client is None:
                    continue
                for sub in self._subs:  # events go to on_event as they are read, before any loss
                    sub.listen(functools.partial(self._hand_over, on_event, sub.channel))
                reason = await client.wait_closed()
                async with self._lock:
                    await self._lost(client, reason)
        except asyncio.CancelledError:
            if not self._closed:
                raise
        finally:
            self._running = False
            self._run_task = None
            client = self._client
            self._client = None
            if client is not None:
                await client.close()
            self._report("stopped")

    def _hand_over(self, on_event: Callable[[str, Any], Any], channel: str, data: Data) -> None:
        try:
            result = on_event(channel, data.event)
        except Exception:
            self._callback_failed(channel)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._callbacks.add(task)
            task.add_done_callback(functools.partial(self._callback_done, channel))

    def _callback_done(self, channel: str, task: asyncio.Future[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._callback_failed(channel, task.exception())

    def _callback_failed(self, channel: str, exc: BaseException | None = None) -> None:
        self.callback_errors += 1
        log.error("on_event failed for an event of %s", channel, exc_info=exc or True)

    def _report(self, state: str, *, attempt: int | None = None, retry_at: float | None = None) -> None:
        now = self._clock()
        err = self.last_error
        self.state = ConnectionState(
            state=state,
            attempt=attempt if attempt is not None else self.state.attempt,
            attempts=self.stats.attempts,
            at=now,
            retry_at=retry_at,
            retry_in_s=None if retry_at is None else max(0.0, retry_at - now),
            last_error=None if err is None or state == "connected" else f"{type(err).__name__}: {err}",
            endpoint=self.endpoint,
        )
        if self._on_state is not None:
            try:
                self._on_state(self.state)
            except Exception:
                log.exception("on_state callback failed")

    # ---------------------------------------------------------------------------- close
    async def close(self) -> None:
        """Stop `run()` (if running) and close the connection. The object is not reusable."""
        self._closed = True
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.close()
