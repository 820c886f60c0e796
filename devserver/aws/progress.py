"""What `aws up` / `aws down` report as they go, and how each function ended. The commands render it
(a progress line per function, a summary table); tests collect it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FunctionResult:
    function: str  # the deployed function
    status: str  # see STATUSES
    detail: str = ""
    local: str | None = None  # the local function that runs it

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


# live, already live: switched (now or before); restored, not live: put back (now or before);
# skipped: not a candidate (another runtime, no local code...); refused: left alone on purpose,
# with what to do; failed: an AWS call failed.
OK_STATUSES = frozenset({"live", "already live", "restored", "not live", "skipped", "gone"})
STATUSES = OK_STATUSES | {"refused", "failed"}


class Progress(Protocol):
    def note(self, text: str) -> None:
        """A shared step (the API, the layer...)."""

    def step(self, function: str, text: str) -> None:
        """A function's current step."""

    def finished(self, result: FunctionResult) -> None:
        """A function's outcome."""


class SilentProgress:
    def note(self, text: str) -> None:
        pass

    def step(self, function: str, text: str) -> None:
        pass

    def finished(self, result: FunctionResult) -> None:
        pass
