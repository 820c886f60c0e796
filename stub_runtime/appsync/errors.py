"""The AppSync Events clients' errors, shared by the asyncio client (the dev server) and the
blocking one (the stub): what failed, typed by whose fault it is."""

from __future__ import annotations

from stub_runtime.errors import ConnectionFault, LocalProtocolError, RemoteProtocolError
from stub_runtime.reconnect import FailureKind, GiveUp


class AppSyncConnectionError(ConnectionFault):
    """The transport to AppSync failed (not a protocol violation by either side)."""

    error_type = "Livelambda.AppSyncConnectionError"


class ConnectFailed(AppSyncConnectionError):
    """Opening the connection failed. `reason`: "timeout" (no answer: e.g. a VPC without NAT),
    "unreachable" (refused, DNS), "unavailable" (HTTP 5xx/429 on upgrade: retry), "rejected" (other
    HTTP status: retrying will not help), "handshake", "closed" (closed before connection_ack)."""

    error_type = "Livelambda.AppSyncConnectFailed"

    def __init__(self, message: str, *, reason: str, endpoint: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.endpoint = endpoint


class ConnectionLost(AppSyncConnectionError):
    """An open connection died (closed by the server, or silent for longer than connectionTimeoutMs)."""

    error_type = "Livelambda.AppSyncConnectionLost"


class OperationTimeout(AppSyncConnectionError):
    """The server did not answer a subscribe/unsubscribe/publish in time."""

    error_type = "Livelambda.AppSyncTimeout"


class HttpPublishFailed(AppSyncConnectionError):
    """The HTTP publish request did not get an answer (network error or timeout)."""

    error_type = "Livelambda.AppSyncHttpPublishFailed"


class ClientClosed(LocalProtocolError):
    """The client was closed (by its owner) or never connected: connect a new one."""

    error_type = "Livelambda.AppSyncClientClosed"


class InvalidEvents(LocalProtocolError):
    error_type = "Livelambda.InvalidEvents"


_REASONS = {
    "circuit_open": "no answer from AppSync on this sandbox's last dial, so it fails invocations fast "
    "for a cool-down instead of waiting on another",
    "timed_out": "no answer",
    "attempts_exhausted": "every connection attempt allowed for this invocation failed",
    "deadline": "not enough time is left before the invocation's deadline to try again",
}


class ConnectGiveUp(AppSyncConnectionError):
    """No connection for this demand, by the policy's decision. `reason` is the policy's
    ("timed_out", "circuit_open", "attempts_exhausted", "deadline"), `retry_at` (clock of the shell)
    the earliest next dial, `last_error` the last dial's failure (e.g. a ConnectFailed with
    reason "timeout": a function in a VPC without a route to AppSync), `dials` and `waited_s` what this
    demand spent: its dials, and the seconds from its first dial to the give-up. `detail` says it in
    one clause, for the invocation's error."""

    error_type = "Livelambda.AppSyncGaveUp"

    def __init__(
        self,
        reason: str,
        retry_at: float | None,
        *,
        now: float,
        attempts: int,
        endpoint: str | None,
        last_error: BaseException | None,
        dials: int = 0,
        waited_s: float = 0.0,
    ) -> None:
        self.reason = reason
        self.retry_at = retry_at
        self.attempts = attempts
        self.endpoint = endpoint
        self.last_error = last_error
        self.dials = dials
        self.waited_s = waited_s
        self.retry_in_s = None if retry_at is None else max(0.0, retry_at - now)
        where = f" at {endpoint}" if endpoint else ""
        total = f"{attempts} attempt(s) in total"
        super().__init__(f"gave up connecting to AppSync{where}: {self.detail} ({total})")

    @property
    def detail(self) -> str:
        """What happened, without the endpoint (the caller names it)."""
        last = self.last_error
        if self.reason == "timed_out":
            text = f"no answer from AppSync after {self.dials} dial(s) over {self.waited_s:.1f} s"
            if self.retry_in_s:  # why the next invocations fail fast, and for how long
                text += f"; the next dial is allowed in {self.retry_in_s:.1f} s"
            return text
        if self.reason == "circuit_open":  # only a timed-out dial opens it: the last error says no more
            return f"{_REASONS['circuit_open']} ({self.retry_in_s or 0.0:.1f} s left)"
        text = _REASONS.get(self.reason, self.reason)
        if self.dials:
            text = f"{self.dials} dial(s) over {self.waited_s:.1f} s failed: {text}"
        return text + (f"; the last: {last}" if last is not None else "")


class CircuitOpen(ConnectGiveUp):
    """The breaker is open: the demand failed fast, without dialling."""

    error_type = "Livelambda.AppSyncCircuitOpen"


# The failures of opening a connection, worded once for both clients.
def upgrade_refused(url: str, status: int) -> ConnectFailed:
    if status >= 500 or status == 429:
        msg, reason = "is unavailable or throttling; retry later", "unavailable"
    else:
        msg, reason = "refused it: check the endpoint URL and the credentials", "rejected"
    return ConnectFailed(
        f"AppSync answered the WebSocket upgrade at {url} with HTTP {status}: the service {msg}",
        reason=reason,
        endpoint=url,
    )


def handshake_failed(url: str, exc: BaseException) -> ConnectFailed:
    return ConnectFailed(f"WebSocket handshake with {url} failed: {exc}", reason="handshake", endpoint=url)


def no_answer(url: str, seconds: float) -> ConnectFailed:
    return ConnectFailed(
        f"no answer from AppSync at {url} within {seconds:.1f}s (is the endpoint reachable from here?)",
        reason="timeout",
        endpoint=url,
    )


def unreachable(url: str, exc: BaseException) -> ConnectFailed:
    return ConnectFailed(f"cannot reach AppSync at {url}: {exc}", reason="unreachable", endpoint=url)


def closed_before_ack(url: str, code: int | None) -> ConnectFailed:
    return ConnectFailed(
        f"AppSync closed the connection before connection_ack (code {code}): "
        "check the credentials and the endpoint",
        reason="closed",
        endpoint=url,
    )


def retryable(exc: BaseException) -> bool:
    """A rejection that another dial will not fix (bad key, wrong URL) ends the demand at once."""
    from stub_runtime.appsync.frames import AppSyncServiceError

    if isinstance(exc, AppSyncServiceError):
        return False
    return not (isinstance(exc, ConnectFailed) and exc.reason == "rejected")


def give_up_error(
    action: GiveUp,
    now: float,
    *,
    attempts: int,
    endpoint: str | None,
    last_error: BaseException | None,
    dials: int = 0,
    waited_s: float = 0.0,
) -> ConnectGiveUp:
    """The error for a policy's GiveUp: CircuitOpen when the breaker said no."""
    cls = CircuitOpen if action.reason == "circuit_open" else ConnectGiveUp
    return cls(
        action.reason,
        action.retry_at,
        now=now,
        attempts=attempts,
        endpoint=endpoint,
        last_error=last_error,
        dials=dials,
        waited_s=waited_s,
    )


def failure_kind(exc: BaseException) -> FailureKind:
    """How the reconnect policy takes a failed dial: "timeout" when nothing answered in time (a black
    hole: the next dial would wait as long), "refused" when something did (an HTTP status, a refused
    or reset connection, a close), which a retry soon may well fix."""
    if isinstance(exc, ConnectFailed):
        return "timeout" if exc.reason == "timeout" else "refused"
    return "timeout" if isinstance(exc, TimeoutError) else "refused"


# What a failed dial may raise, in either client (anything else is a bug and propagates). TimeoutError
# (asyncio's too, on 3.11+) is an OSError.
DIAL_ERRORS = (AppSyncConnectionError, RemoteProtocolError, OSError)
