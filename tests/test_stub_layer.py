"""The stub's Lambda layer (`livelambda stub build`): what it holds, that two builds are byte-identical,
that it imports with nothing but the standard library beside it, and that a live invocation works
with the sandboxes running the unpacked layer instead of the repo (`LIVELAMBDA_STUB_PATH`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import stub_runtime
from devserver.cloud.live import STUB_PATH_ENV, stub_import_root
from devserver.config import AppConfig
from devserver.layer import ZIP_DATE, build_layer, unpack_layer
from devserver.live.bridge import LiveInvocation
from stub_runtime.errors import LivelambdaError
from tests.live_fixtures import LiveCloud, running_live_cloud

REPO = Path(__file__).resolve().parent.parent
LIVELAMBDA = REPO / ".venv" / "bin" / "livelambda"
TAG = sys.implementation.cache_tag
FORBIDDEN = ("botocore", "boto3", "fastapi", "devserver", "awslambdaric", "uvicorn", "websockets.speedups")


@pytest.fixture(scope="module")
def layer_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_layer(tmp_path_factory.mktemp("layer") / "stub-layer.zip").path


@pytest.fixture(scope="module")
def sources_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_layer(tmp_path_factory.mktemp("layer-src") / "stub-layer.zip", precompile=False).path


def test_layer_holds_the_stub_and_pure_python_websockets(layer_zip: Path) -> None:
    with zipfile.ZipFile(layer_zip) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert all(i.date_time == ZIP_DATE and (i.external_attr >> 16) == 0o100644 for i in infos)
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert all(n.startswith("python/") for n in names)
    sources = {n for n in names if n.endswith(".py")}
    repo_stub = Path(stub_runtime.__file__).parent
    expected_stub = {
        f"python/stub_runtime/{p.relative_to(repo_stub).as_posix()}"
        for p in repo_stub.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert {n for n in sources if n.startswith("python/stub_runtime/")} == expected_stub
    assert "python/websockets/asyncio/client.py" in sources
    assert "python/websockets/frames.py" in sources
    # Nothing platform-specific, no caches of the build machine, no tests, nothing but the two packages.
    assert not [n for n in names if n.endswith((".so", ".pyd", ".c", ".pyi"))]
    assert not [n for n in names if "/tests/" in n or "/test/" in n]
    tops = {n.split("/")[1] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"stub_runtime", "websockets"}
    assert "Name: websockets" in metadata
    dist_info = [n for n in names if ".dist-info/" in n]
    assert any("/licenses/" in n for n in dist_info)
    assert any(n.endswith("/RECORD") for n in dist_info)
    # One .pyc per source, for the running Python only, hash-based and unchecked (PEP 552).
    pycs = {n for n in names if n.endswith(".pyc")}
    assert len(pycs) == len(sources)
    assert all(n.endswith(f".{TAG}.pyc") and "/__pycache__/" in n for n in pycs)
    with zipfile.ZipFile(layer_zip) as zf:
        header = zf.read(f"python/stub_runtime/__pycache__/handler.{TAG}.pyc")[:8]
    import importlib.util

    assert header[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(header[4:8], "little") == 0b01


def test_sources_only_layer_has_no_bytecode(sources_zip: Path) -> None:
    with zipfile.ZipFile(sources_zip) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert "python/stub_runtime/handler.py" in names


def test_two_builds_are_byte_identical_also_from_the_command_line(
    tmp_path: Path, layer_zip: Path
) -> None:
    again = build_layer(tmp_path / "again.zip")
    assert again.path.read_bytes() == layer_zip.read_bytes()
    # The command, in another process, with the default output under the current directory.
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [str(LIVELAMBDA), "stub", "build"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = work / ".livelambda" / "stub-layer.zip"
    data = out.read_bytes()
    assert data == layer_zip.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert (work / ".livelambda" / "stub-layer.zip.sha256").read_text() == f"{digest}  stub-layer.zip\n"
    assert (work / ".livelambda" / ".gitignore").exists()
    printed = done.stdout
    assert str(out) in printed and digest in printed
    assert f"{len(data):,} bytes" in printed
    with zipfile.ZipFile(out) as zf:
        assert f"files    {len(zf.namelist())}" in printed
    # --output anywhere, directories created.
    target = tmp_path / "some" / "dir" / "layer.zip"
    done = subprocess.run(
        [str(LIVELAMBDA), "stub", "build", "--output", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == data
    assert (tmp_path / "some" / "dir" / "layer.zip.sha256").read_text().startswith(digest)


_ISOLATED_IMPORT = r"""
import json, sys, sysconfig
from importlib.machinery import SourceFileLoader
layer = sys.argv[1]
sys.path.insert(0, layer)
compiled = []
_source_to_code = SourceFileLoader.source_to_code
def source_to_code(self, data, path, *args, **kw):
    compiled.append(str(path))
    return _source_to_code(self, data, path, *args, **kw)
SourceFileLoader.source_to_code = source_to_code
import stub_runtime.handler
import stub_runtime.appsync.client, websockets.asyncio.client
stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
files = {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())}
print(json.dumps({
    "modules": sorted(sys.modules),
    "outside": sorted(n for n, f in files.items()
                      if f and not f.startswith(layer) and not any(f.startswith(s) for s in stdlib)),
    "from_layer": sorted(n for n, f in files.items() if f and f.startswith(layer)),
    "compiled": [p for p in compiled if p.startswith(layer)],
    "handler": stub_runtime.handler.handler.__module__,
}))
"""


def _import_isolated(python_dir: Path) -> dict[str, Any]:
    """Import the stub in `python -I -S`: the standard library and the layer, nothing else."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", _ISOLATED_IMPORT, str(python_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_stub_imports_with_only_the_stdlib_and_the_layer(tmp_path: Path, layer_zip: Path) -> None:
    python_dir = unpack_layer(layer_zip, tmp_path / "opt")
    result = _import_isolated(python_dir)
    assert result["handler"] == "stub_runtime.handler"
    loaded = set(result["modules"])
    for name in FORBIDDEN:
        assert not any(m == name or m.startswith(name + ".") for m in loaded), name
    assert result["outside"] == []  # every module came from the stdlib or the layer
    assert "stub_runtime.sandbox" in result["from_layer"]
    assert "websockets.asyncio.client" in result["from_layer"]
    # The shipped bytecode is accepted as it is: nothing of the layer compiled from source.
    assert result["compiled"] == []


def test_sources_only_layer_imports_too(tmp_path: Path, sources_zip: Path) -> None:
    python_dir = unpack_layer(sources_zip, tmp_path / "opt")
    result = _import_isolated(python_dir)
    assert result["outside"] == []
    assert any(p.endswith("stub_runtime/handler.py") for p in result["compiled"])


def test_stub_path_must_hold_the_stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, stub = tmp_path / "app", tmp_path / "stub"
    app.mkdir()
    stub.mkdir()
    monkeypatch.setenv(STUB_PATH_ENV, str(stub))
    with pytest.raises(LivelambdaError, match=r"stub_runtime/handler\.py"):
        stub_import_root(app)
    (stub / "stub_runtime").mkdir()
    (stub / "stub_runtime" / "handler.py").write_text("")
    assert stub_import_root(app) == str(stub.resolve())
    assert not (app / ".livelambda").exists()  # the override builds no layer
    monkeypatch.delenv(STUB_PATH_ENV)
    # By default: the real layer, built and unpacked under the app's state directory.
    default = Path(stub_import_root(app))
    assert default.parent.parent == app / ".livelambda" / "layer"
    assert (default / "stub_runtime" / "handler.py").is_file() and (default / "websockets").is_dir()


# -- a live invocation through the unpacked layer -------------------------------------------------

_MARK = """import importlib.util as _util
import os as _os

_os.environ["STUB_LAYER_MARK"] = __file__
_os.environ["STUB_LAYER_WEBSOCKETS"] = _util.find_spec("websockets").origin
"""


@pytest.fixture
def marked_layer(tmp_path: Path, layer_zip: Path) -> Path:
    """The layer unpacked, its (empty) `stub_runtime/__init__.py` made to say, in the sandbox's
    environment (which the stub's hello reports), which stub_runtime and websockets it got."""
    python_dir = unpack_layer(layer_zip, tmp_path / "opt")
    init = python_dir / "stub_runtime" / "__init__.py"
    assert init.read_text() == ""
    init.write_text(_MARK)
    (python_dir / "stub_runtime" / "__pycache__" / f"__init__.{TAG}.pyc").unlink()
    return python_dir


@pytest.fixture
async def layer_cloud(
    tmp_path: Path, live_app: AppConfig, marked_layer: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LiveCloud]:
    """`livelambda cloud --app DIR --live` whose sandboxes import the stub from the unpacked layer."""
    monkeypatch.setenv(STUB_PATH_ENV, str(marked_layer))  # the cloud subprocess inherits it
    async with running_live_cloud(tmp_path / "cloud", live_app) as live:
        yield live


async def test_live_invocation_runs_the_stub_from_the_layer(
    layer_cloud: LiveCloud, marked_layer: Path
) -> None:
    seen: list[LiveInvocation] = []

    async def execute(inv: LiveInvocation) -> dict[str, Any]:
        seen.append(inv)
        return {"status": "ok", "response": {"echo": inv.event}}

    await layer_cloud.bridge(execute)
    event = {"via": "layer", "n": [1, 2, 3]}
    response, payload = await asyncio.to_thread(layer_cloud.invoke, "echo", event)
    assert "FunctionError" not in response, payload
    assert payload == {"echo": event}
    hello = seen[0].hello
    assert hello is not None
    env = hello["environment"]
    assert env["STUB_LAYER_MARK"] == str(marked_layer / "stub_runtime" / "__init__.py")
    assert env["STUB_LAYER_WEBSOCKETS"] == str(marked_layer / "websockets" / "__init__.py")
    # Warm: the same sandbox, the same connection.
    _, payload = await asyncio.to_thread(layer_cloud.invoke, "echo", {"n": 2})
    assert payload == {"echo": {"n": 2}}
    assert seen[1].sandbox_id == seen[0].sandbox_id
