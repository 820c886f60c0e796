"""The dev server's runner: every worker of every function, across code generations.

    runner = Runner(app, region="eu-west-1", on_reload=print)
    await runner.start()                       # a forkserver and a warm worker per function
    outcome = await runner.invoke("hello", InvocationRequest(payload=b'{"name": "Ada"}'))
    outcome.generation, outcome.cold           # which code served it; did its worker start for it
    await runner.reload_function("hello")      # a file was saved: generation N+1
    await runner.close()                       # no process left behind

## Generations
A function's code has a generation number; `reload()` starts the next one. From that moment every
invocation that ARRIVES runs the new code (it waits for the new generation's worker if it is still
starting); invocations already running finish on the old code, and their workers then exit. Workers are
drained, never killed mid-invocation. A warm worker for the new code is started at once, ahead of
demand, so the first invocation after a save does not pay the import; its init tells whether the save
broke the code (`last_reload_error`) before any invocation arrives.

A broken save gives every invocation that arrives what Lambda gives (`Runtime.UserCodeSyntaxError`,
`Runtime.ImportModuleError`, `Runtime.HandlerNotFound`, or the exception raised at import): each one
tries the init again, on a fresh worker, as Lambda does. The next good save recovers by itself.

## Workers
A function's workers are a WorkerPool (runtime/pool.py, the cloud's sandboxes use it too); this module
adds the generations on top: which one is current, its warm worker, whether its code loads, and what
a save, a new configuration or the deployed function's environment change. One invocation per
worker; a new worker starts when all are busy, up to `max_workers` running invocations (later callers
wait in line). Workers are forked from a warm forkserver (runtime/fork_launcher.py;
`launcher="fork"`, the default) or started as fresh interpreters (`"spawn"`, and the fallback when the
forkserver cannot run: `status().launcher_note` says why); either way through the Launcher interface.
The function's timeout counts from the moment the runtime gets the event, capped by the request's
`deadline_ms` (the real Lambda's deadline in live mode). No bytecode is written for the developer's
code (Lambda's code directory is read-only too): a stale .pyc could otherwise survive two saves within
one second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from devserver.config import RESERVED_ENV, AppConfig, FunctionConfig
from devserver.runtime import app_env
from devserver.runtime.environment import (
    interpreter_version,
    lambda_environment,
    missing_runtime,
    runtime_known_good,
)
from devserver.runtime.fork_launcher import ForkLauncher
from devserver.runtime.invocation import InvocationOutcome, InvocationRequest, describe_exit
from devserver.runtime.launcher import Launcher, LaunchKind, SubprocessLauncher
from devserver.runtime.logs import DEFAULT_LOG_LIMIT
from devserver.runtime.pool import PoolClosed, WorkerPool, env_failure
from devserver.runtime.worker import DEFAULT_INIT_TIMEOUT_S, Worker
from devserver.status import FunctionStatus, WorkerStatus
from stub_runtime.errors import CallerFault, DevServerFault

log = logging.getLogger("livelambda.runner")

ForkserverPolicy = Literal["reuse", "per_generation"]
ReloadCallback = Callable[[str, int, "str | None"], Any]  # (function, generation, error one-liner)

DEFAULT_MAX_WORKERS = 10
RUNTIME_MISSING = app_env.ERROR_TYPE  # no worker can start: the interpreter lacks awslambdaric...
# Workers of the dev server never write bytecode for the developer's code (see the module docstring).
WORKER_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


class UnknownFunction(CallerFault):
    """No function of that name in the app's configuration."""

    error_type = "Livelambda.UnknownFunction"


class RunnerClosed(DevServerFault):
    error_type = "Livelambda.RunnerClosed"


@dataclass(frozen=True)
class ReloadError:
    """Why a generation's code cannot run: what the first invocation would get."""

    generation: int
    error_type: str
    message: str
    details: str  # the stack trace or the process's exit, one item a line
    at: float  # epoch seconds

    @property
    def summary(self) -> str:
        """One line for a terminal: "Runtime.UserCodeSyntaxError: Syntax error in module 'app': ..."."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return f"{self.error_type}: {first}" if first else self.error_type

    def text(self) -> str:
        """The one-liner, then the details."""
        return self.summary + (f"\n{self.details}" if self.details else "")


class FunctionRunner:
    """All workers of one function, across code generations (see the module docstring)."""

    def __init__(
        self,
        function: FunctionConfig,
        *,
        region: str = "us-east-1",
        account: str = "000000000000",
        extra_env: Mapping[str, str] | None = None,
        launcher: LaunchKind = "fork",
        forkserver: ForkserverPolicy = "reuse",
        max_workers: int = DEFAULT_MAX_WORKERS,
        prewarm: bool = True,
        init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S,
        log_limit: int = DEFAULT_LOG_LIMIT,
        on_reload: ReloadCallback | None = None,
    ) -> None:
        if max_workers < 1:
            raise ValueError("a function needs at least one worker")
        self.function = function
        self.region = region
        self.extra_env = dict(extra_env or {})
        self.launcher_choice: LaunchKind = launcher
        self.forkserver_policy: ForkserverPolicy = forkserver
        self.prewarm = prewarm
        self.init_timeout_s = init_timeout_s
        self.on_reload = on_reload
        self.generation = 0
        self.last_reload_at: float | None = None
        self.last_reload_reason: str | None = None
        self.last_reload_error: ReloadError | None = None
        self._real_env: dict[str, str] = {}
        self.pool = WorkerPool(
            function,
            region=region,
            account=account,
            max_workers=max_workers,
            extra_env=self._worker_env(),
            init_timeout_s=init_timeout_s,
            log_limit=log_limit,
            measure_memory=False,  # nothing on the dev server reports it
        )
        self._old_launchers: list[Launcher] = []  # replaced, retired: closed with the runner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._warm: dict[int, asyncio.Task[Any]] = {}  # the warm worker's init watch, current generation
        self._announced: tuple[int, str | None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def effective_function(self) -> FunctionConfig:
        """The configuration workers run with: the real function's environment (from the stub's hello)
        under the configured one."""
        if not self._real_env:
            return self.function
        env = {**self._real_env, **self.function.environment}
        return dataclasses.replace(self.function, environment=env)

    def _worker_env(self) -> dict[str, str]:
        return {**WORKER_ENV, **self.extra_env}

    def _forkserver_env(self) -> dict[str, str]:
        return lambda_environment(
            self.effective_function,
            runtime_api="127.0.0.1:9001",  # never used: the forkserver drops it
            region=self.region,
            extra_env=self._worker_env(),
        )

    def _make_launcher(self) -> Launcher:
        if self.launcher_choice == "spawn":
            return SubprocessLauncher(note="launcher = spawn: a fresh interpreter per worker")
        function = self.function
        return ForkLauncher(function.python, function.source, function.handler, self._forkserver_env())

    def _new_launcher(self) -> None:
        """Workers start with a fresh launcher from now on; the old one's workers drain."""
        old = self.pool.launcher
        old.retire()
        self._old_launchers.append(old)
        self.pool.launcher = launcher = self._make_launcher()
        self._spawn(launcher.start())

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the forkserver and a warm worker (generation 1). Idempotent."""
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._start())
        await asyncio.shield(self._start_task)

    async def _start(self) -> None:
        if self._closed:
            return
        self.generation = 1
        self.pool.set_generation(1)
        problem = await self._runtime_problem()
        if self._closed:
            return
        if problem is not None:  # no worker can start: say why once, and answer every invocation so
            self._set_result(1, ReloadError(1, RUNTIME_MISSING, problem, "", time.time()))
            return
        self.pool.launcher = launcher = self._make_launcher()
        if self.prewarm:
            self._prewarm()
        await launcher.start()
        if self._closed:  # closed while it started
            await launcher.close()

    async def _runtime_problem(self) -> str | None:
        """Why no worker can start: the function's own venv (no `python` key) cannot be made, or its
        interpreter cannot run awslambdaric. Both run in a thread: the loop keeps serving."""
        problem = await app_env.prepare(self.function)
        if problem is None:
            problem = await asyncio.to_thread(missing_runtime, self.function.python)
        return problem

    async def close(self) -> None:
        """Stop every worker (running invocations end as crashed) and the forkservers."""
        self._closed = True
        # The launchers first: a forkserver's end kills its children, and a start in progress ends.
        launchers = [self.pool.launcher, *self._old_launchers]
        self._old_launchers = []
        await asyncio.gather(*(lc.close() for lc in launchers), return_exceptions=True)
        await self.pool.close()
        if self._start_task is not None:
            with contextlib.suppress(BaseException):
                await self._start_task
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- invoking ------------------------------------------------------------------------------

    async def invoke(self, request: InvocationRequest) -> InvocationOutcome:
        """Run one invocation on the current generation's code."""
        if self._closed:
            raise RunnerClosed(f"the runner of {self.name} is shut down")
        task = self._start_task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            await self.start()  # (once started fine, skipped: a shield per invocation adds up)
        python = self.function.python
        problem = None if runtime_known_good(python) else await self._runtime_problem()
        if problem is not None:
            return env_failure(request, problem, self.generation)
        try:
            outcome = await self.pool.invoke(request)
        except PoolClosed:
            raise RunnerClosed(f"the runner of {self.name} is shut down") from None
        self._learn(outcome)
        return outcome

    def _learn(self, outcome: InvocationOutcome) -> None:
        """A cold start of the current code tells whether it loads."""
        generation = outcome.generation
        if generation != self.generation or not outcome.cold:
            return
        if outcome.status == "init_error":
            error_type = outcome.error_type or "Runtime.Unknown"
            self._set_result(generation, _reload_error(generation, outcome.value, error_type))
        elif outcome.status in ("ok", "handler_error") or outcome.init_duration_ms is not None:
            self._set_result(generation, None)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- generations ---------------------------------------------------------------------------

    def reload(self, reason: str = "reload") -> int:
        """Start the next generation (see the module docstring); returns its number at once."""
        if self._closed:
            raise RunnerClosed(f"the runner of {self.name} is shut down")
        if self._start_task is None:  # not started yet: the first start loads the code anyway
            self._spawn(self.start())
            self.last_reload_at = time.time()
            self.last_reload_reason = reason
            return max(self.generation, 1)
        self.generation += 1
        generation = self.generation
        self.last_reload_at = time.time()
        self.last_reload_reason = reason
        if self.forkserver_policy == "per_generation":
            self.pool.launcher.restart(f"generation {generation}")
        self.pool.set_generation(generation)  # idle workers of older code go now; busy ones drain
        if self.prewarm:
            self._prewarm()
        return generation

    def _prewarm(self) -> None:
        task = self._spawn(self._watch_warm(self.pool.prewarm()))
        self._warm = {self.generation: task}

    async def _watch_warm(self, warm: asyncio.Future[Worker]) -> None:
        """Wait for the warm worker's init and record whether the generation's code loads."""
        worker = await asyncio.shield(warm)
        generation = worker.generation
        if worker.launch_error is not None:
            exc = worker.launch_error
            error: ReloadError | None = ReloadError(
                generation,
                "Runtime.InvalidEntrypoint",
                f"cannot start {self.function.python}: {exc.strerror or exc}",
                "",
                time.time(),
            )
        elif worker.init_duration_ms is not None:  # it asked for work: the code loaded
            error = None
        else:
            error = _init_error(worker, generation, self.init_timeout_s)
        self._set_result(generation, error)

    def _set_result(self, generation: int, error: ReloadError | None) -> None:
        if generation != self.generation:
            return  # superseded by a newer save
        previous = self.last_reload_error
        self.last_reload_error = error
        key = (generation, error.summary if error else None)
        if key == self._announced:
            return  # already said
        self._announced = key
        if generation == 1 and error is None and previous is None:
            return  # the first load went fine: nothing to say
        if self.on_reload is not None:
            try:
                result = self.on_reload(self.name, generation, error.summary if error else None)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                log.exception("on_reload callback failed")

    async def wait_loaded(self, timeout: float | None = None) -> ReloadError | None:
        """Wait until the current generation's warm worker has loaded the code, or failed to (then
        the error is returned). Returns at once when workers are not started ahead of demand."""
        await self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            generation = self.generation
            task = self._warm.get(generation)
            if task is None:
                return self.last_reload_error
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait_for(asyncio.shield(task), left)
            if generation == self.generation:
                return self.last_reload_error

    def set_environment(self, env: Mapping[str, str]) -> bool:
        """The real function's environment (from the stub's hello): applied to the next generation,
        which starts now. False when it did not change."""
        # Only what would change the workers' environment counts: the configured `environment` wins
        # anyway, and a value the dev server's own environment already has changes nothing.
        configured = self.function.environment
        env = {
            str(k): str(v)
            for k, v in env.items()
            if k not in RESERVED_ENV and k not in configured and os.environ.get(str(k)) != str(v)
        }
        if env == self._real_env:
            return False
        self._real_env = env
        self.pool.function = self.effective_function
        self.pool.launcher.set_environment(self._forkserver_env())
        if self._start_task is not None:
            self.reload("environment")
        return True

    def update(self, function: FunctionConfig) -> bool:
        """A new configuration for this function; a new generation runs with it. False if unchanged."""
        if function == self.function:
            return False
        old = self.function
        self.function = function
        self.pool.function = self.effective_function
        if self._start_task is None:
            return True
        where = (function.python, function.source, function.handler)
        if (old.python, old.source, old.handler) != where:
            self._new_launcher()  # a forkserver serves one interpreter, directory and handler
        else:
            self.pool.launcher.set_environment(self._forkserver_env())
        self.reload("configuration")
        return True

    def environment_changed(self) -> int | None:
        """The packages of the function's interpreter changed (its app env was made again): a new
        forkserver, since the old one holds modules of the old packages, and a new generation."""
        if self._closed or self._start_task is None:
            return None
        if self.launcher_choice == "fork":  # (also when none started: the environment was missing)
            self._new_launcher()
        return self.reload("environment reinstalled")

    # -- status --------------------------------------------------------------------------------

    def status(self) -> FunctionStatus:
        """For the dashboard's Functions panel."""
        function = self.effective_function
        launcher = self.pool.launcher
        forkserver = launcher.info()
        error = self.last_reload_error
        return FunctionStatus(
            name=function.name,
            handler=function.handler,
            source=str(function.source),
            python=(forkserver.python if forkserver else None) or interpreter_version(function.python),
            python_path=str(function.python),
            timeout=function.timeout,
            memory_mb=function.memory,
            environment=dict(function.environment),
            generation=self.generation,
            last_reload_at=self.last_reload_at,
            last_reload_reason=self.last_reload_reason,
            last_reload_error=error.text() if error else None,
            last_reload_error_summary=error.summary if error else None,
            last_reload_error_type=error.error_type if error else None,
            error=error.summary if error else None,
            invocations=self.pool.invocations,
            launcher=launcher.kind,
            launcher_note=launcher.note,
            forkserver=forkserver,
            workers=tuple(self._worker_status(w) for w in self.pool.workers if w.state != "dead"),
        )

    def _worker_status(self, worker: Worker) -> WorkerStatus:
        state = worker.state
        shown: Literal["starting", "idle", "busy", "draining"]
        if worker.generation != self.generation:
            shown = "draining"
        elif state in ("new", "starting"):
            shown = "starting"
        elif state == "busy":
            shown = "busy"
        else:
            shown = "idle"
        return WorkerStatus(
            id=worker.id,
            pid=worker.pid,
            state=shown,
            generation=worker.generation,
            invocations=worker.invocations,
            launcher=worker.launch_kind,
            cold_start_ms=worker.init_duration_ms,
        )


def _reload_error(generation: int, body: Any, error_type: str) -> ReloadError:
    """From Lambda's error JSON, parsed."""
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("errorMessage") or "")
    trace = body.get("stackTrace") or []
    details = "".join(str(line) if str(line).endswith("\n") else f"{line}\n" for line in trace).rstrip()
    return ReloadError(generation, str(body.get("errorType") or error_type), message, details, time.time())


def _init_error(worker: Worker, generation: int, init_timeout_s: float) -> ReloadError:
    failure = worker.init_failure
    if failure is not None:
        payload, error_type = failure
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        return _reload_error(generation, body, error_type or "Runtime.Unknown")
    if worker.returncode is not None:
        return ReloadError(
            generation,
            "Runtime.ExitError",
            f"Runtime exited with error: {describe_exit(worker.returncode)}",
            "the process ended while loading the handler module",
            time.time(),
        )
    return ReloadError(
        generation,
        "Sandbox.Timedout",
        f"the handler module did not load within {init_timeout_s:g} s",
        "",
        time.time(),
    )


class Runner:
    """A FunctionRunner per function of the app."""

    def __init__(
        self,
        app: AppConfig,
        *,
        region: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        on_reload: ReloadCallback | None = None,
        **options: Any,
    ) -> None:
        self.app = app
        self.region = region or app.region or "us-east-1"
        self.extra_env = dict(extra_env or {})
        self.on_reload = on_reload
        self.options = options  # FunctionRunner keyword arguments: launcher, max_workers, prewarm...
        self.functions: dict[str, FunctionRunner] = {
            name: self._make(function) for name, function in app.functions.items()
        }
        self._real_env: dict[str, dict[str, str]] = {}
        self._started = False
        self._closed = False
        self._closing: list[asyncio.Task[None]] = []

    def _make(self, function: FunctionConfig) -> FunctionRunner:
        return FunctionRunner(
            function, region=self.region, extra_env=self.extra_env, on_reload=self.on_reload, **self.options
        )

    def function(self, name: str) -> FunctionRunner:
        try:
            return self.functions[name]
        except KeyError:
            known = ", ".join(sorted(self.functions)) or "none"
            raise UnknownFunction(
                f"function {name!r} is not in {self.app.path.name} (functions there: {known})"
            ) from None

    async def start(self) -> None:
        """Start every function's forkserver and warm worker, in parallel."""
        self._started = True
        await asyncio.gather(*(fr.start() for fr in self.functions.values()))

    async def invoke(self, function_name: str, request: InvocationRequest) -> InvocationOutcome:
        if self._closed:
            raise RunnerClosed("the runner is shut down")
        return await self.function(function_name).invoke(request)

    def set_function_env(self, name: str, env: Mapping[str, str]) -> bool:
        """The real function's environment (from the stub's hello), for the next generation."""
        self._real_env[name] = dict(env)
        return self.function(name).set_environment(env)

    async def reload_function(self, name: str, reason: str = "file saved") -> int:
        """Start the next generation of one function; returns its number without waiting for it."""
        return self.function(name).reload(reason)

    async def reload_config(self, app: AppConfig) -> dict[str, list[str]]:
        """Functions added (started), removed (stopped) or changed (new generation)."""
        self.app = app
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        for name in list(self.functions):
            if name not in app.functions:
                runner = self.functions.pop(name)
                changes["removed"].append(name)
                self._closing.append(asyncio.ensure_future(runner.close()))
        for name, function in app.functions.items():
            current = self.functions.get(name)
            if current is None:
                runner = self._make(function)
                if name in self._real_env:
                    runner.set_environment(self._real_env[name])
                self.functions[name] = runner
                changes["added"].append(name)
                if self._started:
                    await runner.start()
            elif current.update(function):
                changes["changed"].append(name)
        return changes

    def status(self) -> list[FunctionStatus]:
        return [fr.status() for fr in self.functions.values()]

    async def close(self) -> None:
        """Stop every worker and forkserver; no process is left behind."""
        self._closed = True
        await asyncio.gather(
            *(fr.close() for fr in self.functions.values()), *self._closing, return_exceptions=True
        )
