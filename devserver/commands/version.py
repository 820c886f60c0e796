"""`livelambda --version`: the installed package's version, looked up only when asked
(importlib.metadata costs a few ms that every other command would pay)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

DISTRIBUTION = "livelambda"


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed; run `make dev` or `pip install -e .` in its repository)"


class VersionAction(argparse.Action):
    """Like argparse's "version" action, with the version read when the flag is given."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show livelambda's version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write(f"livelambda {installed_version()}\n")
        parser.exit()
