"""The watcher: a save in a source directory reaches the functions whose code lives there, noise does
not, a configuration change is reported as such, and the watches follow the configuration."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from devserver.config import AppConfig, load_config
from devserver.reload.watcher import Watcher, ignored, plan_watches

APP = """
    [functions.one]
    handler = "a.handler"
    source = "shared"

    [functions.two]
    handler = "b.handler"
    source = "shared"

    [functions.three]
    handler = "c.handler"
    source = "other"
"""

Change = tuple[frozenset[str], bool]


def write_app(root: Path, toml: str = APP, dirs: tuple[str, ...] = ("shared", "other")) -> AppConfig:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "livelambda.toml").write_text(textwrap.dedent(toml))
    return load_config(root)


class Seen:
    """The watcher's callback: every call lands in a queue (an async callback, as the dev server's)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Change] = asyncio.Queue()

    async def __call__(self, functions: set[str], config_changed: bool) -> None:
        await asyncio.sleep(0)
        self.queue.put_nowait((frozenset(functions), config_changed))

    async def next(self) -> Change:
        return await asyncio.wait_for(self.queue.get(), 10)

    async def until(self, wanted: Callable[[Change], bool]) -> list[Change]:
        """Every change up to and including the first one `wanted` accepts."""
        got: list[Change] = []
        while True:
            change = await self.next()
            got.append(change)
            if wanted(change):
                return got


@pytest.fixture
async def watch() -> AsyncIterator[Callable[[AppConfig], Awaitable[tuple[Watcher, Seen]]]]:
    started: list[tuple[Watcher, asyncio.Task[None]]] = []

    async def start(app: AppConfig) -> tuple[Watcher, Seen]:
        seen = Seen()
        watcher = Watcher(app, on_change=seen)
        task = asyncio.ensure_future(watcher.run())
        started.append((watcher, task))
        await watcher.wait_watching()
        return watcher, seen

    yield start
    for watcher, task in started:
        await watcher.close()
        await asyncio.wait_for(task, 10)


async def test_a_save_reaches_every_function_of_its_directory_and_no_other(tmp_path: Path, watch) -> None:
    _, seen = await watch(write_app(tmp_path))
    (tmp_path / "shared" / "a.py").write_text("def handler(e, c): return 1\n")
    assert await seen.next() == (frozenset({"one", "two"}), False)
    (tmp_path / "other" / "pkg").mkdir()
    (tmp_path / "other" / "pkg" / "deep.py").write_text("X = 1\n")
    changes = await seen.until(lambda c: c[0] == {"three"})
    assert all(c == (frozenset({"three"}), False) for c in changes)


async def test_noise_is_ignored(tmp_path: Path, watch) -> None:
    _, seen = await watch(write_app(tmp_path))
    shared = tmp_path / "shared"
    for rel in (
        "__pycache__/a.cpython-311.pyc",
        "a.pyc",
        ".a.py.swp",
        "a.py~",
        "4913",
        ".#a.py",
        "#a.py#",
        "a.py.___jb_tmp___",
        ".git/HEAD",
        ".venv/lib/python3.12/site-packages/x.py",
        "node_modules/x/index.js",
        ".livelambda/cloud.json",
        ".mypy_cache/x.json",
        ".DS_Store",
    ):
        path = shared / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("noise")
    # a sentinel in another directory: everything written before it has been seen by the time it is
    (tmp_path / "other" / "c.py").write_text("def handler(e, c): return 3\n")
    changes = await seen.until(lambda c: "three" in c[0])
    assert all("one" not in functions for functions, _ in changes), changes


async def test_a_configuration_change_is_reported_as_such(tmp_path: Path, watch) -> None:
    _, seen = await watch(write_app(tmp_path))
    config = tmp_path / "livelambda.toml"
    config.write_text(config.read_text() + "\n# edited\n")
    assert await seen.next() == (frozenset(), True)
    # an editor that saves by writing a temporary file and renaming it over the original
    temporary = tmp_path / ".livelambda.toml.tmp"
    temporary.write_text(config.read_text() + "\n# again\n")
    os.replace(temporary, config)
    changes = await seen.until(lambda c: c[1])
    assert all(functions == frozenset() for functions, _ in changes)
    # other files beside the configuration concern nobody
    (tmp_path / "README.md").write_text("hello")
    (tmp_path / "other" / "c.py").write_text("X = 1\n")
    assert await seen.until(lambda c: c[0] == {"three"}) == [(frozenset({"three"}), False)]


async def test_a_source_directory_holding_the_configuration_and_a_virtualenv(tmp_path: Path, watch) -> None:
    toml = """
        [functions.root]
        handler = "app.handler"

        [functions.sub]
        handler = "x.handler"
        source = "sub"
    """
    site = tmp_path / ".venv" / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    app = write_app(tmp_path, toml, dirs=("sub", "pkg"))
    plan = plan_watches(app)
    assert tmp_path in plan.flat  # not recursively: the virtualenv below it is not watched at all
    assert tmp_path / "pkg" in plan.recursive and tmp_path / "sub" in plan.recursive
    assert not any(p.is_relative_to(tmp_path / ".venv") for p in plan.recursive)
    _, seen = await watch(app)
    (tmp_path / "app.py").write_text("def handler(e, c): return 1\n")
    assert await seen.next() == (frozenset({"root"}), False)
    (tmp_path / "sub" / "x.py").write_text("def handler(e, c): return 2\n")
    assert await seen.next() == (frozenset({"root", "sub"}), False)
    (tmp_path / "livelambda.toml").write_text((tmp_path / "livelambda.toml").read_text() + "\n")
    assert await seen.next() == (frozenset(), True)  # the configuration, not code
    (site / "boto3.py").write_text("noise")
    # a directory created after the start is watched too (an empty one reloads nothing): a file in it
    # is reported, whether written before its watch is in place (found there) or after
    (tmp_path / "newpkg").mkdir()
    (tmp_path / "newpkg" / "mod.py").write_text("X = 1\n")
    assert await seen.next() == (frozenset({"root"}), False)


async def test_update_watches_what_the_new_configuration_names(tmp_path: Path, watch) -> None:
    watcher, seen = await watch(write_app(tmp_path))
    (tmp_path / "third").mkdir()
    new = write_app(
        tmp_path,
        """
        [functions.one]
        handler = "a.handler"
        source = "shared"

        [functions.four]
        handler = "d.handler"
        source = "third"
        """,
    )
    await seen.until(lambda c: c[1])  # the configuration file we just wrote
    watcher.update(new)
    await _wait_for_plan(watcher, tmp_path / "third")
    (tmp_path / "third" / "d.py").write_text("def handler(e, c): return 4\n")
    assert await seen.until(lambda c: bool(c[0])) == [(frozenset({"four"}), False)]
    (tmp_path / "other" / "c.py").write_text("X = 1\n")  # no longer a function's directory
    (tmp_path / "shared" / "a.py").write_text("X = 1\n")
    changes = await seen.until(lambda c: "one" in c[0])
    assert all("three" not in functions for functions, _ in changes)


async def _wait_for_plan(watcher: Watcher, directory: Path) -> None:
    for _ in range(500):
        if directory in watcher.plan.recursive and watcher._watching.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{directory} never watched")


async def test_close_ends_run(tmp_path: Path) -> None:
    seen = Seen()
    watcher = Watcher(write_app(tmp_path), on_change=seen)
    task = asyncio.ensure_future(watcher.run())
    await watcher.wait_watching()
    await watcher.close()
    await asyncio.wait_for(task, 10)
    assert task.done() and task.exception() is None


async def test_a_failing_callback_does_not_stop_the_watcher(tmp_path: Path) -> None:
    calls: list[set[str]] = []

    def callback(functions: set[str], config_changed: bool) -> None:  # a plain function works too
        calls.append(functions)
        if len(calls) == 1:
            raise RuntimeError("the dev server had a bad moment")

    watcher = Watcher(write_app(tmp_path), on_change=callback)
    task = asyncio.ensure_future(watcher.run())
    try:
        await watcher.wait_watching()
        (tmp_path / "other" / "c.py").write_text("X = 1\n")
        for _ in range(500):
            if calls:
                break
            await asyncio.sleep(0.01)
        (tmp_path / "shared" / "a.py").write_text("X = 2\n")
        for _ in range(500):
            if any("one" in c for c in calls):
                break
            await asyncio.sleep(0.01)
        assert calls[0] == {"three"} and any(c == {"one", "two"} for c in calls[1:])
    finally:
        await watcher.close()
        await asyncio.wait_for(task, 10)


def test_ignored_names() -> None:
    for noise in (
        "__pycache__/x.pyc",
        "x.pyc",
        ".x.py.swp",
        ".x.py.swo",
        "x.py~",
        "4913",
        ".#x.py",
        "#x.py#",
        "x.py.___jb_old___",
        ".git/index",
        ".venv/bin/python",
        "venv/lib/x.py",
        "node_modules/a/b.js",
        "pkg/__pycache__/y.cpython-312.pyc",
        ".livelambda/cloud.json",
        "x.py.orig",
        "livelambda.egg-info/PKG-INFO",
    ):
        assert ignored(noise), noise
    for code in ("x.py", "pkg/y.py", "templates/page.html", "data.json", "pkg/swap.py", "venvy/x.py"):
        assert not ignored(code), code
