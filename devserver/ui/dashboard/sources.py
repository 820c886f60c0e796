"""What the dashboard reads from the dev server: one object implementing `DashboardSources`.

The dashboard never imports the bridge, the runner or the watcher. The dev server hands it an object
with these members and the dashboard only reads them (and asks for replays). What a function and the
connection look like is described once, in devserver/status.py.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from devserver.status import ConnectionStatus, FunctionStatus
from devserver.ui.invocations import InvocationRecord, InvocationStore


@runtime_checkable
class DashboardSources(Protocol):
    store: InvocationStore

    def functions(self) -> list[FunctionStatus]:
        """One snapshot per function."""
        ...

    def connection(self) -> ConnectionStatus:
        """The AppSync Events connection's state."""
        ...

    async def replay(self, invocation_id: str, event: Any | None) -> InvocationRecord:
        """Run invocation `invocation_id` again locally, with its own event (`event` None) or with
        `event`. The new record is added to `store` with source="replay", replay_of=invocation_id
        and returned once it has finished."""
        ...
