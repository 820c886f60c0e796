"""Whether a changed file holds a whole save yet (devserver/reload/whole_files.py), and the watcher's wait for
a save caught mid-write: one callback, once the writer is done, with the whole file to read; and a
bounded wait when a file stays open or empty. The end-to-end case, against a real dev server with
invocations in between, is tests/test_partial_saves.py."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from devserver.config import AppConfig, load_config
from devserver.reload import whole_files
from devserver.reload.watcher import Watcher
from devserver.reload.whole_files import FileLook, open_for_writing, why_not_whole
from tests.lambda_fixtures import async_wait_until

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lease probe is Linux's")
GOOD = "def handler(event, context):\n    return {'ok': True}\n"


def judge(path: Path, **kw: object) -> str | None:
    options: dict[str, object] = {"before": None, "known_size": None, "added": False}
    options.update({"now_ns": time.time_ns(), **kw})
    return why_not_whole(path, FileLook.of(path), **options)  # type: ignore[arg-type]


@linux
def test_a_file_open_for_writing_is_not_whole_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(GOOD)
    assert open_for_writing(path) is False
    assert judge(path) is None
    with path.open("w") as f:
        f.write(GOOD[:10])
        f.flush()
        assert open_for_writing(path) is True
        assert judge(path) == "open for writing"
        with path.open("rb"):  # a reader does not count
            assert open_for_writing(path) is True
    assert open_for_writing(path) is False
    with path.open("rb"):
        assert open_for_writing(path) is False
    assert judge(path) is None


def test_an_emptied_python_file_waits_a_new_or_known_empty_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text("")
    assert judge(path) == "emptied"  # modified, and we never saw it empty
    assert judge(path, known_size=120) == "emptied"
    assert judge(path, known_size=0) is None  # it was empty at the last reload: nothing was cut
    assert judge(path, added=True) is None  # created empty: nothing to wait for
    data = tmp_path / "data.json"
    data.write_text("")
    assert judge(data) is None  # only Python sources: an empty data file may be meant


def test_a_file_still_changing_between_two_looks_is_not_whole(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(GOOD)
    first = FileLook.of(path)
    assert first is not None
    path.write_text(GOOD + "# more\n")
    assert judge(path, before=first) == "still changing"
    assert judge(path, before=FileLook.of(path)) is None
    assert judge(tmp_path / "gone.py") is None  # nothing to read: the reload says so itself


def test_without_the_probe_recent_writes_and_unparsable_sources_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whole_files, "open_for_writing", lambda path: None)  # not Linux, not ours...
    path = tmp_path / "app.py"
    path.write_text(GOOD)
    look = FileLook.of(path)
    assert look is not None
    just_now = look.mtime_ns + whole_files.QUIET_NS // 2
    a_while_ago = look.mtime_ns + whole_files.QUIET_NS
    assert judge(path, now_ns=just_now) == "written just now"
    assert judge(path, now_ns=a_while_ago) is None
    path.write_text(GOOD[:20])  # cut mid-statement: a save between two chunks
    look = FileLook.of(path)
    assert look is not None
    assert judge(path, now_ns=look.mtime_ns + whole_files.QUIET_NS) == "does not parse yet"
    # a syntax error that stays: the developer's own, reported once it has been still for a while
    assert judge(path, now_ns=look.mtime_ns + whole_files.RECENT_NS) is None


# -- the watcher -------------------------------------------------------------------------------


def write_app(root: Path) -> AppConfig:
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text(GOOD)
    (root / "livelambda.toml").write_text(
        textwrap.dedent("""
        [functions.fn]
        handler = "app.handler"
        source = "src"
        """)
    )
    return load_config(root)


class Reloads:
    """The watcher's callback: what app.py held at each call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[str] = []
        self.queue: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, functions: set[str], config_changed: bool) -> None:
        text = self.path.read_text()
        self.seen.append(text)
        self.queue.put_nowait(text)

    async def next(self) -> str:
        return await asyncio.wait_for(self.queue.get(), 10)


@pytest.fixture
async def watching(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[tuple[Watcher, Reloads]]]]:
    started: list[tuple[Watcher, asyncio.Task[None]]] = []

    async def start(**options: float) -> tuple[Watcher, Reloads]:
        app = write_app(tmp_path)
        reloads = Reloads(tmp_path / "src" / "app.py")
        watcher = Watcher(app, on_change=reloads, **options)  # type: ignore[arg-type]
        task = asyncio.ensure_future(watcher.run())
        started.append((watcher, task))
        await watcher.wait_watching()
        return watcher, reloads

    yield start
    for watcher, task in started:
        await watcher.close()
        await asyncio.wait_for(task, 10)


async def sentinel_reload(watcher: Watcher, reloads: Reloads, text: str) -> None:
    """Save `text` at once and wait for its reload: every earlier change has been reported by then."""
    reloads.path.write_text(text)
    while await reloads.next() != text:
        pass


@linux
async def test_a_save_caught_mid_write_reloads_once_when_its_writer_is_done(
    watching: Callable[..., Awaitable[tuple[Watcher, Reloads]]],
) -> None:
    watcher, reloads = await watching()
    path = reloads.path
    new = GOOD.replace("True", "'v2'")
    for cut in (0, 12, new.index("    return")):  # truncated only; mid-line; at a line boundary
        before = len(reloads.seen)
        with path.open("w") as f:
            f.write(new[:cut])
            f.flush()
            # the watcher has seen the half-written file, and waits
            await async_wait_until(lambda: path in watcher.waiting, what="the watcher waits for the save")
            assert watcher.waiting[path] == "open for writing"
            assert len(reloads.seen) == before
            f.write(new[cut:])
        assert await reloads.next() == new
        # the last write's event joined that reload: the next reload is the sentinel's, nothing between
        await sentinel_reload(watcher, reloads, GOOD + f"# {cut}\n")
        assert reloads.seen[before:] == [new, GOOD + f"# {cut}\n"]
        assert watcher.waiting == {}


async def test_an_emptied_file_waits_for_its_content(
    watching: Callable[..., Awaitable[tuple[Watcher, Reloads]]],
) -> None:
    watcher, reloads = await watching()
    path = reloads.path
    before = len(reloads.seen)
    path.write_text("")  # truncated and closed: the content comes in a second open
    await async_wait_until(lambda: watcher.waiting.get(path) == "emptied", what="the watcher waits")
    with path.open("a") as f:
        f.write(GOOD + "# back\n")
    assert await reloads.next() == GOOD + "# back\n"
    assert reloads.seen[before:] == [GOOD + "# back\n"]


@linux
async def test_the_wait_is_bounded(
    watching: Callable[..., Awaitable[tuple[Watcher, Reloads]]], caplog: pytest.LogCaptureFixture
) -> None:
    watcher, reloads = await watching(whole_wait_s=0.3)
    path = reloads.path
    with caplog.at_level(logging.WARNING, logger="livelambda.watcher"), path.open("w") as f:
        f.write(GOOD[:12])
        f.flush()
        # a program keeps it open: after the bound, what it holds is reloaded, and the log says why
        assert await reloads.next() == GOOD[:12]
        assert "app.py open for writing" in caplog.text
    # emptied on purpose: reloaded after the bound as well, and once known empty, at once
    path.write_text("")
    while await reloads.next() != "":
        pass
    os.utime(path)
    assert await reloads.next() == ""
    assert watcher.waiting == {}
