"""An app whose function has its own virtualenv (`python = ".venv"`, holding awslambdaric and nothing
of livelambda's) runs live under `livelambda dev --cloud`: the emulator's sandboxes import the stub and
websockets from the stub's real layer, unpacked under the app's `.livelambda/` as Lambda mounts a layer
at /opt, never from the function's interpreter."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from devserver.cloud.stub_mount import mount_stub_layer
from tests.dev_fixtures import running_dev
from tests.venvs import can_import, make_venv


def _own_venv(app: Path) -> None:
    """The README's Configuration: `python = ".venv"`, a venv with awslambdaric (copied, offline)."""
    python = make_venv(app / ".venv", ["awslambdaric"])
    assert can_import(python, "awslambdaric.bootstrap")
    assert not can_import(python, "websockets")  # the stub's dependency: only its layer has it
    config = app / "livelambda.toml"
    text = config.read_text()
    assert "[functions.hello]\n" in text
    config.write_text(text.replace("[functions.hello]\n", '[functions.hello]\npython = ".venv"\n', 1))


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_a_function_with_its_own_venv_answers_through_the_stub_and_the_dev_server(tmp_path: Path) -> None:
    with running_dev(tmp_path, prepare=_own_venv) as dev:
        response, payload = dev.invoke("hello", {"name": "Ada"})
        assert "FunctionError" not in response, payload
        assert payload["message"] == "Hello, Ada!" and payload["function"] == "hello"
        # The dev server ran it (its terminal line), in the function's venv.
        dev.wait_for(lambda: "saying hello to Ada" in dev.output(), "the dev server's line for it")
        # The sandbox runs the venv's interpreter with the unpacked layer, named by its sha256, on its path.
        stats = httpx.get(f"{dev.cloud_url}/_livelambda/lambda/stats", timeout=10).json()
        (sandbox,) = stats["functions"]["hello"]["sandboxes"]
        layer_dir = dev.app / ".livelambda" / "layer"
        digest = hashlib.sha256((layer_dir / "stub-layer.zip").read_bytes()).hexdigest()
        path = _environ(sandbox["pid"])["PYTHONPATH"].split(os.pathsep)
        assert path[:2] == [str(dev.app), str(layer_dir / digest / "python")]
        assert (
            Path(os.readlink(f"/proc/{sandbox['pid']}/exe")).resolve()
            == (dev.app / ".venv" / "bin" / "python").resolve()
        )
        # Warm: the same sandbox answers again.
        _, payload = dev.invoke("hello", {"name": "Bo"})
        assert payload["message"] == "Hello, Bo!"
        stats = httpx.get(f"{dev.cloud_url}/_livelambda/lambda/stats", timeout=10).json()
        assert [s["pid"] for s in stats["functions"]["hello"]["sandboxes"]] == [sandbox["pid"]]


def test_the_layer_is_unpacked_once_per_content(tmp_path: Path) -> None:
    python_dir = mount_stub_layer(tmp_path)
    zip_path = tmp_path / ".livelambda" / "layer" / "stub-layer.zip"
    assert (
        python_dir
        == tmp_path / ".livelambda" / "layer" / hashlib.sha256(zip_path.read_bytes()).hexdigest() / "python"
    )
    assert (python_dir / "stub_runtime" / "handler.py").is_file()
    assert (python_dir / "websockets" / "__init__.py").is_file()
    marker = python_dir / "unpacked-once"
    marker.write_text("")
    assert mount_stub_layer(tmp_path) == python_dir  # the same build: not unpacked again
    assert marker.exists()
    assert sorted(p.name for p in python_dir.parent.parent.iterdir() if not p.name.startswith(".")) == sorted(
        [python_dir.parent.name, "stub-layer.zip", "stub-layer.zip.sha256"]
    )
