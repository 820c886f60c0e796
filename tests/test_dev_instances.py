"""One `livelambda dev` per app: a second one for the same app says who holds it and leaves the first
one's files alone; a dev server removes the files it wrote when it stops; `invoke --app` never falls
back to another app's cloud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devserver.commands.dev_lock import DevLock
from tests.dev_fixtures import running_dev


def _livelambda(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args], capture_output=True, text=True, timeout=timeout
    )


def _snapshot(state: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file of the state directory (not the venv): inode, mtime, content."""
    files = {}
    for path in state.iterdir():
        if path.is_file():
            st = path.stat()
            files[path.name] = (st.st_ino, st.st_mtime_ns, path.read_bytes())
    return files


def test_a_second_dev_server_for_the_app_leaves_the_first_alone(tmp_path: Path) -> None:
    with running_dev(tmp_path) as first:
        state = first.app / ".livelambda"
        before = _snapshot(state)
        assert "cloud.json" in before and "dev.lock" in before
        cloud_port = first.info["cloud"]["port"]
        dashboard_port = first.info["port"]

        second = _livelambda(
            "dev", str(first.app), "--cloud", "--cloud-port", "0", "--port", "0", timeout=120
        )
        assert second.returncode != 0
        said = second.stdout + second.stderr
        assert f"pid {first.proc.pid}" in said, said
        assert f":{dashboard_port}/" in said and f":{cloud_port}" in said, said
        assert _snapshot(state) == before  # no file of the first one touched, none added

        # `invoke --app` still reaches the first one's cloud, and the first one runs it.
        done = _livelambda("invoke", "hello", '{"name": "Ada"}', "--app", str(first.app))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["message"] == "Hello, Ada!"
        first.wait_for(lambda: "saying hello to Ada" in first.output(), "the first dev server ran it")
        lock = json.loads((state / "dev.lock").read_text())
        assert (lock["pid"], lock["port"], lock["cloud_port"]) == (first.proc.pid, dashboard_port, cloud_port)

    # Stopped: the file its cloud wrote is gone (no stale endpoint), and the app is free again.
    assert not (state / "cloud.json").exists()
    lock = DevLock(first.app)
    lock.acquire(port=0)
    lock.release()


def test_invoke_app_without_its_cloud_says_so(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / ".livelambda").mkdir(parents=True)
    done = _livelambda("invoke", "hello", "--app", str(app))
    assert done.returncode != 0
    assert f"no livelambda cloud is running for {app}" in done.stderr
    assert "livelambda dev" in done.stderr and "--cloud" in done.stderr


def test_the_lock_names_its_holder(tmp_path: Path) -> None:
    held = DevLock(tmp_path)
    held.acquire(host="127.0.0.1", port=8801, cloud_port=8800)
    try:
        code = (
            "import sys; from pathlib import Path\n"
            "from devserver.commands.dev_lock import DevLock, DevServerRunning\n"
            "try:\n    DevLock(Path(sys.argv[1])).acquire(port=1)\n"
            "except DevServerRunning as exc:\n    print(exc)\n    raise SystemExit(3)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 3, done.stderr
        assert f"pid {os.getpid()}" in done.stdout
        assert "http://127.0.0.1:8801/" in done.stdout and "http://127.0.0.1:8800" in done.stdout
    finally:
        held.release()
