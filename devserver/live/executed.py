"""Which invocations this app's dev server has already handed to a worker, kept on disk so that a
genuine `invoke` is executed at most once even when `livelambda dev` restarts between two deliveries
of it (a redelivery, the stub asking again, or someone with the API key replaying a copy).

An id is remembered until its invocation's deadline plus the clock skew the envelope accepts: after
that an envelope carrying it is refused as expired or stale anyway. One line per invocation is
appended (`<request id> <forget at, epoch ms>`), no fsync: a dev server killed mid-run loses nothing
(the kernel has the bytes); only a machine crash could, and its sandboxes' deadlines pass meanwhile.
The file is compacted when it has grown well past what it must remember."""

from __future__ import annotations

import os
from pathlib import Path

_COMPACT_AT_LINES = 4096


class ExecutedLog:
    def __init__(self, path: Path, now_ms: int) -> None:
        self.path = path
        self._forget_at: dict[str, int] = {}  # request id -> epoch ms; insertion ~ time order
        self._lines = 0
        self._fd = -1
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            rid, _, when = line.partition(" ")
            if rid and when.isdigit() and int(when) > now_ms:
                self._forget_at[rid] = int(when)  # a torn last line (no digits) is skipped
        self._rewrite()

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._forget_at

    def __len__(self) -> int:
        return len(self._forget_at)

    def record(self, request_id: str, forget_at_ms: int, now_ms: int) -> None:
        """Remember `request_id` until `forget_at_ms` (written before the invocation runs)."""
        self._forget_at[request_id] = forget_at_ms
        os.write(self._fd, f"{request_id} {forget_at_ms}\n".encode("ascii", "replace"))
        self._lines += 1
        if self._lines >= _COMPACT_AT_LINES:
            self.expire(now_ms)
            self._rewrite()

    def expire(self, now_ms: int) -> None:
        for rid in [rid for rid, when in self._forget_at.items() if when <= now_ms]:
            del self._forget_at[rid]

    def close(self) -> None:
        os.close(self._fd)

    def _rewrite(self) -> None:
        """Write what must be remembered to a new file and swap it in (atomic on POSIX)."""
        fresh = self.path.with_suffix(".tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        os.write(
            fd, "".join(f"{rid} {when}\n" for rid, when in self._forget_at.items()).encode("ascii", "replace")
        )
        os.replace(fresh, self.path)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._lines = len(self._forget_at)
