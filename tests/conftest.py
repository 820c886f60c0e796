"""Shared pytest fixtures. Others add theirs below; keep each one documented.

## `livelambda cloud` as a real subprocess

`cloud` (a fresh process for the test) and `shared_cloud` (one process for the whole session, its
faults reset before and after each test) start `.venv/bin/livelambda cloud --port 0 --ka-interval 1
--ready-file ...` and yield a `CloudProcess`:

    cloud.http_url        "http://127.0.0.1:PORT/event"          (HTTP publish)
    cloud.realtime_url    "ws://127.0.0.1:PORT/event/realtime"
    cloud.host            "127.0.0.1:PORT"  (the `host` every auth object must carry)
    cloud.port, cloud.base_url ("http://127.0.0.1:PORT"), cloud.region ("us-east-1")
    cloud.api_key         "da2-..." (random per process)
    cloud.iam             IamCredentials("AKIDTEST", "secret") -- accepted for SigV4
    cloud.namespaces      ("livelambda", "default")
    cloud.ka_interval_s   1.0
    cloud.stats()         GET /_livelambda/stats -> dict (connections_current, connections_total,
                          connections_refused, connections_unauthorized, subscriptions,
                          subscriptions_total, publishes, events_published, events_failed,
                          events_delivered, frames_rejected, http_rejected, internal_errors,
                          connections: [{id, remote, connected_at, subscriptions}], faults,
                          and the control plane's apis, channel_namespaces, api_keys)
    cloud.faults(**kw)    POST /_livelambda/faults, e.g. faults(drop_connections=True, abrupt=True),
                          faults(refuse_connections_for_s=5), faults(delay_delivery_ms=200),
                          faults(duplicate_delivery=True), faults(drop_after_frames=3), faults(reset=True),
                          faults(flap_connections={"accept_s": 2, "refuse_s": 1.5, "jitter": 0.3})
    cloud.api_key_auth()  {"x-api-key": ..., "host": ...}
    cloud.iam_auth(body)  SigV4 headers for `body` (str/bytes/JSON-able), signed with botocore in-process;
                          keyword overrides: credentials=, host=, region=, when= (datetime, for stale dates)
    cloud.subprotocols(auth)  ["aws-appsync-event-ws", "header-<base64url(json(auth))>"]
    cloud.stop() / cloud.start()  kill the process / start it again on the same port (outage tests)
    cloud.output()        everything it printed so far

The sync helpers (`stats`, `faults`) block for a millisecond or two; they are fine in async tests.
When a test fails, the tail of each cloud process it used is appended to its report.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devserver.cloud.options import IamCredentials
from devserver.processes import stop_process
from tests.aws_fixtures import *  # noqa: F403  (the AWS control plane on moto: see tests/aws_fixtures.py)
from tests.lambda_fixtures import *  # noqa: F403  (the Lambda side: see tests/lambda_fixtures.py)
from tests.live_fixtures import *  # noqa: F403  (live mode: see tests/live_fixtures.py)

REPO = Path(__file__).resolve().parent.parent
LIVELAMBDA = REPO / ".venv" / "bin" / "livelambda"
# Functions' venvs (devserver/runtime/app_env.py) install offline in tests, from the wheels `make test`
# downloads; every process the tests start inherits this. The runtime copy is kept between sessions.
WHEELHOUSE = REPO / ".venv" / "wheelhouse"
os.environ.update({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)})
os.environ.setdefault("LIVELAMBDA_CACHE_DIR", str(REPO / ".venv" / "livelambda-test-cache"))
TEST_IAM = IamCredentials("AKIDTEST", "secret")
SUBPROTOCOL = "aws-appsync-event-ws"
_START_TIMEOUT_S = 30.0  # generous: two shared cores, maybe busy with other test processes


def auth_subprotocol(auth: dict[str, str]) -> str:
    """The `header-...` subprotocol that carries `auth` on the WebSocket upgrade (PROTOCOL.md)."""
    raw = json.dumps(auth, separators=(",", ":")).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sigv4_headers(
    body: bytes,
    *,
    host: str,
    credentials: IamCredentials,
    region: str,
    when: datetime.datetime | None = None,
) -> dict[str, str]:
    """Sign `POST https://{host}/event` as AppSync Events clients do, with botocore; return the headers."""
    from unittest import mock

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=f"https://{host}/event",
        data=body,
        headers={
            "accept": "application/json, text/javascript",
            "content-encoding": "amz-1.0",
            "content-type": "application/json; charset=UTF-8",
            "host": host,
        },
    )
    signer = SigV4Auth(
        Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
        "appsync",
        region,
    )
    if when is None:
        signer.add_auth(request)
    else:  # botocore stamps "now"; a test of stale dates needs another instant
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return dict(request.headers.items())


@dataclass
class CloudProcess:
    """A running `livelambda cloud` subprocess; see the module docstring."""

    workdir: Path
    api_key: str = field(default_factory=lambda: "da2-" + secrets.token_hex(13))
    iam: IamCredentials = TEST_IAM
    region: str = "us-east-1"
    namespaces: tuple[str, ...] = ("livelambda", "default")
    ka_interval_s: float = 1.0
    port: int = 0
    extra_args: tuple[str, ...] = ()  # e.g. ("--app", DIR, "--live")
    proc: subprocess.Popen[bytes] | None = None
    _http: httpx.Client | None = field(default=None, repr=False)  # one client: each new one costs ~50 ms

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    @property
    def http_url(self) -> str:
        return f"{self.base_url}/event"

    @property
    def realtime_url(self) -> str:
        return f"ws://{self.host}/event/realtime"

    @property
    def log_path(self) -> Path:
        return self.workdir / "cloud.log"

    def start(self) -> None:
        """Start the process (again on the same port after `stop()`) and wait until it listens."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        args = [
            str(LIVELAMBDA), "cloud",
            "--port", str(self.port),
            "--api-key", self.api_key,
            "--iam-credentials", f"{self.iam.access_key_id}:{self.iam.secret_access_key}",
            "--region", self.region,
            "--ka-interval", str(self.ka_interval_s),
            "--ready-file", str(ready),
            *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"livelambda cloud exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                waited = f"livelambda cloud not listening after {_START_TIMEOUT_S} s"
                raise RuntimeError(f"{waited}:\n{self.output()}")
            time.sleep(0.02)
        self.port = json.loads(ready.read_text())["port"]

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL); its port stays reserved in `port` for `start()`."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=5)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stats(self) -> dict[str, Any]:
        response = self._client().get(f"{self.base_url}/_livelambda/stats")
        response.raise_for_status()
        return response.json()

    def faults(self, **spec: Any) -> dict[str, Any]:
        response = self._client().post(f"{self.base_url}/_livelambda/faults", json=spec)
        response.raise_for_status()
        return response.json()

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=10)
        return self._http

    def close(self) -> None:
        """Stop the process and release the HTTP client (fixture teardown)."""
        self.stop()
        if self._http is not None:
            self._http.close()
            self._http = None

    def api_key_auth(self) -> dict[str, str]:
        return {"x-api-key": self.api_key, "host": self.host}

    def iam_auth(
        self,
        body: bytes | str | Any,
        *,
        credentials: IamCredentials | None = None,
        host: str | None = None,
        region: str | None = None,
        when: datetime.datetime | None = None,
    ) -> dict[str, str]:
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body, separators=(",", ":")).encode()
        return sigv4_headers(
            body,
            host=host or self.host,
            credentials=credentials or self.iam,
            region=region or self.region,
            when=when,
        )

    def subprotocols(self, auth: dict[str, str] | None = None) -> list[str]:
        return [SUBPROTOCOL, auth_subprotocol(auth if auth is not None else self.api_key_auth())]


def _launch(workdir: Path, extra_args: tuple[str, ...] = ()) -> CloudProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cloud = CloudProcess(workdir, extra_args=extra_args)
    cloud.start()
    return cloud


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudProcess]:
    """A fresh `livelambda cloud` process for this test (see the module docstring)."""
    process = _launch(tmp_path / "cloud")
    try:
        yield process
    finally:
        process.close()


@pytest.fixture(scope="session")
def _shared_cloud_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudProcess]:
    process = _launch(tmp_path_factory.mktemp("shared-cloud"))
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def shared_cloud(_shared_cloud_process: CloudProcess) -> Iterator[CloudProcess]:
    """One `livelambda cloud` for the session, cheaper than `cloud`. Faults are reset around each test;
    connections and counters are shared, so compare stats before and after instead of absolute values.
    Do not `stop()` it: use `cloud` for that."""
    process = _shared_cloud_process
    if process.proc is None or process.proc.poll() is not None:
        process.start()  # a previous test broke the rule above; recover rather than fail every test after
    process.faults(reset=True)
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.faults(reset=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Append the output of the cloud processes a failed test used to its report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    clouds = {id(v): v for v in funcargs.values() if isinstance(v, CloudProcess)}
    for process in clouds.values():
        tail = "\n".join(process.output().splitlines()[-200:])
        report.sections.append((f"livelambda cloud (port {process.port}) output", tail))
