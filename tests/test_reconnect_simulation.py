"""The reconnect policy through AppSync blips, on a virtual clock: many sandboxes, Poisson-ish
invocations, and an endpoint that alternates windows of accepting and refusing connections.

The model (all times virtual, seeds fixed, so every run is the same):
- The endpoint accepts for `accept_s`, refuses for `refuse_s`, and so on (each window's length varied
  by +-`jitter`, the first one at a random phase) until `fault_s`; then it accepts for good. A refused
  dial takes 5 ms, a successful one 20 ms. The start of each refusal window also drops every open
  connection (the blip drops what it finds); a frozen sandbox notices when its next invocation thaws it.
- Each sandbox belongs to a function with a 3, 10 or 30 s timeout and gets invocations one at a time,
  the next an exponential gap (mean 0.1, 0.5, 2 or 5 s) after the previous one ended. Its deadline is
  the stub's: arrival + timeout - 0.25 s. An invocation succeeds when it has a connection and 50 ms of
  work (publish, the dev server's answer) done on it before its deadline; a drop during the work sends
  it back to connecting, as the stub does.
- The stub's loop is `OnDemandConnection.ensure_connected`'s, with one `ReconnectPolicy()` (the
  defaults) per sandbox for its whole life.

The naive loop we compare against, precisely: for each invocation with no connection, dial at once,
then every 10 ms (dial start to dial start) until a dial connects or the deadline passes; no state
across invocations, no backoff, no jitter, no breaker. It is what a "while not connected: sleep(0.01)"
reconnect loop does.

What it proves, for every schedule: the share of invocations (arriving while the faults last) that
succeed is at least 0.9 x the share of time the endpoint accepts; an invocation with 2 s or more left
when the faults stop never fails, and each one alive then is served within 2 s; every sandbox keeps
within the policy's dial bound N(W) in every window, dials only inside an invocation, never starts a
dial it cannot finish before its deadline, and makes at least 20x fewer dials than the naive loop.

`python -m tests.test_reconnect_simulation` prints the figures.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

import pytest

from stub_runtime.reconnect import Dial, GiveUp, PolicyConfig, Ready, ReconnectPolicy, Wait

REFUSED_DIAL_S = 0.005
CONNECT_DIAL_S = 0.02
WORK_S = 0.05
DEADLINE_MARGIN_S = 0.25  # StubSettings.deadline_margin_s
NAIVE_PERIOD_S = 0.01
TIMEOUTS_S = (3.0, 10.0, 30.0)
MEAN_GAPS_S = (0.1, 0.5, 2.0, 5.0)
RECOVERY_S = 2.0


class Schedule:
    """Accept/refuse windows until `fault_s`, then accepting for good."""

    def __init__(self, accept_s: float, refuse_s: float, *, fault_s: float, jitter: float, seed: int) -> None:
        rng = random.Random(seed)
        self.fault_s = fault_s
        self.starts: list[float] = []
        self.accepting_at: list[bool] = []
        t, accepting = -rng.random() * (accept_s + refuse_s), rng.random() < 0.5
        while t < fault_s:
            self.starts.append(t)
            self.accepting_at.append(accepting)
            t += (accept_s if accepting else refuse_s) * (1 + jitter * (2 * rng.random() - 1))
            accepting = not accepting
        self.starts.append(fault_s)
        self.accepting_at.append(True)
        self.drops = [s for s, a in zip(self.starts, self.accepting_at, strict=True) if not a and s > 0]

    def accepting(self, t: float) -> bool:
        i = bisect.bisect_right(self.starts, t) - 1
        return i < 0 or self.accepting_at[i]

    def next_drop(self, after: float) -> float:
        """The first drop of open connections after `after` (inf: none)."""
        i = bisect.bisect_right(self.drops, after)
        return self.drops[i] if i < len(self.drops) else math.inf

    def availability(self) -> float:
        """The share of [0, fault_s) the endpoint accepts."""
        accepted = 0.0
        for i, accepting in enumerate(self.accepting_at[:-1]):
            if accepting:
                accepted += max(0.0, self.starts[i + 1]) - max(0.0, self.starts[i])
        return accepted / self.fault_s


@dataclass
class Invocation:
    arrival: float
    deadline: float
    ok: bool = False
    ready_at: float | None = None  # when it last got a connection to work on
    end: float = 0.0
    give_up: str | None = None


@dataclass
class Sandbox:
    dials: list[float] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)


def run_sandbox(
    schedule: Schedule, timeout_s: float, mean_gap_s: float, seed: int, horizon: float, *, naive: bool
) -> Sandbox:
    arrivals = random.Random(seed)
    policy = ReconnectPolicy(PolicyConfig(), rng=random.Random(seed + 1).random)
    box = Sandbox()
    dialled: float | None = None  # when the open connection's dial started (None: no connection)
    t = arrivals.expovariate(1 / mean_gap_s)
    while t < horizon:
        inv = Invocation(t, t + timeout_s - DEADLINE_MARGIN_S)
        box.invocations.append(inv)
        if dialled is not None and schedule.next_drop(dialled) <= t:  # thawed: the socket is dead
            dialled = None
            if not naive:
                policy.connection_lost(t)
        while True:
            if dialled is not None:  # Ready: work on the connection, unless a drop comes first
                inv.ready_at = t
                drop = schedule.next_drop(dialled)
                if drop < t + WORK_S:
                    t, dialled = max(t, drop), None
                    if not naive:
                        policy.connection_lost(t)
                    continue
                inv.ok = t + WORK_S <= inv.deadline
                t = min(t + WORK_S, inv.deadline)
                break
            if naive:
                if t >= inv.deadline:
                    break
                start = t
            else:
                action = policy.next_action(t, inv.deadline)
                if isinstance(action, GiveUp):
                    inv.give_up = action.reason
                    break
                if isinstance(action, Wait):
                    t = action.until
                    continue
                assert isinstance(action, Dial) and not isinstance(action, Ready)
                start = t
                policy.dial_started(t)
            box.dials.append(start)
            if schedule.accepting(start):
                t = start + CONNECT_DIAL_S
                dialled = start
                if not naive:
                    policy.dial_succeeded(t)
            else:
                t = start + REFUSED_DIAL_S
                if naive:
                    t = max(t, start + NAIVE_PERIOD_S)
                else:
                    policy.dial_failed(t, "refused")
        if not naive:
            policy.end_demand(t)
        inv.end = t
        t += arrivals.expovariate(1 / mean_gap_s)
    return box


def max_in_window(times: list[float], width: float) -> int:
    """Most of the (sorted) `times` in any half-open window of `width` seconds."""
    best = j = 0
    for i, x in enumerate(times):
        while times[j] <= x - width + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


@dataclass
class Result:
    availability: float
    invocations: int  # arriving while the faults last
    success_share: float
    recovery_s: float  # longest wait, after the stop, of an invocation alive then, to be served
    late_failures: int  # failed invocations that had >= RECOVERY_S left when the faults stopped
    dials: int
    max_dials: dict[float, int]  # window W -> most dials of one sandbox in any W
    sandboxes: list[Sandbox]
    give_ups: dict[str, int]


def simulate(
    accept_s: float,
    refuse_s: float,
    *,
    naive: bool = False,
    seed: int = 1,
    fault_s: float = 300.0,
    tail_s: float = 30.0,
    jitter: float = 0.3,
    replicas: int = 5,
) -> Result:
    schedule = Schedule(accept_s, refuse_s, fault_s=fault_s, jitter=jitter, seed=seed)
    boxes = []
    for k in range(replicas * len(TIMEOUTS_S) * len(MEAN_GAPS_S)):
        timeout_s = TIMEOUTS_S[k % len(TIMEOUTS_S)]
        mean_gap_s = MEAN_GAPS_S[k // len(TIMEOUTS_S) % len(MEAN_GAPS_S)]
        box_seed = seed * 10_000 + k
        boxes.append(run_sandbox(schedule, timeout_s, mean_gap_s, box_seed, fault_s + tail_s, naive=naive))
    invocations = [inv for box in boxes for inv in box.invocations]
    during = [inv for inv in invocations if inv.arrival < fault_s]
    alive_after = [inv for inv in invocations if inv.end > fault_s]
    served = [inv.ready_at - max(inv.arrival, fault_s) for inv in alive_after if inv.ok and inv.ready_at]
    give_ups: dict[str, int] = {}
    for inv in invocations:
        if inv.give_up:
            give_ups[inv.give_up] = give_ups.get(inv.give_up, 0) + 1
    return Result(
        availability=schedule.availability(),
        invocations=len(during),
        success_share=sum(inv.ok for inv in during) / len(during),
        recovery_s=max([0.0, *served]),
        late_failures=sum(1 for inv in alive_after if not inv.ok and inv.deadline >= fault_s + RECOVERY_S),
        dials=sum(len(box.dials) for box in boxes),
        max_dials={w: max(max_in_window(box.dials, w) for box in boxes) for w in (2.0, 10.0, 60.0)},
        sandboxes=boxes,
        give_ups=give_ups,
    )


SCHEDULES = [  # (accept_s, refuse_s): availability
    (2.0, 1.5),  # ~57%, the first measurement (4-6% of invocations succeeded)
    (6.0, 1.0),  # ~86%, its second (29.5%)
    (3.0, 3.0),
    (1.0, 3.0),  # 25%
    (0.5, 0.5),  # fast flapping
    (5.0, 5.0),  # refusals longer than a 3 s function
]


@pytest.mark.parametrize(("accept_s", "refuse_s"), SCHEDULES)
def test_blips_cost_no_more_than_their_share_of_time(accept_s: float, refuse_s: float) -> None:
    cfg = PolicyConfig()
    ours = simulate(accept_s, refuse_s)
    naive = simulate(accept_s, refuse_s, naive=True)
    assert ours.invocations > 5_000
    # success share >= 0.9 x availability
    assert ours.success_share >= 0.9 * ours.availability, (ours.success_share, ours.availability)
    # back within 2 s after the faults stop
    assert ours.late_failures == 0
    assert ours.recovery_s <= RECOVERY_S
    # refusals never trip the breaker: nobody failed fast
    assert set(ours.give_ups) <= {"deadline", "attempts_exhausted"}, ours.give_ups
    # the dial bound, per sandbox, and 20x under the naive loop
    for width, most in ours.max_dials.items():
        assert most <= cfg.dial_bound(width), (width, most)
    assert ours.dials * 20 <= naive.dials, (ours.dials, naive.dials)
    for box in ours.sandboxes:
        spans = [(inv.arrival, inv.end, inv.deadline) for inv in box.invocations]
        starts = [s for s, _, _ in spans]
        for x in box.dials:  # only for an invocation, and never too late to finish before its deadline
            arrival, end, deadline = spans[bisect.bisect_right(starts, x) - 1]
            assert arrival <= x <= end and x + cfg.min_dial_s <= deadline


def test_the_simulation_tells_a_breaker_tripped_by_refusals_apart() -> None:
    """Classify refusals as black holes (the old behaviour's mistake) and the same schedule fails:
    the simulation can see the difference it is asked to prove."""
    original = ReconnectPolicy.dial_failed

    def as_black_hole(self: ReconnectPolicy, now: float, kind: str = "refused") -> None:
        original(self, now, "timeout")

    ReconnectPolicy.dial_failed = as_black_hole  # type: ignore[assignment,method-assign]
    try:
        wrong = simulate(2.0, 1.5, replicas=2)
    finally:
        ReconnectPolicy.dial_failed = original  # type: ignore[method-assign]
    assert wrong.success_share < 0.9 * wrong.availability
    assert wrong.give_ups.get("circuit_open", 0) > 0


def main() -> None:
    cfg = PolicyConfig()
    print(
        "accept/refuse  availability  success  ratio  recovery  dials  naive dials  x    "
        "max dials/sandbox in 2/10/60 s (N(W))"
    )
    for accept_s, refuse_s in SCHEDULES:
        ours = simulate(accept_s, refuse_s)
        naive = simulate(accept_s, refuse_s, naive=True)
        bounds = "/".join(str(cfg.dial_bound(w)) for w in ours.max_dials)
        most = "/".join(str(n) for n in ours.max_dials.values())
        print(
            f"{accept_s:>4.1f}/{refuse_s:<4.1f}     {ours.availability:6.3f}      {ours.success_share:6.3f}  "
            f"{ours.success_share / ours.availability:5.2f}  {ours.recovery_s:6.2f} s  {ours.dials:6d}  "
            f"{naive.dials:9d}  {naive.dials / ours.dials:4.0f}  {most} ({bounds})  "
            f"naive success {naive.success_share:.3f}"
        )


if __name__ == "__main__":
    main()
