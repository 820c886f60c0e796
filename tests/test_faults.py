"""The emulator's fault controls as pure logic (devserver/cloud/faults.py), on a fake clock: the flapping
schedule's windows, availability and drops, and what a malformed request says."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devserver.cloud.faults import MAX_FLAP_JITTER, DropNow, Faults, FaultSpecError, Flap


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def windows(flap: Flap, until: float) -> list[tuple[float, float, bool]]:
    """(from, to, refusing) of every window up to `until`, probed through the public methods."""
    out = []
    for lo, hi in flap.refusals(until):
        out.append((lo, hi, True))
    accepting = [(a[1], b[0], False) for a, b in itertools.pairwise(out)]
    if out[-1][1] < until:
        accepting.append((out[-1][1], until, False))
    return sorted(out + accepting)


@settings(max_examples=200, deadline=None)
@given(
    accept_s=st.floats(0.05, 10),
    refuse_s=st.floats(0.05, 10),
    jitter=st.floats(0, MAX_FLAP_JITTER),
    seed=st.integers(0, 2**32),
    probes=st.lists(st.floats(0, 100, exclude_max=True), max_size=30),
)
def test_windows_alternate_within_their_jitter(
    accept_s: float, refuse_s: float, jitter: float, seed: int, probes: list[float]
) -> None:
    flap = Flap(accept_s, refuse_s, start=0.0, jitter=jitter, seed=seed)
    spans = windows(flap, 100.0)
    assert spans[0][0] == 0.0 and spans[0][2]  # it starts refusing, at once
    for (lo, hi, refusing), nxt in zip(spans, [*spans[1:], None], strict=True):
        base = refuse_s if refusing else accept_s
        if hi < 100.0:  # a whole window: its length within the jitter
            assert base * (1 - jitter) - 1e-9 <= hi - lo <= base * (1 + jitter) + 1e-9
        if nxt is not None:
            assert nxt[0] == hi and nxt[2] != refusing
        assert flap.refusing(lo) == refusing and flap.refusing((lo + hi) / 2) == refusing
    for t in probes:  # asking in any order gives the same answers (windows are drawn lazily)
        inside = [r for lo, hi, r in spans if lo <= t < hi]
        assert [flap.refusing(t)] == inside
        if t > 0:
            refused = sum(min(hi, t) - lo for lo, hi, r in spans if r and lo < t)
            assert flap.availability(t) == pytest.approx(1 - refused / t)
    again = Flap(accept_s, refuse_s, start=0.0, jitter=jitter, seed=seed)
    assert windows(again, 100.0) == spans  # a seed is the same schedule


def test_availability_and_end() -> None:
    flap = Flap(3.0, 1.0, start=10.0, for_s=40.0)
    assert flap.availability(10.0) == 1.0  # nothing has happened yet
    assert flap.availability(11.0) == 0.0
    assert flap.availability(50.0) == pytest.approx(0.75)  # ten whole cycles of 1 s + 3 s
    assert flap.availability(1e9) == pytest.approx(0.75)  # nothing after the end counts
    assert flap.refusing(49.5) is False and flap.refusing(46.5) is True and flap.refusing(50.5) is False
    assert flap.next_refusal_start(46.0) is None  # the window at 46 was the last one
    assert flap.next_refusal_start(9.0) == 10.0 and flap.next_refusal_start(10.0) == 14.0


def test_drops_come_once_per_refusal_window_and_missed_ones_coalesce() -> None:
    clock = Clock()
    faults = Faults(clock=clock)
    assert faults.apply({"flap_connections": {"accept_s": 2, "refuse_s": 1}, "abrupt": True}) is None
    assert faults.refusing() and faults.next_drop_at() == 1000.0
    assert faults.due_drop() == DropNow(abrupt=True)  # the first refusal begins now
    assert faults.due_drop() is None and faults.next_drop_at() == 1003.0
    clock.now = 1001.5
    assert not faults.refusing() and faults.due_drop() is None
    clock.now = 1003.0
    assert faults.refusing() and faults.due_drop() == DropNow(abrupt=True)
    clock.now = 1012.5  # three refusal windows began while nobody asked: one drop does for them
    assert faults.due_drop() is not None and faults.due_drop() is None
    assert faults.next_drop_at() == 1015.0
    faults.apply({"flap_connections": {"accept_s": 2, "refuse_s": 1, "drop": False}})
    assert faults.refusing() and faults.next_drop_at() is None and faults.due_drop() is None
    faults.apply({"reset": True})
    assert not faults.refusing() and faults.snapshot()["flap_connections"] is None


def test_snapshot_reports_the_schedule() -> None:
    clock = Clock()
    faults = Faults(clock=clock)
    faults.apply({"flap_connections": {"accept_s": 3, "refuse_s": 1, "for_s": 8, "jitter": 0, "seed": 5}})
    clock.now += 6.0
    flap = faults.snapshot()["flap_connections"]
    assert flap == {"accept_s": 3.0, "refuse_s": 1.0, "jitter": 0.0, "drop": True, "abrupt": False,
                    "seed": 5, "refusing": False, "elapsed_s": 6.0, "ends_in_s": 2.0,
                    "availability": round(4 / 6, 4)}  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"flap_connections": 3}, "must be an object"),
        ({"flap_connections": {"accept_s": 1}}, "needs accept_s and refuse_s"),
        ({"flap_connections": {"accept_s": 1, "refuse_s": 1, "every": 2}}, "needs accept_s and refuse_s"),
        ({"flap_connections": {"accept_s": 0, "refuse_s": 1}}, "finite numbers > 0"),
        ({"flap_connections": {"accept_s": 1, "refuse_s": -1}}, "non-negative"),
        ({"flap_connections": {"accept_s": 1, "refuse_s": 1, "jitter": 0.95}}, "jitter must be in"),
        ({"flap_connections": {"accept_s": 1, "refuse_s": 1, "for_s": 0}}, "for_s must be"),
        ({"flap_connections": {"accept_s": 1, "refuse_s": 1, "seed": "x"}}, "seed must be an integer"),
        ({"flap_connections": {"accept_s": 1, "refuse_s": 1, "drop": 1}}, "drop must be true or false"),
        ({"refuse_connections_for_s": math.inf}, "non-negative number"),
        ({"delay_delivery_ms": math.nan}, "non-negative number"),
    ],
)
def test_a_malformed_request_says_which_key(spec: dict[str, object], says: str) -> None:
    faults = Faults(clock=Clock())
    with pytest.raises(FaultSpecError, match=says):
        faults.apply(spec)
