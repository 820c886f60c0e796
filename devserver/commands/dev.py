"""`livelambda dev [APP] [--cloud]`: run the dev server; with --cloud, also `livelambda cloud --live`
for the app (what `make dev` does), and stop both on Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from rich.markup import escape

from devserver.commands.dev_lock import DevLock
from devserver.commands.try_lines import try_lines
from devserver.commands.usage import check_can_listen
from devserver.config import AppConfig, load_config
from devserver.live.session import LiveSession, cloud_file, load_or_create, state_dir
from devserver.processes import stop_process
from devserver.runtime import app_env
from devserver.servers.bounded import ReadyServer, run_until_stopped, write_json_atomically
from devserver.ui.terminal import Terminal
from stub_runtime.errors import DevServerFault

CLOUD_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DevCommand:
    app_dir: Path
    cloud: bool = False
    cloud_port: int = 8790
    cloud_concurrency: int | None = None  # `livelambda cloud --concurrency` (sandboxes per function)
    host: str = "127.0.0.1"
    port: int | None = None  # default: the config's dashboard port
    ready_file: Path | None = None  # once listening, write the dashboard URL and cloud info here
    aws: bool = False  # `aws up` on start, `aws down` on stop
    aws_options: dict[str, Any] | None = None  # UpOptions fields for `aws up` (--auth, --vpc, --timeout...)
    profile: str | None = None
    region: str | None = None


class CloudFailed(DevServerFault):
    pass


def start_cloud(
    app: AppConfig, port: int, terminal: Terminal, concurrency: int | None = None
) -> tuple[subprocess.Popen[bytes], dict]:
    """`livelambda cloud --app APP --live` as a child process; returns it and its ready info."""
    state_dir(app.root)
    ready = cloud_file(app.root)
    running = _cloud_info_if_running(ready)
    if running is not None:  # started by hand: its file and port are its own
        raise CloudFailed(
            f"livelambda cloud already runs for this app (pid {running['pid']}, http://{running['host']}); "
            "use it: run `livelambda dev` without --cloud, or stop it (Ctrl+C in its terminal) first"
        )
    ready.unlink(missing_ok=True)  # left by a cloud that is gone
    log_path = ready.with_name("cloud.log")
    terminal.info(f"[dim]starting livelambda cloud on 127.0.0.1:{port} (its log: {log_path}) ...[/dim]")
    extra = ["--concurrency", str(concurrency)] if concurrency is not None else []
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devserver", "cloud", "--app", str(app.root), "--live",
             "--port", str(port), "--ready-file", str(ready), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl+C reaches us only; we stop it in order
            preexec_fn=_die_with_parent,
        )  # fmt: skip
    deadline = time.monotonic() + CLOUD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            return proc, json.loads(ready.read_text())
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise CloudFailed(
                f"livelambda cloud exited with status {proc.returncode} before listening "
                f"(is port {port} in use? pass --cloud-port, or with make: "
                f'make dev ARGS="--cloud-port 8800"). Its last lines:\n  ' + "\n  ".join(tail)
            )
        time.sleep(0.05)
    stop_process(proc, group=True)
    raise CloudFailed(f"livelambda cloud did not start within {CLOUD_START_TIMEOUT_S:.0f} s")


def _cloud_info_if_running(path: Path) -> dict | None:
    """The cloud's ready file, if the process that wrote it still runs."""
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def _remove_if_written_by(path: Path, pid: int) -> None:
    """A dev server removes only files it (or its child) wrote: this one, if `pid` wrote it."""
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `livelambda dev` dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(cmd: DevCommand) -> int:
    from devserver.server import (
        DevServer,
        DevSettings,
        create_app,
        endpoint_for,
        read_aws_info,
        read_cloud_info,
    )

    terminal = Terminal()
    app = load_config(cmd.app_dir)
    # One dev server per app, before anything touches its files or ports (raises, naming the holder).
    lock = DevLock(app.root)
    lock.acquire(
        host=cmd.host,
        port=cmd.port if cmd.port is not None else app.dashboard.port,
        cloud_port=cmd.cloud_port if cmd.cloud else None,
    )
    # Ports first: a busy one is a one-line usage error, before a cloud starts or anything binds.
    dashboard_port = cmd.port if cmd.port is not None else app.dashboard.port
    check_can_listen(cmd.host, dashboard_port, port_flag="--port")
    if cmd.cloud:
        check_can_listen(cmd.host, cmd.cloud_port, port_flag="--cloud-port")
    session = load_or_create(app.root, app.app, app.stage)
    # The functions' own venv (Lambda's runtime + the app's requirements), before the cloud and workers.
    app_env.ensure_for_app(app, lambda line: print(line, flush=True))
    cloud_proc = None
    attached = None
    try:
        if cmd.cloud:
            cloud_proc, info = start_cloud(app, cmd.cloud_port, terminal, cmd.cloud_concurrency)
        elif cmd.aws:
            attached = _aws_up(app, session, cmd, terminal)
            if attached is None:
                return 1
            info = None
        else:
            # after `livelambda aws up`, its API; else the app's running `livelambda cloud`
            info = None if read_aws_info(app.root) is not None else read_cloud_info(app.root)
            if app.endpoint.mode == "local" and info is None and read_aws_info(app.root) is None:
                terminal.info(
                    "[red]livelambda cloud is not running for this app.[/red] Start it with "
                    f"`livelambda cloud --app {cmd.app_dir} --live`, or run `livelambda dev --cloud`, or "
                    "attach your deployed functions with `livelambda dev --aws`."
                )
                return 2
        endpoint = endpoint_for(app, info)
        port = cmd.port if cmd.port is not None else app.dashboard.port
        settings = DevSettings(app=app, session=session, endpoint=endpoint, host=cmd.host, port=port)
        dev = DevServer(settings, terminal)
        config = uvicorn.Config(
            create_app(dev), host=cmd.host, port=port, log_level="warning", timeout_graceful_shutdown=2
        )

        def ready(real_port: int) -> None:
            lock.update(port=real_port, cloud_port=info["port"] if info else None)
            _banner(terminal, app, session.id, cmd, info, real_port)
            if cmd.ready_file is not None:
                url = f"http://{cmd.host}:{real_port}/"
                ready_info = {"dashboard_url": url, "port": real_port, "cloud": info}
                write_json_atomically(cmd.ready_file, ready_info)

        server = ReadyServer(config, ready)
        return 0 if run_until_stopped(server) else 1
    except CloudFailed as exc:
        terminal.info(f"[red]{exc}[/red]")
        return 1
    finally:
        if cloud_proc is not None:
            stop_process(cloud_proc, group=True)
            _remove_if_written_by(cloud_file(app.root), cloud_proc.pid)  # no stale endpoint for `invoke`
        if attached is not None:
            _aws_down(app, session.id, cmd, terminal)
        lock.release()
        terminal.info("[dim]livelambda dev: stopped[/dim]")


def _aws_up(app: AppConfig, session: LiveSession, cmd: DevCommand, terminal: Terminal) -> list[str] | None:
    """`livelambda aws up` for the app; the functions now live, or None when none is (said why)."""
    from devserver.aws.context import AwsContext
    from devserver.aws.up import Attach, UpOptions
    from devserver.commands.aws import ConsoleProgress, summary

    ctx = AwsContext(profile=cmd.profile, region=cmd.region or app.region)
    options = UpOptions(production_stages=app.aws.production_stages, **(cmd.aws_options or {}))
    terminal.info(f"[bold]livelambda aws up[/bold] — session {session.id}, {ctx.region}, auth {options.auth}")
    progress = ConsoleProgress(terminal.console)
    try:
        result = Attach(ctx, app, session, options, progress).run()
    except Exception as exc:  # what AWS refused before any function was switched
        terminal.info(f"[red]livelambda aws up failed: {exc}[/red]")
        _aws_down(app, session.id, cmd, terminal)
        return None
    finally:
        progress.close()
    summary(terminal.console, result.results, "live mode")
    live = [r.function for r in result.results if r.status in ("live", "already live")]
    if not live:
        terminal.info("[red]No function was switched to live mode[/red] (see above); nothing to serve.")
        _aws_down(app, session.id, cmd, terminal)
        return None
    terminal.info(
        f"If this process is killed hard, `livelambda aws down --app {cmd.app_dir}` puts the functions back."
    )
    return live


def _aws_down(app: AppConfig, session: str, cmd: DevCommand, terminal: Terminal) -> None:
    from devserver.aws.context import AwsContext
    from devserver.aws.down import Detach, DownOptions
    from devserver.commands.aws import ConsoleProgress, summary

    terminal.info("[dim]putting the functions back (livelambda aws down) ...[/dim]")
    ctx = AwsContext(profile=cmd.profile, region=cmd.region or app.region)
    progress = ConsoleProgress(terminal.console)
    try:
        result = Detach(ctx, session, DownOptions(), progress, app.root).run()
    except Exception as exc:  # the terminal must say what to run, whatever AWS answered
        terminal.info(
            f"[red]could not put the functions back: {exc}[/red]; "
            f"run `livelambda aws down --app {cmd.app_dir}`"
        )
        return
    finally:
        progress.close()
    summary(terminal.console, result.results, "put back")
    if not result.ok:
        terminal.info(
            "[red]Some functions were not put back[/red]; see above, then "
            f"`livelambda aws down --app {cmd.app_dir}`"
        )


def _banner(
    terminal: Terminal, app: AppConfig, session: str, cmd: DevCommand, info: dict | None, port: int
) -> None:
    names = ", ".join(f"{n} ({f.handler})" for n, f in app.functions.items())
    first = next(iter(app.functions), "FUNCTION")
    t = terminal.info
    t(f"[bold]livelambda dev[/bold] — app [bold]{app.app}[/bold] (stage {app.stage}), session {session}")
    t(f"  dashboard  [cyan]http://{cmd.host}:{port}/[/cyan]")
    t(f"  functions  {names}")
    if app_env.uses_app_env(app):
        declared = app_env.declaration(app.root).label or f"no {app_env.REQUIREMENTS}"
        where = escape(app_env.shown(app_env.venv_dir(app.root)))
        t(f"  python     {where}  (Lambda's runtime + {declared})")
    if info is not None:
        base = f"http://{info['host']}"
        t(f"  cloud      {base}  (AppSync Events /event + /event/realtime, Lambda Invoke API)")
        t("  try, from this directory (the emulator takes any credentials):")
        for line in try_lines(first, app.root, base):
            t(f"    {escape(line)}")
    t("Save a handler file and the next invocation runs the new code. Press Ctrl+C to stop.")
