"""The "try:" lines `livelambda dev --cloud` prints: commands that work as printed, pasted into a new
shell in the directory `livelambda dev` was started from (`make dev`: the repo).

- livelambda by its path (only the virtualenv's bin/ has it, and that is not on PATH);
- boto3 and the AWS CLI need a region and some credentials to sign with: the emulator's Invoke API
  does not check them, so a dummy pair goes inline;
- the AWS CLI reads the payload from a `fileb://` file, which v1 and v2 both pass through as is
  (`--cli-binary-format` exists only in v2, and v2 would take a bare `--payload` for base64).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from devserver.runtime.app_env import shown

DUMMY_AWS_ENV = "AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1"
EXAMPLE_PAYLOAD = '{"name": "world"}'


def try_lines(function: str, app_dir: Path, cloud_url: str, payload: str = EXAMPLE_PAYLOAD) -> list[str]:
    """livelambda invoke, boto3, and the AWS CLI, each invoking `function` with `payload` (JSON)."""
    q = shlex.quote
    boto3_code = (
        f"import boto3, json; print(boto3.client('lambda', endpoint_url={cloud_url!r})"
        f".invoke(FunctionName={function!r}, Payload=json.dumps({json.loads(payload)!r}))"
        "['Payload'].read().decode())"
    )
    return [
        f"{livelambda_command()} invoke {function} {q(payload)} --app {q(shown(app_dir))}",
        f'{DUMMY_AWS_ENV} {_runnable(Path(sys.executable))} -c "{boto3_code}"',
        f"echo {q(payload)} | {DUMMY_AWS_ENV} aws lambda invoke --endpoint-url {cloud_url} "
        f"--function-name {function} --payload fileb:///dev/stdin /dev/stdout",
    ]


def livelambda_command() -> str:
    """How to run this livelambda from here: its script beside this interpreter, else `python -m`."""
    python = Path(sys.executable)  # not resolved: a virtualenv's python is a link to the base one
    script = python.parent / "livelambda"
    if script.is_file() and os.access(script, os.X_OK):
        return _runnable(script)
    return f"{_runnable(python)} -m devserver"


def _runnable(path: Path) -> str:
    text = shown(path)
    return shlex.quote(text if os.sep in text else f".{os.sep}{text}")
