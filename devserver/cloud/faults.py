"""Fault injection for `livelambda cloud`: plain state that the AppSync emulator consults.

Tests set faults with `POST /_livelambda/faults` (JSON). Keys, combinable in one request:
- `{"drop_connections": true}`        close every WebSocket now, code 1000 as the service does;
  add `"abrupt": true` to drop the TCP connection without a close frame instead.
- `{"refuse_connections_for_s": 5}`   refuse new WebSocket handshakes (HTTP 503) for 5 seconds.
- `{"stall_connections_for_s": 5}`    leave new WebSocket handshakes unanswered for 5 seconds, as a
  function in a VPC without a route to AppSync sees it (the client's open timeout fires).
- `{"delay_delivery_ms": 200}`        hold every `data` frame this long before sending it.
- `{"duplicate_delivery": true}`      send every `data` frame twice.
- `{"drop_after_frames": N}`          one-shot: the connection that sends the N-th `data` frame from now
  is dropped right after it (N=0: the next `data` frame is lost with its connection); `"abrupt": true`
  in the same request makes that drop abrupt.
- `{"reset": true}`                   clear every fault (applied first, so it combines with new ones).

`drop_connections` is an action, not a state: `apply` returns it to the emulator, which performs it
when the request arrives. `abrupt` qualifies the drops of its own request only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_KEYS = frozenset(
    {
        "drop_connections",
        "abrupt",
        "refuse_connections_for_s",
        "stall_connections_for_s",
        "delay_delivery_ms",
        "duplicate_delivery",
        "drop_after_frames",
        "reset",
    }
)


@dataclass(frozen=True)
class DropNow:
    """Close every WebSocket now: with code 1000, or abruptly (no close frame, TCP torn down)."""

    abrupt: bool


class FaultSpecError(ValueError):
    """The fault request is malformed; the message says which key and why."""


@dataclass
class Faults:
    refuse_until: float = 0.0  # time.monotonic() before which handshakes are refused
    stall_until: float = 0.0  # time.monotonic() before which handshakes are left unanswered
    delay_delivery_s: float = 0.0
    duplicate_delivery: bool = False
    drop_after_frames: int | None = None  # data frames still to send before the one-shot drop
    drop_after_abrupt: bool = False  # how that one-shot drop closes the connection
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def apply(self, spec: dict[str, Any]) -> DropNow | None:
        """Apply a fault request; return what to drop right now, if the request asks for it."""
        unknown = set(spec) - _KEYS
        if unknown:
            raise FaultSpecError(f"unknown fault keys {sorted(unknown)}; known: {sorted(_KEYS)}")
        abrupt = _bool(spec, "abrupt") if "abrupt" in spec else False
        if "reset" in spec and _bool(spec, "reset"):
            self.reset()
        if "refuse_connections_for_s" in spec:
            self.refuse_until = self.clock() + _number(spec, "refuse_connections_for_s")
        if "stall_connections_for_s" in spec:
            self.stall_until = self.clock() + _number(spec, "stall_connections_for_s")
        if "delay_delivery_ms" in spec:
            self.delay_delivery_s = _number(spec, "delay_delivery_ms") / 1000.0
        if "duplicate_delivery" in spec:
            self.duplicate_delivery = _bool(spec, "duplicate_delivery")
        if "drop_after_frames" in spec:
            value = spec["drop_after_frames"]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise FaultSpecError("drop_after_frames must be a non-negative integer or null")
            self.drop_after_frames = value
            self.drop_after_abrupt = abrupt
        if "drop_connections" in spec and _bool(spec, "drop_connections"):
            return DropNow(abrupt=abrupt)
        return None

    def reset(self) -> None:
        self.refuse_until = 0.0
        self.stall_until = 0.0
        self.delay_delivery_s = 0.0
        self.duplicate_delivery = False
        self.drop_after_frames = None
        self.drop_after_abrupt = False

    def refusing(self) -> bool:
        return self.clock() < self.refuse_until

    def stall_s(self) -> float:
        """How long a handshake arriving now is left unanswered (0: answer it)."""
        return max(0.0, self.stall_until - self.clock())

    def copies(self) -> int:
        """How many times to send each data frame."""
        return 2 if self.duplicate_delivery else 1

    def before_data_frame(self) -> bool:
        """Called before a data frame goes out; True means: drop the connection instead of sending it."""
        if self.drop_after_frames is None:
            return False
        if self.drop_after_frames == 0:
            self.drop_after_frames = None  # one-shot
            return True
        self.drop_after_frames -= 1
        return False

    def after_data_frame(self) -> bool:
        """Called after a data frame went out; True means: drop the connection now."""
        if self.drop_after_frames == 0:
            self.drop_after_frames = None
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        return {
            "refusing_connections_for_s": round(max(0.0, self.refuse_until - self.clock()), 3),
            "stalling_connections_for_s": round(self.stall_s(), 3),
            "delay_delivery_ms": round(self.delay_delivery_s * 1000.0, 3),
            "duplicate_delivery": self.duplicate_delivery,
            "drop_after_frames": self.drop_after_frames,
            "drop_after_abrupt": self.drop_after_abrupt,
        }


def _bool(spec: dict[str, Any], key: str) -> bool:
    value = spec[key]
    if not isinstance(value, bool):
        raise FaultSpecError(f"{key} must be true or false, got {value!r}")
    return value


def _number(spec: dict[str, Any], key: str) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultSpecError(f"{key} must be a non-negative number, got {value!r}")
    return float(value)
