"""The function names `livelambda invoke` can suggest when the one given does not exist: those the
endpoint serves (`livelambda cloud` lists them), else those of the app's configuration."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

STATS_PATH = "/_livelambda/lambda/stats"


def known_functions(endpoint_url: str, app_dir: Path | None) -> list[str]:
    """The endpoint's functions when it is a `livelambda cloud`, else the app's (possibly none)."""
    import httpx

    try:
        response = httpx.get(endpoint_url.rstrip("/") + STATS_PATH, timeout=2)
        functions = response.json().get("functions") if response.status_code == 200 else None
        if isinstance(functions, dict) and functions:
            return sorted(functions)
    except (httpx.HTTPError, ValueError, AttributeError):
        pass  # not ours (AWS, another emulator): the configuration still knows
    from devserver.config import ConfigError, find_config, load_config

    root = (app_dir or Path.cwd()).resolve()
    if find_config(root) is None:
        return []
    try:
        return sorted(load_config(root).functions)
    except ConfigError:
        return []


def suggestion(name: str, known: Sequence[str]) -> str:
    """`; did you mean 'hello'? (functions there: api, hello)`, or only the list, or nothing."""
    if not known:
        return ""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    there = f"(functions there: {', '.join(known)})"
    return f"; did you mean '{close[0]}'? {there}" if close else f" {there}"
