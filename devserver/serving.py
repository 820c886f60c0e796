"""uvicorn, as both our servers run it."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn


class ReadyServer(uvicorn.Server):
    """A uvicorn.Server that reports its real port once its sockets listen (so `--port 0` works).

    uvicorn binds the socket itself: a socket handed to it would lack TCP_NODELAY (~88 ms a call)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_ready(self.servers[0].sockets[0].getsockname()[1])


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Written whole, then renamed, so a reader (a test, `livelambda dev`) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class _Stopped(Exception):
    """SIGTERM arrived (after uvicorn's graceful shutdown)."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (uvicorn[standard] brings it): ~0.2 ms less per live round trip."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_until_stopped(server: uvicorn.Server) -> bool:
    """Serve until Ctrl+C or SIGTERM; True if the server started.

    uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal: turn both into a
    normal return, so that the caller's clean-up (stopping child processes) runs."""
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(server.serve())
    except (KeyboardInterrupt, _Stopped):
        pass
    except SystemExit:  # uvicorn exits this way when it cannot bind; it logged why
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return bool(server.started)
