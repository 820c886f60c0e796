"""How long a live invocation's handler may run on this machine, and how to say why.

The deployed function's deadline is the stub's; the result still has to travel back to it. So the
local run ends `RETURN_TRIP_MS` before that deadline:

    budget = live_budget(deadline_ms=..., timeout_ms=2998, hint="raise it with ...")
    budget.seconds     # 2.6: what the handler gets (and never past deadline_ms - RETURN_TRIP_MS)
    budget.note        # "the function's 3 s less 0.4 s for the answer's way back; raise it with ..."

An invocation that does not come from a stub (a replay, `livelambda invoke` with live mode off) gets
the function's own timeout and no note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

# The local run must end early enough for its result to cross back before the stub's own deadline.
RETURN_TRIP_MS = 400
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class LiveBudget:
    seconds: float  # what the handler gets: the function's timeout less the return trip
    deadline_ms: int  # wall-clock epoch ms by which the local run must end, whatever the start
    note: str  # why it is that long, and how to raise it


def live_budget(*, deadline_ms: int, timeout_ms: int, hint: str) -> LiveBudget:
    """The budget of a live invocation whose Lambda deadline is `deadline_ms` and whose function's
    timeout is `timeout_ms` (what the stub had left when it got the invocation)."""
    # The stub starts a few ms into the timeout, which is never less than what it has left: 2998 ms
    # left is a 3 s timeout (Lambda's are whole seconds; the local cloud's tenths at most).
    timeout_s = math.ceil(timeout_ms / 100) / 10
    seconds = max(0.0, round(timeout_s - RETURN_TRIP_MS / 1000, 3))
    note = (
        f"the function's {timeout_s:g} s less {RETURN_TRIP_MS / 1000:g} s for the answer's way back; {hint}"
    )
    return LiveBudget(seconds, deadline_ms - RETURN_TRIP_MS, note)


def raise_timeout_hint(realtime_url: str, function: str, config_file: str) -> str:
    """What raises a live function's timeout: the local cloud's functions are the configuration's;
    in AWS, `aws up --timeout` sets the deployed function's."""
    if urlsplit(realtime_url).hostname in _LOOPBACK:
        return f"raise `timeout` of [functions.{function}] in {config_file}"
    return "raise it with `livelambda aws up --timeout SECONDS`"
