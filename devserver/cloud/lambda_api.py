"""Lambda's Invoke API over HTTP, so boto3 and the AWS CLI work unchanged with `--endpoint-url`:

    POST /2015-03-31/functions/{name}/invocations
    GET  /_livelambda/lambda/stats          per function: sandboxes, invocations, cold starts; and
                                            `rejected`: Invoke API errors answered, by error type

Error responses take the shape botocore parses into the service's exceptions: a JSON body
`{"Type": "User", "message": ...}` and the header `X-Amzn-ErrorType: <ExceptionName>`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from devserver.cloud.lambda_emulator import (
    DEFAULT_CONCURRENCY,
    DEFAULT_IDLE_RECYCLE_S,
    FunctionNotFound,
    LambdaEmulator,
    log_result,
    report_log,
)
from devserver.cloud.options import CloudOptions
from devserver.config import find_config, load_config
from devserver.runtime.pool import TooManyRequests

MAX_SYNC_PAYLOAD = 6_291_456  # bytes, a RequestResponse invocation
MAX_ASYNC_PAYLOAD = 1_048_576  # bytes, an Event invocation
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


def create_emulator(options: CloudOptions) -> LambdaEmulator:
    """The emulator for `livelambda cloud`: the functions of `--app DIR`, or of the current directory
    when it holds a config (none otherwise: every invocation is then a 404). Raises ConfigError.

    `options.extra` may set `lambda_concurrency` (per function, default 10) and
    `lambda_idle_recycle_s` (default 300)."""
    app_dir = options.app_dir
    if app_dir is None and find_config(Path.cwd()) is not None:
        app_dir = Path.cwd()
    functions = load_config(app_dir).functions if app_dir is not None else {}
    return LambdaEmulator(
        functions,
        region=options.region,
        concurrency=int(options.extra.get("lambda_concurrency", DEFAULT_CONCURRENCY)),
        idle_recycle_s=float(options.extra.get("lambda_idle_recycle_s", DEFAULT_IDLE_RECYCLE_S)),
    )


def mount(app: FastAPI, options: CloudOptions) -> LambdaEmulator:
    """Serve the Invoke API on `app`; the emulator is `app.state.lambda_emulator`."""
    emulator = create_emulator(options)
    app.state.lambda_emulator = emulator
    app.include_router(lambda_router(emulator))
    return emulator


def lambda_router(emulator: LambdaEmulator) -> APIRouter:
    """The Invoke API and the stats endpoint, serving `emulator`'s functions."""
    router = APIRouter()
    rejected: Counter[str] = Counter()

    @router.post("/2015-03-31/functions/{function}/invocations")
    async def invoke(function: str, request: Request) -> Response:
        response = await _invoke(function, request)
        if response.status_code >= 400:  # counted, so that a test can tell every reject was answered
            rejected[response.headers.get("x-amzn-errortype", str(response.status_code))] += 1
        return response

    async def _invoke(function: str, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        name, qualifier = _parse_function(unquote(function), request.query_params.get("Qualifier"))
        if name not in emulator.functions or qualifier not in (None, "$LATEST"):
            arn = emulator.arn(name) + (f":{qualifier}" if qualifier else "")
            return _error(404, "ResourceNotFoundException", f"Function not found: {arn}", request_id)
        function_config = emulator.functions[name]  # now: a saved config may remove it while this runs
        invocation_type = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type not in INVOCATION_TYPES:
            return _error(
                400,
                "InvalidParameterValueException",
                f"Unsupported invocation type {invocation_type!r}; use one of: {', '.join(INVOCATION_TYPES)}",
                request_id,
            )
        payload = await request.body()
        limit = MAX_ASYNC_PAYLOAD if invocation_type == "Event" else MAX_SYNC_PAYLOAD
        if len(payload) > limit:
            operation = "InvokeAsync" if invocation_type == "Event" else "InvokeFunction"
            return _error(
                413,
                "RequestEntityTooLargeException",
                f"Request must be smaller than {limit} bytes for the {operation} operation",
                request_id,
            )
        if not payload.strip():
            payload = b"{}"
        try:
            json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: Could not parse payload into json: {exc}",
                request_id,
            )
        client_context = None
        if "x-amz-client-context" in request.headers:
            try:
                client_context = base64.b64decode(
                    request.headers["x-amz-client-context"], validate=True
                ).decode()
            except (binascii.Error, UnicodeDecodeError):
                return _error(
                    400,
                    "InvalidRequestContentException",
                    "Client context must be a valid Base64-encoded JSON object.",
                    request_id,
                )
        headers = {"X-Amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
        if invocation_type == "DryRun":
            return Response(status_code=204, headers=headers)
        if invocation_type == "Event":
            async_id = emulator.invoke_async(name, payload, client_context=client_context)
            return Response(status_code=202, headers={**headers, "X-Amzn-RequestId": async_id})
        try:
            outcome = await emulator.invoke(
                name, payload, client_context=client_context, request_id=request_id
            )
        except TooManyRequests:
            return _error(
                429,
                "TooManyRequestsException",
                "Rate Exceeded.",
                request_id,
                extra={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
            )
        except FunctionNotFound as exc:
            return _error(404, "ResourceNotFoundException", str(exc), request_id)
        headers["Content-Type"] = "application/json"
        if not outcome.ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if request.headers.get("x-amz-log-type") == "Tail":
            headers["X-Amz-Log-Result"] = log_result(report_log(outcome, function_config))
        return Response(content=outcome.payload, status_code=200, headers=headers)

    @router.get("/_livelambda/lambda/stats")
    async def stats() -> dict[str, Any]:
        return {**emulator.stats(), "rejected": dict(rejected)}

    return router


def _parse_function(text: str, qualifier: str | None) -> tuple[str, str | None]:
    """A name, `NAME:QUALIFIER`, `ACCOUNT:function:NAME[:QUALIFIER]` or a full ARN."""
    parts = text.split(":")
    if text.startswith("arn:"):
        parts = parts[6:] if len(parts) >= 7 else [text]
    elif len(parts) >= 3 and parts[1] == "function":
        parts = parts[2:]
    name = parts[0]
    if len(parts) > 1 and parts[1]:
        qualifier = qualifier or parts[1]
    return name, qualifier


def _error(
    status: int, code: str, message: str, request_id: str, extra: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {**(extra or {}), "Type": "User", "message": message}
    return JSONResponse(
        body, status_code=status, headers={"X-Amzn-ErrorType": code, "X-Amzn-RequestId": request_id}
    )
