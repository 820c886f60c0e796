"""One terminal line per save: the files that changed, the functions reloaded, and any that no longer
load. The line waits for each function's new code to load (or fail to), so it says what happened.

    saves = SaveReporter(runner, terminal, app_root, config_file="livelambda.toml")
    saves.report(files, {"hello": 3, "api": 3})   # right after runner.reload_function(...) for each
    saves.covers("hello", 3)                        # True while that line is pending: say nothing else
    await saves.close()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devserver.reload.generations import Runner
from devserver.reload.watch_filter import is_python
from devserver.ui.terminal import Terminal

_LOAD_WAIT_S = 60.0  # a worker's init is bounded well below this (runner.init_timeout_s)


class SaveReporter:
    def __init__(self, runner: Runner, terminal: Terminal, root: Path, config_file: str) -> None:
        self.runner = runner
        self.terminal = terminal
        self.root = root
        self.config_file = config_file
        self._pending: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def covers(self, function: str, generation: int) -> bool:
        """Whether a save's line will report this generation's load (the runner's own notice is
        then redundant)."""
        return (function, generation) in self._pending

    def report(self, files: Sequence[Path], generations: Mapping[str, int]) -> None:
        """Print the save's line once every function in `generations` has loaded its new code."""
        pending = set(generations.items())
        self._pending |= pending
        task = asyncio.ensure_future(self._report(files, dict(generations), pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, files: Sequence[Path], generations: dict[str, int], pending: set[Any]) -> None:
        failed: dict[str, str] = {}
        try:
            for name in generations:
                runner = self.runner.functions.get(name)
                if runner is None:
                    continue  # removed by a configuration change meanwhile
                try:
                    error = await runner.wait_loaded(_LOAD_WAIT_S)
                except asyncio.TimeoutError:
                    failed[name] = "its new code is still loading"
                    continue
                generations[name] = runner.generation
                if error is not None:
                    failed[name] = error.summary
            hint = None
            if not all(is_python(f) for f in files):
                hint = f"if your code writes it, add it to [watch] exclude in {self.config_file}"
            self.terminal.saved([self._shown(f) for f in files], generations, failed, hint)
        finally:
            self._pending -= pending

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
