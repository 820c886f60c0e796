"""The reconnect policy's bounds, proven on a fake clock with fake and seeded rngs.

(tests/test_reconnect_simulation.py drives it through accept/refuse schedules with many sandboxes.)

No sockets and no sleeping: time is a float the tests move by hand, so tens of thousands of events run in
well under a second and nothing here depends on the machine's speed.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from stub_runtime.errors import LocalProtocolError
from stub_runtime.reconnect import (
    Dial,
    FailureKind,
    GiveUp,
    PolicyConfig,
    PolicyStats,
    Ready,
    ReconnectPolicy,
    Wait,
)

PERSISTENT = PolicyConfig(mode="persistent")
ON_DEMAND = PolicyConfig()


def const(u: float) -> Callable[[], float]:
    return lambda: u


def cycle(values: Iterable[float]) -> Callable[[], float]:
    it = itertools.cycle(list(values))
    return lambda: next(it)


def seeded(seed: int = 1234) -> Callable[[], float]:
    return random.Random(seed).random


# ----------------------------------------------------------------------------- bounds, from the config


def tight_offsets(cfg: PolicyConfig, count: int) -> list[float]:
    """Earliest possible dial-start offsets within one backoff streak, from the chain rule
    x[i+2] >= x[i] + delta(i) (and x[1] >= x[0]). An rng stuck at 0 with instantly failing dials
    attains them."""
    xs = [0.0, 0.0]
    for i in range(count - 2):
        xs.append(xs[i] + cfg.backoff_window(i))
    return xs[:count]


def window_bound(cfg: PolicyConfig, width: float) -> int:
    """Most dial starts any half-open window of `width` seconds can hold in one streak."""
    n = 4
    while True:
        offsets = tight_offsets(cfg, n)
        if offsets[-1] >= width and offsets[-2] >= width:
            return sum(1 for x in offsets if x < width)
        n *= 2


def max_in_window(times: list[float], width: float) -> int:
    """Max number of times in any half-open window [t, t + width) (times sorted). The bounds are tight,
    so points a rounding error inside the window's end count as outside."""
    best = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - width + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def decay_index(cfg: PolicyConfig) -> int:
    """First backoff index n whose window is the cap."""
    n = 0
    while cfg.backoff_window(n) < cfg.max_delay_s:
        n += 1
    return n


# ----------------------------------------------------------------------------- drivers


class Trace:
    def __init__(self) -> None:
        self.dials: list[float] = []
        self.waits: list[tuple[float, float, str]] = []  # (asked at, until, reason)


def drive_persistent(
    policy: ReconnectPolicy,
    dials: int,
    *,
    dial_s: float = 0.0,
    outcome: Callable[[int], str] = lambda i: "fail",
    up_s: float = 0.0,
    t: float = 0.0,
) -> tuple[Trace, float]:
    """Run the shell loop of persistent mode for `dials` dials. outcome(i): "fail" or "flap" (connect,
    then drop after `up_s`)."""
    trace = Trace()
    while len(trace.dials) < dials:
        action = policy.next_action(t)
        if isinstance(action, Wait):
            assert action.reason == "backoff"
            trace.waits.append((t, action.until, action.reason))
            assert action.until > t
            t = action.until
            continue
        assert isinstance(action, Dial), action
        policy.dial_started(t)
        trace.dials.append(t)
        # never two dials in flight: asking again mid-dial only ever says "wait for it"
        mid = policy.next_action(t)
        assert isinstance(mid, Wait) and mid.reason == "dialing"
        t += dial_s
        if outcome(len(trace.dials) - 1) == "fail":
            policy.dial_failed(t)
        else:
            policy.dial_succeeded(t)
            assert isinstance(policy.next_action(t), Ready)
            t += up_s
            policy.connection_lost(t)
    return trace, t


def invoke(
    policy: ReconnectPolicy,
    t: float,
    *,
    timeout_s: float,
    dial_s: float,
    endpoint_up: bool,
    failure: FailureKind = "refused",
) -> tuple[Ready | GiveUp, int, float]:
    """One invocation in on_demand mode: the stub's loop until Ready or GiveUp. Returns the outcome,
    the dials it made and the time it ended. A dial fails as `failure` says when the endpoint is down."""
    deadline = t + timeout_s
    dials = 0
    try:
        while True:
            action = policy.next_action(t, deadline)
            if isinstance(action, (Ready, GiveUp)):
                return action, dials, t
            if isinstance(action, Wait):
                assert action.reason == "backoff"
                assert action.until > t
                assert action.until - t <= policy.config.max_delay_s
                assert action.until + policy.config.min_dial_s <= deadline  # never waits past the deadline
                t = action.until
                continue
            assert isinstance(action, Dial)
            assert t + policy.config.min_dial_s <= deadline
            policy.dial_started(t)
            dials += 1
            assert action.attempt == dials
            assert dials <= policy.config.max_attempts
            t += dial_s
            if endpoint_up:
                policy.dial_succeeded(t)
            else:
                policy.dial_failed(t, failure)
    finally:
        policy.end_demand(t)


# ----------------------------------------------------------------------------- config


def test_defaults_are_valid_and_documented_values() -> None:
    cfg = PolicyConfig()
    assert cfg.mode == "on_demand"
    assert (cfg.base_delay_s, cfg.max_delay_s, cfg.max_attempts, cfg.min_dial_s) == (0.1, 1.0, 20, 0.25)
    assert (cfg.breaker_threshold, cfg.breaker_cooldown_s, cfg.breaker_cooldown_max_s) == (1, 5.0, 60.0)
    assert cfg.stable_after_s == 10.0


def test_dial_bound_formula_and_the_naive_loop() -> None:
    """N(W) = (1 + floor(W/S)) * (K + 2) + floor(2W/c), as the docstring says; with the defaults at
    least 20x under a loop that redials every 10 ms (100 W dials) for every window of 2 s or more."""
    cfg = PolicyConfig()
    assert cfg.decay_index() == decay_index(cfg) == 4
    assert [cfg.dial_bound(w) for w in (0, 1, 2, 10, 60, 600)] == [6, 8, 10, 32, 162, 1566]
    for tenths in range(20, 36_000):  # W = 2 s .. 1 h; the naive loop makes W / 0.01 = 10 * tenths
        assert cfg.dial_bound(tenths / 10) * 20 <= 10 * tenths, tenths
    # the closed form is never below the tight count of one streak (the worst rng)
    for w in [0.01, 0.1, 0.5, 1.0, 2.0, 9.99, 10.0, 30.0, 100.0]:
        assert window_bound(cfg, w) <= cfg.dial_bound(w)
    with pytest.raises(ValueError):
        cfg.dial_bound(-1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "sometimes"}, "mode"),
        ({"base_delay_s": 0}, "base_delay_s"),
        ({"base_delay_s": -1.0}, "base_delay_s"),
        ({"base_delay_s": math.nan}, "base_delay_s"),
        ({"max_delay_s": math.inf}, "max_delay_s"),
        ({"max_delay_s": 0.01}, "max_delay_s"),  # below base
        ({"max_delay_s": "5"}, "max_delay_s"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"min_dial_s": -0.1}, "min_dial_s"),
        ({"breaker_threshold": 0}, "breaker_threshold"),
        ({"breaker_cooldown_s": 0}, "breaker_cooldown_s"),
        ({"breaker_cooldown_max_s": 1.0}, "breaker_cooldown_max_s"),  # below the cool-down
        ({"stable_after_s": 0}, "stable_after_s"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PolicyConfig(**kwargs)


def test_backoff_window_doubles_then_caps_without_overflow() -> None:
    cfg = PolicyConfig()
    assert [cfg.backoff_window(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert cfg.backoff_window(10**6) == 1.0
    assert decay_index(cfg) == 4
    slow = PolicyConfig(base_delay_s=0.05, max_delay_s=5.0)
    assert [slow.backoff_window(n) for n in range(9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert decay_index(slow) == slow.decay_index() == 7


# ----------------------------------------------------------------------------- full jitter


def test_rng_zero_waits_nothing_rng_one_waits_the_whole_window() -> None:
    """Dials that fail after their window closed (the usual case) see plain full jitter: rng()*delta(n)."""
    slow = PERSISTENT.max_delay_s  # each dial takes as long as the widest window
    for u, expect in [(0.0, lambda n: 0.0), (1.0, PERSISTENT.backoff_window)]:
        trace, _ = drive_persistent(ReconnectPolicy(PERSISTENT, rng=const(u)), 12, dial_s=slow)
        waits = [until - asked for asked, until, _ in trace.waits]
        if u == 0.0:
            assert waits == []  # every wait was 0: the policy said Dial straight away
            gaps = [b - a for a, b in itertools.pairwise(trace.dials)]
            assert gaps == [pytest.approx(slow)] * 11
        else:
            assert waits == [pytest.approx(expect(n)) for n in range(11)]
            assert max(waits) == pytest.approx(PERSISTENT.max_delay_s)


def test_full_jitter_spans_the_window() -> None:
    """Over many samples the wait is uniform over [0, delta]: it reaches both ends and every decile."""
    cfg = PERSISTENT
    cap = cfg.max_delay_s
    policy = ReconnectPolicy(cfg, rng=seeded(7))
    trace, _ = drive_persistent(policy, 4000, dial_s=cap)
    # after decay every wait is rng() * cap; zero waits produce no Wait, so rebuild waits from dial gaps
    gaps = [b - a - cap for a, b in itertools.pairwise(trace.dials)][decay_index(cfg) + 1 :]
    assert all(-1e-9 <= g <= cap + 1e-9 for g in gaps)
    assert min(gaps) < 0.01 * cap and max(gaps) > 0.99 * cap
    deciles = [0] * 10
    for g in gaps:
        deciles[min(9, int(g / cap * 10))] += 1
    assert all(c > len(gaps) / 10 * 0.7 for c in deciles), deciles
    assert sum(gaps) / len(gaps) == pytest.approx(cap / 2, rel=0.05)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_rng_out_of_range_is_refused(bad: float) -> None:
    policy = ReconnectPolicy(PERSISTENT, rng=const(bad))
    assert isinstance(policy.next_action(0.0), Dial)
    policy.dial_started(0.0)
    with pytest.raises(ValueError, match="rng"):
        policy.dial_failed(0.0)


def test_default_rng_is_random_and_bounded() -> None:
    policy = ReconnectPolicy(PERSISTENT)
    trace, _ = drive_persistent(policy, 50)
    assert all(until - asked <= PERSISTENT.max_delay_s for asked, until, _ in trace.waits)


# ----------------------------------------------------------------------------- persistent: rate bounds

RNGS = {
    "zero": lambda: const(0.0),  # a broken rng: the worst case for rates
    "one": lambda: const(1.0),
    "seeded": lambda: seeded(42),
    "zero-one": lambda: cycle([0.0, 1.0]),
    "one-zero-zero": lambda: cycle([1.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("rng_name", list(RNGS))
@pytest.mark.parametrize("dial_factor", [0.0, 0.3, 2.0])  # dial duration, in units of max_delay_s
def test_ten_thousand_failures_stay_within_the_bounds(rng_name: str, dial_factor: float) -> None:
    cfg = PERSISTENT
    cap = cfg.max_delay_s
    dial_s = dial_factor * cap
    policy = ReconnectPolicy(cfg, rng=RNGS[rng_name]())
    trace, _ = drive_persistent(policy, 10_000, dial_s=dial_s)
    x = trace.dials
    assert policy.stats.attempts == policy.stats.failures == 10_000

    # every wait is capped
    assert all(0 < until - asked <= cap + 1e-9 for asked, until, _ in trace.waits)
    # the chain rule behind every rate bound: x[i+2] >= x[i] + delta(i)
    for i in range(len(x) - 2):
        assert x[i + 2] - x[i] >= cfg.backoff_window(i) - 1e-9
    # attempts per window <= a bound computed from the config alone
    for width in [0.01, 0.1, 1.0, cap, 3 * cap, 10 * cap, 100 * cap]:
        assert max_in_window(x, width) <= window_bound(cfg, width), width
    # once decayed: at most 2 * ceil(W / cap) dials in any window of W
    tail = x[decay_index(cfg) + 1 :]
    for width in [cap, 2.5 * cap, 10 * cap, 100 * cap]:
        assert max_in_window(tail, width) <= 2 * math.ceil(width / cap)
    # it never stops: consecutive dials are at most cap + dial duration apart
    assert max(b - a for a, b in itertools.pairwise(x)) <= cap + dial_s + 1e-9
    # and stays at its floor: every block of 100 caps holds between W/(cap+D) and 2W/cap dials
    block = 100 * cap
    start = tail[0]
    while start + block <= x[-1]:
        n = sum(1 for t in tail if start <= t < start + block)
        assert math.floor(block / (cap + dial_s)) - 1 <= n <= 2 * math.ceil(block / cap)
        start += block


def test_broken_rng_stuck_at_zero_reaches_the_bound_exactly() -> None:
    """The bound is tight: the worst rng with instant failures packs dials exactly at the chain limit."""
    cfg = PERSISTENT
    trace, _ = drive_persistent(ReconnectPolicy(cfg, rng=const(0.0)), 200)
    expected = tight_offsets(cfg, 200)
    assert trace.dials == pytest.approx(expected)
    for width in [1.0, cfg.max_delay_s, 50.0]:
        assert max_in_window(trace.dials, width) == window_bound(cfg, width)


def test_expected_floor_rate_with_uniform_rng() -> None:
    """The documented expectations: 1.5/cap for instantly failing dials, 1/(D + cap/2) for slow ones."""
    cfg = PERSISTENT
    cap = cfg.max_delay_s
    for dial_s, rate in [(0.0, 1.5 / cap), (2 * cap, 1 / (2 * cap + cap / 2))]:
        trace, _ = drive_persistent(ReconnectPolicy(cfg, rng=seeded(3)), 10_000, dial_s=dial_s)
        tail = trace.dials[100:]
        measured = (len(tail) - 1) / (tail[-1] - tail[0])
        assert measured == pytest.approx(rate, rel=0.03)
        assert 1 / (cap + dial_s) <= measured <= 2 / cap


def test_decay_reaches_the_cap_and_stays() -> None:
    cfg = PERSISTENT
    trace, _ = drive_persistent(ReconnectPolicy(cfg, rng=const(1.0)), 60, dial_s=0.0)
    gaps = [b - a for a, b in itertools.pairwise(trace.dials)]
    k = decay_index(cfg)
    assert gaps[:k] == pytest.approx([cfg.backoff_window(n) for n in range(k)])
    assert gaps[k:] == pytest.approx([cfg.max_delay_s] * (len(gaps) - k))


# ----------------------------------------------------------------------------- stability and flapping


def test_backoff_resets_only_after_a_stable_connection() -> None:
    cfg = PERSISTENT
    policy = ReconnectPolicy(cfg, rng=const(1.0))  # rng 1: every wait is its whole window
    _, t = drive_persistent(policy, 20)  # decayed: windows are the cap now

    def next_wait(t: float) -> float:
        action = policy.next_action(t)
        assert isinstance(action, Wait)
        return action.until - t

    assert next_wait(t) == pytest.approx(cfg.max_delay_s)
    t += cfg.max_delay_s
    assert isinstance(policy.next_action(t), Dial)
    policy.dial_started(t)
    policy.dial_succeeded(t)
    t += cfg.stable_after_s * 0.99  # not quite stable
    policy.connection_lost(t)
    assert next_wait(t) == pytest.approx(cfg.max_delay_s)  # no reset
    t += cfg.max_delay_s
    policy.next_action(t)
    policy.dial_started(t)
    policy.dial_succeeded(t)
    t += cfg.stable_after_s  # stable
    policy.connection_lost(t)
    assert next_wait(t) == pytest.approx(cfg.base_delay_s)  # reset: the first window again
    t += cfg.base_delay_s
    policy.next_action(t)
    policy.dial_started(t)
    policy.dial_failed(t)
    assert next_wait(t) == pytest.approx(2 * cfg.base_delay_s)  # and it grows again from there


@pytest.mark.parametrize("rng_name", ["zero", "seeded", "zero-one"])
def test_flapping_dials_no_faster_than_a_dead_endpoint(rng_name: str) -> None:
    """Connect-then-drop 10,000 times: the same chain and window bounds as 10,000 failures."""
    cfg = PERSISTENT
    policy = ReconnectPolicy(cfg, rng=RNGS[rng_name]())
    trace, _ = drive_persistent(policy, 10_000, outcome=lambda i: "flap", up_s=0.0)
    x = trace.dials
    assert policy.stats.successes == policy.stats.losses == 10_000
    for i in range(len(x) - 2):
        assert x[i + 2] - x[i] >= cfg.backoff_window(i) - 1e-9
    for width in [0.1, cfg.max_delay_s, 100 * cfg.max_delay_s]:
        assert max_in_window(x, width) <= window_bound(cfg, width)
    dead, _ = drive_persistent(ReconnectPolicy(cfg, rng=RNGS[rng_name]()), 10_000)
    assert x == pytest.approx(dead.dials)  # identical schedule: a short-lived connection is a failure


def test_flapping_just_under_stable_never_resets() -> None:
    cfg = PolicyConfig(mode="persistent", stable_after_s=1.0)
    policy = ReconnectPolicy(cfg, rng=const(1.0))
    trace, _ = drive_persistent(policy, 300, outcome=lambda i: "flap", up_s=0.999)
    gaps = [b - a for a, b in itertools.pairwise(trace.dials)]
    k = decay_index(cfg)
    assert gaps[k:] == pytest.approx([0.999 + cfg.max_delay_s] * (len(gaps) - k))


# ----------------------------------------------------------------------------- on_demand: demands


def test_on_demand_never_dials_without_a_demand() -> None:
    policy = ReconnectPolicy(ON_DEMAND)
    with pytest.raises(LocalProtocolError, match="deadline"):
        policy.next_action(0.0)
    with pytest.raises(LocalProtocolError, match="without a Dial"):
        policy.dial_started(0.0)
    assert policy.stats.attempts == 0


def test_persistent_refuses_a_deadline_and_end_demand() -> None:
    policy = ReconnectPolicy(PERSISTENT)
    with pytest.raises(LocalProtocolError, match="persistent"):
        policy.next_action(0.0, 10.0)
    with pytest.raises(LocalProtocolError, match="persistent"):
        policy.end_demand(0.0)


def test_first_dial_is_immediate_and_ready_while_connected() -> None:
    policy = ReconnectPolicy(ON_DEMAND)
    assert policy.state == "idle"
    assert policy.retry_in(0.0) == 0.0
    assert policy.next_action(0.0, 3.0) == Dial(1)
    policy.dial_started(0.0)
    assert policy.state == "dialing"
    assert policy.retry_in(0.0) is None
    policy.dial_succeeded(0.1)
    assert policy.state == "connected"
    assert policy.next_action(0.2, 3.0) == Ready(since=0.1)
    policy.end_demand(0.3)
    # a later invocation reuses the connection: no dial
    assert policy.next_action(100.0, 103.0) == Ready(since=0.1)
    assert policy.stats.attempts == 1


def test_dials_per_demand_are_capped_by_max_attempts() -> None:
    cfg = PolicyConfig(max_attempts=3)
    policy = ReconnectPolicy(cfg, rng=const(0.5))
    outcome, dials, t = invoke(policy, 0.0, timeout_s=900.0, dial_s=0.01, endpoint_up=False)
    assert dials == 3
    assert isinstance(outcome, GiveUp) and outcome.reason == "attempts_exhausted"
    assert outcome.retry_at is not None and outcome.retry_at >= t
    # end_demand reset the episode: the next invocation may dial again (after the backoff)
    outcome, dials, _ = invoke(policy, t + 60.0, timeout_s=900.0, dial_s=0.01, endpoint_up=False)
    assert dials == 3 and outcome == GiveUp("attempts_exhausted", outcome.retry_at)
    assert policy.stats.give_ups == {"attempts_exhausted": 2}


def test_backoff_carries_across_demands() -> None:
    """A new invocation right after a failure waits out the backoff instead of dialling at once."""
    policy = ReconnectPolicy(PolicyConfig(max_attempts=1, base_delay_s=0.05), rng=const(1.0))
    assert isinstance(policy.next_action(0.0, 5.0), Dial)
    policy.dial_started(0.0)
    policy.dial_failed(0.0)
    policy.end_demand(0.0)
    assert policy.state == "backoff"
    assert policy.retry_in(0.01) == pytest.approx(0.04)
    assert policy.next_action(0.01, 5.0) == Wait(0.05, "backoff")


def test_never_waits_past_the_deadline() -> None:
    cfg = PolicyConfig(base_delay_s=0.05)
    policy = ReconnectPolicy(cfg, rng=const(1.0))
    policy.next_action(0.0, 10.0)
    policy.dial_started(0.0)
    policy.dial_failed(0.0)  # next dial allowed at 0.05
    # 0.05 + min_dial_s fits in 0.31 but not in 0.29
    assert policy.next_action(0.0, 0.31) == Wait(0.05, "backoff")
    assert policy.next_action(0.0, 0.29) == GiveUp("deadline", 0.05)
    # no dial starts with less than min_dial_s left
    assert policy.next_action(0.05, 0.31) == Dial(2)
    assert policy.next_action(0.05, 0.29) == GiveUp("deadline", 0.05)
    # an expired deadline
    assert policy.next_action(1.0, 0.5) == GiveUp("deadline", 1.0)
    assert policy.stats.give_ups == {"deadline": 3}


def test_dial_in_flight_means_wait_never_a_second_dial() -> None:
    cfg = ON_DEMAND
    policy = ReconnectPolicy(cfg)
    policy.next_action(0.0, 100.0)
    policy.dial_started(0.0)
    assert policy.next_action(1.0, 100.0) == Wait(1.0 + cfg.max_delay_s, "dialing")
    assert policy.next_action(1.0, 2.0) == Wait(2.0, "dialing")  # never past the deadline
    assert policy.next_action(3.0, 2.0) == GiveUp("deadline", None)
    with pytest.raises(LocalProtocolError):
        policy.dial_started(3.0)
    persistent = ReconnectPolicy(PERSISTENT)
    persistent.next_action(0.0)
    persistent.dial_started(0.0)
    assert persistent.next_action(2.0) == Wait(2.0 + cfg.max_delay_s, "dialing")


def test_stable_loss_redials_at_once_but_an_early_drop_backs_off() -> None:
    cfg = ON_DEMAND
    policy = ReconnectPolicy(cfg, rng=const(1.0))
    policy.next_action(0.0, 3.0)
    policy.dial_started(0.0)
    policy.dial_succeeded(0.0)
    policy.end_demand(0.1)
    # a thawed sandbox finds its socket dead minutes later: redial at once, no jitter on this path
    policy.connection_lost(600.0)
    assert policy.next_action(600.0, 603.0) == Dial(1)
    policy.dial_started(600.0)
    policy.dial_succeeded(600.0)
    policy.connection_lost(600.5)  # dropped right after connecting
    action = policy.next_action(600.5, 603.0)
    assert isinstance(action, Wait) and action.reason == "backoff"
    assert action.until == pytest.approx(600.5 + cfg.base_delay_s)


def test_dial_attempt_numbers() -> None:
    policy = ReconnectPolicy(PolicyConfig(mode="persistent"), rng=const(0.0))
    seen = []
    t = 0.0
    for _ in range(3):
        action = policy.next_action(t)
        while isinstance(action, Wait):
            t = action.until
            action = policy.next_action(t)
        seen.append(action)
        policy.dial_started(t)
        policy.dial_failed(t)
    t += 10
    action = policy.next_action(t)
    policy.dial_started(t)
    policy.dial_succeeded(t)
    policy.connection_lost(t + 100)
    assert seen == [Dial(1), Dial(2), Dial(3)]
    assert action == Dial(4)
    assert policy.next_action(t + 100) == Dial(1)  # counted from the last successful dial


# ----------------------------------------------------------------------------- on_demand: refusals


@pytest.mark.parametrize(
    ("spacing_s", "timeout_s", "dial_s"),
    [(1.0, 3.0, 0.0), (0.2, 0.9, 0.05), (20.0, 3.0, 0.0), (25.0, 15.0, 0.2), (100.0, 900.0, 0.05)],
)
def test_refusals_are_retried_within_each_invocation_and_never_open_the_breaker(
    spacing_s: float, timeout_s: float, dial_s: float
) -> None:
    """An endpoint that refuses everything: each invocation retries until its deadline or its
    max_attempts, none fails fast, and the dials stay within N(W) in every window."""
    cfg = ON_DEMAND
    policy = ReconnectPolicy(cfg, rng=seeded(5))
    dial_times = record_dials(policy)
    t = 0.0
    for i in range(30):
        t = max(t, i * spacing_s)
        start = t
        outcome, dials, t = invoke(policy, t, timeout_s=timeout_s, dial_s=dial_s, endpoint_up=False)
        assert isinstance(outcome, GiveUp) and outcome.reason in ("deadline", "attempts_exhausted")
        assert t <= start + timeout_s  # every invocation ends before its deadline, none hangs
        assert 0 <= dials <= cfg.max_attempts
        if outcome.reason == "deadline":  # it kept trying while a dial could still start
            assert t + cfg.min_dial_s > start + timeout_s - cfg.max_delay_s - dial_s
    assert policy.stats.breaker_opens == 0 and "circuit_open" not in policy.stats.give_ups
    assert policy.stats.timeouts == 0
    for width in [0.5, 1.0, 2.0, 10.0, 60.0, 600.0]:
        assert max_in_window(dial_times, width) <= cfg.dial_bound(width), width


def test_an_invocation_rides_out_a_refusal_window() -> None:
    """Refused for 3 s, then accepted: a 10 s invocation that arrived as the refusals began connects
    at most max_delay_s after they end."""
    cfg = ON_DEMAND
    for seed in range(50):
        policy = ReconnectPolicy(cfg, rng=seeded(seed))
        t, deadline = 0.0, 10.0 - 0.25
        while True:
            action = policy.next_action(t, deadline)
            if isinstance(action, Wait):
                t = action.until
                continue
            assert isinstance(action, Dial)
            policy.dial_started(t)
            t += 0.005
            if t < 3.0:
                policy.dial_failed(t, "refused")
                continue
            policy.dial_succeeded(t)
            break
        assert t <= 3.0 + cfg.max_delay_s + 0.005
        assert policy.stats.attempts <= cfg.dial_bound(t)
        policy.end_demand(t)


def record_dials(policy: ReconnectPolicy) -> list[float]:
    """The dial start times of `policy`, as it starts them."""
    dial_times: list[float] = []
    original = policy.dial_started

    def record(now: float) -> None:
        original(now)
        dial_times.append(now)

    policy.dial_started = record  # type: ignore[method-assign]
    return dial_times


# ----------------------------------------------------------------------------- on_demand: black holes


def test_a_timed_out_dial_ends_the_demand_whatever_its_deadline() -> None:
    for timeout_s in [3.5, 10.0, 30.0, 900.0]:
        policy = ReconnectPolicy(ON_DEMAND, rng=const(0.5))
        outcome, dials, t = invoke(
            policy, 0.0, timeout_s=timeout_s, dial_s=3.0, endpoint_up=False, failure="timeout"
        )
        assert dials == 1 and t == 3.0
        cooldown = ON_DEMAND.breaker_cooldown_s * 0.75  # rng 0.5: the middle of [C/2, C]
        assert outcome == GiveUp("timed_out", pytest.approx(3.0 + cooldown))
        assert policy.state == "open" and policy.stats.timeouts == 1 and policy.stats.breaker_opens == 1


def breaker_trial_bound(cfg: PolicyConfig, span: float) -> int:
    """Most half-open trials that fit in `span` seconds after the breaker first opens: the k-th trial
    needs the k cool-downs before it to have passed, each at least half its C (C = 5, 10, 20, ...
    capped)."""
    trials, cooldown = 0, cfg.breaker_cooldown_s
    elapsed = cooldown / 2
    while elapsed <= span:
        trials += 1
        cooldown = min(2 * cooldown, cfg.breaker_cooldown_max_s)
        elapsed += cooldown / 2
    return trials


@pytest.mark.parametrize(
    ("spacing_s", "timeout_s", "dial_s"),
    [(1.0, 3.0, 2.75), (0.2, 0.9, 0.65), (20.0, 10.0, 3.0), (25.0, 15.0, 3.0), (100.0, 900.0, 3.0)],
)
def test_thirty_invocations_against_a_black_hole(spacing_s: float, timeout_s: float, dial_s: float) -> None:
    cfg = ON_DEMAND
    policy = ReconnectPolicy(cfg, rng=seeded(5))
    dial_times = record_dials(policy)
    t = 0.0
    fast = 0
    for i in range(30):
        t = max(t, i * spacing_s)
        start = t
        outcome, dials, t = invoke(
            policy, t, timeout_s=timeout_s, dial_s=dial_s, endpoint_up=False, failure="timeout"
        )
        assert isinstance(outcome, GiveUp) and dials <= 1
        assert t <= start + dial_s  # one connect timeout at most, whatever the function's timeout
        if outcome.reason == "circuit_open":
            fast += 1
            assert dials == 0 and outcome.retry_at is not None and outcome.retry_at > t
        else:
            assert outcome.reason == "timed_out" and dials == 1
    assert len(dial_times) >= cfg.breaker_threshold
    assert len(dial_times) <= cfg.breaker_threshold + breaker_trial_bound(cfg, t - dial_times[0])
    assert policy.stats.breaker_opens == len(dial_times) - cfg.breaker_threshold + 1
    if spacing_s < dial_s + cfg.breaker_cooldown_s / 2:  # the next invocation comes while it is open
        assert fast >= 1


def time_out(policy: ReconnectPolicy, t: float, dial_s: float = 3.0) -> tuple[GiveUp, float]:
    """One demand whose single dial gets no answer (after the backoff, if any); returns its GiveUp and
    the time it ended."""
    action = policy.next_action(t, t + 100.0)
    if isinstance(action, Wait):
        t = action.until
        action = policy.next_action(t, t + 100.0)
    assert isinstance(action, Dial), action
    policy.dial_started(t)
    t += dial_s
    policy.dial_failed(t, "timeout")
    outcome = policy.next_action(t, t + 100.0)
    assert isinstance(outcome, GiveUp) and outcome.reason == "timed_out"
    policy.end_demand(t)
    return outcome, t


def test_breaker_opens_after_threshold_timeouts_then_fails_fast_without_dialling() -> None:
    cfg = PolicyConfig(breaker_threshold=3, breaker_cooldown_s=30.0, breaker_cooldown_max_s=300.0)
    policy = ReconnectPolicy(cfg, rng=const(0.5))
    t = 0.0
    for n in range(3):
        assert policy.state in ("idle", "backoff")
        _, t = time_out(policy, t)
        assert policy.stats.breaker_opens == (1 if n == 2 else 0)
    assert policy.state == "open"
    closes = t + 30.0 * 0.75  # rng 0.5
    # fails fast, however much time the invocation has left, until the cool-down has passed
    for dt in [0.0, 1.0, 10.0, 22.499]:
        assert policy.next_action(t + dt, t + dt + 900.0) == GiveUp("circuit_open", pytest.approx(closes))
        assert policy.retry_in(t + dt) == pytest.approx(closes - t - dt)
        policy.end_demand(t + dt)
    assert policy.stats.attempts == 3
    assert policy.stats.give_ups == {"timed_out": 3, "circuit_open": 4}
    assert policy.next_action(closes, closes + 10.0) == Dial(1)  # half-open: one trial


def open_breaker(policy: ReconnectPolicy, t: float = 0.0) -> tuple[float, float]:
    """Time dials out until the breaker opens; return (the last failure's time, the time it will close)."""
    while policy.stats.breaker_opens == 0 or policy.state != "open":
        action = policy.next_action(t, t + 1000.0)
        if isinstance(action, Wait):
            t = action.until
            continue
        if isinstance(action, GiveUp):
            policy.end_demand(t)
            continue
        policy.dial_started(t)
        policy.dial_failed(t, "timeout")
    policy.end_demand(t)
    retry = policy.retry_in(t)
    assert retry is not None
    return t, t + retry


def test_half_open_allows_exactly_one_trial_and_success_closes() -> None:
    cfg = ON_DEMAND
    policy = ReconnectPolicy(cfg, rng=const(0.3))
    failed_at, closes = open_breaker(policy)
    assert closes - failed_at == pytest.approx(cfg.breaker_cooldown_s * 0.65)  # (0.5 + 0.5 * 0.3) * C
    assert policy.state == "open"
    policy.next_action(closes, closes + 10)  # time passes: half-open
    assert policy.state == "half_open"
    assert policy.next_action(closes, closes + 10) == Dial(1)
    policy.dial_started(closes)
    assert policy.next_action(closes + 0.1, closes + 10) == Wait(closes + 0.1 + cfg.max_delay_s, "dialing")
    policy.dial_succeeded(closes + 0.2)
    assert policy.state == "connected"
    assert isinstance(policy.next_action(closes + 0.2, closes + 10), Ready)
    policy.end_demand(closes + 0.3)
    # closed: after a loss, timeouts are counted from zero again and the cool-down is back to its base
    policy.connection_lost(closes + 100)
    failed_at, reopen = open_breaker(policy, closes + 100)
    assert policy.stats.breaker_opens == 2
    assert policy.stats.timeouts == 2 * cfg.breaker_threshold  # counted from zero after the close
    assert reopen - failed_at == pytest.approx(cfg.breaker_cooldown_s * 0.65)  # back to base


def test_a_refused_trial_closes_the_breaker_and_the_demand_keeps_trying() -> None:
    """A refusal is an answer: the black hole is gone, so the trial's demand retries it like any."""
    cfg = ON_DEMAND
    policy = ReconnectPolicy(cfg, rng=const(0.5))
    _, closes = open_breaker(policy)
    assert policy.next_action(closes, closes + 10) == Dial(1)
    policy.dial_started(closes)
    policy.dial_failed(closes + 0.01, "refused")
    assert policy.state in ("idle", "backoff")  # closed
    action = policy.next_action(closes + 0.01, closes + 10)
    assert isinstance(action, Wait) and action.until <= closes + 0.01 + cfg.max_delay_s
    assert policy.next_action(action.until, closes + 10) == Dial(2)
    policy.dial_started(action.until)
    policy.dial_failed(action.until + 3.0, "timeout")  # a black hole again: the cool-down is back to base
    give_up = policy.next_action(action.until + 3.0, closes + 10)
    assert give_up == GiveUp("timed_out", pytest.approx(action.until + 3.0 + 0.75 * cfg.breaker_cooldown_s))


def test_failed_trial_reopens_with_a_growing_capped_jittered_cooldown() -> None:
    cfg = PolicyConfig(breaker_cooldown_s=30.0, breaker_cooldown_max_s=200.0)
    for u, share in [(0.0, 0.5), (1.0, 1.0)]:  # the draw's two ends: C/2 and C
        policy = ReconnectPolicy(cfg, rng=const(u))
        failed_at, closes = open_breaker(policy)
        assert closes - failed_at == pytest.approx(30.0 * share)
        cooldowns = []
        t = closes
        for _ in range(7):
            give_up, t = time_out(policy, t, dial_s=1.0)
            assert give_up.retry_at is not None
            cooldowns.append(give_up.retry_at - t)
            assert policy.next_action(t, t + 10) == GiveUp("circuit_open", give_up.retry_at)
            policy.end_demand(t)
            t = give_up.retry_at
        expected = [60.0, 120.0, 200.0, 200.0, 200.0, 200.0, 200.0]
        assert cooldowns == pytest.approx([c * share for c in expected])
        assert policy.stats.breaker_opens == 8


def test_jittered_cooldowns_spread_sandboxes_that_met_the_same_black_hole() -> None:
    """1,000 sandboxes time out at the same instant: their probes spread over [C/2, C], no herd."""
    cfg = ON_DEMAND
    c = cfg.breaker_cooldown_s
    closes = []
    for seed in range(1000):
        policy = ReconnectPolicy(cfg, rng=seeded(seed))
        give_up, _ = time_out(policy, 0.0)
        assert give_up.retry_at is not None
        closes.append(give_up.retry_at - 3.0)
    assert all(c / 2 <= x <= c for x in closes)
    tenths = [0] * 10
    for x in closes:
        tenths[min(9, int((x - c / 2) / (c / 2) * 10))] += 1
    assert max(tenths) < 150, tenths  # ~100 each: no slice of the window gets a herd


def test_answers_reset_the_consecutive_timeout_count() -> None:
    cfg = PolicyConfig(breaker_threshold=3)
    policy = ReconnectPolicy(cfg, rng=const(0.0))
    t = 0.0
    for i in range(40):  # timeout, timeout, then an answer (a refusal or a connection), ...
        for _ in range(2):
            _, t = time_out(policy, t)
        outcome, _, t = invoke(policy, t, timeout_s=10.0, dial_s=0.0, endpoint_up=i % 2 == 0)
        if i % 2 == 0:
            assert isinstance(outcome, Ready)
            t += cfg.stable_after_s
            policy.connection_lost(t)
        else:
            assert isinstance(outcome, GiveUp) and outcome.reason == "attempts_exhausted"
    assert policy.stats.breaker_opens == 0
    assert policy.stats.timeouts == 80


def test_persistent_mode_takes_either_kind_alike() -> None:
    """The dev server has no breaker: a timeout schedules the next dial like a refusal."""
    for kind in ("refused", "timeout"):
        policy = ReconnectPolicy(PERSISTENT, rng=const(1.0))
        trace = []
        t = 0.0
        for _ in range(20):
            action = policy.next_action(t)
            if isinstance(action, Wait):
                t = action.until
                action = policy.next_action(t)
            assert isinstance(action, Dial)
            policy.dial_started(t)
            trace.append(t)
            policy.dial_failed(t, kind)  # type: ignore[arg-type]
        assert trace == pytest.approx(tight_offsets_one(PERSISTENT, 20))
        assert policy.state == "backoff" and policy.stats.breaker_opens == 0


def tight_offsets_one(cfg: PolicyConfig, count: int) -> list[float]:
    """Dial starts with rng 1 and instant failures: each wait is its whole window."""
    xs = [0.0]
    for n in range(count - 1):
        xs.append(xs[-1] + cfg.backoff_window(n))
    return xs


def test_dial_failed_refuses_an_unknown_kind() -> None:
    policy = ReconnectPolicy(ON_DEMAND)
    policy.next_action(0.0, 10.0)
    policy.dial_started(0.0)
    with pytest.raises(LocalProtocolError, match="kind"):
        policy.dial_failed(0.1, "rejected")  # type: ignore[arg-type]
    assert policy.state == "dialing"  # refused calls change nothing
    policy.dial_failed(0.1, "refused")


# ----------------------------------------------------------------------------- out-of-order calls


def test_out_of_order_calls_raise_local_protocol_error() -> None:
    policy = ReconnectPolicy(PERSISTENT)
    with pytest.raises(LocalProtocolError, match="dial_succeeded"):
        policy.dial_succeeded(0.0)
    with pytest.raises(LocalProtocolError, match="dial_failed"):
        policy.dial_failed(0.0)
    with pytest.raises(LocalProtocolError, match="connection_lost"):
        policy.connection_lost(0.0)
    with pytest.raises(LocalProtocolError, match="without a Dial"):
        policy.dial_started(0.0)
    assert isinstance(policy.next_action(1.0), Dial)
    policy.dial_started(1.0)
    with pytest.raises(LocalProtocolError, match="without a Dial"):
        policy.dial_started(1.0)  # the grant was used
    with pytest.raises(LocalProtocolError, match="connection_lost"):
        policy.connection_lost(1.0)
    with pytest.raises(LocalProtocolError, match="monotonic"):
        policy.dial_failed(0.5)  # time went backwards
    with pytest.raises(LocalProtocolError):
        policy.next_action(math.nan)
    policy.dial_succeeded(2.0)
    with pytest.raises(LocalProtocolError, match="dial_succeeded"):
        policy.dial_succeeded(2.0)
    assert policy.state == "connected"  # refused calls changed nothing


def test_a_grant_does_not_survive_a_later_answer_or_end_demand() -> None:
    policy = ReconnectPolicy(ON_DEMAND, rng=const(1.0))
    assert isinstance(policy.next_action(0.0, 10.0), Dial)
    policy.end_demand(0.0)
    with pytest.raises(LocalProtocolError):
        policy.dial_started(0.0)
    assert isinstance(policy.next_action(0.0, 10.0), Dial)
    assert isinstance(policy.next_action(0.0, 0.1), GiveUp)  # the later answer wins
    with pytest.raises(LocalProtocolError):
        policy.dial_started(0.0)
    policy.end_demand(0.0)
    policy.end_demand(0.0)  # idempotent


def test_stats_snapshot_and_retry_in() -> None:
    policy = ReconnectPolicy(PERSISTENT, rng=const(1.0))
    policy.next_action(0.0)
    policy.dial_started(0.0)
    policy.dial_failed(0.0)
    assert policy.state == "backoff"
    assert policy.retry_in(0.02) == pytest.approx(PERSISTENT.base_delay_s - 0.02)
    assert policy.retry_in(1.0) == 0.0
    stats = policy.stats
    assert stats == PolicyStats(attempts=1, failures=1)
    stats.give_ups["x"] = 1
    assert policy.stats.give_ups == {}  # a snapshot, not the live counters


# ----------------------------------------------------------------------------- hypothesis: any sequence

EPS = 1e-9


class PolicyMachine(RuleBasedStateMachine):
    """Random configs, rngs (0 and 1 over-represented), time steps and events, one at a time or as
    runs of the shell loop; every answer is checked against the bounds. The model here is written from
    the spec, not from the implementation."""

    @initialize(
        mode=st.sampled_from(["on_demand", "persistent"]),
        base=st.floats(0.01, 1.0),
        factor=st.floats(1.0, 50.0),
        max_attempts=st.integers(1, 5),
        min_dial=st.floats(0.0, 1.0),
        threshold=st.integers(1, 5),
        cooldown=st.floats(0.5, 20.0),
        cooldown_factor=st.floats(1.0, 10.0),
        stable=st.floats(0.1, 20.0),
        rng_values=st.lists(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0), min_size=1, max_size=8),
    )
    def setup(
        self,
        mode: str,
        base: float,
        factor: float,
        max_attempts: int,
        min_dial: float,
        threshold: int,
        cooldown: float,
        cooldown_factor: float,
        stable: float,
        rng_values: list[float],
    ) -> None:
        self.cfg = PolicyConfig(
            mode=mode,  # type: ignore[arg-type]
            base_delay_s=base,
            max_delay_s=base * factor,
            max_attempts=max_attempts,
            min_dial_s=min_dial,
            breaker_threshold=threshold,
            breaker_cooldown_s=cooldown,
            breaker_cooldown_max_s=cooldown * cooldown_factor,
            stable_after_s=stable,
        )
        self.policy = ReconnectPolicy(self.cfg, rng=cycle(rng_values))
        self.on_demand = mode == "on_demand"
        self.t = 0.0
        self.told: float | None = None  # the latest time the policy was given
        self.phase = "down"
        self.granted = False
        self.deadline: float | None = None  # the current demand (on_demand)
        self.demand_dials = 0
        self.connected_at = 0.0
        # chain model: dial starts of this backoff streak, and the index each one's outcome scheduled with
        self.streak_dials: list[float] = []
        self.streak_n: list[int | None] = []
        self.n = 0
        self.all_dials: list[float] = []  # for N(W): every dial start, across streaks
        # breaker model (on_demand): only timed-out dials count, any answer resets
        self.timeout_run = 0
        self.last_timeout = -math.inf
        self.cool = self.cfg.breaker_cooldown_s  # C of the next open: it lasts a draw in [C/2, C]
        self.open_cool: float | None = None  # C of the current open (None: closed)
        self.trial = False  # the dial in flight started while the breaker was open (half-open)
        self.demand_timed_out = False  # the current demand's dial got no answer
        self.last_event = 0.0  # the latest event that left us down: a dial is allowed within the cap
        self.fast_until = -math.inf  # a circuit_open GiveUp promised no dial before this

    # -- one event each, model updated, answers checked

    def _ask(self) -> Dial | Wait | GiveUp | Ready:
        cfg, t = self.cfg, self.t
        action = self.policy.next_action(t, self.deadline)
        self.told = t
        self.granted = False
        if self.phase == "connected":
            assert isinstance(action, Ready) and action.since == self.connected_at
        elif isinstance(action, Wait):
            assert t < action.until <= t + cfg.max_delay_s + EPS  # every wait is capped
            if self.phase == "dialing":
                assert action.reason == "dialing"
            else:
                assert action.reason == "backoff"
                # it never stops: a dial is allowed within the cap of the event that left us down
                assert action.until <= self.last_event + cfg.max_delay_s + EPS
            if self.deadline is not None:
                assert action.until <= self.deadline + EPS
                if action.reason == "backoff":
                    assert action.until + cfg.min_dial_s <= self.deadline + EPS
        elif isinstance(action, GiveUp):
            assert self.on_demand, "persistent mode never gives up"
            assert action.reason in ("timed_out", "circuit_open", "attempts_exhausted", "deadline")
            if action.reason == "timed_out":
                assert self.demand_timed_out, "gave up on a black hole this demand never dialled"
            else:
                assert not self.demand_timed_out, "dialled on after a timeout in the same demand"
            if action.reason == "circuit_open":
                # only timeouts open it (refusals never do), for a jittered cool-down in [C/2, C]
                assert self.timeout_run >= cfg.breaker_threshold and self.open_cool is not None
                assert action.retry_at is not None and action.retry_at > t
                assert action.retry_at >= self.last_timeout + self.open_cool / 2 - EPS
                assert action.retry_at <= self.last_timeout + self.open_cool + EPS
                assert self.open_cool <= cfg.breaker_cooldown_max_s + EPS
                self.fast_until = max(self.fast_until, action.retry_at)
            elif action.reason == "attempts_exhausted":
                assert self.demand_dials >= cfg.max_attempts
            elif action.reason == "deadline":
                assert self.deadline is not None and self.deadline < t + cfg.min_dial_s + cfg.max_delay_s
        else:
            assert isinstance(action, Dial)
            assert self.phase == "down", "never two dials in flight"
            assert t >= self.fast_until - EPS, "dialled while the breaker had promised to fail fast"
            if self.on_demand:
                assert self.deadline is not None and t + cfg.min_dial_s <= self.deadline + EPS
                assert self.demand_dials < cfg.max_attempts
                assert not self.demand_timed_out, "a second dial after a timeout, in one demand"
                assert action.attempt == self.demand_dials + 1
                if self.open_cool is not None:  # open breaker: one trial per cool-down
                    assert t >= self.last_timeout + self.open_cool / 2 - EPS
            # the chain rule behind the rate bounds: x[i+2] >= x[i] + delta(n_i)
            if len(self.streak_dials) >= 2:
                n_i = self.streak_n[-2]
                assert n_i is not None
                assert t >= self.streak_dials[-2] + cfg.backoff_window(n_i) - EPS
            self.granted = True
        return action

    def _start(self) -> None:
        self.policy.dial_started(self.t)
        self.told = self.t
        self.granted = False
        self.phase = "dialing"
        self.demand_dials += 1
        self.trial = self.open_cool is not None
        self.streak_dials.append(self.t)
        self.streak_n.append(None)
        # N(W): no window of W seconds ending now holds more dial starts than the formula allows
        self.all_dials.append(self.t)
        cfg = self.cfg
        for width in (cfg.base_delay_s, cfg.max_delay_s, 3 * cfg.max_delay_s, cfg.stable_after_s,
                      2.5 * cfg.stable_after_s, 60.0):  # fmt: skip
            recent = sum(1 for x in self.all_dials if x > self.t - width + EPS)
            assert recent <= cfg.dial_bound(width), (width, recent)

    def _scheduled(self) -> None:
        self.streak_n[-1] = self.n
        self.n += 1
        self.last_event = self.t

    def _answered(self) -> None:
        self.timeout_run = 0
        self.open_cool = None
        self.cool = self.cfg.breaker_cooldown_s

    def _finish(self, outcome: str) -> None:
        self.granted = False
        self.told = self.t
        cfg = self.cfg
        if outcome == "ok":
            self.policy.dial_succeeded(self.t)
            self.phase = "connected"
            self.connected_at = self.t
            self._answered()
        else:
            self.policy.dial_failed(self.t, outcome)  # type: ignore[arg-type]
            self.phase = "down"
            self._scheduled()
            if self.on_demand and outcome == "refused":
                self._answered()
            elif self.on_demand:
                self.demand_timed_out = True
                self.timeout_run += 1
                self.last_timeout = self.t
                if self.trial:
                    self.cool = min(2 * self.cool, cfg.breaker_cooldown_max_s)
                    self.open_cool = self.cool
                elif self.timeout_run >= cfg.breaker_threshold:
                    self.open_cool = self.cool
        self.trial = False

    def _lose(self) -> None:
        self.policy.connection_lost(self.t)
        self.told = self.t
        self.phase = "down"
        if self.t - self.connected_at >= self.cfg.stable_after_s:
            self.n = 0
            if self.on_demand:  # a new streak: the next dial is immediate
                self.streak_dials, self.streak_n = [], []
                self.last_event = self.t
                return
        self._scheduled()

    def _end_demand(self) -> None:
        self.policy.end_demand(self.t)
        self.told = self.t
        self.deadline = None
        self.demand_dials = 0
        self.demand_timed_out = False
        self.granted = False

    # -- single steps

    @rule(dt=st.sampled_from([0.0, 1e-6]) | st.floats(0.0, 60.0))
    def advance(self, dt: float) -> None:
        self.t += dt

    @precondition(lambda self: self.on_demand and self.deadline is None)
    @rule(timeout=st.floats(0.0, 30.0))
    def begin_demand(self, timeout: float) -> None:
        self.deadline = self.t + timeout

    @precondition(lambda self: self.on_demand)
    @rule()
    def end_demand(self) -> None:
        self._end_demand()

    @precondition(lambda self: not self.on_demand or self.deadline is not None)
    @rule()
    def ask(self) -> None:
        self._ask()

    @precondition(lambda self: self.granted)
    @rule()
    def start_granted_dial(self) -> None:
        self._start()

    @precondition(lambda self: self.phase == "dialing")
    @rule(outcome=st.sampled_from(["ok", "refused", "timeout"]))
    def finish_dial(self, outcome: str) -> None:
        self._finish(outcome)

    @precondition(lambda self: self.phase == "connected")
    @rule()
    def lose(self) -> None:
        self._lose()

    # -- runs of the shell loop: many events per step, so deep states (open breakers, decayed
    #    backoff, trials) are reached often

    @rule(
        script=st.lists(
            st.tuples(
                st.sampled_from(["refused", "refused", "timeout", "ok"]),
                st.sampled_from([0.0, 0.1]) | st.floats(0.0, 40.0),
            ),
            min_size=1,
            max_size=40,
        )
    )
    def shell(self, script: list[tuple[str, float]]) -> None:
        for outcome, pause in script:
            if self.on_demand and self.deadline is None:
                self.deadline = self.t + pause  # a new invocation with `pause` seconds to live
            if self.phase == "dialing":
                self.t += pause / 10
                self._finish(outcome)
                continue
            action = self._ask()
            if isinstance(action, Wait):
                self.t = action.until  # the shell sleeps
            elif isinstance(action, Dial):
                self._start()
                self.t += pause / 10  # the dial takes a while
                self._finish(outcome)
            elif isinstance(action, Ready):
                self.t += pause
                self._lose()
            else:
                self._end_demand()
                self.t += pause

    # -- misuse never changes anything

    @rule(which=st.sampled_from(["dial_started", "dial_succeeded", "dial_failed", "connection_lost"]))
    def out_of_order(self, which: str) -> None:
        legal = {
            "dial_started": self.granted,
            "dial_succeeded": self.phase == "dialing",
            "dial_failed": self.phase == "dialing",
            "connection_lost": self.phase == "connected",
        }[which]
        if legal:
            return
        before = self.policy.state
        with pytest.raises(LocalProtocolError):
            getattr(self.policy, which)(self.t)
        assert self.policy.state == before

    @precondition(lambda self: self.told is not None)
    @rule(back=st.floats(1e-3, 10.0))
    def time_goes_backwards(self, back: float) -> None:
        assert self.told is not None
        earlier = self.told - back
        before = self.policy.state
        with pytest.raises(LocalProtocolError, match="monotonic"):
            self.policy.next_action(earlier, self.t + 100 if self.on_demand else None)
        with pytest.raises(LocalProtocolError, match="monotonic"):
            getattr(self.policy, "end_demand" if self.on_demand else "dial_started")(earlier)
        assert self.policy.state == before

    # -- invariants

    @invariant()
    def states_agree(self) -> None:
        state = self.policy.state
        if self.phase == "dialing":
            assert state == "dialing"
        elif self.phase == "connected":
            assert state == "connected"
        elif self.on_demand:
            assert state in ("idle", "backoff", "open", "half_open")
        else:
            assert state in ("idle", "backoff")

    @invariant()
    def counters_add_up(self) -> None:
        stats = self.policy.stats
        assert stats.attempts == stats.failures + stats.successes + (self.phase == "dialing")
        assert stats.losses == stats.successes - (self.phase == "connected")


TestPolicyMachine = PolicyMachine.TestCase
TestPolicyMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
