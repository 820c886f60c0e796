"""The stub's Lambda layer: a zip holding what a function in live mode needs besides the Python runtime.

    python/stub_runtime/**            the stub package's .py files (no tests, no caches)
    python/websockets/**              the installed websockets, pure Python (its C speedups are left
                                      out: Lambda may run another architecture; websockets falls back)
    python/websockets-X.Y.dist-info/  METADATA, licenses, top_level.txt and a RECORD of this layer
    python/**/__pycache__/*.pyc       (unless `precompile=False`) bytecode for the running Python only

botocore is not in it: every Lambda Python runtime has it, and the stub imports it only to sign IAM
requests. Lambda mounts a layer at /opt, read-only, so Python can never write bytecode there: without
shipped .pyc every cold start compiles every module it imports. The .pyc are unchecked-hash based
(PEP 552), so they do not depend on the files' timestamps after unzipping; a runtime of another Python
version ignores them (their names carry the version) and compiles the sources as before.

The build is deterministic: sorted entries, fixed timestamps and modes, so two builds of the same tree
with the same Python are byte-identical and the sha256 identifies the layer.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stub_runtime.errors import DevServerFault

LAYER_ROOT = "python"  # Lambda puts /opt/python on sys.path for Python runtimes
MOUNT = "/opt"  # where Lambda unpacks layers: the file names compiled into the .pyc
DEFAULT_OUTPUT = Path(".livelambda") / "stub-layer.zip"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
PACKAGES = ("stub_runtime", "websockets")
_SKIP_DIRS = frozenset({"__pycache__", "tests", "test"})
_DIST_INFO_FILES = frozenset({"METADATA", "top_level.txt"})


class LayerBuildFailed(DevServerFault):
    error_type = "Livelambda.LayerBuildFailed"


@dataclass(frozen=True)
class LayerBuild:
    """A written layer zip."""

    path: Path
    size: int  # bytes of the zip
    files: int  # entries in the zip
    sha256: str  # hex digest of the zip
    pyc_tag: str | None  # e.g. "cpython-311": the one Python the shipped .pyc serve; None if sources only

    @property
    def sha256_path(self) -> Path:
        return sha256_path(self.path)


def sha256_path(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.name + ".sha256")


def package_dir(name: str) -> Path:
    """The directory of an importable package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LayerBuildFailed(f"the {name} package is not installed; run `make install` and build again")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _package_sources(name: str) -> dict[str, bytes]:
    """`python/<name>/...py` -> bytes: the package's Python sources, no caches, tests or binaries."""
    root = package_dir(name)
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for filename in filenames:
            if not filename.endswith(".py"):
                continue  # .so/.pyd speedups, .c, .pyi, py.typed: not needed at run time
            path = Path(dirpath, filename)
            rel = path.relative_to(root.parent).as_posix()
            files[f"{LAYER_ROOT}/{rel}"] = path.read_bytes()
    if f"{LAYER_ROOT}/{name}/__init__.py" not in files:
        raise LayerBuildFailed(f"{root} holds no {name}/__init__.py; is {name} installed completely?")
    return files


def _dist_info(dist_name: str, layer_files: dict[str, bytes]) -> dict[str, bytes]:
    """The distribution's METADATA, license files and top_level.txt, plus a RECORD of what the layer
    holds of it (the installed RECORD lists files the layer leaves out)."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise LayerBuildFailed(f"{dist_name} is not installed; run `make install` and build again") from None
    version = dist.version
    info_dir = f"{dist_name}-{version}.dist-info"
    out: dict[str, bytes] = {}
    for file in dist.files or ():
        parts = PurePosixPath(file.as_posix()).parts
        if len(parts) < 2 or not parts[0].endswith(".dist-info"):
            continue
        inner = parts[1:]
        if (len(inner) == 1 and inner[0] in _DIST_INFO_FILES) or inner[0] == "licenses":
            out[f"{LAYER_ROOT}/{info_dir}/{'/'.join(inner)}"] = file.read_binary()
    if f"{LAYER_ROOT}/{info_dir}/METADATA" not in out:
        raise LayerBuildFailed(f"the {dist_name} distribution has no METADATA; reinstall it")
    if not any("/licenses/" in name for name in out):
        raise LayerBuildFailed(f"the {dist_name} distribution ships no license file; cannot redistribute it")
    record_lines = []
    prefix = f"{LAYER_ROOT}/{dist_name}/"
    owned = {name: data for name, data in layer_files.items() if name.startswith(prefix)}
    for name, data in sorted({**owned, **out}.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{name[len(LAYER_ROOT) + 1:]},sha256={digest},{len(data)}")
    record_lines.append(f"{info_dir}/RECORD,,")
    out[f"{LAYER_ROOT}/{info_dir}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    return out


# Compiles in a fresh interpreter: marshal's output depends on reference counts (whether an object
# is written once and referenced, or written again), so bytecode marshalled inside a long-running
# process differs from build to build. A fresh `-I` interpreter doing the same work is reproducible.
_COMPILER = """
import base64, importlib.util, json, marshal, sys
out = {}
for arcname, (source, filename) in json.load(sys.stdin).items():
    source = base64.b64decode(source)
    code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
    flags = (0b01).to_bytes(4, "little")  # hash-based, check_source off
    pyc = importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)
    out[arcname] = base64.b64encode(pyc).decode()
json.dump(out, sys.stdout)
"""


def compile_pycs(sources: dict[str, bytes]) -> dict[str, bytes]:
    """Unchecked-hash bytecode (PEP 552) for the running Python, zip name of the source -> .pyc bytes:
    valid whatever the file times are after unzipping, and free of the build machine's paths
    (tracebacks name /opt/python/...)."""
    for arcname, source in sources.items():
        try:
            compile(source, arcname, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise LayerBuildFailed(f"{arcname} does not compile: {exc}") from None
    request = {a: (base64.b64encode(src).decode(), f"{MOUNT}/{a}") for a, src in sorted(sources.items())}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _COMPILER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONHASHSEED": "0"},
    )
    if done.returncode != 0:
        raise LayerBuildFailed(f"compiling the layer's bytecode failed: {done.stderr.strip()}")
    return {a: base64.b64decode(pyc) for a, pyc in json.loads(done.stdout).items()}


def pyc_name(arcname: str) -> str:
    """`python/pkg/mod.py` -> `python/pkg/__pycache__/mod.cpython-311.pyc` (the running Python's tag)."""
    path = PurePosixPath(arcname)
    tag = sys.implementation.cache_tag
    if tag is None:
        raise LayerBuildFailed(f"{sys.implementation.name} writes no bytecode caches; build with --no-pyc")
    return str(path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc")


def layer_contents(*, precompile: bool = True) -> dict[str, bytes]:
    """Every file of the layer: zip name -> bytes."""
    files: dict[str, bytes] = {}
    for name in PACKAGES:
        files.update(_package_sources(name))
    if precompile:
        for arcname, pyc in compile_pycs(files).items():
            files[pyc_name(arcname)] = pyc
    files.update(_dist_info("websockets", files))
    return files


def write_zip(path: Path, files: Iterable[tuple[str, bytes]]) -> None:
    """A deterministic zip: entries sorted by name, fixed date, mode 0644, deflate level 9."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # Unix, so that the mode below is honoured
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def build_layer(output: Path, *, precompile: bool = True) -> LayerBuild:
    """Write the layer zip to `output` (atomically) and its sha256 to `<output>.sha256`."""
    files = layer_contents(precompile=precompile)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        write_zip(tmp, files.items())
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    data = output.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    sha256_path(output).write_text(f"{digest}  {output.name}\n")
    return LayerBuild(
        path=output,
        size=len(data),
        files=len(files),
        sha256=digest,
        pyc_tag=sys.implementation.cache_tag if precompile else None,
    )


def unpack_layer(zip_path: Path, dest: Path) -> Path:
    """Unzip a layer into `dest` as Lambda does under /opt; returns `dest/python` (the sys.path entry)."""
    dest = dest.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            target = (dest / name).resolve()
            if not target.is_relative_to(dest):
                raise LayerBuildFailed(f"{zip_path} holds an entry outside the layer: {name!r}")
        zf.extractall(dest)
    return dest / LAYER_ROOT
