"""`livelambda cloud`: one FastAPI app on loopback serving the AppSync Events emulator (with the AppSync
control plane for Event APIs) and the Lambda Invoke API, run by uvicorn."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from devserver.cloud.appsync_control import build_control_router, new_api_key_id
from devserver.cloud.appsync_emulator import AppSyncEmulator, build_router
from devserver.cloud.options import CloudOptions
from devserver.cloud.realtime import realtime_protocol
from devserver.servers.bounded import ReadyServer, run_until_stopped, write_json_atomically

log = logging.getLogger("livelambda.cloud")


def mount_lambda(app: FastAPI, options: CloudOptions) -> None:
    """The Lambda emulator's place in the app: the Invoke API
    (`POST /2015-03-31/functions/{name}/invocations`) and its sandboxes, see lambda_api.py."""
    from devserver.cloud.lambda_api import mount

    mount(app, options)


def create_app(options: CloudOptions) -> FastAPI:
    """The whole `livelambda cloud` app. `options.api_key` must be set (serve() generates one).
    With `options.app_dir`, the Lambda emulator follows the app's configuration file while it runs."""
    app = FastAPI(
        title="livelambda cloud", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_follow_config
    )
    emulator = AppSyncEmulator(options)
    app.state.appsync = emulator
    app.state.options = options
    app.include_router(build_router(emulator))
    app.include_router(build_control_router(emulator.control))  # boto3's appsync client, endpoint_url=cloud
    mount_lambda(app, options)
    if options.app_dir is not None:
        from devserver.cloud.config_follower import ConfigFollower
        from devserver.config import load_config

        app.state.config_follower = ConfigFollower(app.state.lambda_emulator, load_config(options.app_dir))
    return app


@contextlib.asynccontextmanager
async def _follow_config(app: FastAPI) -> AsyncIterator[None]:
    """Watch the app's configuration from before the cloud listens (a save right after it is ready is
    seen) until it stops."""
    follower = getattr(app.state, "config_follower", None)
    if follower is None:
        yield
        return
    await follower.start()
    try:
        yield
    finally:
        await follower.close()


def generate_api_key() -> str:
    """A key shaped like AppSync's (`da2-` and 26 lowercase letters and digits)."""
    return new_api_key_id()  # one definition, shared with CreateApiKey


def serve(options: CloudOptions) -> int:
    """Run `livelambda cloud` until Ctrl+C or SIGTERM; return the exit status."""
    if options.api_key is None:
        options = dataclasses.replace(options, api_key=generate_api_key())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stub_path = _stub_path(options) if options.live else None  # before binding: it may fail
    if options.app_dir is not None:  # the functions' own venv, before any sandbox starts
        from devserver.config import load_config
        from devserver.runtime.app_env import ensure_for_app

        ensure_for_app(load_config(options.app_dir), lambda line: print(line, flush=True))
    app = create_app(options)
    # uvicorn binds the socket itself: a socket handed to it would lack TCP_NODELAY (~88 ms a call).
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        ws=realtime_protocol(app.state.appsync),  # type: ignore[arg-type]  # the realtime WebSocket bypasses ASGI: see realtime.py
        # https and wss, as AppSync serves them; the realtime protocol gets the TLS transport as is.
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
    )
    server = ReadyServer(config, on_ready=lambda port: _announce(app, options, port, stub_path))
    if not run_until_stopped(server):
        print(f"livelambda cloud: could not listen on {options.host}:{options.port}", file=sys.stderr)
        return 1
    print("livelambda cloud: stopped", file=sys.stderr)
    return 0


def _announce(app: FastAPI, options: CloudOptions, port: int, stub_path: str | None) -> None:
    host = f"{options.host}:{port}"
    if stub_path is not None:
        _go_live(app, options, host, stub_path)
    http_url, realtime_url = options.urls(host)
    info = {
        "pid": os.getpid(),
        "port": port,
        "host": host,
        "base_url": http_url.removesuffix("/event"),
        "http_url": http_url,
        "realtime_url": realtime_url,
        "api_key": options.api_key,
        "region": options.region,
        "namespaces": list(options.namespaces),
        "iam_access_key_ids": [c.access_key_id for c in options.iam_credentials],
    }
    _print_banner(info)
    ready_file = options.extra.get("ready_file")
    if ready_file:
        write_json_atomically(Path(ready_file), info)


def _stub_path(options: CloudOptions) -> str:
    """Where the live sandboxes import the stub from: the app's unpacked stub layer (see live.py)."""
    from devserver.cloud.live import stub_import_root
    from devserver.commands.usage import UsageError

    if options.app_dir is None:
        raise UsageError("--live needs an app: run it in the app's directory or pass --app DIR")
    return stub_import_root(options.app_dir.resolve())


def _go_live(app: FastAPI, options: CloudOptions, host: str, stub_path: str) -> None:
    """Switch the app's functions to the stub now that the port is known (no sandbox runs yet)."""
    from devserver.cloud.live import live_mode
    from devserver.config import load_config

    assert options.app_dir is not None  # _stub_path() checked it
    emulator = app.state.lambda_emulator
    iam = options.iam_credentials[0] if options.live_auth == "iam" and options.iam_credentials else None
    emulator.live = live_mode(
        load_config(options.app_dir), host=host, api_key=options.api_key or "", stub_path=stub_path,
        tls=options.tls, iam=iam,
    )  # fmt: skip


def _print_banner(info: dict[str, Any]) -> None:
    from rich.console import Console  # imported late: only the banner needs it

    console = Console(highlight=False)
    iam = ", ".join(info["iam_access_key_ids"]) or "none (pass --iam-credentials AKID:SECRET)"
    console.print("[bold]livelambda cloud[/bold] is listening (AppSync Events emulator)")
    console.print(f"  HTTP publish  [cyan]{info['http_url']}[/cyan]")
    console.print(f"  realtime      [cyan]{info['realtime_url']}[/cyan]")
    console.print(f"  API key       {info['api_key']}")
    console.print(f"  namespaces    {', '.join(info['namespaces'])}")
    console.print(f"  IAM keys      {iam}  (region {info['region']})")
    console.print(f"  stats         {info['base_url']}/_livelambda/stats")
    console.print("Press Ctrl+C to stop.")
    sys.stdout.flush()
