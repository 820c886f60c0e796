"""What `livelambda dev` prints: one readable line per invocation, the handler's output and traceback
under it, a line per save (the files, the functions reloaded), and a line when the AppSync connection
goes down or comes back (not one per attempt). The dashboard shows the rest."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from devserver.runtime.logs import without_error_report
from devserver.ui.invocations import InvocationRecord

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
_ANSI = {"dim": "2", "bold": "1", "red": "31", "green": "32", "yellow": "33", "magenta": "35", "cyan": "36",
         "white": "37"}  # fmt: skip
# awslambdaric's boilerplate after every unhandled error; the dashboard keeps it, the terminal doesn't.
_NOISE = ("LAMBDA_WARNING: Unhandled exception.",)
_FILES_SHOWN = 3  # files named in a save's line; the rest are counted


class Terminal:
    def __init__(self, file: TextIO | None = None, *, color: bool | None = None) -> None:
        self.console = Console(
            file=file or sys.stdout,
            highlight=False,
            soft_wrap=True,
            force_terminal=color,
            no_color=color is False,
        )
        self._color = self.console.color_system is not None and not self.console.no_color
        self._clock: tuple[int, str] = (-1, "")  # (second, "HH:MM:SS"): strftime costs ~10 us a call
        self._link: str | None = None  # the AppSync connection as last said: None (not yet), up, lost, down

    def invocation(self, record: InvocationRecord) -> None:
        """One line per invocation. Written as plain text with ANSI colours, not through rich's markup
        renderer: this runs once per invocation, and rich costs ~0.2 ms of the dev server's CPU."""
        word, style = _STATUS.get(record.status, (record.status, "white"))
        paint = self._paint
        when = self._time_of_day(record.started_at)
        duration = "" if record.duration_ms is None else f"{record.duration_ms:8.1f} ms"
        tags: list[str] = []
        if record.source != "live":
            tags.append(record.source)
        if record.cold:
            tags.append("cold")
        if record.generation is not None:
            tags.append(f"gen {record.generation}")
        tag_text = "  " + paint(f"({', '.join(tags)})", "dim") if tags else ""
        function, request = paint(f"{record.function:<14}", "bold"), paint(record.id[:8], "cyan")
        lines = [
            f"{paint(when, 'dim')}  {function} {request}  "
            f"{duration:>11}  {paint(f'{word:<8}', style)} {paint(record.trigger, 'dim')}{tag_text}"
        ]
        failed = record.status not in ("ok", "running")
        text = record.logs
        if failed and text:  # the runtime's own report of the error: it is printed below, once
            error = {"errorType": record.error_type, "errorMessage": record.error_message}
            text = without_error_report(text, {**error, "stackTrace": record.stack_trace})
        logs = [line for line in text.splitlines() if not any(n in line for n in _NOISE)]
        lines += self._indented(logs, "dim")
        if failed:
            lines += self._indented([f"{record.error_type or 'Error'}: {record.error_message or ''}"], style)
            lines += self._indented("".join(record.stack_trace).rstrip("\n").splitlines(), style)
        out = self.console.file
        out.write("\n".join(lines) + "\n")
        out.flush()

    def _time_of_day(self, at: float) -> str:
        second = int(at)
        if self._clock[0] != second:
            self._clock = (second, time.strftime("%H:%M:%S", time.localtime(second)))
        return self._clock[1]

    def _paint(self, text: str, style: str) -> str:
        if not self._color:
            return text
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m"

    def _indented(self, lines: list[str], style: str) -> list[str]:
        cut = len(lines) - _MAX_LOG_LINES
        if cut > 0:
            lines = [*lines[:_MAX_LOG_LINES], f"... {cut} more lines (see the dashboard)"]
        return [self._paint("    " + line, style) for line in lines]

    def reload(self, function: str, generation: int, error: str | None) -> None:
        if error:
            self.console.print(
                f"[red]✗ {escape(function)}: {escape(error)}[/red]  (fix and save: it reloads by itself)"
            )
        else:
            self.console.print(f"[dim]↻ {escape(function)} reloaded (gen {generation})[/dim]")

    def saved(
        self,
        files: Sequence[str],
        generations: Mapping[str, int],
        failed: Mapping[str, str],
        hint: str | None = None,
    ) -> None:
        """One line for a save: the files, the functions reloaded (their generation), what fails to load."""
        shown = ", ".join(files[:_FILES_SHOWN])
        if len(files) > _FILES_SHOWN:
            shown += f" and {len(files) - _FILES_SHOWN} more"
        parts = [f"[red]{escape(name)}: {escape(error)}[/red]" for name, error in failed.items()]
        good = [name for name in generations if name not in failed]
        if good:
            gens = {generations[name] for name in good}
            if len(gens) == 1:
                parts.append(f"reloaded {escape(', '.join(good))} (gen {gens.pop()})")
            else:
                parts.append("reloaded " + ", ".join(f"{escape(n)} (gen {generations[n]})" for n in good))
        mark = "[red]✗[/red]" if failed else "↻"
        line = f"{mark} {escape(shown)} changed: " + "; ".join(parts)
        if failed:
            line += "  (fix and save: it reloads by itself)"
        if hint:
            line += f"  [dim]({escape(hint)})[/dim]"
        self.console.print(line if failed else f"[dim]{line}[/dim]")

    def connection(self, state: Any) -> None:
        """A line when the connection comes up, goes down (with the next attempt's backoff), and comes
        back; attempts in between are counted on the dashboard, not printed."""
        where = escape(state.endpoint or "")
        if state.state == "connected":
            tries = f" (after {state.attempt} attempts)" if state.attempt > 1 else ""
            if self._link in ("lost", "down"):
                self.console.print(f"[green]● connected again[/green] to {where}{tries}")
            elif self._link is None:
                self.console.print(f"[green]● connected[/green] to {where}{tries}")
            self._link = "up"
        elif state.state == "connecting" and self._link == "up":
            self._link = "lost"  # said only if the next dial fails: a quick reconnect says "again"
        elif state.state == "backoff" and self._link != "down":
            err = f": {escape(state.last_error)}" if state.last_error else ""
            retry = state.retry_in_s or 0.0
            what = "cannot connect to AppSync" if self._link is None else "AppSync connection down"
            self.console.print(
                f"[yellow]○ {what}{err}; reconnecting (next attempt in {retry:.1f} s, then backing off; "
                "the dashboard counts the attempts)[/yellow]"
            )
            self._link = "down"

    def info(self, text: str) -> None:
        self.console.print(text)
