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
- `{"flap_connections": {"accept_s": 2, "refuse_s": 1.5}}`  flapping: refuse new WebSocket handshakes
  (HTTP 503) for `refuse_s`, then accept them for `accept_s`, and so on, starting with a refusal now.
  Optional: `"jitter": 0.3` varies each window's length by up to +-30%; `"for_s": 60` stops flapping
  after 60 s (default: until reset); `"drop": false` leaves open connections alone (by default each
  refusal window drops every open one as it begins, as a blip does); `"seed": 7` makes the windows
  repeatable. `null` stops it. `"abrupt": true` in the same request makes its drops abrupt.
- `{"reset": true}`                   clear every fault (applied first, so it combines with new ones).

`drop_connections` is an action, not a state: `apply` returns it to the emulator, which performs it
when the request arrives. `abrupt` qualifies the drops of its own request only. A flapping schedule's
drops are due at its refusal windows' starts: the emulator asks `next_drop_at()` when to call
`due_drop()`. Everything here reads time only through `clock`, so tests drive it with a fake one.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stub_runtime.errors import CallerFault

_KEYS = frozenset(
    {
        "drop_connections",
        "abrupt",
        "refuse_connections_for_s",
        "stall_connections_for_s",
        "delay_delivery_ms",
        "duplicate_delivery",
        "drop_after_frames",
        "flap_connections",
        "reset",
    }
)
_FLAP_KEYS = frozenset({"accept_s", "refuse_s", "jitter", "for_s", "drop", "seed"})
MAX_FLAP_JITTER = 0.9  # a window never shrinks below a tenth of its length, so time always advances


@dataclass(frozen=True)
class DropNow:
    """Close every WebSocket now: with code 1000, or abruptly (no close frame, TCP torn down)."""

    abrupt: bool


class FaultSpecError(CallerFault, ValueError):
    """The fault request is malformed; the message says which key and why."""


class Flap:
    """A flapping endpoint: refusal and acceptance windows alternating from `start` (a refusal first),
    each `refuse_s` or `accept_s` long varied by up to +-`jitter` (a fraction), until `start + for_s`
    (None: forever). Pure: it is asked about times, it reads no clock. Windows are drawn lazily from a
    seeded generator, so a seed gives the same schedule every time."""

    def __init__(
        self,
        accept_s: float,
        refuse_s: float,
        *,
        start: float,
        jitter: float = 0.0,
        for_s: float | None = None,
        drop: bool = True,
        abrupt: bool = False,
        seed: int | None = None,
    ) -> None:
        if not (accept_s > 0 and refuse_s > 0 and math.isfinite(accept_s) and math.isfinite(refuse_s)):
            raise FaultSpecError("flap_connections.accept_s and refuse_s must be finite numbers > 0")
        if not 0 <= jitter <= MAX_FLAP_JITTER:
            raise FaultSpecError(f"flap_connections.jitter must be in [0, {MAX_FLAP_JITTER}], got {jitter!r}")
        if for_s is not None and not (for_s > 0 and math.isfinite(for_s)):
            raise FaultSpecError("flap_connections.for_s must be a finite number > 0, or null")
        self.accept_s, self.refuse_s, self.jitter = accept_s, refuse_s, jitter
        self.start, self.drop, self.abrupt, self.seed = start, drop, abrupt, seed
        self.end = math.inf if for_s is None else start + for_s
        self._rng = random.Random(seed)
        self._starts = [start]  # window i begins at _starts[i]; even i: refusing, odd i: accepting
        self._refused = [0.0]  # seconds refused from start to _starts[i]: availability in O(log n)

    def _extend(self, t: float) -> None:
        """Draw windows until one begins after `t` (or the schedule ends)."""
        while self._starts[-1] <= t and self._starts[-1] < self.end:
            refusing = len(self._starts) % 2 == 1  # the window that ends here
            base = self.refuse_s if refusing else self.accept_s
            length = base * (1 + self.jitter * (2 * self._rng.random() - 1))
            self._starts.append(self._starts[-1] + length)
            self._refused.append(self._refused[-1] + (length if refusing else 0.0))

    def _index(self, t: float) -> int:
        """The window `t` falls in (-1: before the start)."""
        self._extend(t)
        lo, hi = 0, len(self._starts)
        while lo < hi:  # bisect_right over the window starts
            mid = (lo + hi) // 2
            if self._starts[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1

    def refusing(self, t: float) -> bool:
        return self.start <= t < self.end and self._index(t) % 2 == 0

    def next_refusal_start(self, after: float) -> float | None:
        """The first refusal window that begins strictly after `after` (None: no more)."""
        i = max(0, self._index(after) + 1)
        if i % 2 == 1:
            i += 1
        while len(self._starts) <= i and self._starts[-1] < self.end:
            self._extend(self._starts[-1])
        if i >= len(self._starts) or self._starts[i] >= self.end:
            return None
        return self._starts[i]

    def refusals(self, until: float) -> list[tuple[float, float]]:
        """The refusal windows (from, to) within [start, min(until, end))."""
        stop = min(until, self.end)
        self._extend(stop)
        spans = []
        for i in range(0, len(self._starts), 2):
            lo = self._starts[i]
            if lo >= stop:
                break
            hi = self._starts[i + 1] if i + 1 < len(self._starts) else self.end
            spans.append((lo, min(hi, stop)))
        return spans

    def availability(self, until: float) -> float:
        """The share of [start, min(until, end)) spent accepting (1.0 for an empty span)."""
        stop = min(until, self.end)
        if stop <= self.start:
            return 1.0
        i = self._index(stop)
        refused = self._refused[i] + (stop - self._starts[i] if i % 2 == 0 else 0.0)
        return 1.0 - refused / (stop - self.start)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "accept_s": self.accept_s,
            "refuse_s": self.refuse_s,
            "jitter": self.jitter,
            "drop": self.drop,
            "abrupt": self.abrupt,
            "seed": self.seed,
            "refusing": self.refusing(now),
            "elapsed_s": round(max(0.0, min(now, self.end) - self.start), 3),
            "ends_in_s": None if self.end == math.inf else round(max(0.0, self.end - now), 3),
            "availability": round(self.availability(now), 4),
        }


@dataclass
class Faults:
    refuse_until: float = 0.0  # time.monotonic() before which handshakes are refused
    stall_until: float = 0.0  # time.monotonic() before which handshakes are left unanswered
    delay_delivery_s: float = 0.0
    duplicate_delivery: bool = False
    drop_after_frames: int | None = None  # data frames still to send before the one-shot drop
    drop_after_abrupt: bool = False  # how that one-shot drop closes the connection
    flap: Flap | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _dropped_until: float = field(default=-math.inf, repr=False)  # flap drops done up to this time

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
        if "flap_connections" in spec:
            self.flap = self._flap(spec["flap_connections"], abrupt)
            # Its first refusal begins now: due_drop() performs that drop (the emulator asks at once).
            self._dropped_until = -math.inf
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
        self.flap = None

    def _flap(self, value: Any, abrupt: bool) -> Flap | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise FaultSpecError('flap_connections must be an object like {"accept_s": 2, "refuse_s": 1}')
        unknown = set(value) - _FLAP_KEYS
        if unknown or not {"accept_s", "refuse_s"} <= set(value):
            raise FaultSpecError(
                f"flap_connections needs accept_s and refuse_s, and takes {sorted(_FLAP_KEYS)}; "
                f"got {sorted(value)}"
            )
        seed = value.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise FaultSpecError(f"flap_connections.seed must be an integer, got {seed!r}")
        for_s = value.get("for_s")
        return Flap(
            _number(value, "accept_s", "flap_connections."),
            _number(value, "refuse_s", "flap_connections."),
            start=self.clock(),
            jitter=_number(value, "jitter", "flap_connections.") if "jitter" in value else 0.0,
            for_s=None if for_s is None else _number(value, "for_s", "flap_connections."),
            drop=_bool(value, "drop", "flap_connections.") if "drop" in value else True,
            abrupt=abrupt,
            seed=seed,
        )

    def refusing(self) -> bool:
        now = self.clock()
        return now < self.refuse_until or (self.flap is not None and self.flap.refusing(now))

    def next_drop_at(self) -> float | None:
        """When the flapping schedule next drops every open connection (None: never); at or after
        that time, call `due_drop()`."""
        if self.flap is None or not self.flap.drop:
            return None
        return self.flap.next_refusal_start(self._dropped_until)

    def due_drop(self) -> DropNow | None:
        """The drop asked for by the refusal windows that began since the last drop (several missed
        ones are one drop: the connections are gone after the first); None when none began."""
        at, now = self.next_drop_at(), self.clock()
        if at is None or at > now:
            return None
        self._dropped_until = now
        return DropNow(abrupt=self.flap.abrupt if self.flap is not None else False)

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
            "flap_connections": None if self.flap is None else self.flap.snapshot(self.clock()),
        }


def _bool(spec: dict[str, Any], key: str, prefix: str = "") -> bool:
    value = spec[key]
    if not isinstance(value, bool):
        raise FaultSpecError(f"{prefix}{key} must be true or false, got {value!r}")
    return value


def _number(spec: dict[str, Any], key: str, prefix: str = "") -> float:
    value = spec[key]
    # NaN and infinity would make a deadline that never comes (or a bad one): refused too.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise FaultSpecError(f"{prefix}{key} must be a non-negative number, got {value!r}")
    return float(value)
