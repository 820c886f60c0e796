"""The workers of one function: a free warm worker serves the next invocation, a new one starts when
all are busy, up to `max_workers`; beyond that callers wait in line or are throttled. Dead workers are
dropped (the next invocation starts a fresh one), idle ones are recycled after `idle_recycle_s`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from devserver.config import FunctionConfig
from devserver.runtime import app_env
from devserver.runtime.invocation import InvocationOutcome, InvocationRequest, error_payload
from devserver.runtime.launcher import Launcher, SubprocessLauncher
from devserver.runtime.logs import DEFAULT_LOG_LIMIT
from devserver.runtime.worker import DEFAULT_INIT_TIMEOUT_S, Worker, WorkerState
from stub_runtime.errors import LivelambdaError


class TooManyRequests(LivelambdaError):
    """Every worker of the function is busy and the caller asked not to wait (Lambda's throttle)."""

    error_type = "TooManyRequestsException"


class PoolClosed(LivelambdaError):
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


class WorkerPool:
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
    ) -> None:
        if max_workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.function = function
        self.max_workers = max_workers
        self.queue = queue
        self.freeze_idle = freeze_idle
        self.idle_recycle_s = idle_recycle_s
        self._launcher = launcher or SubprocessLauncher()
        self._worker_options = {
            "launcher": self._launcher,
            "region": region,
            "account": account,
            "handler": handler,
            "extra_env": dict(extra_env or {}),
            "extra_pythonpath": tuple(extra_pythonpath),
            "freeze_when_idle": freeze_idle,
            "init_timeout_s": init_timeout_s,
            "log_limit": log_limit,
        }
        self._workers: list[Worker] = []
        self._slots = asyncio.Semaphore(max_workers)
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._recycler: asyncio.Task[None] | None = None
        self._env_ready = function.app_env is None  # else made (or checked) before the first worker
        self._stopping: set[asyncio.Task[None]] = set()
        self.invocations = 0
        self.cold_starts = 0
        self.throttles = 0
        self.errors = 0

    @property
    def workers(self) -> list[Worker]:
        return list(self._workers)

    async def invoke(self, request: InvocationRequest, *, queue: bool | None = None) -> InvocationOutcome:
        """Run `request` on a free warm worker, else on a new one. When `max_workers` are busy: wait for
        one if `queue` (default: the pool's setting), else raise TooManyRequests."""
        if self._closed:
            raise PoolClosed(f"the workers of {self.function.name} are shut down")
        if not (self.queue if queue is None else queue) and self._slots.locked():
            self.throttles += 1
            raise TooManyRequests("Rate Exceeded.")
        self._start_recycler()
        async with self._slots:
            self._active += 1
            self._idle.clear()
            try:
                return await self._invoke(request)
            finally:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    async def _invoke(self, request: InvocationRequest) -> InvocationOutcome:
        worker = self._take_warm()
        if worker is None and not self._env_ready:
            problem = await app_env.prepare(self.function)  # once: the function's own venv, made off-loop
            if problem is not None:
                self.invocations += 1
                self.errors += 1
                return env_failure(request, problem)
            self._env_ready = True
        if worker is None:
            worker = Worker(self.function, **self._worker_options)  # type: ignore[arg-type]
            self._workers.append(worker)
            try:
                await worker.start()
            except OSError as exc:
                self._workers.remove(worker)
                self.invocations += 1
                self.errors += 1
                return launch_failure(request, worker, exc)
        self.invocations += 1
        try:
            outcome = await worker.invoke(request)
        finally:
            if not worker.alive:
                self._discard(worker)
        if outcome.cold:
            self.cold_starts += 1
        if not outcome.ok:
            self.errors += 1
        return outcome

    def _take_warm(self) -> Worker | None:
        """The most recently used free worker (the others stay idle and get recycled)."""
        self._prune()
        free = [w for w in self._workers if w.alive and not w.busy]
        if not free:
            return None
        return max(free, key=lambda w: w.idle_since)

    def _prune(self) -> None:
        """Drop workers that died while idle (killed from outside, init failed after a warm-up...)."""
        for worker in list(self._workers):
            if worker.state == "dead" and not worker.busy:
                self._discard(worker)

    def _discard(self, worker: Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        task = asyncio.ensure_future(worker.stop())
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
            for worker in list(self._workers):
                state = worker.state
                idle = state in ("idle", "frozen", "starting") and worker.idle_since < cutoff
                if state == "dead" or idle:
                    self._discard(worker)

    async def drain(self) -> None:
        """Wait until no invocation is running."""
        await self._idle.wait()

    async def close(self) -> None:
        """Stop every worker now (running invocations end as crashed)."""
        self._closed = True
        if self._recycler is not None:
            self._recycler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recycler
        workers, self._workers = self._workers, []
        await asyncio.gather(*(w.stop() for w in workers), *self._stopping, return_exceptions=True)

    def stats(self) -> PoolStats:
        self._prune()
        return PoolStats(
            function=self.function.name,
            invocations=self.invocations,
            cold_starts=self.cold_starts,
            throttles=self.throttles,
            errors=self.errors,
            sandboxes=[SandboxInfo(w.id, w.pid, w.state, w.invocations) for w in self._workers],
        )


def env_failure(request: InvocationRequest, problem: str) -> InvocationOutcome:
    """The function's environment could not be made (app_env.py says why): no worker can start."""
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
    )
