"""`livelambda stub build [--output PATH] [--no-pyc]`: build the stub's Lambda layer zip (see
devserver/layer.py for what it holds) and print its path, size, file count and sha256."""

from __future__ import annotations

import sys
from pathlib import Path

from devserver.layer import DEFAULT_OUTPUT, LayerBuild, LayerBuildFailed, build_layer


def default_output(cwd: Path | None = None) -> Path:
    """`.livelambda/stub-layer.zip` under `cwd` (the state directory, ignored by git)."""
    from devserver.live.session import state_dir

    base = Path.cwd() if cwd is None else cwd
    state_dir(base)  # creates it with its .gitignore
    return base / DEFAULT_OUTPUT


def describe(build: LayerBuild) -> str:
    pyc = f"bytecode for {build.pyc_tag} only" if build.pyc_tag else "sources only, no bytecode"
    return "\n".join(
        [
            f"livelambda stub layer: {build.path}",
            f"  size     {build.size:,} bytes ({build.size / 1024:.1f} KiB)",
            f"  files    {build.files}  ({pyc})",
            f"  sha256   {build.sha256}  (also in {build.sha256_path.name})",
        ]
    )


def run_build(output: Path | None, *, precompile: bool = True) -> int:
    target = output if output is not None else Path.cwd() / DEFAULT_OUTPUT
    try:
        if output is None:
            default_output()  # creates the state directory, with its .gitignore
        build = build_layer(target, precompile=precompile)
    except LayerBuildFailed as exc:
        print(f"livelambda stub build: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # where it was asked to write: a usage error
        where = f" ({exc.filename}: {exc.strerror})" if exc.filename and exc.strerror else f": {exc}"
        print(
            f"livelambda stub build: cannot write {target}{where}; "
            "pass --output with a path in a writable directory",
            file=sys.stderr,
        )
        return 2
    print(describe(build))
    return 0
