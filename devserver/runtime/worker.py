"""One worker: a process running the real `awslambdaric`, behind its own Runtime API endpoint, with
Lambda's semantics for one sandbox.

- Init happens once, when the process starts: the handler module is imported, then the runtime asks
  for work. An init error (`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`, ...) is what the
  first invocation gets; the process then exits and the worker is dead.
- One invocation at a time. The function's timeout starts when the runtime receives the event; at
  the deadline the process group is killed and the outcome is `Sandbox.Timedout`.
- A process that dies mid-invocation gives `Runtime.ExitError` ("signal: segmentation fault").
- With `freeze_when_idle`, the process group is stopped (SIGSTOP) as soon as the runtime asks for the
  next event and none is waiting, and continued (SIGCONT) when one comes, as Lambda freezes sandboxes.

An invocation's outcome is made once, where it becomes known (the runtime's answer, inside the Runtime
API's callback; the timer; the process's exit), handed to the request's `on_result` hook there, and
returned by `invoke` a loop step later: the same object both ways.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from devserver.config import FunctionConfig
from devserver.runtime.app_env import with_import_hint
from devserver.runtime.environment import lambda_environment
from devserver.runtime.invocation import (
    MAX_RESPONSE_BYTES,
    InvocationOutcome,
    InvocationRequest,
    Status,
    error_payload,
    exit_payload,
    function_arn,
    timeout_payload,
)
from devserver.runtime.launcher import (
    Launcher,
    LaunchError,
    LaunchKind,
    LaunchSpec,
    ProcessHandle,
    SubprocessLauncher,
    kill_group,
)
from devserver.runtime.logs import DEFAULT_LOG_LIMIT, LogBuffer, PipeReader
from devserver.runtime.runtime_api import RuntimeApiServer
from stub_runtime.errors import DevServerFault

WorkerState = Literal["new", "starting", "idle", "busy", "frozen", "dead"]

DEFAULT_INIT_TIMEOUT_S = 10.0  # Lambda's limit for the init phase of an on-demand function
_KILL_WAIT_S = 5.0
_ids = itertools.count(1)
_running: set[int] = set()  # process groups of started workers that have not exited


@atexit.register
def _kill_leftovers() -> None:
    """A safety net: worker processes lead their own sessions and would outlive an interpreter that
    exits without stopping them (a frozen one would stay stopped forever)."""
    for pid in list(_running):
        kill_group(pid, signal.SIGKILL)


class WorkerBusy(DevServerFault):
    """A worker runs one invocation at a time; the caller (the pool) broke that rule."""

    error_type = "Livelambda.WorkerBusy"


log = logging.getLogger("livelambda.worker")
Deliver = Callable[[InvocationRequest], None]  # answers a pending GET /invocation/next


@dataclass
class _Inflight:
    request: InvocationRequest
    done: asyncio.Future[InvocationOutcome]
    cold: bool  # the worker's first invocation: its init is counted in
    delivered_at: float | None = None  # monotonic


class Worker:
    def __init__(
        self,
        function: FunctionConfig,
        *,
        launcher: Launcher | None = None,
        region: str = "us-east-1",
        account: str = "000000000000",
        handler: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        extra_pythonpath: Sequence[str] = (),
        freeze_when_idle: bool = False,
        init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S,
        log_limit: int = DEFAULT_LOG_LIMIT,
        worker_id: str | None = None,
        measure_memory: bool = True,
        generation: int = 0,
    ) -> None:
        self.function = function
        self.generation = generation  # the code generation it loads (the dev server's reloads)
        self.measure_memory = measure_memory  # "Max Memory Used" costs a /proc read per invocation
        tag = f"{function.name}-g{generation}" if generation else function.name
        self.id = worker_id or f"{tag}-{next(_ids)}"
        self.handler = handler or function.handler
        self.region = region
        self.arn = function_arn(function.name, region, account)
        self.freeze_when_idle = freeze_when_idle
        self.init_timeout_s = init_timeout_s
        self.invocations = 0  # invocations this worker has run (or tried to)
        self.idle_since = time.monotonic()
        self.returncode: int | None = None
        self.launch_error: OSError | None = None  # why its process could not be started
        self._launcher: Launcher = launcher or SubprocessLauncher()
        self._extra_env = dict(extra_env or {})
        self._extra_pythonpath = tuple(extra_pythonpath)
        self._log_limit = log_limit
        self._logs = LogBuffer(log_limit)
        self._server = RuntimeApiServer(self)
        self._proc: ProcessHandle | None = None
        self._reader: PipeReader | None = None
        self._exit_task: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()
        self._poll: Deliver | None = None  # answers the runtime's pending GET /next
        self._polled = asyncio.Event()
        self._inflight: _Inflight | None = None
        self._init_error: tuple[bytes, str | None] | None = None
        self._launched_at: float | None = None
        self._ready_at: float | None = None
        self._frozen = False
        self._started = False
        self._stopping = False

    # -- state ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def launch_kind(self) -> LaunchKind | None:
        """How its process started ("fork" or "spawn"); None before it did."""
        return self._proc.kind if self._proc else None

    @property
    def alive(self) -> bool:
        """Started, and neither exited, nor failed its init, nor being stopped."""
        return self._started and not self._exited.is_set() and not self._stopping and self._init_error is None

    @property
    def busy(self) -> bool:
        return self._inflight is not None

    @property
    def ready(self) -> bool:
        """The runtime has loaded the handler and waits for an event."""
        return self._poll is not None

    @property
    def state(self) -> WorkerState:
        if self.launch_error is not None:
            return "dead"
        if not self._started:
            return "new"
        if not self.alive:
            return "dead"  # exited, init failed, or stopping
        if self.busy:
            return "busy"
        if self._frozen:
            return "frozen"
        return "idle" if self._ready_at is not None else "starting"

    @property
    def init_failure(self) -> tuple[bytes, str | None] | None:
        """(error JSON, errorType) if the runtime reported that it could not load the handler."""
        return self._init_error

    @property
    def init_duration_ms(self) -> float | None:
        if self._launched_at is None or self._ready_at is None:
            return None
        return (self._ready_at - self._launched_at) * 1000

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the Runtime API and the process. Init runs in the background; see `wait_ready`."""
        if self._started:
            return
        await self._server.start()
        env = lambda_environment(
            self.function,
            runtime_api=self._server.address,
            region=self.region,
            handler=self.handler,
            extra_env=self._extra_env,
            extra_pythonpath=self._extra_pythonpath,
        )
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        spec = LaunchSpec(
            python=self.function.python,
            handler=self.handler,
            cwd=self.function.source,
            env=env,
            stdout=out_w,
            stderr=err_w,
        )
        self._launched_at = time.monotonic()
        try:
            self._proc = await self._launcher.launch(spec)
        except BaseException as exc:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            await self._server.close()
            if isinstance(exc, OSError):
                self.launch_error = exc
            raise
        os.close(out_w)
        os.close(err_w)
        self._reader = PipeReader([out_r, err_r], self._logs_write)
        self._started = True
        _running.add(self._proc.pid)
        self._exit_task = asyncio.create_task(self._watch_exit(self._proc), name=f"worker {self.id} exit")

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the runtime has loaded the handler and asks for work. False if it failed to (init
        error, exit) or did not within `timeout`; the next invocation then reports why."""
        if self.ready:
            return True
        polled = asyncio.ensure_future(self._polled.wait())
        exited = asyncio.ensure_future(self._exited.wait())
        try:
            await asyncio.wait({polled, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            polled.cancel()
            exited.cancel()
        return self.ready

    def freeze(self) -> None:
        """Stop the process group (SIGSTOP), as Lambda freezes an idle sandbox."""
        if (
            self.alive
            and not self._frozen
            and self._proc is not None
            and kill_group(self._proc.pid, signal.SIGSTOP)
        ):
            self._frozen = True

    def thaw(self) -> None:
        if self._frozen and self._proc is not None:
            kill_group(self._proc.pid, signal.SIGCONT)
            self._frozen = False

    async def stop(self) -> None:
        """Kill the process group and release the endpoint. Safe to call more than once."""
        self._stopping = True
        if self._proc is not None and not self._exited.is_set():
            kill_group(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._exited.wait(), _KILL_WAIT_S)
        self._frozen = False
        self._poll = None
        await self._server.close()
        if self._exit_task is not None and not self._exit_task.done():
            self._exit_task.cancel()
        if self._reader is not None:
            self._reader.close()

    # -- invoking ------------------------------------------------------------------------------

    async def invoke(self, request: InvocationRequest) -> InvocationOutcome:
        """Run one invocation to its end: result, handler error, init error, timeout or crash."""
        if self._inflight is not None:
            raise WorkerBusy(
                f"worker {self.id} is already running request {self._inflight.request.request_id}"
            )
        if not self._started:
            await self.start()
        inflight = _Inflight(request, asyncio.get_running_loop().create_future(), cold=self.invocations == 0)
        self._inflight = inflight
        self.invocations += 1
        try:
            outcome = await self._run(inflight)
        except asyncio.CancelledError:
            # The caller gave up mid-invocation: the runtime holds an event nobody waits for.
            if self._proc is not None:
                kill_group(self._proc.pid, signal.SIGKILL)
            self._inflight = None
            raise
        self._inflight = None
        self.idle_since = time.monotonic()
        if self.freeze_when_idle and self._poll is not None:
            self.freeze()  # the runtime already asked for the next event
        return outcome

    async def _run(self, inflight: _Inflight) -> InvocationOutcome:
        request = inflight.request
        if self._init_error is not None:
            return self._settle(inflight, "init_error", *self._init_error)
        if self._exited.is_set() or self._stopping:
            code = self.returncode or -signal.SIGKILL
            return self._settle(
                inflight, "crashed", exit_payload(request.request_id, code), "Runtime.ExitError"
            )
        self.thaw()
        # 1. Wait for the runtime to ask for work (it is loading the handler on a cold start).
        if self._poll is None:
            wait_s = self.init_timeout_s
            if request.deadline_ms is not None:
                wait_s = min(wait_s, max(0.0, request.deadline_ms / 1000 - time.time()))
            polled = asyncio.ensure_future(self._polled.wait())
            either: set[asyncio.Future[Any]] = {polled, inflight.done}
            try:
                await asyncio.wait(either, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                polled.cancel()
            if self._poll is None and not inflight.done.done():
                # Timed out first: the process that is killed now must not end it as a crash.
                self._settle(
                    inflight, "timeout", timeout_payload(request.request_id, wait_s), "Sandbox.Timedout"
                )
                await self._kill()
            if inflight.done.done():
                return inflight.done.result()
        # 2. Hand the event over, with the deadline the runtime will see.
        timeout_s = self.function.timeout if request.timeout_s is None else request.timeout_s
        stated_s = timeout_s  # what a timeout says, as Lambda states the nominal timeout
        now = time.time()
        deadline_s = now + timeout_s
        if request.deadline_ms is not None and request.deadline_ms / 1000 < deadline_s:
            deadline_s = request.deadline_ms / 1000
            timeout_s = max(0.0, deadline_s - now)
            if request.timeout_s is None:
                stated_s = timeout_s
        delivered = dataclasses.replace(
            request,
            deadline_ms=int(deadline_s * 1000),
            invoked_function_arn=request.invoked_function_arn or self.arn,
        )
        inflight.delivered_at = time.monotonic()
        deliver, self._poll = self._poll, None
        self._polled.clear()
        assert deliver is not None
        deliver(delivered)  # written to the runtime now
        # 3. Wait for the answer, the end of the process, or the deadline. A timer that settles the
        # future, not wait_for(shield()): the answer then reaches the caller one loop step after it
        # arrives instead of three (and before the runtime's next poll is read).
        timer = asyncio.get_running_loop().call_later(timeout_s, self._time_out, inflight, stated_s)
        try:
            outcome = await inflight.done
        finally:
            timer.cancel()
        if outcome.status == "timeout":
            await self._kill()
        return outcome

    def _settle(
        self, inflight: _Inflight, status: Status, payload: bytes, error_type: str | None
    ) -> InvocationOutcome:
        """The invocation's outcome, made once: to the request's hook now, to `invoke` a step later."""
        if self._reader is not None:
            self._reader.drain()  # the runtime wrote the output before its answer
        logs, self._logs = self._logs, LogBuffer(self._log_limit)
        end = time.monotonic()
        started = inflight.delivered_at if inflight.delivered_at is not None else end
        outcome = InvocationOutcome(
            request_id=inflight.request.request_id,
            status=status,
            payload=payload,
            error_type=error_type,
            logs=logs.text(),
            logs_cut_bytes=logs.total_cut(),
            duration_ms=(end - started) * 1000,
            init_duration_ms=self.init_duration_ms if inflight.cold else None,
            worker_id=self.id,
            cold=inflight.cold,
            max_memory_mb=_peak_memory_mb(self.pid) if self.measure_memory and self.alive else None,
            generation=self.generation,
            launcher=self.launch_kind,
        )
        inflight.done.set_result(outcome)
        hook = inflight.request.on_result
        if hook is not None:
            try:
                hook(outcome)
            except Exception:  # the outcome still reaches the caller the usual way
                log.exception("the on_result hook of request %s failed", outcome.request_id)
        return outcome

    def _time_out(self, inflight: _Inflight, timeout_s: float) -> None:
        if not inflight.done.done():
            request = inflight.request
            expired = timeout_payload(request.request_id, timeout_s, request.timeout_note)
            self._settle(inflight, "timeout", expired, "Sandbox.Timedout")

    async def _kill(self) -> None:
        if self._proc is not None and not self._exited.is_set():
            kill_group(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._exited.wait(), _KILL_WAIT_S)

    async def _watch_exit(self, proc: ProcessHandle) -> None:
        try:
            code = await proc.wait()
        except LaunchError:
            code = -signal.SIGKILL
        self.returncode = code
        self._frozen = False
        _running.discard(proc.pid)
        if self._reader is not None:
            self._reader.drain()
        self._exited.set()
        self._poll = None
        inflight = self._inflight
        if inflight is not None and not inflight.done.done():
            if self._init_error is not None:
                self._settle(inflight, "init_error", *self._init_error)
            else:
                self._settle(
                    inflight, "crashed", exit_payload(inflight.request.request_id, code), "Runtime.ExitError"
                )

    def _logs_write(self, data: bytes) -> None:
        self._logs.write(data)

    # -- the Runtime API, called by the server -------------------------------------------------

    def next_invocation(self, deliver: Deliver) -> Callable[[], None]:
        """The runtime's long poll: `invoke` calls `deliver` with the event (the server writes it out
        there and then). Returns what withdraws the poll (the runtime went away)."""
        if self._ready_at is None:
            self._ready_at = time.monotonic()
        self._poll = deliver  # a second poll replaces the first (the runtime reconnected)
        self._polled.set()
        if self.freeze_when_idle and self._inflight is None:
            self.freeze()

        def withdraw() -> None:
            if self._poll is deliver:
                self._poll = None
                self._polled.clear()

        return withdraw

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        inflight = self._current(request_id)
        if inflight is None:
            return False
        if len(body) > MAX_RESPONSE_BYTES:
            message = (
                f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes)."
            )
            too_large = "Function.ResponseSizeTooLarge"
            self._settle(inflight, "handler_error", error_payload(too_large, message), too_large)
        else:
            self._settle(inflight, "ok", body, None)
        return True

    def invocation_error(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        inflight = self._current(request_id)
        if inflight is None:
            return False
        self._settle(inflight, "handler_error", body, _error_type(body) or error_type or "Unhandled")
        return True

    def init_error(self, body: bytes, error_type: str | None) -> None:
        error_type = _error_type(body) or error_type or "Runtime.Unknown"
        if error_type == "Runtime.ImportModuleError":  # a missing package: say where to install it
            body = with_import_hint(body, self.function, self.handler)
        self._init_error = (body, error_type)
        inflight = self._inflight
        if inflight is not None and not inflight.done.done():
            self._settle(inflight, "init_error", body, error_type)

    def _current(self, request_id: str) -> _Inflight | None:
        inflight = self._inflight
        if inflight is None or inflight.request.request_id != request_id or inflight.done.done():
            return None
        if inflight.delivered_at is None:
            return None
        return inflight

    def __repr__(self) -> str:
        return f"<Worker {self.id} pid={self.pid} {self.state}>"


def _error_type(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("errorType"), str) and value["errorType"]:
        return value["errorType"]
    return None


def _peak_memory_mb(pid: int | None) -> int | None:
    """Peak resident memory (VmHWM) of a process, from /proc where there is one."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return max(1, int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        return None
    return None
