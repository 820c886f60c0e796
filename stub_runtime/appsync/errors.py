"""The AppSync Events clients' errors, shared by the asyncio client (the dev server) and the
blocking one (the stub): what failed, typed by whose fault it is."""

from __future__ import annotations

from stub_runtime.errors import LivelambdaError, LocalProtocolError


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
