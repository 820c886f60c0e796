"""The stub's layer as `livelambda cloud --live` mounts it for the sandboxes, the way Lambda mounts a
layer: the real layer zip (`livelambda stub build`, devserver/layer.py), unpacked, its `python/` on
the import path. So a sandbox imports the stub and websockets from the layer, never from the function's
interpreter, whatever packages that has (it needs awslambdaric only, as in AWS).

    <app>/.livelambda/layer/stub-layer.zip        built on every start (deterministic; ~0.5 s)
    <app>/.livelambda/layer/<sha256>/python/      unpacked once per content: the sys.path entry
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from devserver.layer import LAYER_ROOT, build_layer, unpack_layer
from devserver.live.session import state_dir

LAYER_DIR = "layer"


def mount_stub_layer(app_root: Path) -> Path:
    """Build the stub layer into the app's state directory, unpack it if this content is new, and return
    the directory to put on the sandboxes' path (`.../layer/<sha256>/python`). Raises LayerBuildFailed."""
    base = state_dir(app_root) / LAYER_DIR
    base.mkdir(exist_ok=True)
    with _locked(base / ".lock"):  # two clouds of one app starting at once share the files
        build = build_layer(base / "stub-layer.zip")
        target = base / build.sha256
        if not target.is_dir():
            # Unpacked aside, then renamed: a directory named by the sha256 is always complete.
            partial = base / f".{build.sha256}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            unpack_layer(build.path, partial)
            partial.rename(target)
    return target / LAYER_ROOT


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
