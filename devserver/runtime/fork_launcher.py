"""A `Launcher` that forks workers from a warm parent (forkserver.py) instead of starting a fresh
interpreter: after a save, a worker for the new code answers in milliseconds, not the ~230 ms a fresh
interpreter spends importing boto3.

    launcher = ForkLauncher(python, source, handler, env)   # env: the function's Lambda environment
    await launcher.start()                                  # False: it runs fresh interpreters (see .note)
    worker = Worker(function, launcher=launcher)

One forkserver per function, surviving reloads: it never imports the developer's code, so it never
goes stale. It is restarted in the background (the old one keeps serving until the new one is ready,
then exits once its last child has) when
- a child reports installed modules the parent lacks (the developer added `import pandas`): the new
  parent imports them too, so the next save does not pay for them;
- the function's environment changes (modules may read it when imported).
When it cannot start or dies, workers are started by the fallback launcher (SubprocessLauncher) and
`note` says why; it is tried again later. `restart()` starts afresh at once (the runner's
per-generation policy), `retire()` lets a replaced launcher's forkservers exit once their children
have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from devserver.runtime.launcher import (
    Launcher,
    LaunchError,
    LaunchKind,
    LaunchSpec,
    PopenHandle,
    ProcessHandle,
    SubprocessLauncher,
    kill_group,
)
from devserver.runtime.logs import LogBuffer, PipeReader
from devserver.status import ForkserverStatus

log = logging.getLogger("livelambda.forkserver")

FORKSERVER_PATH = Path(__file__).resolve().with_name("forkserver.py")
START_TIMEOUT_S = 60.0  # preloading pandas or torch on a busy laptop takes a while
_SPAWN_TIMEOUT_S = 10.0
_EXIT_WAIT_S = 5.0
_RETRY_AFTER_S = 30.0  # after a failed start, spawn fresh interpreters this long before trying again
_PRELOAD_CHUNK = 500  # module names a message
_SOCKET_BUFFER = 4 << 20
_MAX_MSG = 1 << 20


JsonObject = dict[str, Any]  # a message of the forkserver's channel


def _resolver(future: asyncio.Future[None]) -> Callable[[], None]:
    """A reader/writer callback that resolves `future` once."""

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    return resolve


class ForkServerError(LaunchError):
    """The forkserver could not start, died, or refused a spawn. The message says why."""


class ForkServerThreaded(ForkServerError):
    """Preloading started threads in the parent: forking it could hang the children."""

    def __init__(self, message: str, culprits: list[str]) -> None:
        super().__init__(message)
        self.culprits = culprits


def fork_supported() -> str | None:
    """None when this platform can run a forkserver, else why not. Linux only: the workers' death
    with the dev server rests on PR_SET_PDEATHSIG, the channel on AF_UNIX SOCK_SEQPACKET."""
    if not sys.platform.startswith("linux"):
        return f"forked workers need Linux (this is {sys.platform}): workers start as fresh interpreters"
    if not hasattr(socket, "SOCK_SEQPACKET") or not hasattr(socket, "send_fds"):
        return "this Python lacks SOCK_SEQPACKET or send_fds: workers start as fresh interpreters"
    return None


class ForkedProcess:
    """A worker forked by a forkserver (a ProcessHandle). It is not our child: its exit code comes from
    the forkserver's "exited" message, or, if the forkserver died, from the process vanishing."""

    kind: LaunchKind = "fork"

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def _set_exit(self, code: int) -> None:
        if not self._exit.done():
            self._exit.set_result(code)

    async def _wait_vanished(self) -> None:
        """The forkserver is gone, and the kernel killed its children (PR_SET_PDEATHSIG): wait until
        this one is gone too, then record it as killed. (It is not signalled from here: once reaped,
        its pid may belong to someone else.)"""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(_process_gone(self._pid), _EXIT_WAIT_S)
        self._set_exit(-signal.SIGKILL)


async def _process_gone(pid: int) -> None:
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError:
            fd = None
        if fd is not None:
            loop = asyncio.get_running_loop()
            gone: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _resolver(gone))
            try:
                await gone
            finally:
                loop.remove_reader(fd)
                os.close(fd)
            return
    while _alive(pid):
        await asyncio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class ForkServerProcess:
    """One forkserver process and its control channel (see forkserver.py for the protocol)."""

    def __init__(
        self,
        python: Path,
        source: Path,
        handler: str,
        env: Mapping[str, str],
        *,
        preload: Iterable[str] = (),
        exclude: Iterable[str] = (),
        on_imported: Callable[[list[str]], None] | None = None,
        on_lost: Callable[[ForkServerProcess], None] | None = None,
    ) -> None:
        self.exclude = sorted(exclude)  # never preload these (they start threads when imported)
        self.python = Path(python)
        self.source = Path(source)
        self.handler = handler
        self.env = dict(env)
        self.preload = list(preload)
        self.on_imported = on_imported
        self.on_lost = on_lost
        self.info: JsonObject = {}  # the "ready" message
        self.children: dict[int, ForkedProcess] = {}
        self.retiring = False
        self.lost: str | None = None  # why it is gone, once it is
        self._proc: PopenHandle | None = None
        self._sock: socket.socket | None = None
        self._stderr = LogBuffer(16 * 1024)
        self._stderr_reader: PipeReader | None = None
        self._ready: asyncio.Future[JsonObject] | None = None
        self._pending: dict[int, asyncio.Future[JsonObject]] = {}
        self._ids = 0
        self._send_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def usable(self) -> bool:
        """Preloaded, serving, and neither retiring nor gone."""
        ready = self._ready
        return (
            self.lost is None
            and not self.retiring
            and ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.exception() is None
        )

    def output(self) -> str:
        """What the forkserver printed (the tail): a traceback when it failed."""
        if self._stderr_reader is not None:
            self._stderr_reader.drain()
        return self._stderr.text().strip()

    async def start(self, timeout: float = START_TIMEOUT_S) -> JsonObject:
        """Start the process and wait until it has preloaded; raises ForkServerError saying why not."""
        loop = asyncio.get_running_loop()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:
            raise ForkServerError(f"cannot open the forkserver's channel: {exc}") from exc
        for sock in (ours, theirs):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        err_r, err_w = os.pipe()
        argv = [
            str(self.python), str(FORKSERVER_PATH),
            "--fd", str(theirs.fileno()),
            "--parent", str(os.getpid()),
            "--source", str(self.source),
            "--handler", self.handler,
        ]  # fmt: skip
        try:
            popen = subprocess.Popen(
                argv,
                cwd=self.source,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=err_w,
                stderr=err_w,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # Ctrl+C in the terminal is the dev server's to handle
            )
        except OSError as exc:
            ours.close()
            for fd in (err_r, err_w):
                os.close(fd)
            raise ForkServerError(exc.errno, f"cannot start {self.python}: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        os.close(err_w)
        self._proc = PopenHandle(popen)
        self._stderr_reader = PipeReader([err_r], self._stderr.write)
        self._sock = ours
        ours.setblocking(False)
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        self._watch = asyncio.create_task(self._watch_exit(), name=f"forkserver {popen.pid} exit")
        try:
            for i in range(0, len(self.preload), _PRELOAD_CHUNK):
                chunk = self.preload[i : i + _PRELOAD_CHUNK]
                await self._send({"op": "preload", "modules": chunk})
            await self._send({"op": "start", "exclude": self.exclude})
            info = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            await self.close()
            message = f"the forkserver did not finish preloading within {timeout:.0f} s"
            raise ForkServerError(message) from None
        except (ForkServerError, OSError) as exc:
            await self.close()
            detail = self.output()
            raise ForkServerError(f"{exc}" + (f": {detail.splitlines()[-1]}" if detail else "")) from None
        poisoned = info.get("poisoned")
        if poisoned:
            await self.close()
            raise ForkServerError(
                f"a preloaded module imported {poisoned}, awslambdaric's native client, in the parent: "
                "forked workers could not reach their own Runtime API"
            )
        threads = int(info.get("threads") or 1)
        if threads > 1:
            await self.close()
            culprits = [str(m) for m in info.get("threaded_by") or []]
            by = f" ({', '.join(culprits)})" if culprits else ""
            raise ForkServerThreaded(
                f"preloading started {threads - 1} thread(s) in the forkserver{by}; forking a threaded "
                "process could hang its children",
                culprits,
            )
        self.info = info
        return info

    async def spawn(self, spec: LaunchSpec) -> ForkedProcess:
        if not self.usable:
            raise ForkServerError(f"the forkserver is {'gone: ' + self.lost if self.lost else 'not ready'}")
        self._ids += 1
        request_id = self._ids
        env = dict(spec.env)
        message = {
            "op": "spawn",
            "id": request_id,
            "cwd": str(spec.cwd),
            "handler": spec.handler,
            "env_set": {k: v for k, v in env.items() if self.env.get(k) != v},
            "env_unset": [k for k in self.env if k not in env],
        }
        reply: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        try:
            await self._send(message, [spec.stdout, spec.stderr])
            answer = await asyncio.wait_for(asyncio.shield(reply), _SPAWN_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ForkServerError(f"the forkserver did not fork within {_SPAWN_TIMEOUT_S:.0f} s") from None
        except OSError as exc:
            if isinstance(exc, ForkServerError):
                raise
            raise ForkServerError(f"cannot reach the forkserver: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        if answer.get("op") != "spawned":
            raise ForkServerError(f"the forkserver could not fork: {answer.get('error')}")
        handle = self.children[int(answer["pid"])]
        return handle

    def retire(self) -> None:
        """Take no more spawns; exit once the last child has (they are draining)."""
        self.retiring = True
        if not self.children:
            self._close_soon()

    async def close(self) -> None:
        """End of file to the forkserver: it kills and reaps its children, then exits."""
        self.retiring = True
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), _EXIT_WAIT_S)
            except asyncio.TimeoutError:
                kill_group(self._proc.pid, signal.SIGKILL)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), _EXIT_WAIT_S)
        self._mark_lost("closed")
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        if self._stderr_reader is not None:
            self._stderr_reader.close()
            self._stderr_reader = None

    def _close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.close())

    # -- the channel ---------------------------------------------------------------------------

    async def _send(self, message: JsonObject, fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        async with self._send_lock:
            while True:
                sock = self._sock
                if sock is None:
                    raise ForkServerError("the forkserver's channel is closed")
                try:
                    socket.send_fds(sock, [data], fds or [])
                    return
                except BlockingIOError:
                    await self._writable(sock)

    async def _writable(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(sock.fileno(), _resolver(ready))
        try:
            await ready
        finally:
            loop.remove_writer(sock.fileno())

    def _readable(self) -> None:
        while self._sock is not None:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._sock, _MAX_MSG, 4)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                os.close(fd)
            if not data:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
                self._sock.close()
                self._sock = None
                self._mark_lost("its channel closed")
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            self._dispatch(message)

    def _dispatch(self, message: JsonObject) -> None:
        op = message.get("op")
        if op == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
        elif op in ("spawned", "spawn_failed"):
            if op == "spawned":
                pid = int(message["pid"])
                self.children[pid] = ForkedProcess(pid)
            reply = self._pending.get(int(message.get("id") or 0))
            if reply is not None and not reply.done():
                reply.set_result(message)
            elif op == "spawned":  # nobody waits for it any more (timed out): do not leak it
                kill_group(int(message["pid"]), signal.SIGKILL)
        elif op == "exited":
            child = self.children.pop(int(message["pid"]), None)
            if child is not None:
                child._set_exit(int(message["returncode"]))
            if self.retiring and not self.children:
                self._close_soon()
        elif op == "imported":
            modules = message.get("modules")
            if self.on_imported is not None and isinstance(modules, list):
                self.on_imported([str(m) for m in modules])
        elif op == "error":
            log.warning("forkserver %s: %s", self.pid, message.get("error"))

    async def _watch_exit(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        self._mark_lost(f"it exited ({_describe(code)})")

    def _mark_lost(self, why: str) -> None:
        if self.lost is not None:
            return
        self.lost = why
        error = ForkServerError(f"the forkserver is gone: {why}")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: no "never retrieved" warning when nobody waits
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(error)
        for child in list(self.children.values()):
            task = asyncio.ensure_future(child._wait_vanished())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.children.clear()
        if self.on_lost is not None and not self.retiring:
            self.on_lost(self)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


class ForkLauncher:
    """Forks workers of ONE function (interpreter, source directory, handler) from a warm forkserver."""

    def __init__(
        self,
        python: Path,
        source: Path,
        handler: str,
        env: Mapping[str, str],
        *,
        fallback: Launcher | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        restart_on_new_imports: bool = True,
    ) -> None:
        self.python = Path(python)
        self.source = Path(source)
        self.handler = handler
        self.env = dict(env)
        self.fallback: Launcher = fallback or SubprocessLauncher()
        self.start_timeout_s = start_timeout_s
        self.restart_on_new_imports = restart_on_new_imports
        self.note: str | None = None  # why workers are not forked right now, or the last restart
        self.restarts = 0
        self.started_at: float | None = None
        self._wanted: set[str] = set()  # installed modules children imported: the next parent preloads them
        self._excluded: set[str] = set()  # modules that start threads when imported: never preloaded
        self._current: ForkServerProcess | None = None
        self._old: set[ForkServerProcess] = set()
        self._task: asyncio.Task[None] | None = None  # a start or restart in progress
        self._again: str | None = None  # another restart was asked for while one ran
        self._failed_at: float | None = None
        self._closed = False
        self._retired = False  # replaced: no new forkserver; the ones left exit after their children
        unsupported = fork_supported()
        if unsupported:
            self.note = unsupported
            self._failed_at = float("inf")

    # -- state ---------------------------------------------------------------------------------

    @property
    def kind(self) -> LaunchKind:
        """How workers start now: "fork" (from the forkserver) or "spawn" (fresh interpreters)."""
        return "fork" if self._current is not None and self._current.usable else "spawn"

    @property
    def server(self) -> ForkServerProcess | None:
        return self._current

    def info(self) -> ForkserverStatus:
        """For the dashboard: how workers start, and the forkserver's pid, Python and restarts."""
        self._forget_closed()
        server = self._current
        python = server.info.get("python") if server else None
        modules = server.info.get("modules") if server else None
        return ForkserverStatus(
            kind=self.kind,
            pid=server.pid if server and server.usable else None,
            python=str(python) if python is not None else None,
            preloaded_modules=modules if isinstance(modules, int) else None,
            restarts=self.restarts,
            restarting=self._task is not None and not self._task.done(),
            note=self.note,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> bool:
        """Start the forkserver (once); True when workers will be forked, False when not (see `note`)."""
        if self._current is None and self._task is None and self._failed_at is None:
            self._task = asyncio.ensure_future(self._run_restarts("start"))
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.kind == "fork"

    def restart_soon(self, reason: str) -> None:
        """Start a new forkserver in the background; the current one serves until it is ready."""
        if self._closed or self._retired:
            return
        if self._task is not None and not self._task.done():
            self._again = reason
            return
        self._task = asyncio.ensure_future(self._run_restarts(reason))

    def restart(self, reason: str) -> None:
        """Start afresh: launches from now on wait for a new forkserver; the current one retires (it
        exits once its last child has)."""
        if self._closed or self._retired:
            return
        old, self._current = self._current, None
        if old is not None:
            self._old.add(old)
            old.retire()
        self.restart_soon(reason)

    def retire(self) -> None:
        """Replaced by another launcher: no new forkserver; each one exits once its last child has (its
        workers drain). A launch from now on starts a fresh interpreter."""
        self._retired = True
        for server in (self._current, *self._old):
            if server is not None:
                server.retire()

    def set_environment(self, env: Mapping[str, str]) -> None:
        """The function's environment changed: workers get it at once (each spawn carries its own
        environment); a new parent with it is started in the background."""
        env = dict(env)
        if env == self.env:
            return
        self.env = env
        if self._current is not None or self._task is not None:
            self.restart_soon("environment changed")

    async def close(self) -> None:
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        servers = [s for s in (self._current, *self._old) if s is not None]
        self._current = None
        self._old.clear()
        await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)

    async def _run_restarts(self, reason: str) -> None:
        while True:
            await self._start_server(reason)
            if self._again is None or self._closed:
                return
            reason, self._again = self._again, None

    async def _start_server(self, reason: str) -> None:
        while True:
            server = ForkServerProcess(
                self.python,
                self.source,
                self.handler,
                self._server_env(),
                preload=sorted(self._wanted),
                exclude=sorted(self._excluded),
                on_imported=self._imported,
                on_lost=self._lost,
            )
            try:
                await server.start(self.start_timeout_s)
                break
            except ForkServerThreaded as exc:
                culprits = set(exc.culprits) - self._excluded
                if not culprits:
                    self._failed(reason, exc)
                    return
                self._excluded |= culprits  # children import them themselves; try again without
                self._wanted -= culprits
            except ForkServerError as exc:
                self._failed(reason, exc)
                return
        if self._closed or self._retired:
            await server.close()
            return
        old, self._current = self._current, server
        self._failed_at = None
        self.started_at = time.time()
        shown = ", ".join(sorted(self._excluded))
        left_out = f" (not preloaded, as they start threads: {shown})" if shown else ""
        if old is not None or reason != "start":  # a replacement, or a start after a death or failure
            self.restarts += 1
            self.note = f"forkserver restarted: {reason}{left_out}"
        else:
            self.note = f"forkserver started{left_out}" if left_out else None
        if old is not None:
            self._old.add(old)
            old.retire()
            self._forget_closed()

    def _failed(self, reason: str, exc: ForkServerError) -> None:
        self._failed_at = time.monotonic()
        serving = self._current is not None and self._current.usable
        running = "" if serving else "; workers start as fresh interpreters"
        self.note = f"forkserver failed to start ({reason}): {exc}{running}"
        log.warning("%s", self.note)

    def _server_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.pop("AWS_LAMBDA_RUNTIME_API", None)  # each child gets its own; the parent must not have one
        return env

    def _forget_closed(self) -> None:
        for server in list(self._old):
            if server.lost is not None:
                self._old.discard(server)

    def _imported(self, modules: list[str]) -> None:
        new = set(modules) - self._wanted - self._excluded
        if not new:
            return
        self._wanted |= new
        if self.restart_on_new_imports:
            tops = sorted({m.split(".", 1)[0] for m in new})
            shown = ", ".join(tops[:4]) + (", ..." if len(tops) > 4 else "")
            self.restart_soon(f"new imports ({shown})")

    def _lost(self, server: ForkServerProcess) -> None:
        if server is not self._current or self._closed or self._retired:
            return
        self._current = None
        self.note = f"forkserver lost ({server.lost}); restarting it"
        log.warning("%s", self.note)
        self.restart_soon("the previous one died")

    # -- Launcher ------------------------------------------------------------------------------

    async def launch(self, spec: LaunchSpec) -> ProcessHandle:
        if self._closed:
            raise LaunchError("the launcher is closed")
        if (Path(spec.python), spec.handler, Path(spec.cwd)) != (self.python, self.handler, self.source):
            return await self.fallback.launch(spec)  # not what this forkserver preloads for
        server = await self._usable_server()
        if server is None:
            return await self.fallback.launch(spec)
        try:
            return await server.spawn(spec)
        except ForkServerError as exc:
            if self._closed:
                raise
            self.note = f"forking a worker failed ({exc}); started a fresh interpreter instead"
            log.warning("%s", self.note)
            if server is self._current:
                self.restart_soon("a spawn failed")
            return await self.fallback.launch(spec)

    async def _usable_server(self) -> ForkServerProcess | None:
        current = self._current
        if current is not None and current.usable:
            return current
        if self._retired:
            return None
        if self._task is None or self._task.done():
            if self._failed_at is not None and time.monotonic() - self._failed_at < _RETRY_AFTER_S:
                return None  # it failed a moment ago: fresh interpreters until it is tried again
            self.restart_soon("start" if self.started_at is None else "retry")
        if self._task is not None:
            try:
                await asyncio.shield(self._task)  # nobody serves meanwhile: a start takes as long as a spawn
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise  # we are cancelled, not the start
            if self._closed:
                raise LaunchError("the launcher is closed")
        current = self._current
        return current if current is not None and current.usable else None
