"""The command line's usage errors: status 2, one line saying what to do, no traceback, and nothing
started or bound first. And `livelambda cloud --live` run in an app's directory serves that app."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devserver.processes import stop_process

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def livelambda(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of examples/hello."""
    root = tmp_path / "hello"
    shutil.copytree(REPO / "examples" / "hello", root, ignore=shutil.ignore_patterns(".livelambda"))
    return root


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_cloud_live_in_an_app_directory_serves_that_app(app: Path) -> None:
    ready = app / ".livelambda" / "cloud.json"  # where `--app` puts it: `invoke` and `dev` find it there
    log = app.parent / "cloud.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devserver", "cloud", "--live", "--port", "0"],
            cwd=app,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        stats = httpx.get(f"http://{info['host']}/_livelambda/lambda/stats", timeout=10).json()
        assert stats["live"] is True
        assert sorted(stats["functions"]) == ["api", "hello"]
    finally:
        stop_process(proc, signal.SIGINT, timeout=20)
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()


# (arguments, what the one line must say); APP, MISSING, BUSY and FILE are filled in by the test.
USAGE_ERRORS = [
    (["cloud", "--live"], ["--live needs an app", "--app DIR"]),
    (["cloud", "--app", "MISSING"], ["--app", "does not exist"]),
    (["cloud", "--live", "--app", "MISSING"], ["--app", "does not exist"]),
    (["cloud", "--live", "--app", "BROKEN", "--port", "BUSY"], ["livelambda.toml: not valid TOML"]),
    (["cloud", "--iam-credentials", "nocolon"], ["--iam-credentials expects"]),
    (["cloud", "--port", "70000"], ["--port", "not a port number"]),
    (["cloud", "--concurrency", "0"], ["--concurrency", ">= 1"]),
    (["cloud", "--ka-interval", "0"], ["--ka-interval", "> 0"]),
    (["cloud", "--port", "BUSY"], ["in use", "--port"]),
    (["cloud", "--app", "APP", "--live", "--port", "BUSY"], ["in use", "--port"]),
    (["dev", "MISSING"], ["no such directory"]),
    (["dev", "APP", "--port", "BUSY"], ["in use", "--port"]),
    (["dev", "APP", "--cloud", "--cloud-port", "BUSY", "--port", "0"], ["in use", "--cloud-port"]),
    (["dev", "APP", "--cloud-concurrency", "0"], ["--cloud-concurrency", ">= 1"]),
    (["dev", "APP", "--cloud", "--aws"], ["exclude each other"]),
    (["invoke", "hello", "--app", "MISSING"], ["--app", "does not exist"]),
    (["invoke"], ["required: function", "--help"]),
    (["stub", "build", "--output", "FILE/layer.zip"], ["cannot write", "--output"]),
    (["aws", "up", "--app", "MISSING"], ["no such directory"]),
    (["aws", "status", "--app", "MISSING"], ["no such directory"]),
]


@pytest.mark.parametrize(("args", "says"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_a_usage_error_is_one_line_and_status_2(
    args: list[str], says: list[str], tmp_path: Path, app: Path, busy_port: int
) -> None:
    empty = tmp_path / "empty"  # no config here: nothing to default to
    empty.mkdir()
    (tmp_path / "a-file").write_text("")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "livelambda.toml").write_text("[functions.hello\n")
    fill = {
        "APP": str(app),
        "BROKEN": str(broken),
        "MISSING": str(tmp_path / "missing"),
        "BUSY": str(busy_port),
    }
    argv = [fill.get(a, a).replace("FILE", str(tmp_path / "a-file")) for a in args]
    done = livelambda(*argv, cwd=empty)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"livelambda {argv[0]}"), lines
    for words in says:
        assert words in lines[0], lines
    assert not (tmp_path / "missing").exists()
    assert not (app / ".livelambda" / "cloud.log").exists()  # no cloud was started
    assert not (broken / ".livelambda").exists()  # nor a layer built
