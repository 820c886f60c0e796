"""Bounds on what a client may hold open on the servers livelambda runs: the emulator's HTTP endpoints
and realtime WebSocket, the dev server's dashboard, and every worker's Runtime API.

Every one of them listens on loopback, where any local process can connect; the file descriptors they
would hold are the ones the sandboxes and workers need. So a request must arrive whole in time, a
WebSocket must say `connection_init` in time, and connections beyond a cap are refused at once, with
one log line per burst. What waits legitimately is never cut: a request that has arrived (a Lambda
invoke running 15 minutes, a worker's `/invocation/next` long poll, the dashboard's live feed) and an
initialized WebSocket (it gets `ka` frames).

    limits = ServerLimits.from_env()     # LIVELAMBDA_REQUEST_TIMEOUT_S, LIVELAMBDA_INIT_TIMEOUT_S,
                                         # LIVELAMBDA_MAX_CONNECTIONS (tests set short ones)
    refused = BurstLog(log, "cloud: {count} connection(s) refused over the cap, the last from {remote}")
    refused.note("127.0.0.1:5123")       # the first of a burst is logged at once, the rest counted
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

REQUEST_TIMEOUT_ENV = "LIVELAMBDA_REQUEST_TIMEOUT_S"
INIT_TIMEOUT_ENV = "LIVELAMBDA_INIT_TIMEOUT_S"
MAX_CONNECTIONS_ENV = "LIVELAMBDA_MAX_CONNECTIONS"

DEFAULT_REQUEST_TIMEOUT_S = 10.0  # headers and body of one request, from its first byte (or the connect)
DEFAULT_INIT_TIMEOUT_S = 10.0  # from the WebSocket upgrade to `connection_init`
# A worker's Runtime API serves one runtime, which holds one or two connections: this leaves room for a
# curl by hand and refuses a flood long before it costs anything.
RUNTIME_API_MAX_CONNECTIONS = 16
_REPORT_EVERY_S = 10.0  # at most one line per this long while refusals go on


def default_max_connections() -> int:
    """A quarter of this process's descriptor limit (the rest: sandboxes, workers, pipes, files),
    between 64 and 1024: 256 with Linux's usual 1024, 64 with macOS's 256."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1024
    return max(64, min(1024, soft // 4))


@dataclass(frozen=True)
class ServerLimits:
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S
    max_connections: int = field(default_factory=default_max_connections)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerLimits:
        """The defaults, overridden by the LIVELAMBDA_* variables (inherited by the processes we start:
        `livelambda dev --cloud` passes them to its cloud)."""
        env = os.environ if environ is None else environ
        return cls(
            request_timeout_s=_positive(env, REQUEST_TIMEOUT_ENV, float, DEFAULT_REQUEST_TIMEOUT_S),
            init_timeout_s=_positive(env, INIT_TIMEOUT_ENV, float, DEFAULT_INIT_TIMEOUT_S),
            max_connections=int(_positive(env, MAX_CONNECTIONS_ENV, int, default_max_connections())),
        )


def _positive(env: Mapping[str, str], name: str, kind: type[float] | type[int], default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a positive number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a positive number")
    return value


class BurstLog:
    """One log line for a burst of the same event (a connection refused over a cap, one closed for a
    request that never arrived): the first at once, then at most one every 10 s with the count since,
    so a flood does not flood the log too. `message` is formatted with `count` and `remote`."""

    def __init__(self, log: logging.Logger, message: str) -> None:
        self.log = log
        self.message = message
        self.total = 0
        self._unreported = 0
        self._reported_at: float | None = None

    def note(self, remote: str) -> None:
        self.total += 1
        self._unreported += 1
        now = time.monotonic()
        if self._reported_at is not None and now - self._reported_at < _REPORT_EVERY_S:
            return
        self.log.warning(self.message.format(count=self._unreported, remote=remote))
        self._unreported = 0
        self._reported_at = now


class RequestDeadline:
    """The one timer a server connection keeps while a request is arriving: `start` on its first
    byte (or the connect) unless one runs already, `stop` once it is whole; `on_expiry` runs if it
    never is."""

    def __init__(self, seconds: float, on_expiry: Callable[[], None]) -> None:
        self.seconds = seconds
        self._on_expiry = on_expiry
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._on_expiry()
