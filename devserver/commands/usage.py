"""Checks of a command line made before anything starts or binds. Each failure is a UsageError whose
message is one line saying what to do; the CLI prints it and exits with status 2, no traceback."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

from stub_runtime.errors import CallerFault

USAGE_EXIT = 2


class UsageError(CallerFault):
    """The command line asks for something that cannot work (a missing directory, a port in use...)."""

    error_type = "Livelambda.UsageError"


def port_number(text: str) -> int:
    """argparse type of a port flag: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; give 0-65535 (0: any free port)")
    return port


def at_least_one(text: str) -> int:
    """argparse type of a count such as --concurrency: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def positive_seconds(text: str) -> float:
    """argparse type of a duration such as --ka-interval: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def check_app_dir(path: Path, flag: str) -> None:
    """`path` (given with `flag`) must be an existing directory."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: {what}; pass the app's directory (the one holding livelambda.toml)")


def check_can_listen(host: str, port: int, *, port_flag: str, host_flag: str | None = None) -> None:
    """A server can bind `host:port` now (as uvicorn binds: SO_REUSEADDR), else a UsageError naming the
    flag to change. Checked before starting anything, so a busy port is one line, not a traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        fix = f"pass {host_flag} with a local address, e.g. 127.0.0.1" if host_flag else "check the address"
        raise UsageError(f"cannot listen on {host!r}: {exc}; {fix}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is in use; stop what holds it, or pass {port_flag} with "
                    "another port (0: any free port)"
                ) from None
            fix = f"pass {host_flag} with a local address, e.g. 127.0.0.1" if host_flag else ""
            fix = fix or f"pass {port_flag} with another port"
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {fix}") from None
