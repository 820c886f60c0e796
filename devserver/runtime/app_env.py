"""The function's own Python environment, as Lambda gives it: a virtualenv for the app holding what
the Lambda Python runtime holds (awslambdaric, boto3) plus what the app declares (`requirements.txt`,
else `[project] dependencies` in `pyproject.toml`), and nothing else. A handler that imports a package
it does not declare fails here as it fails in Lambda, not only after a deploy.

    <app>/.livelambda/venv                      used by every function without a `python` key: a
                                                symlink to the current venv-<id>/ (switched at once)
    <app>/.livelambda/venv/livelambda-env.json  its stamp: the declaration's sha256, the runtime copy
    ~/.cache/livelambda/runtime-python3.X-<id>/ the runtime packages, installed once per machine
                                                ($LIVELAMBDA_CACHE_DIR, else $XDG_CACHE_HOME/livelambda)

Made on first use and made again, from scratch, when the declaration changes: so a package removed
from requirements.txt is gone too. Making one is quick after the first: the runtime packages are
linked (hard links, else copies) from the machine's one copy, and pip runs only for what the app
declares. Everything blocks: callers on an event loop use `prepare()`, which runs it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tomllib

from devserver.config import APP_ENV_DIR, AppConfig, FunctionConfig
from devserver.live.session import state_dir
from stub_runtime.errors import CallerFault

Progress = Callable[[str], None]

# What Lambda's Python runtime gives a handler to import, and pip, so that the hint's
# `<venv>/bin/python -m pip install X` works (Lambda's base images have pip too).
RUNTIME_PACKAGES = ("awslambdaric", "boto3", "pip")
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
STAMP = "livelambda-env.json"
CACHE_ENV = "LIVELAMBDA_CACHE_DIR"
ERROR_TYPE = "Livelambda.RuntimeMissing"  # as the runner reports an interpreter that cannot run workers

# A failed install is not retried for the same declaration in this process: every cold start would
# run pip again. Saving a changed requirements.txt tries again.
_failed: dict[Path, tuple[str, str]] = {}


class AppEnvError(CallerFault):
    """The function's environment could not be made (pip failed, a declaration is unreadable)."""

    error_type = ERROR_TYPE


@dataclass(frozen=True)
class Declaration:
    """What the app declares it needs besides the runtime."""

    label: str  # "requirements.txt", "pyproject.toml [project] dependencies", or "" (nothing declared)
    sha256: str
    pip_args: tuple[str, ...]  # what `pip install` gets; () when nothing is to be installed


def venv_dir(app_root: Path) -> Path:
    return app_root / APP_ENV_DIR


def uses_app_env(app: AppConfig) -> bool:
    """Whether any function runs in the app's environment (has no `python` key)."""
    return any(f.app_env is not None for f in app.functions.values())


def declaration(app_root: Path) -> Declaration:
    """The app's requirements.txt, else its pyproject.toml's [project] dependencies, else nothing."""
    requirements = app_root / REQUIREMENTS
    if requirements.is_file():
        data = requirements.read_bytes()
        lines = [ln.split("#", 1)[0].strip() for ln in data.decode("utf-8", "replace").splitlines()]
        args = ("-r", REQUIREMENTS) if any(lines) else ()
        return Declaration(REQUIREMENTS, hashlib.sha256(data).hexdigest(), args)
    pyproject = app_root / PYPROJECT
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project")
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise AppEnvError(f"{pyproject}: cannot read it: {exc}") from None
        deps = project.get("dependencies") if isinstance(project, dict) else None
        if isinstance(deps, list) and all(isinstance(d, str) for d in deps):
            digest = hashlib.sha256(json.dumps(deps).encode()).hexdigest()  # the list, not the whole file
            return Declaration(f"{PYPROJECT} [project] dependencies", digest, tuple(deps))
    return Declaration("", hashlib.sha256(b"").hexdigest(), ())


def cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "livelambda"


def runtime_key() -> str:
    """Names the runtime copy: this base interpreter and the package list (compiled extensions such
    as awslambdaric's fit one interpreter only)."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    digest = hashlib.sha256(f"{base}\n{sys.version}\n{RUNTIME_PACKAGES}".encode()).hexdigest()[:10]
    return f"runtime-python{sys.version_info.major}.{sys.version_info.minor}-{digest}"


def is_current(app_root: Path) -> bool:
    """The environment exists and was made from the app's current declaration."""
    return _stale_reason(app_root, declaration(app_root)) is None


def ensure_app_env(app_root: Path, progress: Progress = print) -> Path:
    """Make the app's environment if it is missing or out of date (one line of `progress` per step,
    pip's own output on this process's stdout/stderr); its interpreter. Raises AppEnvError."""
    app_root = Path(app_root).resolve()
    python = venv_dir(app_root) / "bin" / "python"
    if is_current(app_root):
        return python
    with _locked(state_dir(app_root) / "venv.lock"):  # a dev server and its cloud may start together
        decl = declaration(app_root)
        reason = _stale_reason(app_root, decl)
        if reason is None:
            return python
        failed = _failed.get(app_root)
        if failed is not None and failed[0] == decl.sha256:
            raise AppEnvError(failed[1])
        try:
            _make(app_root, decl, reason, progress)
        except AppEnvError as exc:
            _failed[app_root] = (decl.sha256, str(exc))
            raise
        _failed.pop(app_root, None)
    return python


def ensure_for_app(app: AppConfig, progress: Progress = print) -> None:
    """`ensure_app_env` when any function of `app` uses the app's environment."""
    if uses_app_env(app):
        ensure_app_env(app.root, progress)


async def prepare(function: FunctionConfig, progress: Progress = print) -> str | None:
    """From an event loop: make `function`'s environment in a thread (the loop keeps serving). Why it
    cannot be made, or None (also for a function with its own `python`)."""
    if function.app_env is None:
        return None
    try:
        await asyncio.to_thread(ensure_app_env, function.app_env, progress)
    except AppEnvError as exc:
        return str(exc)
    return None


# -- making it --------------------------------------------------------------------------------------


def _stale_reason(app_root: Path, decl: Declaration) -> str | None:
    target = venv_dir(app_root)
    if not (target / "bin" / "python").exists():  # (follows the link: a removed base Python counts)
        return "first use"
    try:
        stamp = json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return "not finished last time"
    if stamp.get("runtime") != runtime_key():
        return "livelambda's Python changed"
    if stamp.get("sha256") != decl.sha256:
        return f"{decl.label or stamp.get('declared') or 'the declaration'} changed"
    return None


def _make(app_root: Path, decl: Declaration, reason: str, progress: Progress) -> None:
    """A new venv beside the one in use, then `venv` (a symlink) switched to it in one rename: workers
    running meanwhile keep a whole environment, never a half-made one. The one before is removed next
    time, once no worker runs from it."""
    started = time.monotonic()
    link = venv_dir(app_root)
    declared = decl.label or f"nothing else (no {REQUIREMENTS})"
    progress(
        f"livelambda: making the functions' Python environment {shown(link)} ({reason}): "
        f"Lambda's runtime packages (awslambdaric, boto3) + {declared}"
    )
    runtime = _runtime_copy(progress)
    progress("  [2/3] creating the virtualenv, its runtime packages linked from that copy")
    in_use = os.readlink(link) if link.is_symlink() else None
    for old in link.parent.glob(f"{link.name}-*"):
        if old.name != in_use:
            shutil.rmtree(old, ignore_errors=True)
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    # From scratch, at its final path (pip writes it into scripts): nothing of what is no longer declared.
    target = link.with_name(f"{link.name}-{secrets.token_hex(4)}")
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(target)
    _link_tree(runtime, _site_packages(target))
    python = target / "bin" / "python"
    if decl.pip_args:
        progress(f"  [3/3] installing {decl.label} (pip shows its progress)")
        _pip([str(python), "-m", "pip", "install", *decl.pip_args], app_root, what=decl.label)
    else:
        nothing = f"{decl.label} lists no package" if decl.label else f"no {REQUIREMENTS}"
        progress(f"  [3/3] nothing to install ({nothing})")
    stamp = {"runtime": runtime_key(), "declared": decl.label, "sha256": decl.sha256}
    (target / STAMP).write_text(json.dumps(stamp) + "\n")
    switch = link.with_name(f".{link.name}.{os.getpid()}")
    switch.unlink(missing_ok=True)
    os.symlink(target.name, switch)
    os.replace(switch, link)
    progress(f"  ready in {time.monotonic() - started:.1f} s")


def _runtime_copy(progress: Progress) -> Path:
    """The runtime packages for this interpreter, installed once per machine into the cache."""
    base = cache_dir()
    target = base / runtime_key()
    if target.is_dir():
        progress(f"  [1/3] Lambda's runtime packages: already in {shown(target)}")
        return target
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / f"{target.name}.lock"):
        if target.is_dir():
            progress(f"  [1/3] Lambda's runtime packages: already in {shown(target)}")
            return target
        progress(
            f"  [1/3] Lambda's runtime packages: installing {', '.join(RUNTIME_PACKAGES)} once for this "
            f"machine into {shown(target)} (pip shows its progress)"
        )
        # Installed aside, then renamed: a directory with the final name is always complete.
        partial = base / f".{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _pip(
            [sys.executable, "-m", "pip", "install", "--target", str(partial), *RUNTIME_PACKAGES],
            base,
            what="Lambda's runtime packages",
        )
        shutil.rmtree(partial / "bin", ignore_errors=True)  # scripts pointing at livelambda's Python
        partial.rename(target)
    return target


def _pip(argv: list[str], cwd: Path, *, what: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)  # pip must see the target environment only
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise AppEnvError(f"cannot run pip to install {what}: {exc}") from None
    if done.returncode != 0:
        offline = " (offline? pip honours PIP_INDEX_URL, PIP_FIND_LINKS and PIP_NO_INDEX)"
        raise AppEnvError(
            f"pip could not install {what} (exit status {done.returncode}; its output is above){offline}; "
            f"fix it, then save {REQUIREMENTS} or start livelambda again"
        )


def _site_packages(target: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return target / "lib" / version / "site-packages"


def _link_tree(source: Path, destination: Path) -> None:
    """Hard links where the file system allows (fast, no space), copies elsewhere. pip replaces a
    file by unlinking it, so an upgrade in one environment never changes the shared copy."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, symlinks=True, copy_function=link, dirs_exist_ok=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def shown(path: Path) -> str:
    """A path as a user types it from here: relative below the working directory, else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith(os.pardir) else relative


# -- the hint on a failed import --------------------------------------------------------------------

_NO_MODULE = re.compile(r"No module named '([^']+)'")


def import_hint(function: FunctionConfig, handler: str, message: str) -> str | None:
    """For a `Runtime.ImportModuleError` of a package missing from the function's environment: where
    to install it. None when the missing module is the developer's own (the handler's file, say)."""
    match = _NO_MODULE.search(message)
    if match is None:
        return None
    top = match.group(1).split(".", 1)[0]
    own = handler.rsplit(".", 1)[0].replace("/", ".").split(".", 1)[0]
    if top == own or (function.source / top).exists() or (function.source / f"{top}.py").exists():
        return None
    install = f"{function.python} -m pip install {top}"
    if function.app_env is None:
        return f"Install it into the function's interpreter: {install}"
    label = declaration(function.app_env).label or REQUIREMENTS
    file = PYPROJECT if label.startswith(PYPROJECT) else REQUIREMENTS
    return (
        f"livelambda runs this function with {venv_dir(function.app_env)}, which holds what Lambda's "
        f"Python runtime has (boto3) and what the app declares: add {top} to {file} (livelambda installs "
        f"it), or install it into the function's environment: {install}"
    )


def with_import_hint(body: bytes, function: FunctionConfig, handler: str) -> bytes:
    """The runtime's error JSON with the hint after its message (unchanged when there is none)."""
    try:
        error = json.loads(body)
    except ValueError:
        return body
    if not isinstance(error, dict) or not isinstance(error.get("errorMessage"), str):
        return body
    hint = import_hint(function, handler, error["errorMessage"])
    if hint is None:
        return body
    error["errorMessage"] = f"{error['errorMessage'].rstrip('.')}. {hint}"
    return json.dumps(error).encode()
