"""Virtualenvs made inside a test, offline: `python -m venv`, then the named distributions (and the
distributions they require) copied file by file from this interpreter's site-packages, as their
RECORD lists them. No pip, no network.

    python = make_venv(tmp_path / "app" / ".venv", ["awslambdaric"])   # the venv's bin/python
    can_import(python, "awslambdaric")   # True
    can_import(python, "websockets")     # False: only what was copied is there

The venv uses the base interpreter of the one running the tests (the same Python version), so
compiled extensions (awslambdaric's runtime_client) work as copied.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_RE = re.compile(r"\bextra\s*==")  # a requirement of an optional extra


def make_venv(path: Path, packages: Iterable[str]) -> Path:
    """A new virtualenv at `path` holding `packages` and their requirements; its interpreter."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = path / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    for dist in distributions_with_requirements(packages):
        copy_distribution(dist, site)
    return python


def distributions_with_requirements(packages: Iterable[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions `packages` name, and those they require, transitively. A requirement
    that is not installed here (an extra, a marker for another platform) is left out."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(name, True) for name in packages]
    while todo:
        name, asked = todo.pop()
        if _normalize(name) in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if asked:
                raise
            continue
        found[_normalize(name)] = dist
        for requirement in dist.requires or ():
            match = _NAME_RE.match(requirement)
            if match and not _EXTRA_RE.search(requirement):
                todo.append((match.group(1), False))
    return list(found.values())


def copy_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    """Copy what `dist` installed under site-packages (no caches, no scripts outside it) into `site`."""
    for file in dist.files or ():
        parts = file.parts
        if ".." in parts or "__pycache__" in parts:
            continue
        source = Path(str(dist.locate_file(file)))
        if not source.is_file():
            continue
        target = site.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def can_import(python: Path, module: str) -> bool:
    """Whether `python` imports `module` (with a clean environment: no PYTHONPATH)."""
    done = subprocess.run(
        [str(python), "-c", f"import {module}"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    return done.returncode == 0


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
