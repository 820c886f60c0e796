"""Debian's Chromium driven by Playwright, as every browser test launches it (never a downloaded
browser: `.ci/run` installs the `chromium` package)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("LIVELAMBDA_CHROMIUM", "/usr/bin/chromium")
# Headless as root on a closed network: without the background-networking flags Chromium keeps
# dialling Google's hosts and getting refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"
)


@contextlib.contextmanager
def checked_page(context: Any) -> Iterator[Any]:
    """A new tab; a JavaScript error the page raised fails the test when the tab is closed."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert errors == [], f"the page raised: {errors}"


@contextlib.contextmanager
def chromium_context(profile: Path, timeout_ms: int) -> Iterator[Any]:
    """A persistent browser context in a fresh profile, 1280x800, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(timeout_ms)
        try:
            yield context
        finally:
            context.close()
