"""What the terminal says about dropped messages: the first of each reason, then a summary now and then."""

from __future__ import annotations

from devserver.live.rejections import RejectionSummary


def test_seven_hundred_forgeries_make_a_handful_of_lines() -> None:
    summary = RejectionSummary(interval_s=10.0)
    lines = []
    for i in range(709):
        now = i * 0.01  # 709 forgeries over ~7 s
        line = summary.rejected("bad_signature", f"forgery {i}", now)
        if line:
            lines.append(line)
    assert lines == ["dropped a message (bad_signature): forgery 0"]
    assert summary.flush(5.0) is None  # not before the interval
    line = summary.flush(10.0)
    assert line is not None and "708 more" in line and "bad_signature 708" in line
    assert summary.flush(30.0) is None  # nothing new


def test_a_new_reason_is_said_at_once_and_counts_are_by_reason() -> None:
    summary = RejectionSummary(interval_s=10.0)
    assert summary.rejected("stale", "a", 0.0) is not None
    assert summary.rejected("stale", "b", 1.0) is None
    assert summary.rejected("replay", "c", 2.0) == "dropped a message (replay): c"
    assert summary.rejected("replay", "d", 3.0) is None
    assert summary.due_at() == 12.0
    line = summary.rejected("stale", "e", 12.5)  # past the interval: the summary comes with it
    assert line is not None and "stale 2" in line and "replay 1" in line and "3 more" in line
