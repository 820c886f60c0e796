"""`livelambda cloud --app DIR` follows the app's configuration while it runs, as the dev server does:
a function added to livelambda.toml can be invoked, a changed one gets new sandboxes, a removed one
answers ResourceNotFoundException, and a configuration that does not load keeps the functions there
were, with one clear log line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.conftest import CloudProcess, _launch
from tests.dev_fixtures import running_dev
from tests.lambda_fixtures import lambda_client, wait_until

DEADLINE_S = 30.0  # generous: two shared cores; every wait ends as soon as the answer is there


def save(path: Path, text: str) -> None:
    """Write as editors do: a whole new file renamed over the old (never a half-written config)."""
    tmp = path.with_name(f".{path.name}.saving")
    tmp.write_text(text)
    os.replace(tmp, path)


def not_found(invoke: Callable[[], Any]) -> bool:
    try:
        invoke()
    except botocore.exceptions.ClientError as exc:
        return exc.response["Error"]["Code"] == "ResourceNotFoundException"
    return False


# -- through `livelambda dev --cloud`: the dev server and the cloud both follow the save ----------


def test_a_function_added_while_dev_runs_can_be_invoked(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        _, payload = dev.invoke("hello", {"name": "Ada"})  # the app as it started
        assert payload["message"] == "Hello, Ada!"
        config = dev.app / "livelambda.toml"
        save(config, config.read_text() + '\n[functions.greet]\nhandler = "hello.handler"\n')

        def answered() -> Any:
            try:
                response, payload = dev.invoke("greet", {"name": "Bo"})
            except botocore.exceptions.ClientError as exc:  # the cloud has not seen the save yet
                assert exc.response["Error"]["Code"] == "ResourceNotFoundException", exc
                return None
            # until the dev server has seen it too, it answers that it does not know the function
            return payload if "FunctionError" not in response else None

        payload = dev.wait_for(answered, "the new function answers through the stub", timeout=DEADLINE_S)
        assert (payload["message"], payload["function"]) == ("Hello, Bo!", "greet")
        dev.wait_for(lambda: "saying hello to Bo" in dev.output(), "the dev server ran it")


# -- the cloud alone: change, break, remove --------------------------------------------------------

APP_TOML = """
app = "follow"

[functions.one]
handler = "funcs.handler"
environment = {{ GREETING = "{greeting}" }}

[functions.two]
handler = "funcs.handler"
"""

FUNCS_PY = """
import os


def handler(event, context):
    return {"greeting": os.environ.get("GREETING"), "pid": os.getpid(), "function": context.function_name}
"""


@pytest.fixture
def app_cloud(tmp_path: Path) -> Iterator[tuple[Path, CloudProcess]]:
    """`livelambda cloud --app APP` (not live: the functions' own handlers run in its sandboxes)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "livelambda.toml").write_text(APP_TOML.format(greeting="hi"))
    (app / "funcs.py").write_text(FUNCS_PY)
    process = _launch(tmp_path / "cloud", ("--app", str(app)))
    try:
        yield app, process
    finally:
        process.close()


def test_the_cloud_restarts_a_changed_function_keeps_a_broken_config_and_drops_a_removed_one(
    app_cloud: tuple[Path, CloudProcess],
) -> None:
    app, cloud = app_cloud
    client = lambda_client(cloud.base_url)
    config = app / "livelambda.toml"

    def invoke(name: str) -> dict[str, Any]:
        response = client.invoke(FunctionName=name, Payload=b"{}")
        assert "FunctionError" not in response
        return json.loads(response["Payload"].read())

    first = invoke("one")
    assert first["greeting"] == "hi"
    assert invoke("one")["pid"] == first["pid"]  # warm

    # Changed: the next invocation runs in a new sandbox, with the new settings.
    save(config, APP_TOML.format(greeting="hello"))
    changed = wait_until(
        lambda: (r := invoke("one"))["greeting"] == "hello" and r,
        DEADLINE_S,
        "the changed function's new sandbox",
        cloud.output,
    )
    assert changed["pid"] != first["pid"]
    wait_until(
        lambda: "livelambda.toml reloaded: restarted one" in cloud.output(),
        DEADLINE_S,
        "the reload's line",
        cloud.output,
    )

    # Broken: the functions there were keep answering; one line says why and that nothing changed.
    save(config, APP_TOML.format(greeting="hello") + "\n[functions.three\n")
    refused = (
        "livelambda.toml not applied, the previous functions keep running: livelambda.toml: not valid TOML"
    )
    wait_until(lambda: refused in cloud.output(), DEADLINE_S, "the broken config's line", cloud.output)
    assert invoke("one") == changed  # the same sandbox, the same settings
    assert invoke("two")["function"] == "two"

    # Removed: ResourceNotFoundException; the others still answer.
    save(config, APP_TOML.format(greeting="hello").split("[functions.two]")[0])
    wait_until(
        lambda: not_found(lambda: invoke("two")), DEADLINE_S, "the removed function is gone", cloud.output
    )
    assert invoke("one") == changed
    lines = [line for line in cloud.output().splitlines() if "livelambda.toml" in line]
    assert sum(refused in line for line in lines) == 1, lines
    assert "Traceback" not in cloud.output()
