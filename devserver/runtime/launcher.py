"""How a worker process comes to life. The Worker owns the Runtime API and the pipes; a Launcher
only starts `awslambdaric` with the environment and output descriptors it is given.

`SubprocessLauncher` starts a fresh interpreter; `ForkLauncher` (fork_launcher.py) forks one from a
warm parent. Both implement `Launcher`, so the pool and the runner never ask which one they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devserver.status import ForkserverStatus, LaunchKind
from stub_runtime.errors import DevServerFault


@dataclass(frozen=True)
class LaunchSpec:
    python: Path  # the function's interpreter
    handler: str  # what `_HANDLER` says: "module.function"
    cwd: Path  # the function's source directory (LAMBDA_TASK_ROOT)
    env: Mapping[str, str]  # the complete environment of the process
    stdout: int  # write ends of the worker's pipes; the worker closes its copies after launch
    stderr: int


class ProcessHandle(Protocol):
    """A started worker process. It must lead its own process group (`os.killpg(pid, ...)` reaches it
    and whatever it spawned: that is how the worker freezes, thaws and kills it)."""

    @property
    def pid(self) -> int: ...

    @property
    def kind(self) -> LaunchKind:
        """How it started."""
        ...

    async def wait(self) -> int:
        """Wait for the process to end; its exit code, negative when a signal killed it."""
        ...


class Launcher(Protocol):
    """Starts the worker processes of one function, and says how for the dashboard."""

    @property
    def kind(self) -> LaunchKind:
        """How the next worker would start."""
        ...

    @property
    def note(self) -> str | None:
        """Why workers start the way they do, when that needs saying (a forkserver that failed...)."""
        ...

    def info(self) -> ForkserverStatus | None:
        """The forkserver's state for the dashboard; None when there is none."""
        ...

    async def start(self) -> bool:
        """Get ready to launch (a forkserver preloads); True when workers will be forked."""
        ...

    async def launch(self, spec: LaunchSpec) -> ProcessHandle: ...

    def set_environment(self, env: Mapping[str, str]) -> None:
        """The function's Lambda environment changed (modules may read it when imported)."""
        ...

    def restart(self, reason: str) -> None:
        """Start afresh: launches from now on wait for a new parent (the current one retires)."""
        ...

    def retire(self) -> None:
        """Replaced by another launcher: start nothing new; the workers it started drain, then
        whatever serves them exits."""
        ...

    async def close(self) -> None:
        """Stop now, with whatever it still runs."""
        ...


class LaunchError(DevServerFault, OSError):
    """The interpreter could not be started (missing, not executable...)."""


class PopenHandle:
    """A child started with subprocess.Popen; its exit is watched with a pidfd where the OS has them
    (Linux), else by a thread blocked in waitpid."""

    kind: LaunchKind = "spawn"

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._exit: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    async def wait(self) -> int:
        if self._exit is None:
            self._exit = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._exit)

    async def _wait(self) -> int:
        code = self._popen.poll()
        if code is not None:
            return code
        if not hasattr(os, "pidfd_open"):
            return await asyncio.to_thread(self._popen.wait)
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(self._popen.pid)
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return self._popen.wait()


# On Linux the worker asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), then runs
# awslambdaric exactly as `python -m awslambdaric HANDLER` would. Without it a worker outlives a
# parent killed by a signal; a frozen one would stay stopped forever. (The parent is the thread that
# started the worker: launch from the event loop's thread, which lives as long as the workers.)
_LINUX_ENTRY = (
    "import os,sys,runpy\n"
    "try:\n import ctypes;ctypes.CDLL(None).prctl(1,9)\n"  # PR_SET_PDEATHSIG, SIGKILL
    "except Exception:pass\n"
    "if os.getppid()!=int(sys.argv.pop(1)):os._exit(1)\n"  # the parent died before prctl
    "runpy.run_module('awslambdaric',run_name='__main__',alter_sys=True)"
)


def awslambdaric_argv(python: Path, handler: str) -> list[str]:
    """The command line of a worker: awslambdaric as `__main__`, given the handler."""
    if sys.platform.startswith("linux"):
        return [str(python), "-c", _LINUX_ENTRY, str(os.getpid()), handler]
    return [str(python), "-m", "awslambdaric", handler]


class SubprocessLauncher:
    """`python -m awslambdaric HANDLER` in a new session, as a fresh interpreter. Nothing to start,
    restart or stop: each launch stands alone."""

    kind: LaunchKind = "spawn"

    def __init__(self, note: str | None = None) -> None:
        self.note = note

    def info(self) -> None:
        return None

    async def start(self) -> bool:
        return False

    def set_environment(self, env: Mapping[str, str]) -> None:
        pass  # each launch carries its whole environment

    def restart(self, reason: str) -> None:
        pass

    def retire(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def launch(self, spec: LaunchSpec) -> PopenHandle:
        try:
            popen = subprocess.Popen(
                awslambdaric_argv(spec.python, spec.handler),
                cwd=spec.cwd,
                env=dict(spec.env),
                stdin=subprocess.DEVNULL,
                stdout=spec.stdout,
                stderr=spec.stderr,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchError(exc.errno, f"cannot start {spec.python}: {exc.strerror or exc}") from exc
        return PopenHandle(popen)


def kill_group(pid: int, sig: int) -> bool:
    """Signal a worker's process group; False if it is gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
    return True
