"""What the dev server shows of itself: typed snapshots, described once, here.

The runner returns a `FunctionStatus` per function (`Runner.status()`), the bridge a
`ConnectionStatus` (`Bridge.status()`); the dashboard serves them as they are (`/api/functions`,
`/api/connection` and the live feed), and pydantic reads the docstring under each field for
`/openapi.json`. A snapshot is frozen: it says how things were when it was taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

LaunchKind = Literal["fork", "spawn"]  # forked from a warm forkserver, or a fresh interpreter

if TYPE_CHECKING:
    from pydantic import ConfigDict

# pydantic reads each field's description from the docstring under it (stdlib dataclasses take their
# pydantic configuration from this attribute: no pydantic import at run time).
_DOCUMENTED: ConfigDict = {"use_attribute_docstrings": True}


@dataclass(frozen=True)
class WorkerStatus:
    """A worker process of a function."""

    __pydantic_config__ = _DOCUMENTED

    id: str
    """The worker's id: "<function>-g<generation>-<n>"."""
    pid: int | None
    """Its process id; None before its process started."""
    state: Literal["starting", "idle", "busy", "draining"]
    """draining: it runs an older generation's code and stops once its invocation ends."""
    generation: int
    """The code generation it loaded."""
    invocations: int
    """Invocations it has run."""
    launcher: LaunchKind | None
    """How its process started: forked from the forkserver, or spawned fresh (None: not yet)."""
    cold_start_ms: float | None
    """From its start until the handler module was loaded and it asked for work."""


@dataclass(frozen=True)
class ForkserverStatus:
    """The warm parent a function's workers are forked from."""

    __pydantic_config__ = _DOCUMENTED

    kind: LaunchKind
    """How new workers start right now: "spawn" while no forkserver serves."""
    pid: int | None
    """The serving forkserver's process id."""
    python: str | None
    """The Python version it runs, e.g. "3.12.3"."""
    preloaded_modules: int | None
    """Modules it holds imported, ready for every fork."""
    restarts: int
    """Times it was replaced (new imports to preload, a changed environment, a death)."""
    restarting: bool
    """A new forkserver is starting; the current one serves until it is ready."""
    note: str | None
    """Why workers start the way they do, or what the last restart was for."""


@dataclass(frozen=True)
class FunctionStatus:
    """A function the dev server runs: its configuration, code generation, last reload and workers."""

    __pydantic_config__ = _DOCUMENTED

    name: str
    """The function's name, as in `livelambda invoke <name>`."""
    handler: str
    """The entry point, "module.function"."""
    source: str
    """The directory the code is loaded from."""
    python: str
    """The Python version the workers run, e.g. "3.12.3"."""
    python_path: str
    """The interpreter the workers run."""
    timeout: float
    """The function's timeout, seconds."""
    memory_mb: int
    """The function's memory size."""
    environment: dict[str, str]
    """Its environment variables: the deployed function's (from the stub) under the configured ones."""
    generation: int
    """The current code generation, one more with every reload."""
    last_reload_at: float | None
    """Epoch seconds of the last reload."""
    last_reload_reason: str | None
    """What caused it: "file saved", "configuration", "environment"..."""
    last_reload_error: str | None
    """Why the current generation's code does not load (the error, then its traceback); None if it loads."""
    last_reload_error_summary: str | None
    """That error in one line."""
    last_reload_error_type: str | None
    """Its Lambda error type, e.g. "Runtime.ImportModuleError"."""
    error: str | None
    """Why the function cannot run right now, in one line (None when it can)."""
    invocations: int
    """Invocations run since the dev server started."""
    launcher: LaunchKind
    """How new workers start: forked from the forkserver, or fresh interpreters."""
    launcher_note: str | None
    """Why, when that needs saying."""
    forkserver: ForkserverStatus | None
    """The forkserver, when workers are forked."""
    workers: tuple[WorkerStatus, ...]
    """Its worker processes, of every generation still running."""


@dataclass(frozen=True)
class Rejection:
    """A message dropped on the way in."""

    __pydantic_config__ = _DOCUMENTED

    at: float
    """Epoch seconds."""
    reason: str
    """Why: bad signature, stale, replayed, expired..."""
    detail: str
    """What was dropped, in words."""


@dataclass(frozen=True)
class ConnectionStatus:
    """The dev server's AppSync Events connection."""

    __pydantic_config__ = _DOCUMENTED

    state: str
    """connecting | connected | backoff | stopped (or closed)."""
    since: float
    """Epoch seconds the state was entered."""
    endpoint: str
    """The AppSync Events realtime endpoint (no credentials in it)."""
    session: str
    """The live session id."""
    attempts: int
    """Connection attempts (dials) since start: one more with each reconnect."""
    failures: int
    """Failed attempts since start."""
    losses: int
    """Connections lost after they were up."""
    next_retry_at: float | None
    """Epoch seconds of the next attempt (in backoff)."""
    backoff_s: float | None
    """The current backoff delay, seconds."""
    last_error: str | None
    """Why the last attempt failed or the last connection ended."""
    last_frame_at: float | None
    """Epoch seconds of the last frame received (keep-alive or data)."""
    rejected: dict[str, int]
    """Messages dropped, by reason (bad signature, stale, replayed...)."""
    duplicates: int
    """Chunks delivered more than once (dropped)."""
    duplicates_answered: int
    """Invocations asked again (redelivered, or re-asked after a reconnect): answered, not run again."""
    recent_rejections: tuple[Rejection, ...]
    """The latest drops, newest last (bounded)."""
