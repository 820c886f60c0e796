"""The Lambda handler of a function in live mode: `stub_runtime.handler.handler`.

It forwards the invocation to `livelambda dev` and returns what the developer's handler returned,
or raises what it raised (same errorType, errorMessage, stackTrace), or a typed livelambda error.
"""

from __future__ import annotations

from typing import Any

from stub_runtime.errors import LivelambdaError
from stub_runtime.sandbox import HandlerError, Sandbox
from stub_runtime.settings import StubSettings

_sandbox: Sandbox | None = None


def handler(event: Any, context: Any) -> Any:
    global _sandbox
    try:
        if _sandbox is None:
            _sandbox = Sandbox(StubSettings.from_env())
        return _sandbox.invoke(event, context)
    except HandlerError as exc:
        raise _lambda_error(exc.error_type, exc.message, exc.stack_trace) from None
    except LivelambdaError as exc:
        raise _lambda_error(exc.error_type, str(exc), []) from None


def _lambda_error(error_type: str, message: str, stack_trace: list[str]) -> Exception:
    """An exception the Lambda runtime reports with exactly these errorType/errorMessage/stackTrace.

    The Python runtime (awslambdaric) reports a FaultException's fields verbatim; where it is not
    importable, an exception class named after the error type comes closest."""
    try:
        from awslambdaric.lambda_runtime_exception import FaultException
    except ImportError:
        return type(error_type.rsplit(".", 1)[-1], (Exception,), {})(message)
    return FaultException(error_type, message, stack_trace)
