"""The errors a live invocation can end with that are livelambda's own (not the handler's).

Each becomes the Lambda error the caller sees: `errorType` is the class's `error_type`, the message
says what happened and what to do.
"""

from __future__ import annotations

from stub_runtime.errors import CallerFault, ConnectionFault, DevServerFault, HandlerFault, LivelambdaError


class DevServerNotRunning(DevServerFault):
    error_type = "Livelambda.DevServerNotRunning"

    def __init__(self, session: str, waited_s: float) -> None:
        super().__init__(
            f"livelambda dev is not running for session {session!r}: no dev server acknowledged the "
            f"invocation within {waited_s:.1f} s. Start it with `make dev` (or `livelambda dev`), "
            "or run `livelambda aws down` to put the function's own code back."
        )


class DevServerLost(DevServerFault):
    error_type = "Livelambda.DevServerLost"

    def __init__(self, request_id: str, silent_s: float) -> None:
        super().__init__(
            f"the livelambda dev server went silent while running request {request_id} (no heartbeat "
            f"for {silent_s:.1f} s): it was stopped, crashed or lost its connection. The handler may or "
            "may not have finished on your machine; check the terminal running `livelambda dev`."
        )


class EndpointUnreachable(ConnectionFault):
    error_type = "Livelambda.EndpointUnreachable"

    def __init__(self, endpoint: str, detail: str, *, in_vpc: bool = False, vpc_detail: str = "") -> None:
        message = f"cannot reach the AppSync Events endpoint {endpoint}: {detail}."
        if in_vpc:
            where = f" ({vpc_detail})" if vpc_detail not in ("", "1", "true") else ""
            message += (
                f" This function runs in a VPC{where}; its subnets need a route to the internet "
                "through a NAT gateway (AppSync Events has no VPC endpoint). Add one, or run "
                "`livelambda aws up --vpc detach` to run the function outside the VPC while live."
            )
        else:
            message += " Check the function's network access and that the AppSync API still exists."
        super().__init__(message)


class AppSyncRejected(CallerFault):
    error_type = "Livelambda.AppSyncRejected"

    def __init__(self, endpoint: str, detail: str) -> None:
        super().__init__(
            f"the AppSync Events API at {endpoint} refused the stub: {detail}. Its API key may have "
            "expired or the API been deleted; run `livelambda aws up` again to renew the settings."
        )


class DeadlineExceeded(HandlerFault):
    error_type = "Livelambda.DeadlineExceeded"

    def __init__(self, request_id: str, timeout_s: float) -> None:
        super().__init__(
            f"request {request_id} was still running on the dev server when the function's "
            f"{timeout_s:.2f} s timeout came; raise the function's timeout or speed up the handler."
        )


class Rejected(DevServerFault):
    error_type = "Livelambda.Rejected"


# What every livelambda error adds once the invocation may have reached the dev server: the handler
# may then have run on the laptop, and a caller that retries should know it.
MAY_HAVE_RUN = (
    " The invocation had already been sent to the dev server, so the handler may have run there; "
    "check the terminal running `livelambda dev` (or its dashboard) before retrying."
)
# These say it in their own words already (a handler's fault: it ran; its error is its own).
_SAYS_IT = (HandlerFault, DevServerLost, Rejected)


def after_sending(exc: LivelambdaError) -> LivelambdaError:
    """`exc`, its message saying the handler may have run (unless it says so already)."""
    if not isinstance(exc, _SAYS_IT) and MAY_HAVE_RUN not in str(exc):
        exc.args = (f"{exc}{MAY_HAVE_RUN}", *exc.args[1:])
    return exc
