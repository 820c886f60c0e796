"""A function without a `python` key runs in the app's own venv (devserver/runtime/app_env.py): what
Lambda's Python runtime holds (awslambdaric, boto3) plus what the app declares, nothing of
livelambda's own packages. Made offline from the wheels `make test` downloads (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from devserver.config import load_config
from devserver.reload.generations import FunctionRunner
from devserver.runtime import app_env
from devserver.runtime.invocation import InvocationRequest
from tests.conftest import CloudProcess
from tests.dev_fixtures import running_dev
from tests.lambda_fixtures import lambda_client

MADE = "making the functions' Python environment"

MODULES = {
    "boto.py": "import boto3\n\ndef handler(event, context):\n    return boto3.__file__\n",
    "needs.py": "import requests\n\ndef handler(event, context):\n    return 'unreachable'\n",
    "ini.py": "import iniconfig\n\ndef handler(event, context):\n    return iniconfig.__file__\n",
}
FUNCTIONS = """
[functions.boto]
handler = "boto.handler"

[functions.needs]
handler = "needs.handler"

[functions.ini]
handler = "ini.handler"
"""


def _add_functions(app: Path) -> None:
    for name, code in MODULES.items():
        (app / name).write_text(code)
    with (app / "livelambda.toml").open("a") as config:
        config.write(FUNCTIONS)


def _all_loaded(functions: list[dict[str, Any]], generation: int) -> bool:
    loads = [f for f in functions if f["name"] != "needs"]  # (that one never loads)
    return all(
        f["generation"] == generation
        and f["last_reload_error"] is None
        and any(w["state"] == "idle" and w["generation"] == generation for w in f["workers"])
        for f in loads
    )


def _invoke(client: Any, function: str) -> Any:
    return json.loads(client.invoke(FunctionName=function, Payload=b"{}")["Payload"].read())


def test_dev_runs_handlers_in_the_apps_venv_made_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVELAMBDA_CACHE_DIR", str(tmp_path / "cache"))  # the runtime copy from scratch too
    with running_dev(tmp_path, prepare=_add_functions) as dev:
        venv = dev.app / ".livelambda" / "venv"
        out = dev.output()
        assert out.count(MADE) == 1 and "(first use)" in out
        assert "installing awslambdaric, boto3, pip once" in out and "[3/3]" in out

        # What Lambda's runtime has comes from the venv...
        assert dev.invoke("boto", {})[1].startswith(str(venv) + "/")
        # ...livelambda's own packages do not exist for a handler, and the error says where to install.
        payload = dev.invoke("needs", {})[1]
        assert payload["errorType"] == "Runtime.ImportModuleError"
        message = payload["errorMessage"]
        assert message.startswith("Unable to import module 'needs': No module named 'requests'")
        assert f"{venv}/bin/python -m pip install requests" in message and "requirements.txt" in message

        # Not declared (examples/hello's requirements.txt lists nothing): not there.
        assert dev.invoke("ini", {})[1]["errorType"] == "Runtime.ImportModuleError"
        # Declared while it runs: made again, and the functions restart on it.
        (dev.app / "requirements.txt").write_text("iniconfig\n")
        dev.wait_for(
            lambda: isinstance(r := dev.invoke("ini", {})[1], str) and r.startswith(str(venv) + "/"),
            "the declared package is importable",
        )
        out = dev.output()
        assert out.count(MADE) == 2 and "(requirements.txt changed)" in out
        assert "Lambda's runtime packages: already in" in out  # installed once for the machine
        stamp = json.loads((venv / app_env.STAMP).read_text())
        assert stamp["sha256"] == hashlib.sha256(b"iniconfig\n").hexdigest()
        # Every function restarted on it (a new generation, a fresh forkserver), and they load.
        dev.wait_for(lambda: _all_loaded(dev.api("functions"), generation=2), "all on the new venv")
        assert dev.invoke("boto", {})[1].startswith(str(venv) + "/")


def test_cloud_makes_the_venv_before_its_sandboxes_start(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "livelambda.toml").write_text('app = "envs"\n' + FUNCTIONS)
    for name, code in MODULES.items():
        (app / name).write_text(code)
    (app / "requirements.txt").write_text("iniconfig  # a declared package\n")
    cloud = CloudProcess(tmp_path / "cloud", extra_args=("--app", str(app)))  # not live: the handlers run
    cloud.workdir.mkdir()
    cloud.start()
    try:
        assert cloud.output().count(MADE) == 1  # before it listened
        venv = app / ".livelambda" / "venv"
        client = lambda_client(cloud.base_url)
        assert _invoke(client, "boto").startswith(str(venv) + "/")
        assert _invoke(client, "ini").startswith(str(venv) + "/")
        error = _invoke(client, "needs")
        assert error["errorType"] == "Runtime.ImportModuleError"
        assert f"{venv}/bin/python -m pip install requests" in error["errorMessage"]
    finally:
        cloud.close()


async def test_the_venv_is_made_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "livelambda.toml").write_text('[functions.f]\nhandler = "f.handler"\n')
    (tmp_path / "f.py").write_text("def handler(event, context):\n    return 'ok'\n")
    function = load_config(tmp_path).functions["f"]
    making, release = threading.Event(), threading.Event()
    real = app_env.ensure_app_env

    def held(root: Path, progress: Any = print) -> Path:
        making.set()
        # Released by the test's coroutine: only if the loop runs while the venv is being made.
        assert release.wait(60), "the event loop was blocked while the venv was being made"
        return real(root, progress)

    monkeypatch.setattr(app_env, "ensure_app_env", held)
    runner = FunctionRunner(function, launcher="spawn", prewarm=False)
    try:
        start = asyncio.ensure_future(runner.start())
        assert await asyncio.to_thread(making.wait, 60)
        assert not start.done()
        release.set()
        await start
        outcome = await runner.invoke(InvocationRequest(payload=b"{}"))
        assert (outcome.status, outcome.payload) == ("ok", b'"ok"'), outcome.payload
    finally:
        release.set()
        await runner.close()


def test_what_an_app_declares(tmp_path: Path) -> None:
    assert app_env.declaration(tmp_path).pip_args == ()  # nothing: the runtime only
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["iniconfig>=2"]\n\n[tool.other]\nkey = 1\n'
    )
    declared = app_env.declaration(tmp_path)
    assert declared.pip_args == ("iniconfig>=2",) and declared.label.startswith("pyproject.toml")
    # Only the dependencies count: editing the rest of pyproject.toml makes nothing again.
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "y"\ndependencies = ["iniconfig>=2"]\n')
    assert app_env.declaration(tmp_path).sha256 == declared.sha256
    # requirements.txt wins; one with comments only installs nothing.
    (tmp_path / "requirements.txt").write_text("# nothing yet\n\n")
    assert app_env.declaration(tmp_path).pip_args == ()
    (tmp_path / "requirements.txt").write_text("iniconfig\n")
    assert app_env.declaration(tmp_path).pip_args == ("-r", "requirements.txt")


def test_the_import_hint_names_the_right_place(tmp_path: Path) -> None:
    (tmp_path / "livelambda.toml").write_text(
        f'[functions.own]\nhandler = "app.handler"\n\n[functions.mine]\nhandler = "app.handler"\n'
        f'python = "{sys.executable}"\n'
    )
    (tmp_path / "helpers.py").write_text("")
    config = load_config(tmp_path)
    own, mine = config.functions["own"], config.functions["mine"]
    hint = app_env.import_hint(own, "app.handler", "Unable to import module 'app': No module named 'yaml'")
    assert hint is not None and f"{tmp_path}/.livelambda/venv/bin/python -m pip install yaml" in hint
    hint = app_env.import_hint(mine, "app.handler", "Unable to import module 'app': No module named 'yaml'")
    assert hint == f"Install it into the function's interpreter: {sys.executable} -m pip install yaml"
    # The developer's own modules are not packages to install.
    own_file = "Unable to import module 'app': No module named 'app'"
    assert app_env.import_hint(own, "app.handler", own_file) is None
    assert app_env.import_hint(own, "app.handler", "No module named 'helpers.sub'") is None
    assert not (tmp_path / ".livelambda" / "venv").exists()  # loading a config makes nothing


def test_an_explicit_python_gets_no_venv(tmp_path: Path) -> None:
    (tmp_path / "livelambda.toml").write_text(
        f'[functions.f]\nhandler = "f.h"\npython = "{sys.executable}"\n'
    )
    config = load_config(tmp_path)
    assert config.functions["f"].app_env is None and not app_env.uses_app_env(config)
    app_env.ensure_for_app(config)
    assert not (tmp_path / ".livelambda" / "venv").exists()
