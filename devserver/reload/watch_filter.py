"""Which file changes can change what a handler does, and so reload it.

A change below a function's `source` reloads it when its path matches a pattern of `[watch] include`
and none of `[watch] exclude` (livelambda.toml; defaults in devserver/config.py: Python sources and the
data files shipped with them, but not logs or SQLite files), and it is not noise that never reloads:
bytecode, editor temporaries, VCS directories, virtualenvs (by name, or any directory holding a
`pyvenv.cfg`), `node_modules`, tool caches, deployment build output, livelambda's own `.livelambda`,
and the files this process writes its own output to (`livelambda dev > dev.txt`).

Patterns are globs where `*` also matches `/`. One without `/` matches the file's name or the name of
a directory on its path below the source (`*.log`, `cache`); one with `/` matches the path below the
source (`templates/*.html`). Only the part of a path below the source is judged, so an app that itself
lives under, say, `~/.venv/` still works.

    reload_filter = ReloadFilter([source], config_file, app.watch)   # a watchfiles filter
    reload_filter(Change.modified, "/app/hello.py")                   # True
    held_for_writing([Path("/app/out.txt")])                          # open for writing by our kin
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

from watchfiles import Change, DefaultFilter

from devserver.config import WatchConfig

IGNORED_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "site-packages",
        ".tox",
        ".nox",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".idea",
        ".vscode",
        ".aws-sam",
        "cdk.out",
        ".serverless",
        ".livelambda",
        ".eggs",
    }
)
IGNORED_NAMES = (
    r"\.py[cod]$",  # bytecode
    r"\.sw[a-p]$",  # vim swap files (.swp, .swo, ...)
    r"^4913$",  # vim's probe file
    r"~$",  # backups (vim, emacs, gedit...)
    r"^\.#",  # emacs lock files
    r"^#.*#$",  # emacs auto-saves
    r"\.___jb_...___$",  # JetBrains safe-write temporaries
    r"^\.~lock\..*#$",  # LibreOffice locks
    r"\.kate-swp$",
    r"^\.goutputstream-",  # GNOME
    r"\.crswap$",
    r"\.(?:bak|orig|rej|tmp)$",
    r"^\.DS_Store$",
    r"^flycheck_",
    r"\.egg-info$",
)
_VENV_MARKERS = ("pyvenv.cfg", "conda-meta")
_PYTHON = (".py",)


class _Noise(DefaultFilter):
    """watchfiles' own filter, with our lists: judges a path relative to a watched directory."""

    def __init__(self) -> None:
        super().__init__(ignore_dirs=tuple(IGNORED_DIRS), ignore_entity_patterns=IGNORED_NAMES)


_noise = _Noise()


def ignored(relative: str | PurePath) -> bool:
    """Whether a change at `relative` (a path below a watched directory) is noise, whatever the
    configuration says."""
    parts = [p for p in PurePath(relative).parts if p not in ("", os.sep)]
    if not parts:
        return False
    if any(p.endswith(".egg-info") for p in parts[:-1]):
        return True
    return not _noise(Change.modified, os.sep.join(parts))


def is_virtualenv(directory: Path) -> bool:
    """A virtualenv or conda environment, whatever its name."""
    return any((directory / marker).exists() for marker in _VENV_MARKERS)


def matches(relative: PurePath, patterns: Iterable[str]) -> bool:
    """Whether `relative` matches one of the globs (see the module docstring)."""
    posix = relative.as_posix()
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatchcase(posix, pattern.strip("/")):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in relative.parts):
            return True
    return False


class ReloadFilter(DefaultFilter):
    """A watchfiles filter: True for the configuration file, for a change below a source directory that
    can change what the handler does, and for a new directory there (it may need watching)."""

    def __init__(
        self,
        sources: Sequence[Path],
        config: Path,
        rules: WatchConfig,
        *,
        own_output: Sequence[Path] = (),
    ) -> None:
        super().__init__(ignore_dirs=tuple(IGNORED_DIRS), ignore_entity_patterns=IGNORED_NAMES)
        # innermost first: a path is judged below the deepest source that holds it
        self.sources = tuple(sorted(set(sources), key=lambda p: len(p.parts), reverse=True))
        self.config = config
        self.rules = rules
        self.own_output = frozenset(str(p) for p in own_output)
        self._venvs: set[Path] = set()  # directories found to be virtualenvs (they stay so)

    def __call__(self, change: Change, path: str) -> bool:
        if path == str(self.config):
            return True
        if path in self.own_output:
            return False
        absolute = Path(path)
        source = next((s for s in self.sources if absolute.is_relative_to(s)), None)
        if source is None:
            return False
        relative = absolute.relative_to(source)
        if not relative.parts or ignored(relative) or self._in_virtualenv(source, relative):
            return False
        if matches(relative, self.rules.exclude):
            return False
        if change == Change.added and absolute.is_dir():
            return True
        return matches(relative, self.rules.include)

    def _in_virtualenv(self, source: Path, relative: PurePath) -> bool:
        directory = source
        for part in relative.parts[:-1]:
            directory = directory / part
            if directory in self._venvs:
                return True
            if is_virtualenv(directory):
                self._venvs.add(directory)
                return True
        return False


def is_python(path: PurePath) -> bool:
    return path.suffix in _PYTHON


def own_output_files() -> list[Path]:
    """The regular files this process's stdout and stderr go to (`livelambda dev > dev.txt 2>&1`):
    what it writes there must not reload anything."""
    found = []
    for fd in (1, 2):
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            found.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        except OSError:  # closed, or no /proc (not Linux): nothing to add
            continue
    return found


def held_for_writing(paths: Iterable[Path]) -> set[Path]:
    """Those of `paths` open for writing right now by this process, a descendant (a worker running a
    handler: its log, its database) or a process of our process group (`livelambda dev | tee out.txt`).
    Linux only (reads /proc); elsewhere, none."""
    wanted = {str(p): p for p in paths}
    held: set[Path] = set()
    if not wanted:
        return held
    for pid in _kin():
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in wanted and _writable(pid, fd):
                held.add(wanted[target])
    return held


def _writable(pid: int, fd: str) -> bool:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _kin() -> list[int]:
    """This process, its descendants and the processes of its process group, from /proc."""
    me = os.getpid()
    group = os.getpgrp()
    children: dict[int, list[int]] = {}
    found = {me}
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return [me]
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid, pgrp = int(fields[1]), int(fields[2])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        if pgrp == group:
            found.add(pid)
    todo = [me]
    while todo:  # a tree: each descendant is reached once
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return sorted(found)
