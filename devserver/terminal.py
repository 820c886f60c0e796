"""What `livelambda dev` prints: one readable line per invocation, the handler's output and traceback
under it, and a line per reload and per connection change. The dashboard shows the rest."""

from __future__ import annotations

import datetime
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from devserver.invocations import InvocationRecord

_STATUS = {
    "ok": ("ok", "green"),
    "handler_error": ("error", "red"),
    "timeout": ("timeout", "red"),
    "crashed": ("crashed", "red"),
    "init_error": ("init error", "red"),
    "livelambda_error": ("livelambda error", "magenta"),
    "running": ("running", "yellow"),
}
_MAX_LOG_LINES = 40
# awslambdaric's boilerplate after every unhandled error; the dashboard keeps it, the terminal doesn't.
_NOISE = ("LAMBDA_WARNING: Unhandled exception.",)


class Terminal:
    def __init__(self, file: TextIO | None = None, *, color: bool | None = None) -> None:
        self.console = Console(
            file=file or sys.stdout,
            highlight=False,
            soft_wrap=True,
            force_terminal=color,
            no_color=color is False,
        )

    def invocation(self, record: InvocationRecord) -> None:
        word, style = _STATUS.get(record.status, (record.status, "white"))
        when = datetime.datetime.fromtimestamp(record.started_at).strftime("%H:%M:%S")
        duration = "" if record.duration_ms is None else f"{record.duration_ms:8.1f} ms"
        tags = []
        if record.source != "live":
            tags.append(record.source)
        if record.cold:
            tags.append("cold")
        if record.generation is not None:
            tags.append(f"gen {record.generation}")
        tag_text = f"  [dim]({', '.join(tags)})[/dim]" if tags else ""
        line = (
            f"[dim]{when}[/dim]  [bold]{escape(record.function):<14}[/bold] [cyan]{record.id[:8]}[/cyan]  "
            f"{duration:>11}  [{style}]{word:<8}[/{style}] [dim]{escape(record.trigger)}[/dim]{tag_text}"
        )
        self.console.print(line)
        logs = "\n".join(line for line in record.logs.splitlines() if not any(n in line for n in _NOISE))
        self._indented(logs, "dim")
        if record.status not in ("ok", "running"):
            head = f"{record.error_type or 'Error'}: {record.error_message or ''}"
            self._indented(head, style)
            self._indented("".join(record.stack_trace).rstrip("\n"), style)

    def reload(self, function: str, generation: int, error: str | None) -> None:
        if error:
            self.console.print(
                f"[red]✗ {escape(function)}: {escape(error)}[/red]  (fix and save: it reloads by itself)"
            )
        else:
            self.console.print(f"[dim]↻ {escape(function)} reloaded (gen {generation})[/dim]")

    def connection(self, state: Any) -> None:
        if state.state == "connected":
            self.console.print(f"[green]● connected[/green] to {escape(state.endpoint or '')}")
        elif state.state == "backoff":
            err = f": {escape(state.last_error)}" if state.last_error else ""
            retry = state.retry_in_s or 0.0
            self.console.print(
                f"[yellow]○ AppSync connection down{err}; retry in {retry:.1f} s "
                f"(attempt {state.attempts + 1})[/yellow]"
            )

    def info(self, text: str) -> None:
        self.console.print(text)

    def _indented(self, text: str, style: str) -> None:
        if not text:
            return
        lines = text.rstrip("\n").splitlines()
        cut = len(lines) - _MAX_LOG_LINES
        if cut > 0:
            lines = [*lines[:_MAX_LOG_LINES], f"... {cut} more lines (see the dashboard)"]
        for line in lines:
            self.console.print(f"    [{style}]{escape(line)}[/{style}]")
