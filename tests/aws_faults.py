"""Fail `livelambda aws up` right after its Nth AWS call, to prove that `aws down` puts everything back
whatever the point of failure. Every boto3 call goes through `BaseClient._make_api_call`; this wraps
it, counts the calls that returned, and after the Nth one raises or kills the process (SIGKILL: no
cleanup runs, as when a laptop dies).

    python -m tests.aws_faults N raise|kill  -- ARGS...   runs `livelambda ARGS...` with the fault
    install(N, mode)                                      the same, in this process; returns the counter
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


class InjectedFault(RuntimeError):
    pass


class CallCounter:
    def __init__(self, fail_after: int | None, mode: str) -> None:
        self.fail_after = fail_after
        self.mode = mode
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def returned(self, operation: str) -> None:
        with self._lock:
            self.calls.append(operation)
            hit = self.fail_after is not None and len(self.calls) == self.fail_after
        if hit:
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedFault(f"injected failure after AWS call {self.fail_after} ({operation})")


def install(fail_after: int | None, mode: str = "raise") -> tuple[CallCounter, Any]:
    """Wrap botocore's call path; returns the counter and a function that unwraps it."""
    from botocore.client import BaseClient

    counter = CallCounter(fail_after, mode)
    original = BaseClient._make_api_call

    def wrapped(self: Any, operation_name: str, api_params: Any) -> Any:
        answer = original(self, operation_name, api_params)
        target = api_params.get("FunctionName") or api_params.get("Name") or ""
        counter.returned(f"{self.meta.service_model.service_name}.{operation_name}({target})")
        return answer

    BaseClient._make_api_call = wrapped  # type: ignore[method-assign]

    def uninstall() -> None:
        BaseClient._make_api_call = original  # type: ignore[method-assign]

    return counter, uninstall


def main(argv: list[str]) -> None:
    fail_after, mode, dashdash, *args = argv
    assert dashdash == "--" and mode in ("raise", "kill")
    install(int(fail_after), mode)
    from devserver.cli import main as livelambda

    livelambda(args)


if __name__ == "__main__":
    main(sys.argv[1:])
