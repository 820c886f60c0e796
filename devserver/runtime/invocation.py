"""One invocation as the Runtime API sees it, and its outcome, with Lambda's own error shapes."""

from __future__ import annotations

import functools
import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from devserver.runtime.launcher import LaunchKind

Status = Literal["ok", "handler_error", "init_error", "timeout", "crashed"]

# Lambda's limit on a synchronous response (the request limit is 6,291,456 bytes).
MAX_RESPONSE_BYTES = 6_291_556


def new_request_id() -> str:
    return str(uuid.uuid4())


def new_trace_id() -> str:
    """An X-Ray trace header as Lambda sends it (awslambdaric crashes without one)."""
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()};Parent={os.urandom(8).hex()};Sampled=0"


def function_arn(name: str, region: str = "us-east-1", account: str = "000000000000") -> str:
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


@dataclass
class InvocationRequest:
    """What the runtime receives from `GET /invocation/next`.

    `deadline_ms` (wall-clock epoch ms) is an outside cap, e.g. the real Lambda's deadline in live mode.
    The function's own timeout always applies too, counted from the moment the runtime gets the event
    (so a cold start does not eat into it, as in Lambda); the runtime sees the earlier of the two.
    `timeout_s` replaces the configured timeout (live mode: the deployed function's, less the way
    back) and `timeout_note` says why in the `Sandbox.Timedout` message.
    `invoked_function_arn` defaults to the function's ARN in the worker's region.
    `on_result` is called with the outcome the moment it is known (the runtime answered, the time ran
    out, the process died), before the invocation's bookkeeping: the live dev server publishes the
    result from there, a loop step sooner. It gets the very object `invoke` then returns.
    """

    payload: bytes
    request_id: str = field(default_factory=new_request_id)
    deadline_ms: int | None = None
    timeout_s: float | None = None
    timeout_note: str | None = None
    invoked_function_arn: str | None = None
    trace_id: str = field(default_factory=new_trace_id)
    client_context: str | None = None
    cognito_identity: str | None = None
    on_result: Callable[[InvocationOutcome], None] | None = field(default=None, repr=False, compare=False)


@dataclass
class InvocationOutcome:
    request_id: str
    status: Status
    payload: bytes  # the response, or Lambda's error JSON {"errorMessage","errorType","stackTrace"}
    error_type: str | None
    logs: str  # what the process wrote to stdout/stderr during this invocation (and its init)
    duration_ms: float  # from handing the event to the runtime until its answer
    init_duration_ms: float | None  # cold start only: process start until it asked for work
    worker_id: str
    cold: bool
    max_memory_mb: int | None = None  # peak resident memory of the worker process
    logs_cut_bytes: int = 0  # how much log output was left out of `logs`
    generation: int = 0  # the code generation its worker loaded (the dev server's reloads)
    launcher: LaunchKind | None = None  # how its worker started; None when none could

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @functools.cached_property
    def value(self) -> Any:
        """The payload parsed (the response, or Lambda's error dict); its text if it is not JSON, None
        if it is empty. Parsed once, by whoever reads it first: a 6 MB response costs one parse."""
        if not self.payload:
            return None
        try:
            return json.loads(self.payload)
        except ValueError:
            return self.payload.decode("utf-8", "replace")

    def error(self) -> dict[str, object]:
        """The error JSON as a dict ({} when the outcome is not an error or its body is not JSON)."""
        value = None if self.ok else self.value
        return value if isinstance(value, dict) else {}


def error_payload(error_type: str, message: str, stack_trace: list[str] | None = None) -> bytes:
    body: dict[str, object] = {"errorType": error_type, "errorMessage": message}
    if stack_trace is not None:
        body["stackTrace"] = stack_trace
    return json.dumps(body).encode()


def timeout_payload(request_id: str, seconds: float, note: str | None = None) -> bytes:
    message = f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds"
    return error_payload("Sandbox.Timedout", f"{message}: {note}" if note else message)


def exit_payload(request_id: str, returncode: int) -> bytes:
    return error_payload(
        "Runtime.ExitError",
        f"RequestId: {request_id} Error: Runtime exited with error: {describe_exit(returncode)}",
    )


# Go's wording, which Lambda's messages use ("signal: segmentation fault", "exit status 1").
_SIGNAL_TEXT = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGPIPE: "broken pipe",
}


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"signal: {-returncode}"
        return "signal: " + _SIGNAL_TEXT.get(sig, sig.name)
    return f"exit status {returncode}"
