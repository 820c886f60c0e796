"""`livelambda --version`, and `livelambda invoke` suggesting a close function name when the one given
does not exist (from what the emulator serves, else from the app's configuration)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import subprocess
import sys
from pathlib import Path

from tests.live_fixtures import LiveCloud


def livelambda(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args], capture_output=True, text=True, timeout=60
    )


def test_version_is_the_installed_packages() -> None:
    proc = livelambda("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"livelambda {importlib.metadata.version('livelambda')}\n"


def test_invoke_suggests_a_close_name_from_the_apps_configuration(tmp_path: Path, cloud) -> None:
    app = tmp_path / "shop"
    app.mkdir()
    (app / "livelambda.toml").write_text(
        '[functions.hello]\nhandler = "hello.handler"\n[functions.api]\nhandler = "api.handler"\n'
    )
    # This cloud serves no function at all (started without --app): the configuration is what is known.
    proc = livelambda("invoke", "helo", "--app", str(app), "--endpoint-url", cloud.base_url)
    assert proc.returncode == 1
    assert "ResourceNotFoundException" in proc.stderr
    assert "did you mean 'hello'? (functions there: api, hello)" in proc.stderr, proc.stderr


async def test_invoke_suggests_a_close_name_the_emulator_serves(live_cloud: LiveCloud) -> None:
    url = live_cloud.cloud.base_url
    proc = await asyncio.to_thread(livelambda, "invoke", "ecko", "--endpoint-url", url)
    assert proc.returncode == 1
    assert "did you mean 'echo'? (functions there: echo, lost, quick, vpc)" in proc.stderr, proc.stderr
    proc = await asyncio.to_thread(livelambda, "invoke", "zzz", "--endpoint-url", url)
    assert "did you mean" not in proc.stderr and "(functions there: echo, lost, quick, vpc)" in proc.stderr
