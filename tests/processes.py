"""Stopping the subprocesses the tests start."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send `sig`; SIGKILL if the process has not exited within `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
