"""The Lambda service of `livelambda cloud`: the app's functions, each served by a pool of sandboxes
(worker processes running awslambdaric) that freeze when idle, thaw on use and are recycled after
an idle period, like Lambda's execution environments.

Live mode (`LiveMode`) runs livelambda's stub in place of every function's handler, as `aws up` does
to a real function: the stub's handler string, settings and import path are applied to all functions.

`set_functions` applies a new configuration as a deploy does (config_follower.py calls it on a save).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from devserver.config import FunctionConfig
from devserver.runtime.invocation import InvocationOutcome, InvocationRequest, function_arn
from devserver.runtime.launcher import Launcher
from devserver.runtime.pool import WorkerPool
from stub_runtime.errors import CallerFault

DEFAULT_CONCURRENCY = 10
DEFAULT_IDLE_RECYCLE_S = 300.0
LOG_TAIL_BYTES = 4096


class FunctionNotFound(CallerFault):
    error_type = "ResourceNotFoundException"


@dataclass(frozen=True)
class FunctionChanges:
    """What a new configuration changed: names of functions added, removed, and changed (restarted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (("added", self.added), ("removed", self.removed), ("restarted", self.changed))
            if names
        ]
        return "; ".join(parts) or "no function changed"


@dataclass(frozen=True)
class LiveMode:
    """What `aws up` would change on every function: the handler becomes livelambda's stub."""

    handler: str = "stub_runtime.handler.handler"
    env: Mapping[str, str] = field(default_factory=dict)
    pythonpath: tuple[str, ...] = ()


class LambdaEmulator:
    def __init__(
        self,
        functions: Mapping[str, FunctionConfig],
        live: LiveMode | None = None,
        *,
        region: str = "us-east-1",
        account: str = "000000000000",
        concurrency: int = DEFAULT_CONCURRENCY,
        concurrency_limits: Mapping[str, int] | None = None,
        freeze_idle: bool = True,
        idle_recycle_s: float | None = DEFAULT_IDLE_RECYCLE_S,
        launcher: Launcher | None = None,
    ) -> None:
        self.functions = dict(functions)
        self.live = live
        self.region = region
        self.account = account
        self.concurrency = concurrency
        self.concurrency_limits = dict(concurrency_limits or {})
        self.freeze_idle = freeze_idle
        self.idle_recycle_s = idle_recycle_s
        self._launcher = launcher
        self._pools: dict[str, WorkerPool] = {}
        self._background: set[asyncio.Task[InvocationOutcome]] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self.async_invocations = 0

    def arn(self, name: str) -> str:
        return function_arn(name, self.region, self.account)

    def limit(self, name: str) -> int:
        return self.concurrency_limits.get(name, self.concurrency)

    def pool(self, name: str) -> WorkerPool:
        """The sandboxes of function `name` (raises FunctionNotFound)."""
        pool = self._pools.get(name)
        if pool is not None:
            return pool
        function = self.functions.get(name)
        if function is None:
            raise FunctionNotFound(f"Function not found: {self.arn(name)}")
        live = self.live
        pool = WorkerPool(
            function,
            launcher=self._launcher,
            region=self.region,
            account=self.account,
            max_workers=self.limit(name),
            queue=False,
            freeze_idle=self.freeze_idle,
            idle_recycle_s=self.idle_recycle_s,
            handler=live.handler if live else None,
            extra_env=live.env if live else None,
            extra_pythonpath=live.pythonpath if live else (),
        )
        self._pools[name] = pool
        return pool

    async def invoke(
        self, name: str, payload: bytes, *, client_context: str | None = None, request_id: str | None = None
    ) -> InvocationOutcome:
        """A synchronous invocation. Raises FunctionNotFound, or TooManyRequests past the function's
        concurrency limit."""
        request = InvocationRequest(payload=payload, client_context=client_context)
        if request_id:
            request.request_id = request_id
        return await self.pool(name).invoke(request, queue=False)

    def invoke_async(self, name: str, payload: bytes, *, client_context: str | None = None) -> str:
        """An `Event` invocation: queued (never throttled), run in the background; its request id."""
        pool = self.pool(name)
        request = InvocationRequest(payload=payload, client_context=client_context)
        task = asyncio.ensure_future(pool.invoke(request, queue=True))
        self._background.add(task)
        task.add_done_callback(self._background_done)
        self.async_invocations += 1
        return request.request_id

    def _background_done(self, task: asyncio.Task[InvocationOutcome]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed Event invocation is counted by its pool, not raised

    def set_functions(self, functions: Mapping[str, FunctionConfig]) -> FunctionChanges:
        """Serve `functions` from now on, as after a deploy: an added one can be invoked at once, a removed
        one answers ResourceNotFoundException, and a changed one's sandboxes are replaced: invocations
        in flight finish in the old ones, the next invocation starts a new sandbox."""
        old = self.functions
        changes = FunctionChanges(
            added=tuple(sorted(n for n in functions if n not in old)),
            removed=tuple(sorted(n for n in old if n not in functions)),
            changed=tuple(sorted(n for n in functions if n in old and functions[n] != old[n])),
        )
        self.functions = dict(functions)
        for name in (*changes.removed, *changes.changed):
            pool = self._pools.pop(name, None)
            if pool is not None:
                retiring = asyncio.ensure_future(self._retire(pool))
                self._retiring.add(retiring)
                retiring.add_done_callback(self._retiring.discard)
        return changes

    @staticmethod
    async def _retire(pool: WorkerPool) -> None:
        """Stop a replaced pool's sandboxes once its invocations in flight are done."""
        try:
            await pool.drain()
        finally:
            await pool.close()

    async def drain(self) -> None:
        """Wait for running invocations, Event ones included."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(p.drain() for p in self._pools.values()))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._background, return_exceptions=True)
        for retiring in list(self._retiring):
            retiring.cancel()  # closes its pool now (the finally of _retire)
        await asyncio.gather(*self._retiring, return_exceptions=True)
        pools, self._pools = self._pools, {}
        await asyncio.gather(*(p.close() for p in pools.values()), return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Per function: sandboxes (pid, state, invocations served), invocations, cold starts."""
        functions: dict[str, Any] = {}
        for name in self.functions:
            pool = self._pools.get(name)
            if pool is None:
                entry: dict[str, Any] = {"invocations": 0, "cold_starts": 0, "throttles": 0, "errors": 0}
                entry["sandboxes"] = []
            else:
                entry = asdict(pool.stats())
                del entry["function"]
            entry["concurrency_limit"] = self.limit(name)
            functions[name] = entry
        return {
            "functions": functions,
            "live": self.live is not None,
            "async_invocations": self.async_invocations,
        }


def report_log(outcome: InvocationOutcome, function: FunctionConfig) -> str:
    """The invocation's log as CloudWatch shows it: START, the output, END and REPORT."""
    rid = outcome.request_id
    lines: list[str] = []
    if outcome.status == "init_error" and outcome.cold:
        init = f"{outcome.init_duration_ms:.2f} ms" if outcome.init_duration_ms is not None else "unknown"
        status = f"Status: error\tError Type: {outcome.error_type}"
        lines.append(f"INIT_REPORT Init Duration: {init}\tPhase: init\t{status}\n")
    lines.append(f"START RequestId: {rid} Version: $LATEST\n")
    text = outcome.logs
    if text and not text.endswith("\n"):
        text += "\n"
    lines.append(text)
    if outcome.status == "timeout":
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        message = outcome.error().get("errorMessage", "")
        lines.append(f"{stamp} {rid} {str(message).split(' Error: ', 1)[-1]}\n")
    elif outcome.status == "crashed":
        lines.append(f"{outcome.error().get('errorMessage', '')}\n{outcome.error_type}\n")
    lines.append(f"END RequestId: {rid}\n")
    report = (
        f"REPORT RequestId: {rid}\tDuration: {outcome.duration_ms:.2f} ms\t"
        f"Billed Duration: {max(1, math.ceil(outcome.duration_ms))} ms\t"
        f"Memory Size: {function.memory} MB\tMax Memory Used: {outcome.max_memory_mb or 0} MB\t"
    )
    if outcome.cold and outcome.init_duration_ms is not None:
        report += f"Init Duration: {outcome.init_duration_ms:.2f} ms\t"
    if outcome.status == "timeout":
        report += "Status: timeout"
    lines.append(report + "\n")
    return "".join(lines)


def log_result(log: str) -> str:
    """`X-Amz-Log-Result`: base64 of the last 4 KB of the log."""
    data = log.encode("utf-8")[-LOG_TAIL_BYTES:]
    return base64.b64encode(data.decode("utf-8", errors="ignore").encode("utf-8")).decode("ascii")
