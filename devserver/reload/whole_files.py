"""Is a changed file whole yet, or is a save still writing it?

Most editors, and `open(path, "w")`, save in place: truncate the file, then write it, sometimes in
several chunks. The watcher's batch can end in between (watchfiles ends a batch on a step without a
*new* path; a second write to the same path is not new), and a generation loaded then runs an empty
module (`Runtime.HandlerNotFound`) or half of one (`Runtime.UserCodeSyntaxError`). So before a reload,
the watcher asks of each changed file why it may not be whole yet, and waits (bounded) while it may not.

    look = FileLook.of(path)          # size and mtime_ns; None when it is gone or not a regular file
    why = why_not_whole(path, look, before=None, known_size=None, added=False, now_ns=time.time_ns())
    # None: read it now; else the reason to wait ("open for writing", "emptied", ...)

The main signal is exact and costs ~10 us: whether any process holds the file open for writing
(`open_for_writing`, a Linux file lease probe). A save in progress holds it open from its truncation
to its last chunk; once closed, the file is what the editor meant, so a save that is already closed
when its batch ends (nearly all of them) is reloaded with no added wait. Where the probe cannot tell
(not Linux, a file of another user, a file system without leases), a short quiet time on the file's
mtime and a parse of Python sources stand in for it. Either way, a Python file emptied by a
modification waits for its content, and every wait is bounded by the caller.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lease probe
    fcntl = None  # type: ignore[assignment]

# Without the probe: a file written within this long may still be being written. (mtime comes from
# the kernel's coarse clock, a tick behind real time, so this is at least ~10 ms of real quiet.)
QUIET_NS = 20_000_000
# Without the probe: a Python file written this recently that does not parse may be a save caught
# between two chunks; wait for the rest, at most this long after its last write.
RECENT_NS = 300_000_000

_SETLEASE = getattr(fcntl, "F_SETLEASE", None)
_SETSIG = getattr(fcntl, "F_SETSIG", None)


@dataclass(frozen=True)
class FileLook:
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileLook | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return cls(st.st_size, st.st_mtime_ns)


def open_for_writing(path: Path) -> bool | None:
    """Whether some process (this one included) holds `path` open for writing right now; None when
    this cannot be told here.

    Linux refuses a read lease (F_SETLEASE F_RDLCK, EAGAIN) on a file that anyone has open for
    writing; the lease, when granted, is released at once. It needs the file's owner (or CAP_LEASE)
    and a local file system. A writer that opens the file during the few microseconds the lease is
    held waits for its release, and the kernel signals the holder: the signal is SIGURG, whose default
    action is to do nothing (SIGIO's, the default one, would end the dev server)."""
    if fcntl is None or _SETLEASE is None or _SETSIG is None:
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: never wait on someone else's lease
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, _SETSIG, signal.SIGURG)
        try:
            fcntl.fcntl(fd, _SETLEASE, fcntl.F_RDLCK)
        except BlockingIOError:
            return True
        except OSError:  # EACCES (not ours), EINVAL/ENOLCK (no leases here)
            return None
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _SETLEASE, fcntl.F_UNLCK)
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def parses(path: Path) -> bool:
    """Whether the Python source at `path` parses (with this interpreter's grammar)."""
    try:
        source = path.read_bytes()
        compile(source, str(path), "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError, OSError):
        return False
    return True


def why_not_whole(
    path: Path,
    look: FileLook | None,
    *,
    before: FileLook | None,
    known_size: int | None,
    added: bool,
    now_ns: int,
) -> str | None:
    """Why the file at `path` may not hold a whole save yet (see the module docstring), or None.

    `look` is its state now, `before` at the previous look of this wait (None on the first),
    `known_size` its size when last reloaded (None: never seen), `added` whether the change created it.
    """
    if look is None:
        return None  # gone: nothing to read; the reload says what is missing
    if before is not None and before != look:
        return "still changing"
    writing = open_for_writing(path)
    if writing:
        return "open for writing"
    python = path.suffix == ".py"
    # An empty module loads fine and answers HandlerNotFound: a modification that leaves a source
    # empty is far more often a truncation whose write is still to come than a wish.
    if python and look.size == 0 and not added and known_size != 0:
        return "emptied"
    if writing is None:
        age = now_ns - look.mtime_ns
        if 0 <= age < QUIET_NS:
            return "written just now"
        if python and 0 <= age < RECENT_NS and not parses(path):
            return "does not parse yet"
    return None
