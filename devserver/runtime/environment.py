"""The environment of a worker process, as Lambda sets it for a function's sandbox.

The developer's own environment is kept underneath (their AWS credentials and profile are what a
handler uses locally), minus the variables that would change how awslambdaric itself runs.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from devserver.config import FunctionConfig

# Inherited variables that would switch awslambdaric into another mode or point it elsewhere.
_DROPPED = (
    "AWS_LAMBDA_MAX_CONCURRENCY",
    "AWS_LAMBDA_RUNTIME_API",
    "_LAMBDA_TELEMETRY_LOG_FD",
    "_LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET",
    "_X_AMZN_TRACE_ID",
)


def log_stream_name() -> str:
    """A fresh stream name in Lambda's shape: `2025/01/31/[$LATEST]<32 hex>`."""
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
    return f"{day}/[$LATEST]{uuid.uuid4().hex}"


def lambda_environment(
    function: FunctionConfig,
    *,
    runtime_api: str,
    region: str,
    handler: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_pythonpath: Sequence[str] = (),
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Everything a worker for `function` sees in os.environ.

    Order, later wins: the developer's environment, Lambda's variables, the function's `environment`,
    then `extra_env` (e.g. live mode's settings). PYTHONPATH is the source directory, then
    `extra_pythonpath`, then whatever PYTHONPATH was inherited.
    """
    env = {k: v for k, v in (os.environ if base_env is None else base_env).items() if k not in _DROPPED}
    inherited_path = env.get("PYTHONPATH", "")
    env.update(
        {
            "_HANDLER": handler or function.handler,
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{interpreter_version(function.python)}",
            "LAMBDA_TASK_ROOT": str(function.source),
            "LAMBDA_RUNTIME_DIR": runtime_dir(),
            "LAMBDA_DISABLE_PREVIEW_WARN": "1",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(function.environment)
    if extra_env:
        env.update(extra_env)
    path = [str(function.source), *extra_pythonpath]
    if inherited_path:
        path.append(inherited_path)
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


@functools.cache
def runtime_dir() -> str:
    """Where the runtime lives (Lambda: /var/runtime); here, the directory holding awslambdaric."""
    spec = importlib.util.find_spec("awslambdaric")
    if spec is None or spec.origin is None:
        return ""
    return str(Path(spec.origin).parent.parent)


_RUNTIME_OK: set[Path] = set()


def runtime_known_good(python: Path) -> bool:
    """True when `python` is known to run workers (checked before, or ours): no process to start."""
    if python in _RUNTIME_OK:
        return True
    if Path(python).absolute() == Path(sys.executable).absolute():
        _RUNTIME_OK.add(python)  # asked once per invocation: two Path objects each time add up
        return True
    return False


def missing_runtime(python: Path) -> str | None:
    """Why `python` cannot run a worker (it lacks awslambdaric, or does not start), or None.
    Only a success is remembered: after the developer installs awslambdaric, the next call sees it."""
    # Ours has awslambdaric (a dependency of livelambda). Compare unresolved: every virtualenv's
    # python is a link to the same base interpreter, with another sys.prefix.
    if runtime_known_good(python):
        return None
    try:
        done = subprocess.run(
            [str(python), "-c", "import awslambdaric.bootstrap"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the function's interpreter {python} does not start: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return (
            f"the function's interpreter {python} cannot import awslambdaric ({last}); livelambda runs "
            f"your handler with it, as Lambda does. Install it: {python} -m pip install awslambdaric"
        )
    _RUNTIME_OK.add(python)
    return None


@functools.cache
def interpreter_version(python: Path) -> str:
    """ "3.12" for an interpreter, without running it: its name, its virtualenv's pyvenv.cfg, or ours."""
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        if Path(python).resolve() == Path(sys.executable).resolve():
            return ours
    except OSError:
        return ours
    match = re.search(r"python(\d+\.\d+)$", Path(python).name)
    if match:
        return match.group(1)
    cfg = Path(python).parent.parent / "pyvenv.cfg"
    try:
        text = cfg.read_text(encoding="utf-8")
    except OSError:
        return ours
    match = re.search(r"^version(?:_info)?\s*=\s*(\d+\.\d+)", text, re.MULTILINE)
    return match.group(1) if match else ours
