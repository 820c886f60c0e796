"""Sans-I/O reconnect policy: when to dial, how long to wait, when to give up.

A competitor's unbounded reconnect loop once grew one developer's AppSync connections to ~80,000. This
module is the one place that decides about connecting, and it decides with bounds that do not depend on
luck. It does no I/O and reads no clock: the caller feeds in events and the time (`now`, any monotonic
float, e.g. ``time.monotonic()``) and reads out an `Action`, like `websockets.protocol` and `h11`.

The loop a shell runs (``deadline`` only in ``on_demand`` mode; the stub's shell is blocking,
`appsync.blocking.OnDemandConnection`, the dev server's asyncio, `appsync.reconnecting`)::

    while True:
        action = policy.next_action(now(), deadline)
        if isinstance(action, Ready):  break                  # use the connection
        if isinstance(action, GiveUp): raise ...(action)      # fail fast, say why
        if isinstance(action, Wait):   sleep_until(action.until); continue
        policy.dial_started(now())                            # action is a Dial
        try:    dial()
        except NoAnswer: policy.dial_failed(now(), "timeout"); continue
        except Failed:   policy.dial_failed(now(), "refused"); continue
        policy.dial_succeeded(now())
    # later: policy.connection_lost(now()) when the socket dies; policy.end_demand(now()) per invocation

Two kinds of failed dial (``on_demand`` tells them apart; ``persistent`` treats them alike):

* ``"refused"``: the endpoint answered, and said no (HTTP 503 or 429 on the upgrade, a close before
  ``connection_ack``), or the connection was refused or reset. It cost milliseconds, and a blip, a
  deploy or throttling is over in seconds: the invocation retries, backed off (below), for as long as
  its deadline and ``max_attempts`` allow. Refusals never open the circuit breaker: a breaker tripped by
  a 2 s blip failed every sandbox that saw it for 30 s, all together, then probed all together.
* ``"timeout"``: nothing answered within the dial's time (a VPC without NAT, a firewall dropping
  packets: a black hole). Each such dial costs the whole connect timeout, and the next would cost as
  much: the demand stops dialling at once (``GiveUp("timed_out")``, so the first invocation fails within
  one connect timeout whatever its own timeout), and ``breaker_threshold`` of them in a row open the
  breaker (below). Any answer (a connection, a refusal) resets that count.

A rejection that no retry can fix (a bad key: HTTP 4xx, ``connection_error``) is the shell's to stop
on; to the policy it is a refusal (the endpoint answered).

Backoff ("windowed full jitter"). The n-th retry since the last stable connection (n = 0, 1, ...) has
``delta(n) = min(max_delay_s, base_delay_s * 2**n)``. When a dial fails (or a connection drops before
it was stable) at time ``t``, the next dial is drawn uniformly from the window ``[lo, hi]`` with
``lo = max(t, end of the previous window)`` and ``hi = max(lo, t + delta(n))``: so usually
``wait = rng() * delta(n)`` exactly (AWS "full jitter"), and never more than ``max_delay_s``. The
``lo`` clamp only bites when a dial fails before its own window closed; it keeps windows from
overlapping, which makes the rate bound hold for *any* rng output (even a broken one stuck at 0):

* dial starts ``x_i`` of one backoff streak (the dials between two stable connections) satisfy
  ``x_(i+2) >= x_i + delta(n_i)``, where ``n_i`` (= i) is the backoff index used after dial ``i``'s
  outcome, whatever the outcome's kind;
* every ``Wait`` ends at most ``max_delay_s`` after the event that scheduled it.

The dial bound. With ``b = base_delay_s``, ``c = max_delay_s``, ``S = stable_after_s`` and
``K = ceil(log2(c / b))`` (the number of windows narrower than ``c``), one policy (one sandbox, or the
dev server's connection) starts at most::

    N(W) = (1 + floor(W / S)) * (K + 2) + floor(2 * W / c)

dials in any window of ``W`` seconds, for any rng, any mix of refusals and timeouts, any demands
(`PolicyConfig.dial_bound`). Why: in a streak the dials ``i >= K`` form two chains spaced ``>= c``
(at most ``2 * ceil(w / c)`` in a span ``w``), plus the ``K`` before them; a new streak needs a
connection that stayed up ``S`` seconds, without dials. With the defaults (b = 0.1 s, c = 1 s,
S = 10 s, K = 4): ``N(W) = 6 * (1 + floor(W / 10)) + floor(2 * W)``, i.e. 10 dials in 2 s, 32 in 10 s,
162 in a minute, and ~2.6 a second in the long run. A loop that redials every 10 ms makes ``100 * W``:
at least 20x more in every window of 2 s or longer (31x in 10 s, 37x in a minute).
Once decayed (``delta = c``) it is simply ``2 * ceil(W / c)``. The breaker (below) bounds a black
hole far lower still; the bound above holds with or without it.

The cap ``c`` is short on purpose: the invocation that waits through a refusal window dials again at
most ``c`` after it ends, and a sandbox's next invocation at most ``c`` after its last refusal, so
sandboxes are back within ``c`` (plus one dial) after the faults stop. ``min_dial_s`` keeps a dial from
starting too close to the deadline to finish.

Floor rate (``persistent`` mode), precisely: once decayed, with dials that take ``D`` seconds to fail,
the long-run dial-start rate ``r`` satisfies ``1 / (max_delay_s + D) <= r <= 2 / max_delay_s`` for any
rng (hard bounds: it never stops and never storms). With a uniform rng and instantly failing dials its
expectation is ``1.5 / max_delay_s``; with dials slower than ``max_delay_s`` it is
``1 / (D + max_delay_s / 2)``. Exactly ``1 / max_delay_s`` is impossible with jitter while each wait
is capped at ``max_delay_s``; this is the closest honest floor. (The defaults are the stub's; the dev
server keeps the same 1 s cap, `devserver.live.bridge.DEV_SERVER_POLICY`, to be back within 2 s of a blip.)

Stability. A connection lost at least ``stable_after_s`` after it connected resets the backoff index to
0; one that drops sooner counts like a failed dial (the index keeps growing), so a connect-then-drop
flapping endpoint is dialled no faster than a dead one. After a stable loss, ``persistent`` mode waits
``rng() * base_delay_s`` (a server that drops everyone drops them at once); ``on_demand`` may redial at
once (its dials are already spread by invocation arrivals, and a thawed sandbox is in a hurry).

The policy only bounds anything if it lives as long as what it protects: in the stub, one policy per
sandbox (a module global, surviving across invocations); in the dev server, one per connection.
Refused calls (LocalProtocolError) change nothing.

Circuit breaker (``on_demand`` only, black holes only). After ``breaker_threshold`` consecutive timed-out
dials (counted across invocations) the breaker opens for a cool-down drawn uniformly from
``[C / 2, C]``, with ``C = breaker_cooldown_s`` at first: every demand gets
``GiveUp("circuit_open", retry_at=<close time>)`` without dialling. The jitter spreads the sandboxes
that met the same black hole at the same moment, so they do not probe together either. After the
cool-down the first demand makes one trial dial (half-open): no answer again re-opens the breaker with
``C`` doubled (capped at ``breaker_cooldown_max_s``); any answer (a connection, or a refusal: the
path works again) closes it and puts ``C`` back to ``breaker_cooldown_s``. So a sandbox facing a black
hole waits one connect timeout on its first invocation, then fails fast, and dials at most once per
cool-down (>= ``breaker_cooldown_s / 2`` apart). ``persistent`` mode has no breaker: the dev server must
keep trying, at its floor rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from stub_runtime.errors import LocalProtocolError

__all__ = [
    "Action",
    "Dial",
    "FailureKind",
    "GiveUp",
    "PolicyConfig",
    "PolicyStats",
    "Ready",
    "ReconnectPolicy",
    "Wait",
]

Mode = Literal["on_demand", "persistent"]
State = Literal["idle", "dialing", "connected", "backoff", "open", "half_open"]
FailureKind = Literal["refused", "timeout"]
_KINDS = ("refused", "timeout")

# 2.0 ** 1024 overflows; any exponent past this is already far above every sane cap.
_MAX_EXPONENT = 60
_NEVER = -math.inf


def _check_number(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"PolicyConfig.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"PolicyConfig.{name} must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"PolicyConfig.{name} must be > 0, got {value!r}")
    if value < 0:
        raise ValueError(f"PolicyConfig.{name} must be >= 0, got {value!r}")
    return float(value)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"PolicyConfig.{name} must be an int >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class PolicyConfig:
    """Bounds of the reconnect policy; invalid values raise ValueError at construction. The defaults
    are the stub's (on_demand)."""

    mode: Mode = "on_demand"
    base_delay_s: float = 0.1  # first backoff window
    max_delay_s: float = 1.0  # cap on each wait (and on each backoff window)
    max_attempts: int = 20  # on_demand: dials for one demand before GiveUp("attempts_exhausted")
    min_dial_s: float = 0.25  # on_demand: don't start a dial with less than this left before the deadline
    breaker_threshold: int = 1  # on_demand: consecutive timed-out dials that open the breaker
    breaker_cooldown_s: float = 5.0  # on_demand: first cool-down of an open breaker (drawn in [C/2, C])
    breaker_cooldown_max_s: float = 60.0  # on_demand: cap of the doubling cool-down
    stable_after_s: float = 10.0  # a connection up this long resets the backoff when lost

    def __post_init__(self) -> None:
        if self.mode not in ("on_demand", "persistent"):
            raise ValueError(f"PolicyConfig.mode must be 'on_demand' or 'persistent', got {self.mode!r}")
        base = _check_number("base_delay_s", self.base_delay_s, positive=True)
        cap = _check_number("max_delay_s", self.max_delay_s, positive=True)
        if cap < base:
            raise ValueError(f"PolicyConfig.max_delay_s ({cap}) must be >= base_delay_s ({base})")
        _check_count("max_attempts", self.max_attempts)
        _check_number("min_dial_s", self.min_dial_s, positive=False)
        _check_count("breaker_threshold", self.breaker_threshold)
        cool = _check_number("breaker_cooldown_s", self.breaker_cooldown_s, positive=True)
        cool_max = _check_number("breaker_cooldown_max_s", self.breaker_cooldown_max_s, positive=True)
        if cool_max < cool:
            raise ValueError(
                f"PolicyConfig.breaker_cooldown_max_s ({cool_max}) must be >= breaker_cooldown_s ({cool})"
            )
        # 0 would let every connect-then-drop reset the backoff: the flapping storm this guards against.
        _check_number("stable_after_s", self.stable_after_s, positive=True)

    def backoff_window(self, n: int) -> float:
        """delta(n) = min(max_delay_s, base_delay_s * 2**n): the width of the n-th retry's window."""
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(max(n, 0), _MAX_EXPONENT))

    def decay_index(self) -> int:
        """K = ceil(log2(max_delay_s / base_delay_s)): how many windows are narrower than the cap."""
        k = 0
        while self.backoff_window(k) < self.max_delay_s:
            k += 1
        return k

    def dial_bound(self, window_s: float) -> int:
        """N(W): the most dials one policy can start in any window of `window_s` seconds (module
        docstring): (1 + floor(W / S)) * (K + 2) + floor(2 * W / max_delay_s)."""
        if not window_s >= 0:
            raise ValueError(f"window_s must be >= 0, got {window_s!r}")
        streaks = 1 + math.floor(window_s / self.stable_after_s)
        return streaks * (self.decay_index() + 2) + math.floor(2.0 * window_s / self.max_delay_s)


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial now, and call `dial_started` first.

    `attempt` is 1-based: the dial's number within the current demand (on_demand, <= max_attempts) or
    since the last successful dial (persistent).
    """

    attempt: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep until `until` (same clock as `now`), then ask again.

    reason "backoff": no dial is allowed before `until`. reason "dialing": a dial is already in flight;
    wait for its outcome, `until` only bounds how long before asking again.
    """

    until: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Fail the waiting invocation now, without dialling.

    reason: "timed_out" (this demand's dial got no answer: a black hole, not worth another wait) |
    "circuit_open" (the breaker fails demands fast; no dial) | "attempts_exhausted" | "deadline".
    `retry_at` is the earliest time the policy would allow a dial for a new demand (the breaker's
    close time when it is open), or None when unknown (a dial is in flight).
    """

    reason: str
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class Ready:
    """A connection is up (since `since`): use it. Report its death with `connection_lost`."""

    since: float


Action = Dial | Wait | GiveUp | Ready


@dataclass(frozen=True)
class PolicyStats:
    """Counters for logs and the dashboard (a snapshot; the policy keeps counting)."""

    attempts: int = 0  # dials started
    failures: int = 0  # dials failed (refused or timed out)
    successes: int = 0  # dials succeeded
    losses: int = 0  # connections lost after success
    breaker_opens: int = 0  # times the breaker opened (first open and each failed trial)
    give_ups: dict[str, int] = field(default_factory=dict)  # GiveUp actions returned, by reason
    timeouts: int = 0  # of the failures: dials that got no answer


class ReconnectPolicy:
    """The reconnect state machine: feed it events and the time, ask it what to do next.

    Modes (see the module docstring for the exact bounds):
    - "on_demand" (the Lambda stub): dials only inside `next_action(now, deadline)`, i.e. only while an
      invocation waits; deadline is required (None raises LocalProtocolError: a dial without a demand is
      a caller bug, never a silent GiveUp). At most `max_attempts` dials per demand, none that could not
      start `min_dial_s` before the deadline, none after a timed-out one, and a circuit breaker across
      demands for black holes.
    - "persistent" (the dev server): deadline must be None; it always wants a connection and never gives
      up, retrying at the floor rate.

    At most one dial is in flight: while dialing, `next_action` returns Wait("dialing"), never Dial.
    Events out of order (dial_succeeded without dial_started, time going backwards, ...) raise
    LocalProtocolError. `rng` must return floats in [0, 1]; default `random.random`, imported on first
    use so a cold start that connects at once never pays for it.
    """

    def __init__(
        self, config: PolicyConfig = PolicyConfig(), *, rng: Callable[[], float] | None = None
    ) -> None:
        self.config = config
        self._rng = rng
        self._on_demand = config.mode == "on_demand"
        self._now = _NEVER  # the latest time we were told
        self._phase: Literal["down", "dialing", "connected"] = "down"
        self._dial_granted = False  # the last next_action returned Dial and nothing happened since
        self._connected_at = 0.0
        # backoff
        self._next_dial_at = _NEVER  # no dial before this
        self._window_end = _NEVER  # end of the latest backoff window (next window starts after it)
        self._streak = 0  # backoff index n: retries scheduled since the last stable connection
        self._seq = 0  # persistent: dials since the last successful dial
        # demand (on_demand)
        self._episode_dials = 0
        self._episode_timed_out = False  # this demand's dial got no answer: it dials no more
        # breaker (on_demand)
        self._timeout_run = 0  # consecutive timed-out dials
        self._open_until: float | None = None  # None: closed; otherwise open (or half-open once passed)
        self._cooldown = config.breaker_cooldown_s  # C: the next open lasts a draw in [C/2, C]
        self._trial = False  # the dial in flight is the half-open trial
        # stats
        self._attempts = self._failures = self._successes = self._losses = self._breaker_opens = 0
        self._timeouts = 0
        self._give_ups: dict[str, int] = {}

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> State:
        """The state as of the last `now` the policy was given (it reads no clock).

        One of "idle", "dialing", "connected", "backoff", "open", "half_open".

        idle: down, a dial is allowed now. backoff: down, no dial before `retry_in`. open: the breaker
        fails demands fast. half_open: the breaker's cool-down is over and the next dial is its trial.
        """
        if self._phase != "down":
            return self._phase
        if self._open_until is not None and self._now < self._open_until:
            return "open"
        if self._now < self._next_dial_at:
            return "backoff"
        return "half_open" if self._open_until is not None else "idle"

    @property
    def stats(self) -> PolicyStats:
        return PolicyStats(
            attempts=self._attempts,
            failures=self._failures,
            successes=self._successes,
            losses=self._losses,
            breaker_opens=self._breaker_opens,
            give_ups=dict(self._give_ups),
            timeouts=self._timeouts,
        )

    def retry_in(self, now: float) -> float | None:
        """Seconds until a dial is allowed (0.0: now); None while dialing or connected. For UIs."""
        if self._phase != "down":
            return None
        allowed = self._next_dial_at
        if self._open_until is not None:
            allowed = max(allowed, self._open_until)
        return max(0.0, allowed - now)

    # ------------------------------------------------------------------ decisions

    def next_action(self, now: float, deadline: float | None = None) -> Action:
        """What to do now. on_demand: `deadline` is the waiting invocation's (required);
        persistent: `deadline` must be None."""
        cfg = self.config
        if self._on_demand:
            if deadline is None:
                raise LocalProtocolError(
                    "next_action() in on_demand mode needs the waiting invocation's deadline: "
                    "the stub only dials for an invocation; pass deadline=<its deadline on the same clock>"
                )
            if math.isnan(deadline):
                raise LocalProtocolError("next_action(): deadline is NaN")
        elif deadline is not None:
            raise LocalProtocolError(
                "next_action() in persistent mode takes no deadline: the dev server's connection "
                "is wanted until close; use mode='on_demand' for invocation-bound dialling"
            )
        self._advance(now, "next_action")
        self._dial_granted = False

        if self._phase == "connected":
            return Ready(self._connected_at)
        if self._phase == "dialing":
            if deadline is None:
                return Wait(now + cfg.max_delay_s, "dialing")
            if deadline <= now:
                return self._give_up("deadline", None)
            return Wait(min(deadline, now + cfg.max_delay_s), "dialing")

        at = max(now, self._next_dial_at)
        if deadline is not None:  # on_demand
            if self._episode_timed_out:
                return self._give_up("timed_out", at)
            if self._open_until is not None and now < self._open_until:
                return self._give_up("circuit_open", self._open_until)
            if self._episode_dials >= cfg.max_attempts:
                return self._give_up("attempts_exhausted", at)
            if at + cfg.min_dial_s > deadline:
                return self._give_up("deadline", at)
        if at > now:
            return Wait(at, "backoff")
        self._dial_granted = True
        return Dial(self._episode_dials + 1 if self._on_demand else self._seq + 1)

    # ------------------------------------------------------------------ events

    def dial_started(self, now: float) -> None:
        """The shell began the dial that the last `next_action` returned."""
        self._check_time(now, "dial_started")
        if not self._dial_granted:
            raise LocalProtocolError(
                f"dial_started() in state {self.state!r} without a Dial from the last next_action(): "
                "ask next_action() and dial only when it returns Dial (one dial at a time)"
            )
        self._now = now
        self._dial_granted = False
        self._phase = "dialing"
        self._trial = self._open_until is not None
        self._attempts += 1
        self._episode_dials += 1
        self._seq += 1

    def dial_succeeded(self, now: float) -> None:
        """The dial connected (after connection_ack/subscriptions: whatever the shell calls usable)."""
        self._require_phase("dialing", "dial_succeeded")
        self._advance(now, "dial_succeeded")
        self._phase = "connected"
        self._connected_at = now
        self._successes += 1
        self._seq = 0
        self._answered()

    def dial_failed(self, now: float, kind: FailureKind = "refused") -> None:
        """The dial failed. `kind` "refused": the endpoint answered no, or refused or reset the
        connection (retried, backed off, within the demand); "timeout": no answer within the dial's
        time, a black hole (the demand dials no more; counts toward the breaker). Schedules the next
        window either way."""
        if kind not in _KINDS:
            raise LocalProtocolError(f"dial_failed(kind={kind!r}): kind must be 'refused' or 'timeout'")
        self._require_phase("dialing", "dial_failed")
        self._advance(now, "dial_failed")
        self._phase = "down"
        self._failures += 1
        self._schedule(now)
        if kind == "timeout":
            self._timeouts += 1
        if self._on_demand:
            if kind == "refused":
                self._answered()
            else:
                self._episode_timed_out = True
                self._timeout_run += 1
                if self._trial:
                    self._cooldown = min(self._cooldown * 2.0, self.config.breaker_cooldown_max_s)
                    self._open(now)
                elif self._timeout_run >= self.config.breaker_threshold:
                    self._open(now)
        self._trial = False

    def connection_lost(self, now: float) -> None:
        """The connection died. Stable ones reset the backoff; early drops count like a failed dial."""
        self._require_phase("connected", "connection_lost")
        self._advance(now, "connection_lost")
        self._phase = "down"
        self._losses += 1
        if now - self._connected_at >= self.config.stable_after_s:
            self._streak = 0
            if self._on_demand:
                # Demand-driven dials are already spread by invocation arrivals: no herd to jitter,
                # and a thawed sandbox that finds its socket dead should redial at once.
                self._next_dial_at = now
                return
        self._schedule(now)

    def end_demand(self, now: float) -> None:
        """on_demand: the invocation no longer needs a connection. Resets the per-demand dial count
        (not the breaker, not the backoff). Idempotent; call it in a `finally`."""
        if not self._on_demand:
            raise LocalProtocolError("end_demand() is for on_demand mode; persistent mode has no demands")
        self._advance(now, "end_demand")
        self._dial_granted = False
        self._episode_dials = 0
        self._episode_timed_out = False

    # ------------------------------------------------------------------ internals

    def _advance(self, now: float, method: str) -> None:
        self._check_time(now, method)
        self._now = now

    def _check_time(self, now: float, method: str) -> None:
        """Refuse NaN and time going backwards, without changing anything (refused calls are no-ops)."""
        if not isinstance(now, (int, float)) or math.isnan(now):
            raise LocalProtocolError(f"{method}(): now must be a number on a monotonic clock, got {now!r}")
        if now < self._now:
            raise LocalProtocolError(
                f"{method}(now={now!r}) is earlier than a previous call (now={self._now!r}): "
                "pass a monotonic clock (time.monotonic())"
            )

    def _require_phase(self, phase: str, method: str) -> None:
        if self._phase != phase:
            raise LocalProtocolError(
                f"{method}() in state {self.state!r}: only valid while {phase!r} "
                "(dial_started -> dial_succeeded|dial_failed; connection_lost only after dial_succeeded)"
            )

    def _draw(self) -> float:
        rng = self._rng
        if rng is None:
            import random  # lazy: ~2 ms on a cold start that may never need it

            rng = self._rng = random.random
        u = rng()
        if not 0.0 <= u <= 1.0:  # also rejects NaN
            raise ValueError(f"rng() must return a float in [0, 1], got {u!r}")
        return u

    def _schedule(self, now: float) -> None:
        """Draw the next dial time in the n-th backoff window (see the module docstring)."""
        delta = self.config.backoff_window(self._streak)
        lo = max(now, self._window_end)
        hi = max(lo, now + delta)
        self._next_dial_at = lo + self._draw() * (hi - lo)
        self._window_end = hi
        self._streak += 1

    def _answered(self) -> None:
        """The endpoint answered (connected or refused): whatever the breaker feared is over."""
        self._timeout_run = 0
        self._open_until = None
        self._cooldown = self.config.breaker_cooldown_s
        self._trial = False

    def _open(self, now: float) -> None:
        # The floor C/2 keeps a cool-down from collapsing to nothing; the draw keeps sandboxes that
        # met the same black hole at once from probing at once.
        self._open_until = now + self._cooldown * (0.5 + 0.5 * self._draw())
        self._next_dial_at = max(self._next_dial_at, self._open_until)
        self._breaker_opens += 1

    def _give_up(self, reason: str, retry_at: float | None) -> GiveUp:
        self._give_ups[reason] = self._give_ups.get(reason, 0) + 1
        return GiveUp(reason, retry_at)
