"""The workers of one function, used by the cloud's sandboxes and by the dev server's runner.

A free warm worker serves the next invocation, a new one starts when all are busy, up to
`max_workers`; beyond that callers wait in line or are throttled. Dead workers are dropped (the next
invocation starts a fresh one), idle ones are recycled after `idle_recycle_s`.

Code generations (the dev server's reloads): every worker loads the code of one generation, and an
invocation runs on a worker of the pool's current `generation`. `set_generation(n)` stops the idle
workers of older ones at once; the busy ones finish their invocation, then stop (they drain).
`prewarm()` starts a worker ahead of demand: the next invocation takes it even while it still loads.
`function` and `launcher` apply to the workers started from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devserver.config import FunctionConfig
from devserver.runtime import app_env
from devserver.runtime.invocation import InvocationOutcome, InvocationRequest, error_payload
from devserver.runtime.launcher import Launcher, SubprocessLauncher
from devserver.runtime.logs import DEFAULT_LOG_LIMIT
from devserver.runtime.worker import DEFAULT_INIT_TIMEOUT_S, Worker, WorkerState
from stub_runtime.errors import CallerFault, DevServerFault


class TooManyRequests(CallerFault):
    """Every worker of the function is busy and the caller asked not to wait (Lambda's throttle)."""

    error_type = "TooManyRequestsException"


class PoolClosed(DevServerFault):
    error_type = "Livelambda.PoolClosed"


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    pid: int | None
    state: WorkerState
    invocations: int


@dataclass(frozen=True)
class PoolStats:
    function: str
    invocations: int
    cold_starts: int
    throttles: int
    errors: int
    sandboxes: list[SandboxInfo] = field(default_factory=list)


@dataclass(eq=False)
class _Member:
    """A worker of the pool, its launch (awaited before it is used or stopped), and whether an
    invocation holds it."""

    worker: Worker
    started: asyncio.Future[None]
    reserved: bool = False

    def free(self, generation: int) -> bool:
        """Can take an invocation of `generation`: launching, loading or idle, and held by none."""
        worker = self.worker
        return (
            not self.reserved
            and worker.generation == generation
            and worker.state in ("new", "starting", "idle", "frozen")
        )


class WorkerPool:
    """The workers of one function (see the module docstring)."""

    def __init__(
        self,
        function: FunctionConfig,
        *,
        launcher: Launcher | None = None,
        region: str = "us-east-1",
        account: str = "000000000000",
        max_workers: int = 10,
        queue: bool = True,
        freeze_idle: bool = False,
        idle_recycle_s: float | None = None,
        handler: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        extra_pythonpath: Sequence[str] = (),
        init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S,
        log_limit: int = DEFAULT_LOG_LIMIT,
        measure_memory: bool = True,
    ) -> None:
        if max_workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.function = function  # what new workers run
        self.launcher: Launcher = launcher or SubprocessLauncher()  # how new workers start
        self.generation = 0
        self.max_workers = max_workers
        self.queue = queue
        self.freeze_idle = freeze_idle
        self.idle_recycle_s = idle_recycle_s
        self.init_timeout_s = init_timeout_s
        self._worker_options: dict[str, Any] = {
            "region": region,
            "account": account,
            "handler": handler,
            "extra_env": dict(extra_env or {}),
            "extra_pythonpath": tuple(extra_pythonpath),
            "freeze_when_idle": freeze_idle,
            "init_timeout_s": init_timeout_s,
            "log_limit": log_limit,
            "measure_memory": measure_memory,
        }
        self._members: list[_Member] = []
        self._slots = asyncio.Semaphore(max_workers)
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._recycler: asyncio.Task[None] | None = None
        self._env_ready = function.app_env is None  # else made (or checked) before the first worker
        self._stopping: set[asyncio.Task[None]] = set()
        self._warming: set[asyncio.Task[Worker]] = set()
        self.invocations = 0
        self.cold_starts = 0
        self.throttles = 0
        self.errors = 0

    @property
    def workers(self) -> list[Worker]:
        return [m.worker for m in self._members]

    async def invoke(self, request: InvocationRequest, *, queue: bool | None = None) -> InvocationOutcome:
        """Run `request` on a free worker of the current generation, else on a new one. When
        `max_workers` are busy: wait for one if `queue` (default: the pool's setting), else raise
        TooManyRequests."""
        if self._closed:
            raise PoolClosed(f"the workers of {self.function.name} are shut down")
        if not (self.queue if queue is None else queue) and self._slots.locked():
            self.throttles += 1
            raise TooManyRequests("Rate Exceeded.")
        self._start_recycler()
        async with self._slots:
            if self._closed:  # closed while it waited in line
                raise PoolClosed(f"the workers of {self.function.name} are shut down")
            self._active += 1
            self._idle.clear()
            try:
                return await self._invoke(request)
            finally:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    async def _invoke(self, request: InvocationRequest) -> InvocationOutcome:
        member = self._take()
        if member is None and not self._env_ready:
            problem = await app_env.prepare(self.function)  # once: the function's own venv, made off-loop
            if problem is not None:
                self.invocations += 1
                self.errors += 1
                return env_failure(request, problem, self.generation)
            self._env_ready = True
        if member is None:
            member = self._add()
        member.reserved = True
        self.invocations += 1
        worker = member.worker
        try:
            if not member.started.done():
                await asyncio.shield(member.started)
            if worker.launch_error is not None:
                outcome = launch_failure(request, worker, worker.launch_error)
            else:
                outcome = await worker.invoke(request)
        finally:
            member.reserved = False
            self._settle(member)
        if outcome.cold and outcome.launcher is not None:  # a process started for it
            self.cold_starts += 1
        if not outcome.ok:
            self.errors += 1
        return outcome

    def prewarm(self) -> asyncio.Future[Worker]:
        """Start a worker of the current generation ahead of demand. The future ends with it once it
        has loaded the handler, failed to, or used up its init time."""
        if self._closed:
            raise PoolClosed(f"the workers of {self.function.name} are shut down")
        task = asyncio.ensure_future(self._warm_up(self._add()))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)
        return task

    async def _warm_up(self, member: _Member) -> Worker:
        await asyncio.shield(member.started)
        worker = member.worker
        if worker.launch_error is None and not await worker.wait_ready(self.init_timeout_s):
            self._prune()  # its init failed (an invocation holding it reports why)
        return worker

    def set_generation(self, generation: int) -> None:
        """Invocations from now on run on workers of `generation`: the idle workers of older ones stop
        now, the busy ones once their invocation ends."""
        self.generation = generation
        for member in list(self._members):
            if member.worker.generation < generation and not member.reserved:
                self._remove(member)

    def _take(self) -> _Member | None:
        """The most recently used idle worker (the others stay idle and get recycled), else one that
        is still starting."""
        self._prune()
        free = [m for m in self._members if m.free(self.generation)]
        idle = [m for m in free if m.worker.state in ("idle", "frozen")]
        if idle:
            return max(idle, key=lambda m: m.worker.idle_since)
        return free[0] if free else None

    def _add(self) -> _Member:
        worker = Worker(
            self.function, launcher=self.launcher, generation=self.generation, **self._worker_options
        )
        member = _Member(worker, asyncio.ensure_future(_launch(worker)))
        self._members.append(member)
        return member

    def _settle(self, member: _Member) -> None:
        """After an invocation: keep the worker warm, or let it go (dead, or of an older generation)."""
        if not member.worker.alive or member.worker.generation != self.generation:
            self._remove(member)

    def _prune(self) -> None:
        """Drop workers that died while idle (killed from outside, init failed after a warm-up...)."""
        for member in list(self._members):
            if not member.reserved and member.worker.state == "dead":
                self._remove(member)

    def _remove(self, member: _Member) -> None:
        if member in self._members:
            self._members.remove(member)
            task = asyncio.ensure_future(_stop(member))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _start_recycler(self) -> None:
        if self.idle_recycle_s is None or self._recycler is not None:
            return
        self._recycler = asyncio.create_task(self._recycle_idle(), name=f"pool {self.function.name} recycler")

    async def _recycle_idle(self) -> None:
        assert self.idle_recycle_s is not None
        interval = min(1.0, max(0.05, self.idle_recycle_s / 4))
        while not self._closed:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_recycle_s
            for member in list(self._members):
                if member.reserved:
                    continue
                worker = member.worker
                state = worker.state
                idle = state in ("idle", "frozen", "starting") and worker.idle_since < cutoff
                if state == "dead" or idle:
                    self._remove(member)

    async def drain(self) -> None:
        """Wait until no invocation is running."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop every worker now (running invocations end as crashed). The launcher is its owner's."""
        self._closed = True
        if self._recycler is not None:
            self._recycler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recycler
        for task in self._warming:
            task.cancel()
        members, self._members = self._members, []
        stops = [_stop(m) for m in members]
        await asyncio.gather(*stops, *self._stopping, *self._warming, return_exceptions=True)

    def stats(self) -> PoolStats:
        self._prune()
        return PoolStats(
            function=self.function.name,
            invocations=self.invocations,
            cold_starts=self.cold_starts,
            throttles=self.throttles,
            errors=self.errors,
            sandboxes=[SandboxInfo(w.id, w.pid, w.state, w.invocations) for w in self.workers],
        )


async def _launch(worker: Worker) -> None:
    with contextlib.suppress(OSError):  # kept as worker.launch_error: the invocation that takes it says it
        await worker.start()


async def _stop(member: _Member) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.shield(member.started)  # never stop a worker half-launched: its process would leak
    await member.worker.stop()


def env_failure(request: InvocationRequest, problem: str, generation: int = 0) -> InvocationOutcome:
    """The function's environment could not be made, or its interpreter cannot run awslambdaric
    (app_env.py, environment.py say why): no worker can start."""
    return InvocationOutcome(
        request_id=request.request_id,
        status="init_error",
        payload=error_payload(app_env.ERROR_TYPE, problem),
        error_type=app_env.ERROR_TYPE,
        logs="",
        duration_ms=0.0,
        init_duration_ms=None,
        worker_id="",
        cold=True,
        generation=generation,
    )


def launch_failure(request: InvocationRequest, worker: Worker, exc: OSError) -> InvocationOutcome:
    # What Lambda says when the runtime's entry point cannot be executed.
    message = (
        f"RequestId: {request.request_id} Error: fork/exec {worker.function.python}: {exc.strerror or exc}"
    )
    return InvocationOutcome(
        request_id=request.request_id,
        status="init_error",
        payload=error_payload("Runtime.InvalidEntrypoint", message),
        error_type="Runtime.InvalidEntrypoint",
        logs="",
        duration_ms=0.0,
        init_duration_ms=None,
        worker_id=worker.id,
        cold=True,
        generation=worker.generation,
    )
