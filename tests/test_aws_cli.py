"""`livelambda aws ...` and `livelambda dev --aws` as a user runs them: real processes, moto's server
behind AWS_ENDPOINT_URL, `livelambda cloud` behind AWS_ENDPOINT_URL_APPSYNC for the dev server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devserver.aws.live_config import STUB_HANDLER
from tests.aws_fixtures import AwsServer
from tests.conftest import TEST_IAM, CloudProcess

REPO = Path(__file__).resolve().parent.parent


def livelambda(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devserver", *args],
        cwd=cwd,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_credentials_up_says_how_to_give_them(tmp_path: Path, aws: AwsServer) -> None:
    app = aws.app(tmp_path / "shop", ["orders"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=aws.url,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    done = livelambda("aws", "up", "--app", str(app), env=env)
    assert done.returncode == 2
    assert "no AWS credentials found" in done.stdout and "aws sso login" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_status_lists_live_functions_and_down_needs_a_session(tmp_path: Path, aws: AwsServer) -> None:
    aws.function("orders")
    app = aws.app(tmp_path / "shop", ["orders"])
    up = livelambda("aws", "up", "--app", str(app))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "live" in up.stdout and "livelambda aws down" in up.stdout
    status = livelambda("aws", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "orders" in status.stdout and "shop-dev-" in status.stdout and "live" in status.stdout
    # no app here, no --session: the message says where to find one
    lost = livelambda("aws", "down", cwd=tmp_path)
    assert lost.returncode == 2 and "--session" in lost.stdout and "livelambda aws status" in lost.stdout
    session = next(w for w in status.stdout.split() if w.startswith("shop-dev-"))
    down = livelambda("aws", "down", "--session", session, cwd=tmp_path)  # as from another machine
    assert down.returncode == 0, down.stdout + down.stderr
    assert aws.snapshot(["orders"])["orders"]["Handler"] == "app.handler"
    assert aws.parameters() == []


def test_dev_aws_attaches_on_start_and_puts_back_on_sigterm(
    tmp_path: Path, aws: AwsServer, cloud: CloudProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_IAM.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_IAM.secret_access_key)
    aws.function("orders", timeout=5)
    before = aws.snapshot(["orders"])
    app = aws.app(tmp_path / "shop", ["orders"])
    ready = tmp_path / "ready.json"
    log = tmp_path / "dev.log"
    env = {**os.environ, "AWS_ENDPOINT_URL_APPSYNC": cloud.base_url}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devserver",
                "dev",
                str(app),
                "--aws",
                "--port",
                "0",
                "--ready-file",
                str(ready),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            assert aws.snapshot(["orders"])["orders"]["Handler"] == STUB_HANDLER
            # connected to the session's namespace on the emulated AppSync
            while not cloud.stats()["subscriptions"]:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "livelambda aws down --app" in text  # how to restore after a hard kill, said up front
    assert "restored" in text
    assert aws.snapshot(["orders"]) == before
    assert aws.parameters() == []
