"""The runner: generations of code, hot reload with draining, broken saves and their recovery, Lambda's
semantics with forked workers, the app-level Runner (environment from the stub, config reloads) and a
clean shutdown. Real processes throughout."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from devserver.config import AppConfig, FunctionConfig, load_config
from devserver.reload.generations import FunctionRunner, Runner, UnknownFunction
from devserver.runtime import InvocationRequest
from devserver.status import FunctionStatus
from tests.lambda_fixtures import MISBEHAVING, async_wait_until, process_state

CODE = """
    import json, os, sys, time
    from pathlib import Path

    VERSION = "v1"

    def handler(event, context):
        if event.get("mark"):
            Path(event["mark"]).write_text(VERSION)
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("exit") is not None:
            os._exit(event["exit"])
        env = {k: os.environ.get(k) for k in event.get("env", [])}
        return {"version": VERSION, "pid": os.getpid(), "env": env}
"""


def event(value: object, **fields: Any) -> InvocationRequest:
    return InvocationRequest(payload=json.dumps(value).encode(), **fields)


def write_code(source: Path, version: str, *, module: str = "app", code: str = CODE) -> None:
    source.mkdir(parents=True, exist_ok=True)
    (source / f"{module}.py").write_text(textwrap.dedent(code).replace('"v1"', json.dumps(version)))


def make_function(source: Path, *, timeout: float = 10.0, name: str = "fn") -> FunctionConfig:
    write_code(source, "v1")
    return FunctionConfig(
        name=name,
        handler="app.handler",
        source=source,
        python=Path(sys.executable),
        timeout=timeout,
        environment={"GREETING": "from-config"},
    )


@pytest.fixture
async def make_runner() -> AsyncIterator[Callable[..., FunctionRunner]]:
    """make_runner(function, **FunctionRunner options); every runner is closed after the test."""
    runners: list[FunctionRunner] = []

    def make(function: FunctionConfig, **options: Any) -> FunctionRunner:
        runner = FunctionRunner(function, **options)
        runners.append(runner)
        return runner

    yield make
    await asyncio.gather(*(r.close() for r in runners))


def version(outcome: Any) -> str:
    assert outcome.status == "ok", outcome.payload
    return json.loads(outcome.payload)["version"]


def descendants(root: int) -> set[int]:
    """Live (not zombie) processes below `root`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.parametrize("launcher", ["fork", "spawn"])
async def test_edit_reload_and_the_next_invocation_runs_the_new_code(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner], launcher: str
) -> None:
    function = make_function(tmp_path / "src")
    runner = make_runner(function, launcher=launcher)
    await runner.start()
    first = await runner.invoke(event({}))
    assert version(first) == "v1" and first.generation == 1 and first.launcher == launcher
    assert first.cold  # the warm worker started ahead of demand serves its first invocation
    assert not (await runner.invoke(event({}))).cold
    for n in (2, 3, 4):  # same size, within the same second: a stale .pyc would show the old code
        write_code(function.source, f"v{n}")
        generation = runner.reload("saved")
        outcome = await runner.invoke(event({}))  # at once: waits for the new generation's worker
        assert version(outcome) == f"v{n}" and outcome.generation == generation == n
        assert outcome.launcher == launcher
    status = runner.status()
    assert status.generation == 4 and status.last_reload_reason == "saved"
    assert status.launcher == launcher
    assert [(w.generation, w.state) for w in status.workers] == [(4, "idle")]


async def test_an_invocation_in_flight_finishes_on_the_old_code_then_its_worker_exits(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner]
) -> None:
    function = make_function(tmp_path / "src")
    runner = make_runner(function)
    await runner.start()
    mark = tmp_path / "running"
    slow = asyncio.ensure_future(runner.invoke(event({"mark": str(mark), "sleep": 1.5})))
    await async_wait_until(mark.exists, what="the slow invocation running")
    old_pid = next(w.pid for w in runner.status().workers if w.state == "busy")
    write_code(function.source, "v2")
    runner.reload()
    fresh = await runner.invoke(event({}))
    assert version(fresh) == "v2" and fresh.generation == 2
    assert not slow.done()  # the old worker was not killed for the reload
    states = {w.pid: (w.state, w.generation) for w in runner.status().workers}
    assert states[old_pid] == ("draining", 1)
    finished = await slow
    assert version(finished) == "v1" and finished.generation == 1
    await async_wait_until(lambda: process_state(old_pid) is None, what="the drained worker gone")
    assert [w.generation for w in runner.status().workers] == [2]
    # the drained worker is not reused: the next invocation still runs v2
    assert version(await runner.invoke(event({}))) == "v2"


BROKEN = {
    "syntax": (
        "def handler(event, context)\n    return 1\n",
        "Runtime.UserCodeSyntaxError",
        "Syntax error in module 'app'",
    ),
    "import": (
        "import no_such_module_anywhere\ndef handler(event, context):\n    return 1\n",
        "Runtime.ImportModuleError",
        "Unable to import module 'app': No module named 'no_such_module_anywhere'",
    ),
    "handler": (
        "def other(event, context):\n    return 1\n",
        "Runtime.HandlerNotFound",
        "Handler 'handler' missing on module 'app'",
    ),
    "raises": (
        "raise RuntimeError('config missing')\n",
        "RuntimeError",
        "config missing",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
async def test_a_broken_save_gives_lambdas_error_and_the_next_good_save_recovers(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner], kind: str
) -> None:
    code, error_type, message = BROKEN[kind]
    function = make_function(tmp_path / "src")
    reloads: list[tuple[str, int, str | None]] = []
    runner = make_runner(function, on_reload=lambda *args: reloads.append(args))
    await runner.start()
    assert await runner.wait_loaded(30) is None
    (function.source / "app.py").write_text(code)
    generation = runner.reload()
    error = await runner.wait_loaded(30)  # known from the warm worker, before any invocation
    assert error is not None and error.error_type == error_type and error.generation == generation
    assert error.message.startswith(message) and error.summary.startswith(f"{error_type}: {message}")
    assert "\n" not in error.summary
    status = runner.status()
    assert status.last_reload_error.startswith(error.summary)
    assert status.last_reload_error_type == error_type
    assert reloads == [("fn", generation, error.summary)]
    for _ in range(2):  # every invocation that arrives gets it, each after its own init attempt
        outcome = await runner.invoke(event({}))
        assert (outcome.status, outcome.error_type) == ("init_error", error_type), outcome.payload
        assert json.loads(outcome.payload)["errorMessage"].startswith(message)
        assert outcome.generation == generation
    write_code(function.source, "v-fixed")
    fixed = runner.reload()
    assert await runner.wait_loaded(30) is None
    assert runner.status().last_reload_error is None
    assert reloads[-1] == ("fn", fixed, None)
    assert version(await runner.invoke(event({}))) == "v-fixed"


async def test_the_first_invocation_of_a_broken_generation_without_prewarm_records_the_error(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner]
) -> None:
    function = make_function(tmp_path / "src")
    runner = make_runner(function, prewarm=False)
    await runner.start()
    assert runner.status().workers == ()  # nothing started ahead of demand
    (function.source / "app.py").write_text(BROKEN["import"][0])
    runner.reload()
    outcome = await runner.invoke(event({}))
    assert outcome.error_type == "Runtime.ImportModuleError"
    assert runner.last_reload_error is not None
    assert runner.last_reload_error.error_type == "Runtime.ImportModuleError"


@pytest.mark.parametrize(
    ("name", "payload", "status", "error_type", "message_end"),
    MISBEHAVING,
)
async def test_hang_exit_and_segfault_through_the_runner(
    lambda_app: AppConfig,
    make_runner: Callable[..., FunctionRunner],
    name: str,
    payload: dict[str, Any],
    status: str,
    error_type: str,
    message_end: str,
) -> None:
    runner = make_runner(lambda_app.functions[name])
    await runner.start()
    outcome = await runner.invoke(event(payload))
    assert (outcome.status, outcome.error_type, outcome.launcher) == (status, error_type, "fork")
    assert json.loads(outcome.payload)["errorMessage"].endswith(message_end)
    # a fresh worker follows, and the runner is not stuck
    follow = await runner.invoke(event({"s": 0, "code": 0}))
    assert follow.worker_id != outcome.worker_id and follow.cold
    assert runner.status().launcher == "fork"


async def test_ten_megabytes_of_output_through_the_runner(
    lambda_app: AppConfig, make_runner: Callable[..., FunctionRunner]
) -> None:
    runner = make_runner(lambda_app.functions["noisy"], log_limit=64 * 1024)
    await runner.start()
    outcome = await runner.invoke(event({"mb": 10}))
    assert outcome.status == "ok" and outcome.launcher == "fork"
    assert outcome.logs_cut_bytes > 9 * 1024 * 1024 and outcome.logs.rstrip().endswith("the end")


async def test_the_real_deadline_caps_the_function_timeout(
    lambda_app: AppConfig, make_runner: Callable[..., FunctionRunner]
) -> None:
    runner = make_runner(lambda_app.functions["sleepy"])  # timeout 30 s
    await runner.start()
    started = time.monotonic()
    outcome = await runner.invoke(event({"s": 30}, deadline_ms=int(time.time() * 1000) + 500))
    assert outcome.status == "timeout" and outcome.error_type == "Sandbox.Timedout"
    assert time.monotonic() - started < 25  # far from the function's own 30 s


async def test_concurrent_invocations_get_their_own_workers(
    lambda_app: AppConfig, make_runner: Callable[..., FunctionRunner], tmp_path: Path
) -> None:
    runner = make_runner(lambda_app.functions["rendezvous"])
    await runner.start()
    room = tmp_path / "room"
    room.mkdir()
    outcomes = await asyncio.gather(*(runner.invoke(event({"dir": str(room), "n": 3})) for _ in range(3)))
    assert all(o.ok for o in outcomes), [o.payload for o in outcomes]
    assert len({json.loads(o.payload)["pid"] for o in outcomes}) == 3
    assert all(o.launcher == "fork" for o in outcomes)
    assert sorted(w.state for w in runner.status().workers) == ["idle"] * 3


async def test_status_describes_the_function_and_its_workers(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner]
) -> None:
    function = make_function(tmp_path / "src", timeout=7)
    runner = make_runner(function)
    assert runner.status().workers == ()
    await runner.start()
    await runner.wait_loaded(30)
    status = runner.status()
    assert {k: getattr(status, k) for k in ("name", "handler", "source", "timeout", "generation")} == {
        "name": "fn",
        "handler": "app.handler",
        "source": str(function.source),
        "timeout": 7.0,
        "generation": 1,
    }
    assert status.python == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert status.launcher == "fork" and status.launcher_note is None
    assert status.last_reload_at is None and status.last_reload_error is None
    [worker] = status.workers
    assert worker.state == "idle" and worker.generation == 1 and worker.invocations == 0
    assert worker.pid and worker.id
    mark = tmp_path / "busy"
    busy = asyncio.ensure_future(runner.invoke(event({"mark": str(mark), "sleep": 1})))
    await async_wait_until(mark.exists, what="the invocation running")
    assert [w.state for w in runner.status().workers] == ["busy"]
    before = time.time()
    runner.reload()
    states = sorted((w.generation, w.state) for w in runner.status().workers)
    assert states == [(1, "draining"), (2, "starting")]
    assert runner.status().last_reload_at >= before
    await busy
    await runner.wait_loaded(30)
    assert [(w.generation, w.state) for w in runner.status().workers] == [(2, "idle")]
    TypeAdapter(FunctionStatus).dump_json(runner.status())  # all of it is JSON for the dashboard


async def test_forkserver_per_generation_policy_also_works(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner]
) -> None:
    function = make_function(tmp_path / "src")
    runner = make_runner(function, forkserver="per_generation")
    await runner.start()
    assert version(await runner.invoke(event({}))) == "v1"
    first = runner.status().forkserver.pid
    write_code(function.source, "v2")
    runner.reload()
    outcome = await runner.invoke(event({}))
    assert version(outcome) == "v2" and outcome.launcher == "fork"
    assert runner.status().forkserver.pid not in (None, first)


async def test_a_runner_whose_forkserver_cannot_start_spawns_and_says_why(
    tmp_path: Path, make_runner: Callable[..., FunctionRunner]
) -> None:
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$1" in *forkserver.py) echo "forkserver refused" >&2; exit 3;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    base = make_function(tmp_path / "src")
    function = FunctionConfig(name="fn", handler=base.handler, source=base.source, python=python)
    runner = make_runner(function)
    await runner.start()
    outcome = await runner.invoke(event({}))
    assert version(outcome) == "v1" and outcome.launcher == "spawn"
    status = runner.status()
    assert status.launcher == "spawn" and "forkserver refused" in status.launcher_note


# -- the app-level Runner --------------------------------------------------------------------------


def write_app(root: Path, toml: str) -> AppConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "livelambda.toml").write_text(textwrap.dedent(toml))
    return load_config(root)


APP = """
    app = "reloads"
    region = "eu-west-1"

    [functions.one]
    handler = "app.handler"
    source = "one"
    environment = { GREETING = "from-config" }

    [functions.two]
    handler = "app.handler"
    source = "two"
"""


@pytest.fixture
async def runner_factory() -> AsyncIterator[Callable[..., Runner]]:
    runners: list[Runner] = []

    def make(app: AppConfig, **options: Any) -> Runner:
        runner = Runner(app, **options)
        runners.append(runner)
        return runner

    yield make
    await asyncio.gather(*(r.close() for r in runners))


async def test_runner_invokes_by_name_and_applies_the_real_environment_to_the_next_generation(
    tmp_path: Path, runner_factory: Callable[..., Runner]
) -> None:
    write_code(tmp_path / "one", "one-v1")
    write_code(tmp_path / "two", "two-v1")
    app = write_app(tmp_path, APP)
    runner = runner_factory(app)
    await runner.start()
    asked = {"env": ["GREETING", "FROM_AWS", "AWS_REGION"]}
    first = await runner.invoke("one", event(asked))
    assert version(first) == "one-v1"
    seen = json.loads(first.payload)["env"]
    assert seen == {"GREETING": "from-config", "FROM_AWS": None, "AWS_REGION": "eu-west-1"}
    assert version(await runner.invoke("two", event({}))) == "two-v1"
    with pytest.raises(UnknownFunction):
        await runner.invoke("three", event({}))
    # the stub's hello: the deployed function's environment (the configured one still wins)
    real = {"FROM_AWS": "yes", "GREETING": "from-aws", "AWS_REGION": "us-west-2"}
    assert runner.set_function_env("one", real) is True
    assert runner.set_function_env("one", real) is False  # the same again: nothing to do
    after = await runner.invoke("one", event(asked))
    assert after.generation == 2
    seen = json.loads(after.payload)["env"]
    assert seen == {"GREETING": "from-config", "FROM_AWS": "yes", "AWS_REGION": "eu-west-1"}
    # reload_function: the next generation
    write_code(tmp_path / "two", "two-v2")
    assert await runner.reload_function("two") == 2
    assert version(await runner.invoke("two", event({}))) == "two-v2"
    assert [s.name for s in runner.status()] == ["one", "two"]


async def test_reload_config_adds_removes_and_changes_functions(
    tmp_path: Path, runner_factory: Callable[..., Runner]
) -> None:
    write_code(tmp_path / "one", "one-v1")
    write_code(tmp_path / "two", "two-v1")
    runner = runner_factory(write_app(tmp_path, APP))
    await runner.start()
    await runner.invoke("two", event({}))
    two_pids = {w.pid for s in runner.status() if s.name == "two" for w in s.workers}
    two_pids.add(runner.functions["two"].status().forkserver.pid)
    write_code(tmp_path / "three", "three-v1")
    new = write_app(
        tmp_path,
        """
        [functions.one]
        handler = "app.handler"
        source = "one"
        timeout = 9
        environment = { GREETING = "from-config" }

        [functions.three]
        handler = "app.handler"
        source = "three"
        """,
    )
    changes = await runner.reload_config(new)
    assert changes == {"added": ["three"], "removed": ["two"], "changed": ["one"]}
    assert [s.name for s in runner.status()] == ["one", "three"]
    one = runner.functions["one"].status()
    assert one.timeout == 9.0 and one.generation == 2
    assert version(await runner.invoke("three", event({}))) == "three-v1"
    with pytest.raises(UnknownFunction):
        await runner.invoke("two", event({}))
    for pid in two_pids:
        await async_wait_until(lambda pid=pid: process_state(pid) is None, what=f"{pid} of 'two' gone")


async def test_close_leaves_no_process_behind(tmp_path: Path, runner_factory: Callable[..., Runner]) -> None:
    before = descendants(os.getpid())
    write_code(tmp_path / "one", "one-v1")
    write_code(tmp_path / "two", "two-v1")
    runner = runner_factory(write_app(tmp_path, APP))
    await runner.start()
    mark = tmp_path / "running"
    busy = asyncio.ensure_future(runner.invoke("one", event({"mark": str(mark), "sleep": 30})))
    await async_wait_until(mark.exists, what="an invocation in flight")
    await asyncio.gather(*(runner.invoke("two", event({})) for _ in range(3)))
    runner.functions["two"].reload()  # a generation starting while we close
    assert descendants(os.getpid()) - before  # forkservers and workers are running
    await runner.close()
    outcome = await busy
    assert outcome.status == "crashed"  # closed under it: it ends, it does not hang
    assert descendants(os.getpid()) - before == set()


async def test_close_right_after_start_leaves_nothing(tmp_path: Path) -> None:
    before = descendants(os.getpid())
    runner = FunctionRunner(make_function(tmp_path / "src"))
    starting = asyncio.ensure_future(runner.start())
    await asyncio.sleep(0)
    await runner.close()
    await asyncio.gather(starting, return_exceptions=True)
    await async_wait_until(lambda: descendants(os.getpid()) - before == set(), what="nothing left")


async def test_an_interpreter_without_awslambdaric_gets_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import venv

    venv.EnvBuilder(with_pip=False).create(tmp_path / ".venv")
    (tmp_path / "f.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "livelambda.toml").write_text(
        'app = "noric"\n[functions.f]\nhandler = "f.handler"\npython = ".venv"\n'
    )
    reloads: list[tuple[str, int, str | None]] = []
    runner = Runner(load_config(tmp_path), on_reload=lambda *a: reloads.append(a))
    try:
        await runner.start()
        outcome = await runner.invoke("f", InvocationRequest(b"{}"))
        assert outcome.status == "init_error"
        error = json.loads(outcome.payload)
        assert error["errorType"] == "Livelambda.RuntimeMissing"
        assert "pip install awslambdaric" in error["errorMessage"]
        assert reloads and "RuntimeMissing" in (reloads[0][2] or "")
        # Installing it (here: pointing the venv at ours) is noticed without a restart.
        ours = subprocess.run(
            [
                sys.executable,
                "-c",
                "import awslambdaric, os; print(os.path.dirname(os.path.dirname(awslambdaric.__file__)))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        site = next((tmp_path / ".venv" / "lib").glob("python*/site-packages"))
        (site / "ours.pth").write_text(ours + "\n")
        outcome = await runner.invoke("f", InvocationRequest(b"{}"))
        assert outcome.status == "ok", outcome.payload
    finally:
        await runner.close()
