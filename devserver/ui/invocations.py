"""What the dev server remembers of each invocation: the record the terminal prints, the dashboard
shows and replay starts from. In memory, newest last, bounded; listeners get every change."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Status = Literal["running", "ok", "handler_error", "timeout", "crashed", "init_error", "livelambda_error"]
Source = Literal["live", "replay", "local"]
_PAYLOAD_FIELDS = frozenset({"event", "response", "logs", "stack_trace"})


@dataclass
class InvocationRecord:
    id: str  # the Lambda request id (replays get a fresh one)
    function: str
    source: Source
    event: Any
    trigger: str
    started_at: float  # wall clock, seconds
    deadline_ms: int
    status: Status = "running"
    timeout_s: float | None = None  # what the handler gets here (live: the function's, less the way back)
    timeout_note: str | None = None  # why, when it is not the function's own timeout
    finished_at: float | None = None
    duration_ms: float | None = None
    response: Any = None
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: list[str] = field(default_factory=list)
    logs: str = ""
    cold: bool | None = None
    generation: int | None = None
    worker_id: str | None = None
    sandbox_id: str | None = None
    replay_of: str | None = None
    # Milestones in wall-clock ms, as far as the stub's and our clocks tell: sent (stub), received,
    # started, finished, published.
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The fields the feed needs, without the payloads (not copied: asdict() would deep-copy a
        6 MB event, ~0.5 s, for every feed update)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _PAYLOAD_FIELDS}
        out["timings"] = dict(self.timings)
        return out

    def full(self) -> dict[str, Any]:
        return asdict(self)


class InvocationStore:
    """The last `keep` invocations. `changes()` yields every record as it starts and as it ends."""

    def __init__(self, keep: int = 500) -> None:
        if keep < 1:
            raise ValueError("the dashboard must keep at least one invocation")
        self.keep = keep
        self._records: OrderedDict[str, InvocationRecord] = OrderedDict()
        self._listeners: set[asyncio.Queue[InvocationRecord | None]] = set()

    def add(self, record: InvocationRecord) -> None:
        self._records[record.id] = record
        self._records.move_to_end(record.id)
        while len(self._records) > self.keep:
            self._records.popitem(last=False)
        self._notify(record)

    def update(self, record: InvocationRecord) -> None:
        """Publish a change to a record already added (finished, logs grew...)."""
        if record.id in self._records:
            self._notify(record)

    def finish(self, record: InvocationRecord, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(record, name, value)
        record.finished_at = time.time()
        self.update(record)

    def get(self, invocation_id: str) -> InvocationRecord | None:
        return self._records.get(invocation_id)

    def newest_first(self) -> Iterator[InvocationRecord]:
        return reversed(self._records.values())

    def clear(self) -> None:
        self._records.clear()
        self._notify(None)

    def __len__(self) -> int:
        return len(self._records)

    def listen(self) -> asyncio.Queue[InvocationRecord | None]:
        """A queue receiving every added/changed record (None: the store was cleared).
        Slow listeners lose the oldest changes rather than slowing the dev server."""
        queue: asyncio.Queue[InvocationRecord | None] = asyncio.Queue(maxsize=1000)
        self._listeners.add(queue)
        return queue

    def unlisten(self, queue: asyncio.Queue[InvocationRecord | None]) -> None:
        self._listeners.discard(queue)

    def _notify(self, record: InvocationRecord | None) -> None:
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(record)
