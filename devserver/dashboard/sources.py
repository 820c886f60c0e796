"""What the dashboard reads from the dev server: one object implementing `DashboardSources`.

The dashboard never imports the bridge, the runner or the watcher. The dev server hands it an object
with these members and the dashboard only reads them (and asks for replays).

`functions()` returns one dict per function:
    name              str        the function's name (as in `livelambda invoke <name>`)
    handler           str        "app.handler"
    source            str        the directory (or file) the code is loaded from
    python            str        the Python version the workers run, e.g. "3.12.3"
    timeout           float      the function's timeout, seconds
    workers           list       [{id, pid, state: "starting"|"idle"|"busy"|"draining", generation,
                                 cold_start_ms}]
    generation        int        the current code generation (bumped on every reload)
    last_reload_at    float|None epoch seconds of the last reload
    last_reload_error str|None   the traceback/message of the last failed reload, None if it loaded
    environment       dict       the function's environment variables; values whose names look secret
                                 (`stub_runtime.live_protocol.looks_secret`) are masked by the page
  optional:
    memory_mb         int        the function's memory size
    arn               str        the deployed function's ARN
    error             str|None   why the function cannot run at all right now (e.g. import failed)

`connection()` returns the dev server's AppSync Events connection:
    state              str        "connecting" | "connected" | "backoff" | "stopped" (or "closed")
    since              float      epoch seconds the state was entered
    endpoint           str        the AppSync Events realtime endpoint (no credentials in it)
    attempts           int        connection attempts (dials) in total since start: grows by one
                                  with each reconnect
    failures           int        failed attempts in total
    next_retry_at      float|None epoch seconds of the next attempt (while in backoff)
    backoff_s          float      the current backoff delay
    last_frame_at      float|None epoch seconds of the last frame received (keep-alive or data)
    rejected           dict       {reason: count} of messages dropped (bad HMAC, stale, replayed...)
    recent_rejections  list       [{at: epoch s, reason: str, detail: str}], newest last, bounded
    session            str        the live session id
  optional:
    losses             int        connections lost after they were up
    last_error         str|None   why the last attempt failed or the last connection ended
    subscriptions      list[str]  the channels subscribed to
    connected_total    int        successful connections since start

Every field may be missing: the page shows what is there.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from devserver.invocations import InvocationRecord, InvocationStore


@runtime_checkable
class DashboardSources(Protocol):
    store: InvocationStore

    def functions(self) -> list[dict[str, Any]]:
        """One dict per function (see the module docstring for the fields)."""
        ...

    def connection(self) -> dict[str, Any]:
        """The AppSync Events connection's state (see the module docstring for the fields)."""
        ...

    async def replay(self, invocation_id: str, event: Any | None) -> InvocationRecord:
        """Run invocation `invocation_id` again locally, with its own event (`event` None) or with
        `event`. The new record is added to `store` with source="replay", replay_of=invocation_id
        and returned once it has finished."""
        ...
