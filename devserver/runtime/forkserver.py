"""A warm parent that forks Lambda workers, so that a save does not pay interpreter start-up and heavy
imports (boto3: ~180 ms) again: a fork of a warm parent answers in milliseconds.

Run BY PATH with the function's own interpreter (it must not import `devserver`, which that interpreter
may not have; it must run on Python >= 3.9):

    python forkserver.py --fd N --parent PID --source DIR --handler module.function

What the parent imports, and what it never imports:
- awslambdaric's pure-Python modules and the standard library they use;
- INSTALLED modules only (stdlib, site-packages, and packages vendored into the source directory with a
  `*.dist-info` beside them): the third-party imports of the handler module (found by reading its
  source, never by running it) and whatever the launcher asks for (see "imported" below);
- never the developer's own code: it runs in each child, fresh from disk, so every save is seen, and
  its side effects at import (threads, sockets, printing) never happen in the parent;
- never awslambdaric's native client (`runtime_client`): it reads AWS_LAMBDA_RUNTIME_API once, when its
  shared library is loaded (a C++ static initializer), and each child has its own Runtime API endpoint.

The parent is single-threaded, so fork is safe; its preloaded objects are frozen out of the garbage
collector (gc.freeze), so children do not copy its heap page by page when they collect. It asks the
kernel to kill it when the dev server dies (PR_SET_PDEATHSIG), and asks the same for each child, so
nothing outlives a `kill -9` of the dev server.

Control channel: fd N, one end of an AF_UNIX SOCK_SEQPACKET socketpair; one JSON object a message.
  -> {"op": "preload", "modules": [...]}        before "start", any number of times: more to import
  -> {"op": "start", "exclude": [...]}          preload now (never the excluded), then answer
  <- {"op": "ready", "pid", "python", "preloaded": int, "modules": int, "failed": {name: error},
      "poisoned": str|null, "threads": int, "threaded_by": [...]}
                                                (the launcher refuses a parent with threads, and
                                                starts another without the modules that made them)
  -> {"op": "spawn", "id", "cwd", "handler", "env_set": {...}, "env_unset": [...]}
                                                with two fds attached: the child's stdout and stderr
  <- {"op": "spawned", "id", "pid"}  or  {"op": "spawn_failed", "id", "error"}
  <- {"op": "exited", "pid", "returncode"}      (returncode < 0: killed by signal -returncode)
  <- {"op": "imported", "pid", "modules": [...]} sent BY A CHILD once its handler module is loaded:
                                                the installed modules it imported that the parent has
                                                not (the launcher restarts the parent with them)
End of file on the channel (the dev server closed it or died): kill every child, reap them, exit.
"""

from __future__ import annotations

import argparse
import ast
import atexit
import gc
import importlib
import io
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any, NoReturn

_MAX_MSG = 4 << 20
_PR_SET_PDEATHSIG = 1

# awslambdaric modules that load (or import something that loads) the native client.
_NATIVE = ("runtime_client", "awslambdaric.lambda_runtime_client", "awslambdaric.bootstrap")
_NEVER_PRELOAD = (*_NATIVE, "awslambdaric.__main__", "awslambdaric.lambda_multi_concurrent_utils")
# What the runtime needs besides the native client: imported once, in the parent.
_RUNTIME_MODULES = (
    "awslambdaric",
    "awslambdaric.lambda_config",
    "awslambdaric.lambda_context",
    "awslambdaric.lambda_runtime_exception",
    "awslambdaric.lambda_runtime_log_utils",
    "awslambdaric.lambda_runtime_marshaller",
    "awslambdaric.lambda_literals",
    "concurrent.futures",
    "http.client",
    "importlib.util",
    "json",
    "logging",
    "runpy",
    "traceback",
    "uuid",
)


def _load_prctl() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:
        return None


_prctl = _load_prctl()  # resolved once, in the parent: children only call it


def set_parent_death_signal(expected_parent: int) -> None:
    """Die (SIGKILL) when the parent dies; exit now if it already has. Linux only; elsewhere a no-op."""
    if _prctl is None:
        return
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # type: ignore[operator]
    except Exception:
        return
    if os.getppid() != expected_parent:  # it died before prctl took effect
        os._exit(1)


# -- what counts as installed ------------------------------------------------------------------------


class Modules:
    """Tells installed modules (kept warm in the parent) from the developer's (re-imported by children)."""

    def __init__(self, source: str) -> None:
        import site
        import sysconfig

        roots = set()
        for scheme_vars in (None, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
            paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
            for key in ("stdlib", "platstdlib", "purelib", "platlib"):
                if paths.get(key):
                    roots.add(paths[key])
        try:
            roots.update(site.getsitepackages())
        except Exception:
            pass
        try:
            roots.add(site.getusersitepackages())
        except Exception:
            pass
        for mod in (os, socket):  # the stdlib and lib-dynload, wherever this build keeps them
            if mod.__file__:
                roots.add(os.path.dirname(mod.__file__))
        self.roots = tuple(sorted({os.path.realpath(r) + os.sep for r in roots if r}))
        self.source = os.path.realpath(source)
        self.vendored = _vendored_top_levels(self.source)

    def installed_path(self, path: str) -> bool:
        real = os.path.realpath(path)
        if real.startswith(self.roots):
            return True
        # a package vendored into the source directory (`pip install -t .`): it has a dist-info
        rel = os.path.relpath(real, self.source)
        if rel.startswith(os.pardir):
            return False
        top = rel.split(os.sep, 1)[0]
        if top.endswith(".py"):
            top = top[:-3]
        return top in self.vendored or top.split(".", 1)[0] in self.vendored

    def installed(self, module: object) -> bool:
        path = getattr(module, "__file__", None)
        if path:
            return self.installed_path(path)
        search = getattr(module, "__path__", None)  # a namespace package: every portion must be
        if search is not None:
            try:
                entries = list(search)
            except Exception:
                return False
            return all(self.installed_path(p) for p in entries)
        return True  # built in

    def forget_user_modules(self) -> None:
        for name, module in list(sys.modules.items()):
            if module is not None and not self.installed(module):
                del sys.modules[name]
        importlib.invalidate_caches()


def _vendored_top_levels(source: str) -> set[str]:
    names: set[str] = set()
    try:
        entries = [e for e in os.scandir(source) if e.name.endswith(".dist-info") and e.is_dir()]
    except OSError:
        return names
    for entry in entries:
        try:
            with open(os.path.join(entry.path, "top_level.txt"), encoding="utf-8") as f:
                names.update(line.strip() for line in f if line.strip())
            continue
        except OSError:
            pass
        try:
            with open(os.path.join(entry.path, "RECORD"), encoding="utf-8") as f:
                for line in f:
                    first = line.split(",", 1)[0].split("/", 1)[0]
                    if first and not first.endswith((".dist-info", ".data")) and first != "..":
                        names.add(first[:-3] if first.endswith(".py") else first)
        except OSError:
            pass
    return names


# -- preloading ----------------------------------------------------------------------------------------


def handler_imports(source: str, handler: str) -> list[str]:
    """The absolute imports of the handler module, read from its source (it is not run)."""
    module = handler.rsplit(".", 1)[0].replace("/", ".")
    base = os.path.join(source, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        try:
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), path)
            break
        except (OSError, SyntaxError, ValueError):
            continue
    else:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def preload(
    names: list[str], modules: Modules, exclude: frozenset[str] = frozenset()
) -> tuple[int, dict[str, str], list[str]]:
    """Import the installed modules among `names`; never user code, never `exclude` (nor what is below
    it). Returns (count, {name: error}, [names whose import started a thread])."""
    import importlib.util

    failed: dict[str, str] = {}
    threaded: list[str] = []
    done = 0
    threads = _thread_count()
    for name in names:
        if name in sys.modules or not name or name.startswith(_NEVER_PRELOAD) or name == "__main__":
            continue
        if any(name == x or name.startswith(x + ".") for x in exclude):
            continue
        top = name.split(".", 1)[0]
        try:
            spec = importlib.util.find_spec(top)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        if spec is None:
            continue
        locations = [spec.origin] if spec.origin not in (None, "built-in", "frozen") else []
        locations += list(spec.submodule_search_locations or [])
        if not all(modules.installed_path(p) for p in locations):
            continue  # the developer's code (or a module shadowing an installed one): never in the parent
        try:
            importlib.import_module(name)
            done += 1
        except BaseException as exc:  # an installed module may fail to import in any way
            failed[name] = f"{type(exc).__name__}: {exc}"
        now = _thread_count()
        if now > threads:
            threaded.append(name)
            threads = now
    return done, failed, threaded


# -- the serving loop ----------------------------------------------------------------------------------


class ForkServer:
    def __init__(self, control: socket.socket, source: str, handler: str, parent: int) -> None:
        self.control = control
        self.source = source
        self.handler = handler
        self.parent = parent
        self.pid = os.getpid()  # the children's parent
        self.modules = Modules(source)
        self.children: set[int] = set()
        self.base_pythonpath = os.environ.get("PYTHONPATH", "")
        self.base_sys_path = list(sys.path)
        self.baseline: frozenset[str] = frozenset()
        self.wake_r, self.wake_w = os.pipe()
        self.selector: selectors.BaseSelector | None = None

    def send(self, message: dict) -> None:
        try:
            self.control.send(json.dumps(message).encode())
        except OSError:
            pass  # the dev server is gone; end of file will follow

    def receive(self) -> tuple[dict | None, list[int]]:
        """One message; (None, []) at end of file."""
        data, fds, flags, _ = socket.recv_fds(self.control, _MAX_MSG, 4)
        if not data and not fds:
            return None, []
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            return {"op": "invalid", "error": "message too large"}, []
        try:
            return json.loads(data), fds
        except ValueError:
            for fd in fds:
                os.close(fd)
            return {"op": "invalid", "error": "not JSON"}, []

    def start(self) -> None:
        wanted: list[str] = []
        while True:
            message, fds = self.receive()
            for fd in fds:
                os.close(fd)
            if message is None:
                os._exit(0)
            if message.get("op") == "preload":
                wanted.extend(str(m) for m in message.get("modules") or [])
            elif message.get("op") == "start":
                exclude = frozenset(str(m) for m in message.get("exclude") or [])
                break
        names = list(_RUNTIME_MODULES) + handler_imports(self.source, self.handler) + wanted
        count, failed, threaded = preload(names, self.modules, exclude)
        self.modules.forget_user_modules()
        poisoned = next((n for n in _NATIVE if n in sys.modules), None)
        self.baseline = frozenset(sys.modules)
        # Everything imported so far lives as long as the process: keep the collector off it. Else the
        # first full collection in a child walks (and so copies) the whole warm heap: 10-25 ms.
        gc.collect()
        gc.freeze()
        sys.stdout.flush()
        sys.stderr.flush()
        self.send(
            {
                "op": "ready",
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "preloaded": count,
                "modules": len(sys.modules),
                "failed": failed,
                "poisoned": poisoned,
                "threads": _thread_count(),
                "threaded_by": threaded,
            }
        )

    def serve(self) -> None:
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the dev server's; it stops us
        signal.signal(signal.SIGTERM, lambda *_: self.shutdown())
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in self.selector.select():
                if key.data == "signal":
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                    continue
                try:
                    message, fds = self.receive()
                except OSError:
                    message, fds = None, []
                if message is None:
                    self.shutdown()
                if message.get("op") == "spawn" and len(fds) == 2:
                    self.spawn(message, fds)
                else:
                    for fd in fds:
                        os.close(fd)
                    self.send({"op": "error", "error": f"unexpected message {message.get('op')!r}"})

    def spawn(self, request: dict, fds: list[int]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            self.send({"op": "spawn_failed", "id": request.get("id"), "error": str(exc)})
            return
        if pid == 0:
            self.child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        _wait_for_group(pid)
        self.send({"op": "spawned", "id": request.get("id"), "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"op": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def shutdown(self) -> NoReturn:
        """Kill every child (and what it spawned), reap them, and exit."""
        for pid in list(self.children):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                    break
                except OSError:
                    continue
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except OSError:
                pass
        os._exit(0)

    # -- in the child --------------------------------------------------------------------------

    def child(self, request: dict, fds: list[int]) -> None:
        code = 1
        try:
            code = self._child(request, fds)
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            try:
                import traceback

                traceback.print_exc()
            except BaseException:
                pass
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass
            try:
                atexit._run_exitfuncs()
            except BaseException:
                pass
            os._exit(code)

    def _child(self, request: dict, fds: list[int]) -> int:
        os.setsid()  # its own process group: the dev server kills it and whatever it spawns at once
        set_parent_death_signal(self.pid)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if self.selector is not None:
            self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        # The environment the launcher wants, as a difference from the parent's (a few variables).
        for name in request.get("env_unset") or ():
            os.environ.pop(name, None)
        os.environ.update(request.get("env_set") or {})
        os.chdir(request.get("cwd") or self.source)
        pythonpath = os.environ.get("PYTHONPATH", "")
        if pythonpath != self.base_pythonpath:
            ours = [p for p in self.base_pythonpath.split(os.pathsep) if p]
            rest = [p for p in self.base_sys_path if p not in ours]
            sys.path[:] = [p for p in pythonpath.split(os.pathsep) if p] + rest
        if not sys.path or sys.path[0] != "":
            sys.path.insert(0, "")  # as `python -c`/`-m` has it: the working directory first
        # As a fresh `python -u`: unbuffered text streams on the new descriptors.
        sys.stdout = sys.__stdout__ = _text_stream(1, "strict")  # type: ignore[misc]
        sys.stderr = sys.__stderr__ = _text_stream(2, "backslashreplace")  # type: ignore[misc]
        # Lambda's code directory is read-only: no bytecode is written there. Here it also keeps a
        # save within the same second as the last one (same size) from loading a stale .pyc.
        sys.dont_write_bytecode = True
        importlib.invalidate_caches()
        handler = request.get("handler") or self.handler
        sys.argv = ["-c", handler]
        # The native client loads now, reading this child's AWS_LAMBDA_RUNTIME_API.
        from awslambdaric import bootstrap

        self._report_imports_after_init(bootstrap)
        import runpy

        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        return 0

    def _report_imports_after_init(self, bootstrap: object) -> None:
        """Once the handler module is loaded (or failed to), tell the launcher which installed modules
        it pulled in that the parent lacks, then close this child's copy of the channel."""
        original = getattr(bootstrap, "_get_handler", None)
        control = self.control
        if original is None:
            control.close()
            return
        baseline, modules = self.baseline, self.modules

        def _get_handler(handler: str) -> Any:
            try:
                return original(handler)
            finally:
                try:
                    new = sorted(
                        name
                        for name, module in list(sys.modules.items())
                        if name not in baseline
                        and module is not None
                        and not name.startswith(("awslambdaric", "runtime_client", "__main__"))
                        and modules.installed(module)
                    )
                    if new:
                        report = {"op": "imported", "pid": os.getpid(), "modules": new}
                        control.send(json.dumps(report).encode())
                except Exception:
                    pass
                finally:
                    control.close()
                    bootstrap._get_handler = original  # type: ignore[attr-defined]

        bootstrap._get_handler = _get_handler  # type: ignore[attr-defined]


def _wait_for_group(pid: int, limit_s: float = 1.0) -> None:
    """Until the child leads its own process group: the dev server kills workers with killpg(pid), so
    the group must exist by the time it learns the pid."""
    import time

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if os.getpgid(pid) == pid:
                return
        except OSError:
            return  # already gone (reaped soon)
        time.sleep(0)


def _thread_count() -> int:
    """Threads of this process, native ones included (a fork copies only the calling thread: a lock
    another thread held stays locked forever in the child)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _text_stream(fd: int, errors: str) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, line_buffering=True, write_through=True)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    try:
        print(exc.code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="livelambda's warm parent for a function's workers")
    parser.add_argument("--fd", type=int, required=True, help="the control socket (SOCK_SEQPACKET)")
    parser.add_argument("--parent", type=int, required=True, help="the dev server's pid")
    parser.add_argument("--source", required=True)
    parser.add_argument("--handler", required=True)
    args = parser.parse_args(argv)
    set_parent_death_signal(args.parent)
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0] or ".") == here:
        del sys.path[0]  # the script's directory (devserver/runtime/) is not the function's
    os.chdir(args.source)
    os.set_inheritable(args.fd, False)
    control = socket.socket(fileno=args.fd)
    control.setblocking(True)
    server = ForkServer(control, args.source, args.handler, args.parent)
    server.start()
    server.serve()


if __name__ == "__main__":
    main()
