"""What the terminal says about dropped messages: anyone with the API key can publish junk, and a line
per forgery would bury the invocations (709 forgeries, 709 lines). The first message dropped for each
reason is said at once, with its detail; after that, one summary line per interval at most, with the
counts by reason. Pure and clock-injected; the bridge prints what it returns."""

from __future__ import annotations

from collections import Counter


class RejectionSummary:
    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._said: set[str] = set()
        self._pending: Counter[str] = Counter()
        self._next_summary_at = 0.0

    def rejected(self, reason: str, detail: str, now: float) -> str | None:
        """A message was dropped: the line to print now, if any."""
        if reason not in self._said:
            self._said.add(reason)
            self._next_summary_at = max(self._next_summary_at, now + self.interval_s)
            return f"dropped a message ({reason}): {detail}"
        self._pending[reason] += 1
        return self.flush(now)

    def flush(self, now: float) -> str | None:
        """The summary of what was dropped since the last line, once the interval has passed."""
        if not self._pending or now < self._next_summary_at:
            return None
        counts = ", ".join(f"{reason} {n}" for reason, n in self._pending.most_common())
        total = sum(self._pending.values())
        self._pending.clear()
        self._next_summary_at = now + self.interval_s
        return f"dropped {total} more message(s) ({counts}); the dashboard lists them"

    @property
    def pending(self) -> int:
        return sum(self._pending.values())

    def due_at(self) -> float:
        """When `flush` will have something to say (the shell sets a timer for it)."""
        return self._next_summary_at
