"""The forkserver (devserver/runtime/forkserver.py) and its launcher: forked children run the real
awslambdaric behind their own Runtime API, re-import the developer's code from disk while installed
modules stay warm in the parent, keep Lambda's semantics (timeout, crash, big output), and die with
the dev server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devserver.config import AppConfig, FunctionConfig
from devserver.runtime import InvocationRequest, Worker, WorkerPool
from devserver.runtime.environment import lambda_environment
from devserver.runtime.fork_launcher import ForkLauncher
from tests.lambda_fixtures import MISBEHAVING, async_wait_until, process_state

REPO = Path(__file__).resolve().parent.parent


def event(value: object) -> InvocationRequest:
    return InvocationRequest(payload=json.dumps(value).encode())


def make_function(
    source: Path, code: str, *, module: str = "app", name: str = "fn", timeout: float = 10.0
) -> FunctionConfig:
    source.mkdir(parents=True, exist_ok=True)
    (source / f"{module}.py").write_text(textwrap.dedent(code))
    return FunctionConfig(
        name=name,
        handler=f"{module}.handler",
        source=source,
        python=Path(sys.executable),
        timeout=timeout,
        environment={"GREETING": "hi"},
    )


def launcher_for(function: FunctionConfig, **options: Any) -> ForkLauncher:
    env = lambda_environment(function, runtime_api="127.0.0.1:9001", region="us-east-1")
    return ForkLauncher(function.python, function.source, function.handler, env, **options)


@pytest.fixture
async def fork_launcher() -> AsyncIterator[Callable[..., ForkLauncher]]:
    """fork_launcher(function, **options) -> a ForkLauncher (not started); closed after the test."""
    made: list[ForkLauncher] = []

    def make(function: FunctionConfig, **options: Any) -> ForkLauncher:
        launcher = launcher_for(function, **options)
        made.append(launcher)
        return launcher

    yield make
    await asyncio.gather(*(launcher.close() for launcher in made))


def ppid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def gone(pid: int) -> bool:
    """Not running any more (a zombie waiting for a reaper counts as gone)."""
    return process_state(pid) in (None, "Z", "X")


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = ppid_of(int(entry.name))
            if parent is not None and process_state(int(entry.name)) not in (None, "Z", "X"):
                parents[int(entry.name)] = parent
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


PROBE = """
    import os, sys
    BOTO3_ALREADY_LOADED = "boto3" in sys.modules   # imported by the parent before this module ran
    import boto3
    VERSION = 1

    def handler(event, context):
        print("probe", VERSION)
        return {
            "version": VERSION,
            "boto3_already_loaded": BOTO3_ALREADY_LOADED,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "greeting": os.environ.get("GREETING"),
            "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
            "function_name": context.function_name,
            "cwd": os.getcwd(),
            "dont_write_bytecode": sys.dont_write_bytecode,
            "stdin": os.read(0, 10).decode(),
        }
"""


async def test_forked_child_runs_awslambdaric_behind_its_own_runtime_api(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    function = make_function(tmp_path / "src", PROBE)
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    assert launcher.kind == "fork" and launcher.server is not None
    server_pid = launcher.server.pid
    worker = Worker(function, launcher=launcher)
    try:
        outcome = await worker.invoke(event({}))
        assert outcome.status == "ok", outcome.payload
        body = json.loads(outcome.payload)
        assert body["ppid"] == server_pid  # forked by the warm parent...
        assert body["pgid"] == body["pid"]  # ...leading its own process group
        assert body["boto3_already_loaded"] is True
        assert body["greeting"] == "hi" and body["function_name"] == "fn"
        assert body["runtime_api"] == worker._server.address  # its own endpoint, not the parent's
        assert body["cwd"] == str(function.source)
        assert body["dont_write_bytecode"] is True
        assert body["stdin"] == ""
        assert outcome.logs == "probe 1\n"
        assert outcome.cold and outcome.init_duration_ms is not None
        assert worker.launch_kind == "fork"
        again = await worker.invoke(event({}))
        assert again.ok and not again.cold and json.loads(again.payload)["pid"] == body["pid"]
    finally:
        await worker.stop()
    assert worker.returncode == -signal.SIGKILL
    assert gone(body["pid"])


async def test_child_reimports_changed_code_while_third_party_modules_stay_warm(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    function = make_function(tmp_path / "src", PROBE)
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    server_pid = launcher.server.pid if launcher.server else None
    seen = []
    for version in (1, 2, 3):
        source = textwrap.dedent(PROBE).replace("VERSION = 1", f"VERSION = {version}")
        (function.source / "app.py").write_text(source)
        worker = Worker(function, launcher=launcher)
        try:
            outcome = await worker.invoke(event({}))
        finally:
            await worker.stop()
        assert outcome.ok, outcome.payload
        seen.append(json.loads(outcome.payload))
    assert [s["version"] for s in seen] == [1, 2, 3]  # fresh from disk every time
    assert all(s["boto3_already_loaded"] for s in seen)  # never re-imported
    assert {s["ppid"] for s in seen} == {server_pid}  # one warm parent for all
    assert not (function.source / "__pycache__").exists()  # no bytecode for the developer's code


async def test_a_new_installed_import_restarts_the_parent_with_it_warm(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    code = """
        import os, sys
        WARM = "wsgiref.validate" in sys.modules
        VERSION = 1

        def handler(event, context):
            return {"warm": WARM, "ppid": os.getppid(), "version": VERSION}
    """
    function = make_function(tmp_path / "src", code)
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    first_parent = launcher.server.pid if launcher.server else None

    async def run_once() -> dict[str, Any]:
        worker = Worker(function, launcher=launcher)
        try:
            outcome = await worker.invoke(event({}))
        finally:
            await worker.stop()
        assert outcome.ok, outcome.payload
        return json.loads(outcome.payload)

    assert (await run_once())["ppid"] == first_parent
    assert launcher.restarts == 0  # nothing new imported: no restart
    # the developer adds an import the parent does not have
    edited = textwrap.dedent(code).replace("VERSION = 1", "import wsgiref.validate\nVERSION = 2")
    (function.source / "app.py").write_text(edited)
    cold = await run_once()
    assert cold == {"warm": False, "ppid": first_parent, "version": 2}
    await async_wait_until(lambda: launcher.restarts == 1 and launcher.kind == "fork", what="a new parent")
    assert "wsgiref" in (launcher.note or "")
    new_parent = launcher.server.pid if launcher.server else None
    assert new_parent != first_parent
    warm = await run_once()
    assert warm == {"warm": True, "ppid": new_parent, "version": 2}
    # the old parent had no child left: it exited
    assert first_parent is not None
    await async_wait_until(lambda: gone(first_parent), what="the old forkserver gone")


@pytest.mark.parametrize(
    ("name", "payload", "status", "error_type", "message_end"),
    MISBEHAVING,
)
async def test_hang_exit_and_segfault_with_forked_workers(
    lambda_app: AppConfig,
    fork_launcher: Callable[..., ForkLauncher],
    name: str,
    payload: dict[str, Any],
    status: str,
    error_type: str,
    message_end: str,
) -> None:
    function = lambda_app.functions[name]
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    pool = WorkerPool(function, launcher=launcher)
    try:
        outcome = await pool.invoke(event(payload))
        assert outcome.status == status, outcome.payload
        assert outcome.error_type == error_type
        assert json.loads(outcome.payload)["errorMessage"].endswith(message_end)
        assert not pool.workers  # the worker is gone...
        pid = outcome.worker_id
        # ...and the next invocation gets a fresh, forked one
        follow = await pool.invoke(event({"s": 0, "code": 0}))
        assert follow.cold and follow.worker_id != pid
        assert pool.workers == [] or pool.workers[0].launch_kind == "fork"
    finally:
        await pool.close()
    assert launcher.kind == "fork"  # the forkserver itself is unharmed


async def test_ten_megabytes_of_output_from_a_forked_worker(
    lambda_app: AppConfig, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    function = lambda_app.functions["noisy"]
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    pool = WorkerPool(function, launcher=launcher, log_limit=64 * 1024)
    try:
        outcome = await pool.invoke(event({"mb": 10}))
        assert outcome.status == "ok" and json.loads(outcome.payload) == "done"
        assert outcome.logs_cut_bytes > 9 * 1024 * 1024
        assert outcome.logs.rstrip().endswith("the end")
        assert pool.workers[0].launch_kind == "fork"
    finally:
        await pool.close()


async def test_init_errors_from_forked_children_are_lambdas(
    lambda_app: AppConfig, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    for name, error_type in (
        ("importerr", "Runtime.ImportModuleError"),
        ("missing", "Runtime.HandlerNotFound"),
        ("syntax", "Runtime.UserCodeSyntaxError"),
    ):
        function = lambda_app.functions[name]
        launcher = fork_launcher(function)
        assert await launcher.start(), launcher.note  # the parent never runs the broken code
        worker = Worker(function, launcher=launcher)
        try:
            outcome = await worker.invoke(event({}))
        finally:
            await worker.stop()
        assert (outcome.status, outcome.error_type) == ("init_error", error_type), outcome.payload
        assert f"[ERROR] {error_type}" in outcome.logs


async def test_close_leaves_no_process_behind(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    before = descendants(os.getpid())
    function = make_function(tmp_path / "src", "def handler(event, context):\n    return 1\n")
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    workers = [Worker(function, launcher=launcher) for _ in range(3)]
    for worker in workers:
        await worker.start()
        assert await worker.wait_ready(30)
    server_pid = launcher.server.pid if launcher.server else 0
    pids = [w.pid for w in workers]
    assert all(ppid_of(pid or 0) == server_pid for pid in pids)
    await launcher.close()  # without stopping the workers first: the forkserver kills its children
    for worker in workers:
        assert await asyncio.wait_for(worker._exited.wait(), 10)
        await worker.stop()
    assert process_state(server_pid) is None  # reaped, not a zombie
    assert all(process_state(pid or 0) is None for pid in pids)
    assert descendants(os.getpid()) - before == set()


_ORPHAN_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from devserver.config import FunctionConfig
from devserver.runtime import InvocationRequest, Worker
from devserver.runtime.environment import lambda_environment
from devserver.runtime.fork_launcher import ForkLauncher

async def main():
    fn = FunctionConfig(name="fn", handler="app.handler", source=Path({source!r}),
                        python=Path(sys.executable), timeout=60)
    env = lambda_environment(fn, runtime_api="127.0.0.1:9001", region="us-east-1")
    launcher = ForkLauncher(fn.python, fn.source, fn.handler, env)
    assert await launcher.start(), launcher.note
    worker = Worker(fn, launcher=launcher)
    busy = asyncio.ensure_future(worker.invoke(InvocationRequest(payload=b"{{}}")))
    await worker.wait_ready(30)
    while worker.state != "busy":
        await asyncio.sleep(0.01)
    print(json.dumps({{"forkserver": launcher.server.pid, "child": worker.pid}}), flush=True)
    await busy

asyncio.run(main())
"""


async def test_parent_death_kills_the_forkserver_and_its_children(tmp_path: Path) -> None:
    source = tmp_path / "src"
    make_function(source, "import time\ndef handler(event, context):\n    time.sleep(60)\n")
    script = tmp_path / "devserver_stand_in.py"
    script.write_text(_ORPHAN_SCRIPT.format(repo=str(REPO), source=str(source)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)  # type: ignore[union-attr]
        assert line, proc.stderr.read().decode()  # type: ignore[union-attr]
        pids = json.loads(line)
        assert ppid_of(pids["child"]) == pids["forkserver"]
        assert not gone(pids["forkserver"]) and not gone(pids["child"])
        proc.send_signal(signal.SIGKILL)  # the dev server dies without a word
        proc.wait(timeout=10)
        await async_wait_until(lambda: gone(pids["forkserver"]), what="the forkserver killed by the kernel")
        await async_wait_until(lambda: gone(pids["child"]), what="its busy child killed too")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_dead_forkserver_is_replaced(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    function = make_function(tmp_path / "src", PROBE)
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note
    first = launcher.server.pid if launcher.server else 0
    worker = Worker(function, launcher=launcher)
    await worker.start()
    assert await worker.wait_ready(30)
    os.kill(first, signal.SIGKILL)
    # its child dies with it (the kernel sees to it), and the worker notices
    await async_wait_until(lambda: worker.state == "dead", what="the orphaned worker dead")
    assert worker.returncode == -signal.SIGKILL and gone(worker.pid or 0)
    outcome = await asyncio.wait_for(worker.invoke(event({})), 30)
    assert outcome.status == "crashed" and outcome.error_type == "Runtime.ExitError"
    await worker.stop()
    fresh = Worker(function, launcher=launcher)
    try:
        again = await fresh.invoke(event({}))
    finally:
        await fresh.stop()
    assert again.ok, again.payload
    assert launcher.kind == "fork" and launcher.server is not None and launcher.server.pid != first
    assert json.loads(again.payload)["ppid"] == launcher.server.pid


async def test_a_forkserver_that_cannot_start_falls_back_to_fresh_interpreters(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    # an interpreter that runs anything but the forkserver
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$1" in *forkserver.py) echo "no forking here" >&2; exit 3;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    base = make_function(tmp_path / "src", "def handler(event, context):\n    return 'fine'\n")
    function = FunctionConfig(
        name=base.name, handler=base.handler, source=base.source, python=python, timeout=base.timeout
    )
    launcher = fork_launcher(function)
    assert await launcher.start() is False
    assert launcher.kind == "spawn"
    assert "no forking here" in (launcher.note or "") and "fresh interpreters" in (launcher.note or "")
    worker = Worker(function, launcher=launcher)
    try:
        outcome = await worker.invoke(event({}))
    finally:
        await worker.stop()
    assert outcome.ok and json.loads(outcome.payload) == "fine"
    assert worker.launch_kind == "spawn"


def vendor(source: Path, name: str, code: str) -> None:
    """A package installed into the source directory (`pip install -t .`): it has a dist-info."""
    (source / name).mkdir(parents=True)
    (source / name / "__init__.py").write_text(textwrap.dedent(code))
    (source / f"{name}-1.0.dist-info").mkdir()
    (source / f"{name}-1.0.dist-info" / "top_level.txt").write_text(f"{name}\n")


async def test_vendored_packages_stay_warm_and_ones_starting_threads_are_left_to_children(
    tmp_path: Path, fork_launcher: Callable[..., ForkLauncher]
) -> None:
    source = tmp_path / "src"
    vendor(source, "vendored_lib", "VALUE = 42\n")
    vendor(
        source,
        "threaded_lib",
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,), daemon=True, name="threaded_lib").start()
        """,
    )
    code = """
        import os, sys, threading
        WARM = "vendored_lib" in sys.modules
        import vendored_lib, threaded_lib

        def handler(event, context):
            return {"warm": WARM, "value": vendored_lib.VALUE, "ppid": os.getppid(),
                    "threads": sorted(t.name for t in threading.enumerate())}
    """
    function = make_function(source, code)
    launcher = fork_launcher(function)
    assert await launcher.start(), launcher.note  # the first parent tried threaded_lib, then went without
    assert launcher.kind == "fork" and "threaded_lib" in (launcher.note or "")
    server_pid = launcher.server.pid if launcher.server else 0
    assert len(os.listdir(f"/proc/{server_pid}/task")) == 1  # the parent that serves has one thread
    worker = Worker(function, launcher=launcher)
    try:
        outcome = await worker.invoke(event({}))
    finally:
        await worker.stop()
    assert outcome.ok, outcome.payload
    body = json.loads(outcome.payload)
    assert body["warm"] is True and body["value"] == 42  # vendored, so preloaded
    assert body["ppid"] == server_pid
    assert body["threads"] == ["MainThread", "threaded_lib"]  # the child started its own
    # the child reported threaded_lib as imported: it is known to start threads, so no restart
    await asyncio.sleep(0)
    assert launcher.info().restarting is False and launcher.restarts == 0
