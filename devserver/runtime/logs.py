"""A worker's stdout and stderr: read as they come (a handler printing 10 MB never blocks), kept per
invocation within a bound, and drained on demand so an invocation's logs are complete the moment
its result arrives (the runtime writes its output before it posts the result)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_LOG_LIMIT = 256 * 1024
_CHUNK = 256 * 1024


class LogBuffer:
    """The output of one invocation, at most `limit` bytes: the first and the last half are kept, the
    middle is cut and counted."""

    def __init__(self, limit: int = DEFAULT_LOG_LIMIT) -> None:
        self.limit = max(limit, 2)
        self._head = bytearray()
        self._tail = bytearray()
        self.cut = 0  # bytes left out

    @property
    def written(self) -> bool:
        """Whether anything was written (checked before building the text on a hot path)."""
        return bool(self._head)

    def write(self, data: bytes) -> None:
        half = self.limit // 2
        if len(self._head) < half:
            room = half - len(self._head)
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - (self.limit - half)
        if excess > self.limit:  # trim now and then, not on every write
            del self._tail[:excess]
            self.cut += excess

    def text(self) -> str:
        """The kept output as text; a marker line stands where output was cut."""
        keep = self.limit - self.limit // 2
        cut = self.total_cut()
        tail = bytes(self._tail[-keep:]) if len(self._tail) > keep else bytes(self._tail)
        head = _text(bytes(self._head))
        if not cut:
            return head + _text(tail)
        if head and not head.endswith("\n"):
            head += "\n"
        marker = f"[livelambda: {_size(cut)} of log output cut here; {_size(self.limit)} kept]\n"
        return head + marker + _text(tail)

    def total_cut(self) -> int:
        """Bytes of output left out of `text()`."""
        keep = self.limit - self.limit // 2
        return self.cut + max(0, len(self._tail) - keep)


class PipeReader:
    """Reads pipe file descriptors whenever the event loop finds them readable, and on demand."""

    def __init__(self, fds: list[int], sink: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        self._fds: list[int] = []
        for fd in fds:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._readable, fd)
            self._fds.append(fd)

    def _readable(self, fd: int) -> None:
        self._read(fd, once=True)

    def _read(self, fd: int, once: bool) -> None:
        while True:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # end of file: the process (and anything it spawned) closed it
                self._forget(fd)
                return
            self._sink(data)
            if once:
                return

    def drain(self) -> None:
        """Read everything the pipes hold right now."""
        for fd in list(self._fds):
            self._read(fd, once=False)

    def close(self) -> None:
        for fd in list(self._fds):
            self._forget(fd)

    def _forget(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.remove(fd)
            self._loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


def without_error_report(logs: str, error: Mapping[str, Any]) -> str:
    """`logs` less the report awslambdaric writes for an unhandled error (`[ERROR] Type: message` and
    its traceback, as `_text` shows it), for whoever shows the error itself: the terminal, the stub."""
    error_type, message = str(error.get("errorType") or ""), str(error.get("errorMessage") or "")
    if f"[ERROR] {error_type}" not in logs:  # the common case costs one search
        return logs
    head = "[ERROR]" + (f" {error_type}" if error_type else "")
    if message:
        head += (":" if error_type else "") + f" {message}"
    lines = [head]
    trace = error.get("stackTrace")
    if isinstance(trace, list):
        lines.append("Traceback (most recent call last):")
        for element in map(str, trace):
            lines += [_nbsp_indented(line) for line in element.splitlines()] if element else [""]
    report = _text("\r".join(lines).encode() + b"\n")
    at = logs.rfind(report)
    return logs if at < 0 else logs[:at] + logs[at + len(report) :]


def _nbsp_indented(line: str) -> str:
    """awslambdaric's indentation of an error report's lines (no-break spaces, or CloudWatch trims)."""
    stripped = line.lstrip(" ")
    return "\u00a0" * (len(line) - len(stripped)) + stripped


def _text(data: bytes) -> str:
    # awslambdaric ends the lines of an error report with "\r" (one CloudWatch record); show them as lines.
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"
