"""Stopping a child process: a signal first, SIGKILL if it outlives the timeout. Used by
`livelambda dev --cloud` for its cloud, and by the tests' and benchmarks' fixtures."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0, *, group: bool = False
) -> None:
    """Send `sig`; SIGKILL if the process has not exited within `timeout` seconds. `group`: the kill
    takes its whole process group (it was started in a session of its own, with children of its own)."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=timeout)
