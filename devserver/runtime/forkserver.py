"""A warm parent that forks Lambda workers, so a save does not pay interpreter start-up and heavy imports.

Run BY PATH with the function's own interpreter (it must not import `devserver`, which that
interpreter may not have): `python forkserver.py --fd N --source DIR --handler module.function`.

It imports awslambdaric and the handler module once, then forgets the modules that live under
the function's source directory: a forked child re-imports the developer's code from disk (fresh
after every save) while boto3 and other third-party imports stay warm. The parent is
single-threaded, so fork is safe.

Control channel: a Unix socket (fd N) carrying newline-free JSON messages.
  -> {"op": "spawn", "env": {...}}  with two fds attached (the child's stdout and stderr)
  <- {"op": "spawned", "pid": P}
  <- {"op": "exited", "pid": P, "returncode": R}   (R < 0: killed by signal -R)
  <- {"op": "ready", "preload_error": str | null}  (once, after preloading)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys

_MAX_MSG = 1 << 20


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _preload(source: str, handler: str) -> str | None:
    """Import what the handler imports; return the error text if its import fails (the child will
    report the real error through the Runtime API, as Lambda does)."""
    import awslambdaric.bootstrap  # noqa: F401  (the runtime loop and its native client)

    module_name = handler.rsplit(".", 1)[0].replace("/", ".")
    error = None
    try:
        __import__(module_name)
    except BaseException as exc:  # any failure of user code at import, even SystemExit
        error = f"{type(exc).__name__}: {exc}"
    _forget_user_modules(source)
    return error


def _forget_user_modules(source: str) -> None:
    root = os.path.realpath(source) + os.sep
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and os.path.realpath(path).startswith(root):
            del sys.modules[name]
    import importlib

    importlib.invalidate_caches()


def _child(env: dict[str, str], fds: list[int], handler: str, control: socket.socket) -> None:
    control.close()
    os.setsid()  # its own process group: the dev server can kill it and whatever it spawned
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.environ.clear()
    os.environ.update(env)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    from awslambdaric.__main__ import main

    try:
        main(["awslambdaric", handler])
    finally:
        os._exit(1)


def serve(control: socket.socket, source: str, handler: str) -> None:
    error = _preload(source, handler)
    children: set[int] = set()
    # Reap children on our own schedule: SIGCHLD only wakes the loop below.
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C goes to the dev server, which stops us
    _send(control, {"op": "ready", "preload_error": error})
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ, "control")
    sel.register(rfd, selectors.EVENT_READ, "signal")
    buffer = b""
    while True:
        for key, _ in sel.select():
            if key.data == "signal":
                os.read(rfd, 4096)
                _reap(control, children)
                continue
            data, fds, _flags, _addr = socket.recv_fds(control, _MAX_MSG, 4)
            if not data:
                for pid in children:
                    _kill_group(pid)
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                if request.get("op") != "spawn":
                    continue
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    _child(request["env"], fds, handler, control)
                for fd in fds:
                    os.close(fd)
                fds = []
                children.add(pid)
                _send(control, {"op": "spawned", "pid": pid})


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(control, {"op": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--handler", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.source)
    os.chdir(args.source)
    control = socket.socket(fileno=args.fd)
    serve(control, args.source, args.handler)


if __name__ == "__main__":
    main()
