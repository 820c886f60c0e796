"""`make dev` installs what running livelambda needs; `make test`, `lint` and `bench` add the test tools
(and the wheels the tests install offline). pip must have nothing to warn about in the test extras."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess

import pytest
import tomllib

from tests.dev_fixtures import REPO


def _recipes(target: str) -> str:
    """What `make TARGET` would run from scratch (-n: print only, -B: as if nothing were installed)."""
    done = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_make_dev_installs_only_what_running_needs() -> None:
    dev = _recipes("dev")
    assert "pip install --progress-bar on -e .\n" in dev
    assert "[test]" not in dev and "pip download" not in dev


@pytest.mark.parametrize("target", ["test", "lint", "bench"])
def test_the_test_targets_install_the_test_tools_and_the_wheelhouse(target: str) -> None:
    recipes = _recipes(target)
    assert "pip install --progress-bar on -e '.[test]'" in recipes
    download = next(line for line in recipes.splitlines() if "pip download" in line)
    assert "-d .venv/wheelhouse" in download
    assert {"awslambdaric", "boto3", "pip", "iniconfig"} <= set(download.split())


def test_every_extra_asked_of_a_test_tool_exists() -> None:
    """pip warns "moto X does not provide the extra 'lambda'" for an extra the installed version lacks."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    for requirement in extras:
        match = re.match(r"^([A-Za-z0-9_.-]+)\[([^\]]+)\]", requirement)
        if match is None:
            continue
        name, asked = match.group(1), {e.strip() for e in match.group(2).split(",")}
        provided = set(importlib.metadata.metadata(name).get_all("Provides-Extra") or [])
        assert asked <= provided, f"{name} provides no extra {sorted(asked - provided)}"
