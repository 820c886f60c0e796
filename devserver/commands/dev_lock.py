"""One `livelambda dev` per app. Two would share the app's live session (each invocation would reach
either of them) and its files in `.livelambda/` (the cloud's endpoints in cloud.json). The first holds
an flock on `<app>/.livelambda/dev.lock` for its whole life; the kernel drops it when the process
ends, however it ends. The file says who holds it (pid, ports), so a second one can say so, and
leaves everything else alone.

    lock = DevLock(app_root)
    lock.acquire(port=8791, cloud_port=8790)   # raises DevServerRunning, naming the holder
    lock.update(port=real_port)                 # once listening (port 0: the real one)
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from devserver.live.session import state_dir
from stub_runtime.errors import CallerFault

LOCK_FILE = "dev.lock"


class DevServerRunning(CallerFault):
    """Another `livelambda dev` serves this app."""

    error_type = "Livelambda.DevServerRunning"


class DevLock:
    def __init__(self, app_root: Path) -> None:
        self.path = state_dir(app_root) / LOCK_FILE
        self._fd: int | None = None
        self._info: dict[str, Any] = {}

    def acquire(self, **info: Any) -> None:
        """Hold the app's lock until this process ends, and say who holds it (`info`: ports...).
        Raises DevServerRunning when another process holds it; nothing is written then."""
        # Opened without O_TRUNC: the holder's information stays readable while we try.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DevServerRunning(_describe(holder)) from None
        self._fd = fd  # not inherited by children (PEP 446): the cloud and workers never hold it
        self._info = {"pid": os.getpid(), **info}
        self._write()

    def update(self, **info: Any) -> None:
        if self._fd is not None:
            self._info.update(info)
            self._write()

    def release(self) -> None:
        # The file stays: removing a lock file lets two processes lock two different files.
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def _write(self) -> None:
        assert self._fd is not None
        data = json.dumps(self._info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    pid, host = holder.get("pid"), holder.get("host") or "127.0.0.1"
    where = []
    if holder.get("port") is not None:
        where.append(f"dashboard http://{host}:{holder['port']}/")
    if holder.get("cloud_port") is not None:
        where.append(f"cloud http://127.0.0.1:{holder['cloud_port']}")
    who = f"pid {pid}" + (f"; {', '.join(where)}" if where else "") if pid else "another process"
    stop = f"Ctrl+C in its terminal, or `kill {pid}`" if pid else "Ctrl+C in its terminal"
    return (
        f"another livelambda dev is running for this app ({who}); one dev server serves an app (two "
        f"would share its live session). Use that one, or stop it ({stop}) and start again."
    )
