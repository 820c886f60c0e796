"""`livelambda aws up | down | status`: the terminal side. The work is in devserver/aws/; this module
reads the flags, shows progress (a line per function as it goes, a table at the end) and turns what
AWS refused into one readable message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table

from devserver.aws.progress import FunctionResult
from stub_runtime.errors import LivelambdaError

_STYLE = {
    "live": "green",
    "already live": "green",
    "restored": "green",
    "not live": "green",
    "gone": "yellow",
    "skipped": "yellow",
    "refused": "red",
    "failed": "red",
}


class ConsoleProgress:
    """A line per shared step and per finished function; on a terminal, also a live line per function
    saying what it is doing now."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._live = None
        self._tasks: dict[str, TaskID] = {}
        if console.is_terminal:
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self._live = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
            )
            self._live.start()

    def note(self, text: str) -> None:
        self.console.print(f"[dim]·[/dim] {escape(text)}")

    def step(self, function: str, text: str) -> None:
        if self._live is None:
            return
        with self._lock:
            description = f"[bold]{escape(function)}[/bold]  {escape(text)}"
            task = self._tasks.get(function)
            if task is None:
                self._tasks[function] = self._live.add_task(description, total=None)
            else:
                self._live.update(task, description=description)

    def finished(self, result: FunctionResult) -> None:
        with self._lock:
            task = self._tasks.pop(result.function, None)
            if task is not None and self._live is not None:
                self._live.remove_task(task)
        style = _STYLE.get(result.status, "white")
        name, detail = escape(result.function), escape(result.detail)
        self.console.print(f"[{style}]{result.status:>12}[/{style}]  [bold]{name}[/bold]  {detail}")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def summary(console: Console, results: list[FunctionResult], title: str) -> None:
    if not results:
        return
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("function", style="bold")
    table.add_column("local")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for r in sorted(results, key=lambda r: r.function):
        style = _STYLE.get(r.status, "white")
        table.add_row(r.function, r.local or "", f"[{style}]{r.status}[/{style}]", escape(r.detail))
    console.print(table)


def _guarded(command: str, body: Callable[[Console], int]) -> int:
    """Runs a command; what AWS refused (credentials, permissions, throttling) becomes one message."""
    import botocore.exceptions

    console = Console(highlight=False, soft_wrap=True)
    try:
        return body(console)
    except LivelambdaError as exc:
        console.print(f"[red]livelambda aws {command}:[/red] {escape(str(exc))}")
        return 2
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        console.print(
            f"[red]livelambda aws {command}: AWS refused {exc.operation_name}:[/red] "
            f"{escape(str(error.get('Code')))}: {escape(str(error.get('Message')))}"
        )
        if command == "up":
            console.print("Functions already switched stay live; `livelambda aws down` puts them back.")
        return 1
    except botocore.exceptions.BotoCoreError as exc:
        console.print(f"[red]livelambda aws {command}:[/red] {escape(str(exc))}")
        return 1


def run_up(
    app_dir: Path,
    *,
    profile: str | None,
    region: str | None,
    auth: str,
    vpc: str,
    timeout: int | None,
    take_over: bool,
    force: bool,
    stack: str | None,
    tag: str | None,
    functions: list[str],
) -> int:
    def body(console: Console) -> int:
        from devserver.aws.context import AwsContext
        from devserver.aws.up import Attach, UpOptions
        from devserver.config import load_config
        from devserver.live.session import load_or_create

        app = load_config(app_dir)
        session = load_or_create(app.root, app.app, app.stage)
        ctx = AwsContext(profile=profile, region=region or app.region)
        options = UpOptions(
            auth=auth, vpc=vpc, timeout=timeout, take_over=take_over, force=force, stack=stack, tag=tag,
            functions=functions, production_stages=app.aws.production_stages,
        )  # fmt: skip
        started = time.monotonic()
        console.print(
            f"[bold]livelambda aws up[/bold] — app {app.app} (stage {app.stage}), session {session.id}, "
            f"{ctx.region}, auth {auth}"
        )
        progress = ConsoleProgress(console)
        try:
            result = Attach(ctx, app, session, options, progress).run()
        finally:
            progress.close()
        summary(console, result.results, f"live mode, {time.monotonic() - started:.1f} s")
        live = [r for r in result.results if r.status in ("live", "already live")]
        if live:
            console.print(
                f"{len(live)} function(s) live. Run `livelambda dev {app_dir}` to answer their invocations "
                f"here; `livelambda aws down --app {app_dir}` puts them back."
            )
        if not result.ok:
            console.print(
                "[red]Some functions were not switched[/red] (see above). Switched ones stay live; "
                f"`livelambda aws down --app {app_dir}` puts them back."
            )
        return 0 if result.ok else 1

    return _guarded("up", body)


def run_down(
    app_dir: Path | None,
    *,
    profile: str | None,
    region: str | None,
    session_id: str | None,
    functions: list[str],
    force: bool,
    skip_missing_layers: bool,
    purge: bool,
) -> int:
    def body(console: Console) -> int:
        from devserver.aws.context import AwsContext
        from devserver.aws.down import Detach, DownOptions

        app_root, app_region = _app_of(app_dir, need=session_id is None)
        session = session_id or _session_of(app_root)
        ctx = AwsContext(profile=profile, region=region or app_region)
        console.print(f"[bold]livelambda aws down[/bold] — session {session}, {ctx.region}")
        options = DownOptions(
            functions=functions, force=force, skip_missing_layers=skip_missing_layers, purge=purge
        )
        progress = ConsoleProgress(console)
        started = time.monotonic()
        try:
            result = Detach(ctx, session, options, progress, app_root).run()
        finally:
            progress.close()
        summary(console, result.results, f"put back, {time.monotonic() - started:.1f} s")
        if not result.results:
            console.print(f"No function is live for session {session}.")
        for item in result.cleaned:
            console.print(f"[dim]·[/dim] removed {escape(item)}")
        return 0 if result.ok else 1

    return _guarded("down", body)


def run_status(app_dir: Path | None, *, profile: str | None, region: str | None) -> int:
    def body(console: Console) -> int:
        from devserver.aws.context import AwsContext
        from devserver.aws.status import status

        _, app_region = _app_of(app_dir, need=False)
        ctx = AwsContext(profile=profile, region=region or app_region)
        found = status(ctx)
        if found.api_id is None:
            console.print(f"No livelambda AppSync Events API in {ctx.region}: nothing is live here.")
        else:
            count = "no data" if found.connections is None else f"{found.connections:,}"
            console.print(f"AppSync Events API {found.api_id} ({ctx.region}): connections {count}")
        if not found.functions:
            console.print("No function is live.")
            return 0
        table = Table(title_justify="left")
        for column in ("function", "session", "owner", "since", "state"):
            table.add_column(column)
        for f in found.functions:
            r = f.record
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.since))
            style = "green" if f.state == "live" else "red"
            state = f"[{style}]{f.state}[/{style}]" + (f" {escape(f.detail)}" if f.detail else "")
            table.add_row(r.function, r.session, f"{r.owner.rsplit('/', 1)[-1]} on {r.host}", since, state)
        console.print(table)
        return 0

    return _guarded("status", body)


def _app_of(app_dir: Path | None, *, need: bool) -> tuple[Path | None, str | None]:
    """The app's root and region, if there is an app (an explicit --app, or a config in `.`)."""
    from devserver.config import find_config, load_config

    directory = app_dir or Path(".")
    if app_dir is None and find_config(directory) is None:
        if need:
            raise LivelambdaError(
                "no app here (no livelambda.toml); pass --app DIR, or --session ID "
                "(`livelambda aws status` lists the live sessions)"
            )
        return None, None
    app = load_config(directory)
    return app.root, app.region


def _session_of(app_root: Path | None) -> str:
    from devserver.live.session import load_existing

    assert app_root is not None
    session = load_existing(app_root)
    if session is None:
        raise LivelambdaError(
            f"{app_root} has no live session (no .livelambda/session.json); pass --session ID "
            "(`livelambda aws status` lists the live sessions)"
        )
    return session.id

