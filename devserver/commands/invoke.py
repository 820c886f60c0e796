"""`livelambda invoke FUNCTION [JSON|@file]`: invoke a function through the Lambda Invoke API of
`livelambda cloud` (or any endpoint), exactly as boto3 would, and print what came back."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

from devserver.server import read_cloud_info
from stub_runtime.errors import CallerFault

DEFAULT_ENDPOINT = "http://127.0.0.1:8790"


def read_payload(text: str | None) -> bytes:
    """The payload argument: JSON text, `@file`, `-` for standard input, or nothing (`{}`)."""
    if text is None:
        return b"{}"
    if text == "-":
        raw = sys.stdin.buffer.read()
    elif text.startswith("@"):
        raw = Path(text[1:]).read_bytes()
    else:
        raw = text.encode()
    try:
        json.loads(raw)
    except ValueError as exc:
        example = """'{"name": "Ada"}'"""
        raise ValueError(f"the payload is not valid JSON ({exc}); quote it, e.g. {example}") from None
    return raw


class NoCloudForApp(CallerFault):
    error_type = "Livelambda.NoCloudForApp"


def endpoint_url(app_dir: Path | None, explicit: str | None) -> str:
    """`--endpoint-url`, else the app's running cloud, else :8790. With `--app` and no cloud running
    for that app, NoCloudForApp: :8790 may be another app's cloud, with functions of the same names."""
    if explicit:
        return explicit
    info = read_cloud_info((app_dir or Path.cwd()).resolve())
    if info:
        return f"http://{info['host']}"
    if app_dir is not None:
        raise NoCloudForApp(
            f"no livelambda cloud is running for {app_dir} (it has no .livelambda/cloud.json); start it "
            f"with `livelambda dev {app_dir} --cloud`, or pass --endpoint-url"
        )
    return DEFAULT_ENDPOINT


def run(
    function: str, payload_arg: str | None, *, app_dir: Path | None, url: str | None, region: str
) -> int:
    import boto3
    import botocore.exceptions

    try:
        payload = read_payload(payload_arg)
    except (ValueError, OSError) as exc:
        print(f"livelambda invoke: {exc}", file=sys.stderr)
        return 2
    target = endpoint_url(app_dir, url)
    client = boto3.client(
        "lambda",
        endpoint_url=target,
        region_name=region,
        aws_access_key_id="livelambda",
        aws_secret_access_key="livelambda",
        config=botocore.config.Config(read_timeout=910, retries={"max_attempts": 0}),
    )
    try:
        response: dict[str, Any] = client.invoke(FunctionName=function, Payload=payload, LogType="Tail")
    except botocore.exceptions.EndpointConnectionError:
        print(
            f"livelambda invoke: nothing listens at {target}; start `make dev` or `livelambda cloud`",
            file=sys.stderr,
        )
        return 1
    except botocore.exceptions.ClientError as exc:
        hint = ""
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            from devserver.commands.function_names import known_functions, suggestion

            hint = suggestion(function, known_functions(target, app_dir))
        print(f"livelambda invoke: {exc}{hint}", file=sys.stderr)
        return 1
    body = response["Payload"].read().decode("utf-8", "replace")
    if response.get("LogResult"):
        print(base64.b64decode(response["LogResult"]).decode("utf-8", "replace").rstrip(), file=sys.stderr)
    try:
        body = json.dumps(json.loads(body), indent=2)
    except ValueError:
        pass
    print(body)
    return 1 if response.get("FunctionError") else 0
