"""Live mode for `livelambda cloud --live`: every function of the app runs livelambda's stub, set up
exactly as `aws up` sets up a real function (handler, settings in the environment, the stub's layer on
the import path), talking to this cloud's AppSync emulator."""

from __future__ import annotations

import os
from pathlib import Path

from devserver.cloud.lambda_emulator import LiveMode
from devserver.cloud.options import IamCredentials
from devserver.cloud.stub_mount import mount_stub_layer
from devserver.config import AppConfig
from devserver.live.session import load_or_create
from stub_runtime.errors import LivelambdaError

STUB_PATH_ENV = "LIVELAMBDA_STUB_PATH"  # e.g. an unpacked `livelambda stub build` layer's python/ dir


def stub_import_root(app_root: Path) -> str:
    """The directory that holds the `stub_runtime` package, as /opt/python holds it in Lambda: the
    real layer, built and unpacked under the app's `.livelambda/` (see stub_mount.py), or
    `$LIVELAMBDA_STUB_PATH` when set (e.g. a layer unpacked by hand)."""
    override = os.environ.get(STUB_PATH_ENV)
    if override:
        if not (Path(override) / "stub_runtime" / "handler.py").is_file():
            raise LivelambdaError(
                f"{STUB_PATH_ENV}={override} holds no stub_runtime/handler.py; point it at the python/ "
                "directory of an unpacked `livelambda stub build` zip, or unset it"
            )
        return str(Path(override).resolve())
    return str(mount_stub_layer(app_root))


def live_mode(
    app: AppConfig,
    *,
    host: str,
    api_key: str,
    extra_env: dict[str, str] | None = None,
    stub_path: str | None = None,
    tls: bool = False,
    iam: IamCredentials | None = None,
) -> LiveMode:
    """Live mode for `app`'s functions against this cloud at `host` (`https`/`wss` with `tls`);
    `stub_path` is what stub_import_root() gave (computed now when None). With `iam`, the stubs sign
    with SigV4 and have no API key, as after `aws up --auth iam`: these credentials are in their
    environment, as Lambda gives a function its role's."""
    session = load_or_create(app.root, app.app, app.stage)
    http, ws = ("https", "wss") if tls else ("http", "ws")
    env = {
        **session.stub_env(),
        "LIVELAMBDA_HTTP_URL": f"{http}://{host}/event",
        "LIVELAMBDA_REALTIME_URL": f"{ws}://{host}/event/realtime",
        "LIVELAMBDA_AUTH": "api_key",
        "LIVELAMBDA_API_KEY": api_key,
    }
    if iam is not None:
        del env["LIVELAMBDA_API_KEY"]
        env.update({"LIVELAMBDA_AUTH": "iam", "AWS_ACCESS_KEY_ID": iam.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": iam.secret_access_key,
                    "AWS_SESSION_TOKEN": iam.session_token or ""})  # none inherited: "" reads as none
    env.update(extra_env or {})
    return LiveMode(env=env, pythonpath=(stub_path or stub_import_root(app.root),))
