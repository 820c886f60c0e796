"""Lambda Runtime API + worker processes running the real `awslambdaric`.

Used by `livelambda cloud`'s Lambda emulator (sandboxes) and by the dev server's runner.

    pool = WorkerPool(function_config, max_workers=4)
    outcome = await pool.invoke(InvocationRequest(payload=b'{"name": "Ada"}'))
"""

from devserver.runtime.invocation import InvocationOutcome, InvocationRequest, Status
from devserver.runtime.launcher import Launcher, LaunchError, LaunchSpec, ProcessHandle, SubprocessLauncher
from devserver.runtime.pool import PoolClosed, PoolStats, SandboxInfo, TooManyRequests, WorkerPool
from devserver.runtime.worker import Worker, WorkerBusy, WorkerState

__all__ = [
    "InvocationOutcome",
    "InvocationRequest",
    "LaunchError",
    "LaunchSpec",
    "Launcher",
    "PoolClosed",
    "PoolStats",
    "ProcessHandle",
    "SandboxInfo",
    "Status",
    "SubprocessLauncher",
    "TooManyRequests",
    "Worker",
    "WorkerBusy",
    "WorkerPool",
    "WorkerState",
]
