"""Live mode for `livelambda cloud --live`: every function of the app runs livelambda's stub, set up
exactly as `aws up` sets up a real function (handler, settings in the environment, the stub on the
import path), talking to this cloud's AppSync emulator."""

from __future__ import annotations

import os
from pathlib import Path

import stub_runtime
from devserver.cloud.lambda_emulator import LiveMode
from devserver.config import AppConfig
from devserver.session import load_or_create
from stub_runtime.errors import LivelambdaError

STUB_PATH_ENV = "LIVELAMBDA_STUB_PATH"  # e.g. an unpacked `livelambda stub build` layer's python/ dir


def stub_import_root() -> str:
    """The directory that holds the `stub_runtime` package (what the Lambda layer holds): the repo's,
    or `$LIVELAMBDA_STUB_PATH` when set, so the sandboxes run an unpacked layer instead."""
    override = os.environ.get(STUB_PATH_ENV)
    if override:
        if not (Path(override) / "stub_runtime" / "handler.py").is_file():
            raise LivelambdaError(
                f"{STUB_PATH_ENV}={override} holds no stub_runtime/handler.py; point it at the python/ "
                "directory of an unpacked `livelambda stub build` zip, or unset it"
            )
        return str(Path(override).resolve())
    return str(Path(stub_runtime.__file__).resolve().parent.parent)


def live_mode(
    app: AppConfig, *, host: str, api_key: str, extra_env: dict[str, str] | None = None
) -> LiveMode:
    session = load_or_create(app.root, app.app, app.stage)
    env = {
        **session.stub_env(),
        "LIVELAMBDA_HTTP_URL": f"http://{host}/event",
        "LIVELAMBDA_REALTIME_URL": f"ws://{host}/event/realtime",
        "LIVELAMBDA_AUTH": "api_key",
        "LIVELAMBDA_API_KEY": api_key,
        **(extra_env or {}),
    }
    return LiveMode(env=env, pythonpath=(stub_import_root(),))
