"""The dev server's on-disk memory of executed invocations (at most once across restarts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devserver.live import executed
from devserver.live.executed import ExecutedLog


def test_remembered_across_a_restart_until_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "executed.log"
    log = ExecutedLog(path, now_ms=1_000)
    log.record("req-1", forget_at_ms=5_000, now_ms=1_000)
    log.record("req-2", forget_at_ms=2_000, now_ms=1_000)
    assert "req-1" in log and "req-2" in log
    # no close(): as a dev server killed with SIGKILL
    again = ExecutedLog(path, now_ms=3_000)
    assert "req-1" in again and "req-2" not in again  # req-2's time has passed
    again.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "executed.log"
    path.write_text("req-1 9000\nreq-2 ")
    log = ExecutedLog(path, now_ms=1_000)
    assert "req-1" in log and "req-2" not in log and len(log) == 1


def test_the_file_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executed, "_COMPACT_AT_LINES", 10)
    path = tmp_path / "executed.log"
    log = ExecutedLog(path, now_ms=0)
    for i in range(25):
        log.record(f"req-{i}", forget_at_ms=100 + i, now_ms=100 + i)  # each forgotten soon after
    log.record("keep", forget_at_ms=10_000, now_ms=200)
    lines = path.read_text().splitlines()
    assert len(lines) < 12  # compacted, not 26 lines
    assert "keep" in ExecutedLog(path, now_ms=300)
