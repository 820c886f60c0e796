"""Watches every function's source directory and the configuration file, and says which functions a
change concerns (several functions may share a directory) and whether the configuration changed.

    watcher = Watcher(app, on_change=callback)   # callback(functions: set[str], config_changed: bool)
    task = asyncio.ensure_future(watcher.run())  # until close(); the callback may be async (awaited)
    await watcher.wait_watching()                # the watches are in place (tests, benchmarks)
    watcher.last_files                           # in the callback: the files that changed
    watcher.waiting                              # {path: why} while a save caught mid-write finishes
    watcher.update(new_app)                      # the configuration changed: watch what it names
    await watcher.close()

Latency: watchfiles with its defaults reports a save ~76 ms late; with `step=10` ms (the quiet time
that ends a batch) and `debounce=15` ms (the longest a batch waits) it is ~15 ms, at under 1% of a
core when idle.

Which changes reload (devserver/reload/watch_filter.py): Python sources and the data files shipped with them
(`[watch] include` / `exclude` in the configuration), never noise (bytecode, editor temporaries, VCS
directories, virtualenvs, `.livelambda`...), nor the file this process's output goes to, nor a data
file found open for writing by a handler (a worker: any descendant of this process) or by a process of
its group (`| tee out.txt`). A new directory is watched, and the files already in it count as changed.

Half-written files: an in-place save (truncate, then write) can end a batch before its write. A reload
waits, at most `whole_wait_s`, while a changed file is still open for writing or a Python file was just
emptied (devserver/reload/whole_files.py), and changes arriving meanwhile join it: a generation never loads a
file caught mid-write, and a save closed before its batch ended (nearly all) waits for nothing.

A directory that holds a virtualenv is not watched recursively as a whole (inotify would put a watch on
each of its thousands of directories): its files are watched directly, and each subdirectory that is
not ignored recursively. A new subdirectory re-plans the watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from devserver.config import AppConfig
from devserver.reload.watch_filter import (
    IGNORED_DIRS,
    ReloadFilter,
    held_for_writing,
    ignored,
    is_python,
    is_virtualenv,
    own_output_files,
)
from devserver.reload.whole_files import FileLook, why_not_whole

__all__ = ["IGNORED_DIRS", "WatchPlan", "Watcher", "ignored", "plan_watches"]

log = logging.getLogger("livelambda.watcher")
_NEW_DIR_FILES = 1000  # files of a new directory counted as changed, at most

ChangeCallback = Callable[[set[str], bool], "Awaitable[Any] | Any"]

DEFAULT_STEP_MS = 10
DEFAULT_DEBOUNCE_MS = 15
# How long a reload waits, at most, for a save caught mid-write to finish (devserver/reload/whole_files.py).
# An editor writes a file in milliseconds; a longer wait means a file held open by a program, or one
# emptied on purpose: reload what is there.
DEFAULT_WHOLE_WAIT_S = 1.0
_WHOLE_POLL_S = 0.005  # re-look at a file still being written (a stat and a lease probe: microseconds)
_JUDGED_FILES = 200  # of one batch (a checkout can change thousands): the rest are not waited for


@dataclass(frozen=True)
class WatchPlan:
    recursive: tuple[Path, ...]
    flat: tuple[Path, ...]  # watched without their subdirectories
    roots: tuple[Path, ...]  # what the plan covers: the sources and the config's directory, innermost first


def plan_watches(app: AppConfig) -> WatchPlan:
    """What to watch for `app`: its functions' source directories and its configuration file."""
    sources = sorted({Path(f.source).resolve() for f in app.functions.values()})
    config_dir = Path(app.path).resolve().parent
    recursive: set[Path] = set()
    flat: set[Path] = set()
    for source in sources:
        if not source.is_dir():
            continue
        try:
            entries = list(os.scandir(source))
        except OSError:
            continue
        if not any(_skipped_dir(e) for e in entries):
            recursive.add(source)
            continue
        flat.add(source)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not ignored(entry.name) and not _skipped_dir(entry):
                recursive.add(Path(entry.path))
    if config_dir.is_dir():
        flat.add(config_dir)
    recursive = {p for p in recursive if not any(q != p and p.is_relative_to(q) for q in recursive)}
    flat = {p for p in flat if p not in recursive and not any(p.is_relative_to(q) for q in recursive)}
    roots = tuple(sorted({*sources, config_dir}, key=lambda p: len(p.parts), reverse=True))
    return WatchPlan(tuple(sorted(recursive)), tuple(sorted(flat)), roots)


def _skipped_dir(entry: os.DirEntry[str]) -> bool:
    """A directory never watched: noise by name (.git, .venv...), or a virtualenv of any name."""
    if not entry.is_dir(follow_symlinks=False):
        return False
    return entry.name in IGNORED_DIRS or is_virtualenv(Path(entry.path))


class Watcher:
    def __init__(
        self,
        app: AppConfig,
        *,
        on_change: ChangeCallback,
        step_ms: int = DEFAULT_STEP_MS,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        force_polling: bool | None = None,
        whole_wait_s: float = DEFAULT_WHOLE_WAIT_S,
    ) -> None:
        self.on_change = on_change
        self.step_ms = step_ms
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.whole_wait_s = whole_wait_s
        self.plan = WatchPlan((), (), ())
        self.changes_seen = 0  # batches that concerned a function or the configuration
        self.last_files: tuple[Path, ...] = ()  # the files behind the latest callback
        self.waiting: dict[Path, str] = {}  # changed files a reload waits for, and why (whole_files.py)
        self._own_output = own_output_files()
        self._written: set[Path] = set()  # data files found open for writing by a worker or a kin
        self._sizes: dict[Path, int] = {}  # each judged file's size at its last reload
        self._app = app
        self._sources: dict[str, Path] = {}
        self._config = Path(app.path).resolve()
        self.filter = ReloadFilter((), self._config, app.watch)
        self._set_app(app)
        self._queue: asyncio.Queue[set[tuple[Change, str]]] = asyncio.Queue()
        self._groups: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
        self._watching = asyncio.Event()
        self._replan = asyncio.Event()
        self._closed = asyncio.Event()
        self._running = False

    def _set_app(self, app: AppConfig) -> None:
        self._app = app
        self._sources = {name: Path(f.source).resolve() for name, f in app.functions.items()}
        self._config = Path(app.path).resolve()
        self.filter = ReloadFilter(
            tuple(self._sources.values()), self._config, app.watch, own_output=self._own_output
        )

    # -- what a change means -------------------------------------------------------------------

    def classify(self, changes: Iterable[tuple[Change, str]]) -> tuple[list[Path], bool, list[Path]]:
        """(files that may change what a handler does, configuration changed, new directories)."""
        files: list[Path] = []
        config = False
        new_dirs: list[Path] = []
        for change, raw in changes:
            path = Path(raw)
            if path == self._config:
                config = True
            elif not self.filter(change, raw):
                continue
            elif change == Change.added and path.is_dir():
                new_dirs.append(path)
            elif not path.is_dir():
                files.append(path)
        return files, config, new_dirs

    def functions_of(self, files: Iterable[Path]) -> set[str]:
        """The functions whose source directory holds one of `files`."""
        files = list(files)
        return {name for name, src in self._sources.items() if any(f.is_relative_to(src) for f in files)}

    def _files_in(self, directories: Iterable[Path]) -> list[Path]:
        """What a new directory already holds (it may have been filled before its watch was set up),
        as far as it can reload anything."""
        found: list[Path] = []
        for directory in directories:
            for parent, dirs, names in os.walk(directory):
                dirs[:] = [d for d in dirs if self.filter(Change.added, os.path.join(parent, d))]
                for name in names:
                    path = os.path.join(parent, name)
                    if self.filter(Change.added, path):
                        found.append(Path(path))
                    if len(found) >= _NEW_DIR_FILES:
                        return found
        return found

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch and call `on_change` for every change that matters, until `close()`."""
        if self._running:
            raise RuntimeError("this watcher is already running")
        self._running = True
        try:
            await self._start_groups()
            while not self._closed.is_set():
                batch = await self._next_batch()
                if batch is None:
                    continue
                files, config = await self._relevant(batch)
                functions = self.functions_of(files)
                if functions or config:
                    files, config = await self._whole(batch, files, config)
                    functions = self.functions_of(files)
                if (functions or config) and not self._closed.is_set():
                    self.changes_seen += 1
                    self.last_files = tuple(sorted(set(files)))
                    await self._call(functions, config)
        finally:
            await self._stop_groups()
            self._running = False

    async def _relevant(self, batch: set[tuple[Change, str]]) -> tuple[list[Path], bool]:
        """(files whose change may change what a handler does, configuration changed)."""
        files, config, new_dirs = self.classify(batch)
        if any(d.parent in self.plan.flat for d in new_dirs):
            await self._start_groups()  # a directory watched without its subdirectories got one
        files += self._files_in(new_dirs)
        # A file our kin writes is not code (a save of code pays no /proc scan); once found,
        # it stays ignored.
        fresh = [f for f in files if not is_python(f) and f not in self._written]
        if fresh:
            self._written |= await asyncio.to_thread(held_for_writing, fresh)
        return [f for f in files if f not in self._written], config

    async def _whole(
        self, batch: set[tuple[Change, str]], files: list[Path], config: bool
    ) -> tuple[list[Path], bool]:
        """Wait while a changed file may not hold a whole save yet (devserver/reload/whole_files.py: open for
        writing, emptied, ...), at most `whole_wait_s`; changes that arrive meanwhile join this one
        (one reload, from the finished files). Returns the files and whether the configuration changed.

        No fixed re-check delay on every save: a save closed before its batch ended (nearly all) is
        judged whole at the first look, so reload latency stays as it was; only a save caught mid-write
        is polled, every `_WHOLE_POLL_S`, until its writer is done. Its last write's event reaches us a
        batch later: that is waited for too (two steps), so one save makes one reload, not a second one
        whose worker could meet the developer's next save half-written."""
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.whole_wait_s
        trailing_s = (2 * self.step_ms + 10) / 1000
        before: dict[Path, FileLook | None] = {}
        waited = False
        while True:
            added = {Path(p) for change, p in batch if change == Change.added}
            judged = sorted(set(files))[:_JUDGED_FILES] + ([self._config] if config else [])
            now_ns = time.time_ns()
            waiting: dict[Path, str] = {}
            for path in judged:
                look = FileLook.of(path)
                why = why_not_whole(
                    path, look, before=before.get(path), known_size=self._sizes.get(path),
                    added=path in added, now_ns=now_ns,
                )  # fmt: skip
                before[path] = look
                if why is not None:
                    waiting[path] = why
            self.waiting = waiting
            if self._closed.is_set() or loop.time() >= limit:
                break
            if waiting:
                waited, timeout = True, _WHOLE_POLL_S
            elif waited:
                waited, timeout = False, trailing_s
            else:
                break
            more = await self._next_change(timeout)
            if more:
                batch = batch | more
                more_files, more_config = await self._relevant(more)
                files = files + more_files
                config = config or more_config
        self.waiting = {}
        if waiting and not self._closed.is_set():
            log.warning(
                "reloading after waiting %.1f s for a save to finish: %s",
                self.whole_wait_s,
                "; ".join(f"{p.name} {why}" for p, why in sorted(waiting.items())),
            )
        for path, look in before.items():
            if look is not None:
                self._sizes[path] = look.size
        return files, config

    async def _next_change(self, timeout: float) -> set[tuple[Change, str]] | None:
        """The changes reported within `timeout` (None if none, or closed meanwhile)."""
        if self._queue.empty():
            get = asyncio.ensure_future(self._queue.get())
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait({get, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                if not get.done():
                    get.cancel()
            if not get.done() or get.cancelled():
                return None
            batch = get.result()
        else:
            batch = self._queue.get_nowait()
        while not self._queue.empty():
            batch |= self._queue.get_nowait()
        return batch

    async def _next_batch(self) -> set[tuple[Change, str]] | None:
        get = asyncio.ensure_future(self._queue.get())
        closed = asyncio.ensure_future(self._closed.wait())
        replan = asyncio.ensure_future(self._replan.wait())
        try:
            await asyncio.wait({get, closed, replan}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (closed, replan):
                task.cancel()
            if not get.done():
                get.cancel()
        if self._replan.is_set() and not self._closed.is_set():
            self._replan.clear()
            await self._start_groups()
        if get.done() and not get.cancelled():
            batch = get.result()
            while not self._queue.empty():  # several groups reported at once: one callback
                batch |= self._queue.get_nowait()
            return batch
        return None

    async def _call(self, functions: set[str], config: bool) -> None:
        try:
            result = self.on_change(functions, config)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the watcher's callback failed")

    def update(self, app: AppConfig) -> None:
        """The configuration changed: watch the directories it names now."""
        self._set_app(app)
        self._replan.set()

    async def wait_watching(self, timeout: float | None = 10.0) -> None:
        """Wait until the watches are in place: a change made after this is reported."""
        await asyncio.wait_for(self._watching.wait(), timeout)

    async def close(self) -> None:
        self._closed.set()
        await self._stop_groups()

    async def _start_groups(self) -> None:
        await self._stop_groups()
        self.plan = plan_watches(self._app)
        started = []
        for paths, recursive in ((self.plan.recursive, True), (self.plan.flat, False)):
            if not paths:
                continue
            stop = asyncio.Event()
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._watch_group(paths, recursive, stop, ready))
            self._groups.append((stop, task))
            started.append(ready)
        await asyncio.gather(*started, return_exceptions=True)
        self._watching.set()

    async def _stop_groups(self) -> None:
        groups, self._groups = self._groups, []
        self._watching.clear()
        for stop, _ in groups:
            stop.set()  # the watching thread sees it within one step and returns
        for _, task in groups:
            with contextlib.suppress(BaseException):
                await task

    async def _watch_group(
        self, paths: tuple[Path, ...], recursive: bool, stop: asyncio.Event, ready: asyncio.Future[None]
    ) -> None:
        changes = awatch(
            *paths,
            watch_filter=self.filter,  # judged relative to each source directory (watch_filter.py)
            debounce=self.debounce_ms,
            step=self.step_ms,
            stop_event=stop,
            recursive=recursive,
            force_polling=self.force_polling,
            ignore_permission_denied=True,
        )
        try:
            # The generator sets its watches up before it first waits, in a thread, for changes: once
            # its first step has run, a change is seen.
            first = asyncio.ensure_future(changes.__anext__())
            await asyncio.sleep(0)
            if not ready.done():
                ready.set_result(None)
            batch = await first
            while True:
                self._queue.put_nowait(set(batch))
                batch = await changes.__anext__()
        except StopAsyncIteration:
            pass
        except Exception as exc:
            log.warning("cannot watch %s: %s", ", ".join(map(str, paths)), exc)
        finally:
            if not ready.done():
                ready.set_result(None)
            with contextlib.suppress(Exception):
                await changes.aclose()
