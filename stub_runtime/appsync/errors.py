"""The AppSync Events clients' errors, shared by the asyncio client (the dev server) and the
blocking one (the stub): what failed, typed by whose fault it is."""

from __future__ import annotations

from stub_runtime.errors import LivelambdaError, LocalProtocolError, RemoteProtocolError
from stub_runtime.reconnect import GiveUp


class AppSyncConnectionError(LivelambdaError):
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
    "circuit_open": "recent connection attempts kept failing, so livelambda stops dialling for a "
    "cool-down instead of piling up connections",
    "attempts_exhausted": "every connection attempt allowed for this invocation failed",
    "deadline": "not enough time is left before the invocation's deadline to try again",
}


class ConnectGiveUp(AppSyncConnectionError):
    """No connection for this demand, by the policy's decision. `reason` is the policy's
    ("attempts_exhausted", "deadline", "circuit_open"), `retry_at` (clock of the ReconnectingClient)
    the earliest next dial, `last_error` the last dial's failure (e.g. a ConnectFailed with
    reason "timeout": a function in a VPC without a route to AppSync)."""

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
    ) -> None:
        self.reason = reason
        self.retry_at = retry_at
        self.attempts = attempts
        self.endpoint = endpoint
        self.last_error = last_error
        where = f" at {endpoint}" if endpoint else ""
        msg = f"gave up connecting to AppSync{where}: {_REASONS.get(reason, reason)}"
        msg += f" ({attempts} attempt(s) in total)"
        if last_error is not None:
            msg += f"; last error: {last_error}"
        if retry_at is not None:
            msg += f". The next attempt is allowed in {max(0.0, retry_at - now):.1f}s"
        super().__init__(msg)


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
    action: GiveUp, now: float, *, attempts: int, endpoint: str | None, last_error: BaseException | None
) -> ConnectGiveUp:
    """The error for a policy's GiveUp: CircuitOpen when the breaker said no."""
    cls = CircuitOpen if action.reason == "circuit_open" else ConnectGiveUp
    return cls(
        action.reason, action.retry_at, now=now, attempts=attempts, endpoint=endpoint, last_error=last_error
    )


# What a failed dial may raise, in either client (anything else is a bug and propagates). TimeoutError
# (asyncio's too, on 3.11+) is an OSError.
DIAL_ERRORS = (AppSyncConnectionError, RemoteProtocolError, OSError)
