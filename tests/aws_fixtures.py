"""The AWS control plane for `livelambda aws` tests: moto's server as a real HTTP server on loopback
(so that `livelambda aws` run as a subprocess reaches it through AWS_ENDPOINT_URL, as it would reach
AWS), reset before each test.

    aws.url                 "http://127.0.0.1:PORT"
    aws.env                 os.environ plus AWS_ENDPOINT_URL, dummy credentials, AWS_DEFAULT_REGION
    aws.client("lambda")    a boto3 client on it
    aws.role()              an IAM role's ARN for functions
    aws.function(name, ...) a deployed Python function (zip) with the given handler/env/layers/vpc...
    aws.app(dir, names)     a livelambda.toml app in `dir` whose functions run those deployed functions
    aws.snapshot(names)     every function's configuration fields livelambda may touch, for equality
    aws.context()           an AwsContext on the server (the code under test, in-process)
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

REGION = "us-east-1"
HANDLER_PY = "def handler(event, context):\n    return {'own': True, 'event': event}\n"


def code_zip(files: Mapping[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in (files or {"app.py": HANDLER_PY}).items():
            z.writestr(name, text)
    return buffer.getvalue()


class AwsServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
            self.env.pop(name, None)
        self._session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )
        self._role: str | None = None

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.url)

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset").raise_for_status()
        self._role = None

    def role(self, name: str = "fn-role") -> str:
        if self._role is None:
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                    }
                ],
            }
            self._role = self.client("iam").create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(trust)
            )["Role"]["Arn"]
        return self._role

    def function(
        self,
        name: str,
        *,
        handler: str = "app.handler",
        runtime: str = "python3.12",
        environment: Mapping[str, str] | None = None,
        layers: Sequence[str] = (),
        timeout: int = 3,
        vpc: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if vpc:
            kwargs["VpcConfig"] = dict(vpc)
        if tags:
            kwargs["Tags"] = dict(tags)
        return self.client("lambda").create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=self.role(),
            Handler=handler,
            Code={"ZipFile": code_zip()},
            Environment={"Variables": dict(environment or {"GREETING": "hi"})},
            Layers=list(layers),
            Timeout=timeout,
            **kwargs,
        )

    def app(self, root: Path, names: Sequence[str], *, stage: str = "dev", extra: str = "") -> Path:
        root.mkdir(parents=True, exist_ok=True)
        (root / "app.py").write_text(HANDLER_PY)
        lines = [f'app = "shop"\nstage = "{stage}"\nregion = "{REGION}"\n{extra}']
        lines += [f'[functions.{n}]\nhandler = "app.handler"\n' for n in names]
        (root / "livelambda.toml").write_text("\n".join(lines))
        return root

    def snapshot(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        lam = self.client("lambda")
        out = {}
        for name in names:
            cfg = lam.get_function_configuration(FunctionName=name)
            vpc = cfg.get("VpcConfig") or {}
            out[name] = {
                "Handler": cfg.get("Handler"),
                "Layers": [layer["Arn"] for layer in cfg.get("Layers") or ()],
                "Environment": (cfg.get("Environment") or {}).get("Variables") or {},
                "Timeout": cfg.get("Timeout"),
                "SubnetIds": sorted(vpc.get("SubnetIds") or ()),
                "SecurityGroupIds": sorted(vpc.get("SecurityGroupIds") or ()),
                "MemorySize": cfg.get("MemorySize"),
                "Runtime": cfg.get("Runtime"),
                "Role": cfg.get("Role"),
            }
        return out

    def parameters(self) -> list[str]:
        ssm = self.client("ssm")
        pages = ssm.get_paginator("get_parameters_by_path").paginate(Path="/livelambda", Recursive=True)
        return sorted(p["Name"] for page in pages for p in page.get("Parameters", ()))

    def role_policies(self, role: str = "fn-role") -> list[str]:
        return list(self.client("iam").list_role_policies(RoleName=role)["PolicyNames"])

    def context(self) -> Any:
        """For code under test in this process (the fixture put the server in this process's env)."""
        from devserver.aws.context import AwsContext

        return AwsContext(region=REGION)


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request would drown a report
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsServer]:
    server = AwsServer(moto_server_url)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, server.env[name])
    server.reset()
    yield server
    server.reset()
