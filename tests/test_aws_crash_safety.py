"""`aws up` stopped after each one of its AWS calls in turn, by an exception and by SIGKILL; then
`aws down` (in a fresh process, as after a crash) must leave every function exactly as it was, and
nothing of the session behind: no record, no role policy, no namespace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devserver.aws.down import Detach, DownOptions
from devserver.aws.progress import SilentProgress
from devserver.aws.up import Attach, UpOptions
from devserver.config import load_config
from devserver.live.session import load_or_create
from tests.aws_faults import InjectedFault, install
from tests.aws_fixtures import AwsServer

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = ["orders", "payments"]


def _deploy(aws: AwsServer) -> dict:
    lam = aws.client("lambda")
    dep = lam.publish_layer_version(LayerName="deps", Content={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    aws.function("orders", environment={"TABLE": "orders"}, layers=[dep["LayerVersionArn"]], timeout=9)
    aws.function("payments")
    return aws.snapshot(FUNCTIONS)


def _up(aws: AwsServer, app: Path) -> None:
    config = load_config(app)
    session = load_or_create(config.root, config.app, config.stage)
    Attach(aws.context(), config, session, UpOptions(), SilentProgress()).run()


def _down_and_check(aws: AwsServer, app: Path, before: dict) -> None:
    config = load_config(app)
    session = load_or_create(config.root, config.app, config.stage)
    result = Detach(aws.context(), session.id, DownOptions(), SilentProgress(), config.root).run()
    assert result.ok, result.results
    assert aws.snapshot(FUNCTIONS) == before
    assert aws.parameters() == []
    assert aws.role_policies() == []
    appsync = aws.client("appsync")
    for api in appsync.list_apis()["apis"]:
        names = [n["name"] for n in appsync.list_channel_namespaces(apiId=api["apiId"])["channelNamespaces"]]
        assert session.id not in names


def _calls_of_a_whole_up(aws: AwsServer, tmp_path: Path) -> list[str]:
    before = _deploy(aws)
    app = aws.app(tmp_path / "count" / "shop", FUNCTIONS)
    counter, uninstall = install(None)
    try:
        _up(aws, app)
    finally:
        uninstall()
    assert aws.snapshot(FUNCTIONS) != before  # it did switch them
    return counter.calls


def test_a_whole_up_makes_the_calls_this_suite_interrupts(aws: AwsServer, tmp_path: Path) -> None:
    calls = _calls_of_a_whole_up(aws, tmp_path)
    for name in FUNCTIONS:  # each function's original is recorded before it is switched
        recorded = calls.index(f"ssm.PutParameter(/livelambda/live/{name})")
        switched = calls.index(f"lambda.UpdateFunctionConfiguration({name})")
        assert recorded < switched
    assert len(calls) >= 15  # the shared steps and each function's


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_down_restores_after_up_fails_after_any_call(aws: AwsServer, tmp_path: Path, mode: str) -> None:
    total = len(_calls_of_a_whole_up(aws, tmp_path))
    for n in range(1, total + 1):
        aws.reset()
        before = _deploy(aws)
        app = aws.app(tmp_path / f"{mode}-{n}" / "shop", FUNCTIONS)
        if mode == "raise":
            counter, uninstall = install(n, "raise")
            try:
                try:
                    _up(aws, app)
                except InjectedFault:
                    pass  # a shared step failed: `up` stops there
            finally:
                uninstall()
            assert len(counter.calls) >= n
        else:
            command = ["-m", "tests.aws_faults", str(n), "kill", "--", "aws", "up", "--app", str(app)]
            done = subprocess.run(
                [sys.executable, *command], cwd=REPO, env=aws.env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == -9, (n, done.stdout, done.stderr)  # killed, not finished
        _down_and_check(aws, app, before)
