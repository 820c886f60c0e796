"""`livelambda cloud --app DIR` follows the app's configuration file as `livelambda dev` does: saving
it adds, removes and restarts the Lambda emulator's functions, as a deploy would in AWS. A configuration
that does not load keeps the previous functions, and says why in one log line.

    follower = ConfigFollower(emulator, app)   # app: the AppConfig the emulator was made from
    await follower.start()                     # returns once a save is seen
    await follower.close()

It watches the configuration file only (devserver/reload/watcher.py, given no functions): the cloud runs the
deployed code as it is, so a save of a handler changes nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from devserver.cloud.lambda_emulator import LambdaEmulator
from devserver.config import AppConfig, ConfigError, load_config
from devserver.reload.watcher import Watcher

log = logging.getLogger("livelambda.cloud")
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # its "N changes detected": our line says what


def _config_only(app: AppConfig) -> AppConfig:
    """`app` as the watcher should see it: its configuration file and no source directories."""
    return dataclasses.replace(app, functions={})


class ConfigFollower:
    def __init__(self, emulator: LambdaEmulator, app: AppConfig) -> None:
        self.emulator = emulator
        self.app = app
        self.reloads = 0  # configurations applied since the start
        self._refused: str | None = None  # the last error logged: one save is often two file events
        self.watcher = Watcher(_config_only(app), on_change=self._on_change)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start watching; returns once the watch is in place (a save after this is seen)."""
        self._task = asyncio.ensure_future(self.watcher.run())
        await self.watcher.wait_watching()

    async def close(self) -> None:
        await self.watcher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _on_change(self, functions: set[str], config_changed: bool) -> None:
        if config_changed:
            self.reload()

    def reload(self) -> None:
        """Load the configuration again and apply its functions to the emulator."""
        name = self.app.path.name
        try:
            new = load_config(self.app.root)
        except ConfigError as exc:
            one_line = " ".join(str(exc).split())
            if one_line != self._refused:
                log.warning("%s not applied, the previous functions keep running: %s", name, one_line)
            self._refused = one_line
            return
        self._refused = None
        changes = self.emulator.set_functions(new.functions)
        self.app = new
        self.watcher.update(_config_only(new))  # the file may have moved (livelambda.toml <-> pyproject)
        self.reloads += 1
        if changes.added or changes.removed or changes.changed:  # else: nothing the cloud serves changed
            log.info("%s reloaded: %s", name, changes.describe())
