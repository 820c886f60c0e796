"""The proof that what `aws up` writes makes the stub work, not an assumption: `livelambda aws up` runs
against local servers (moto for Lambda, IAM, SSM, CloudWatch; `livelambda cloud` for AppSync's control
and data planes), then a sandbox of the Lambda emulator is started with exactly the configuration the
function now has in "AWS" (its handler, its environment, the published layer's python/ directory on
the path, as Lambda mounts a layer at /opt) and answers an invocation through `livelambda dev`.
After `aws down`, the same kind of sandbox runs the function's own handler again."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devserver.cloud.lambda_emulator import LambdaEmulator, LiveMode
from devserver.config import FunctionConfig
from devserver.processes import stop_process
from tests.aws_fixtures import AwsServer
from tests.conftest import TEST_IAM, CloudProcess

REPO = Path(__file__).resolve().parent.parent
DEPLOYED_PY = "def handler(event, context):\n    return {'ran': 'deployed code', 'event': event}\n"
LOCAL_PY = (
    "def handler(event, context):\n"
    "    print('local handler ran')\n"
    "    return {'ran': 'laptop', 'event': event}\n"
)


def _livelambda(aws: AwsServer, cloud: CloudProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL_APPSYNC": cloud.base_url}
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def _dev_server(app: Path, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    ready = tmp / "dev-ready.json"
    log = (tmp / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "devserver", "dev", str(app), "--port", "0", "--ready-file", str(ready)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, (tmp / "dev.log").read_text()
            assert time.monotonic() < deadline, "livelambda dev did not start"
            time.sleep(0.05)
        yield proc
    finally:
        stop_process(proc)
        log.close()


def _sandbox(name: str, cfg: dict[str, Any], code: Path, layer_python: Path | None) -> LambdaEmulator:
    """A Lambda emulator running `name` with exactly this configuration from the Lambda API."""
    function = FunctionConfig(
        name=name,
        handler=cfg["Handler"],
        source=code,
        python=Path(sys.executable),
        timeout=float(cfg["Timeout"]),
        memory=int(cfg["MemorySize"]),
    )
    env = (cfg.get("Environment") or {}).get("Variables") or {}
    live = LiveMode(handler=cfg["Handler"], env=env, pythonpath=(str(layer_python),) if layer_python else ())
    return LambdaEmulator({name: function}, live, freeze_idle=False)


async def _invoke(emulator: LambdaEmulator, name: str, event: Any) -> Any:
    try:
        outcome = await emulator.invoke(name, json.dumps(event).encode())
    finally:
        await emulator.close()
    assert outcome.ok, (outcome.payload, outcome.logs)
    return json.loads(outcome.payload)


@pytest.mark.parametrize("auth", ["iam", "api-key"])
async def test_a_switched_function_answers_through_the_dev_server_and_its_own_code_after_down(
    aws: AwsServer, cloud: CloudProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    # The developer's credentials sign for the dev server, and the function role's for the stub:
    # the emulated AppSync accepts these (moto accepts anything).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_IAM.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_IAM.secret_access_key)
    deployed = tmp_path / "deployed"
    deployed.mkdir()
    (deployed / "app.py").write_text(DEPLOYED_PY)
    aws.function("orders", environment={"TABLE": "orders-table"}, timeout=10)
    before = aws.snapshot(["orders"])
    app = aws.app(tmp_path / "shop", ["orders"])
    (app / "app.py").write_text(LOCAL_PY)

    up = _livelambda(aws, cloud, "aws", "up", "--app", str(app), "--auth", auth)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "runs orders here" in up.stdout

    lam = aws.client("lambda")
    cfg = lam.get_function_configuration(FunctionName="orders")
    # The layer in the function's configuration is the zip `livelambda stub build` makes.
    layer_arn = cfg["Layers"][0]["Arn"]
    name, version = layer_arn.rsplit(":", 2)[-2:]
    published = lam.get_layer_version(LayerName=name, VersionNumber=int(version))
    built = app / ".livelambda" / "stub-layer.zip"
    assert (
        published["Content"]["CodeSha256"]
        == base64.b64encode(hashlib.sha256(built.read_bytes()).digest()).decode()
    )
    opt = tmp_path / "opt"
    with zipfile.ZipFile(built) as z:
        z.extractall(opt)

    with _dev_server(app, tmp_path):
        answer = await _invoke(_sandbox("orders", cfg, deployed, opt / "python"), "orders", {"n": 1})
    assert answer == {"ran": "laptop", "event": {"n": 1}}
    assert "local handler ran" in (tmp_path / "dev.log").read_text()
    stats = cloud.stats()
    assert stats["channel_namespaces"] >= 1 and stats["events_delivered"] >= 2  # the invoke and the result

    down = _livelambda(aws, cloud, "aws", "down", "--app", str(app))
    assert down.returncode == 0, down.stdout + down.stderr
    assert aws.snapshot(["orders"]) == before
    cfg = lam.get_function_configuration(FunctionName="orders")
    answer = await _invoke(_sandbox("orders", cfg, deployed, None), "orders", {"n": 2})
    assert answer == {"ran": "deployed code", "event": {"n": 2}}
    assert cloud.stats()["channel_namespaces"] == 0  # the session's namespace is gone
