"""`livelambda cloud`'s fault options: listed in --help, checked before anything starts, in force from
the start, and still changed at run time through POST /_livelambda/faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import LIVELAMBDA, CloudProcess, _launch

OPTIONS = ("--refuse-connections-for", "--stall-connections-for", "--flap-connections", "--flap-jitter",
           "--flap-for", "--flap-seed", "--flap-keep-connections", "--delay-delivery", "--duplicate-delivery",
           "--drop-after-frames", "--abrupt-drops")  # fmt: skip


def test_help_lists_the_fault_controls() -> None:
    out = subprocess.run([str(LIVELAMBDA), "cloud", "--help"], capture_output=True, text=True, check=True)
    assert "fault injection" in out.stdout and "POST /_livelambda/faults" in out.stdout
    for option in OPTIONS:
        assert option in out.stdout, option


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--flap-connections", "2"], "is not ACCEPT_S:REFUSE_S"),
        (["--flap-connections", "2:0"], "is not ACCEPT_S:REFUSE_S"),
        (["--flap-jitter", "0.2"], "--flap-jitter needs --flap-connections"),
        (["--flap-connections", "2:1", "--flap-jitter", "1.5"], "jitter must be in [0, 0.9]"),
        (["--drop-after-frames", "-1"], "drop_after_frames must be a non-negative integer"),
        (["--delay-delivery", "-5"], "delay_delivery_ms must be a non-negative number"),
    ],
)
def test_a_wrong_fault_option_is_a_usage_error(tmp_path: Path, args: list[str], says: str) -> None:
    result = subprocess.run([sys.executable, "-m", "devserver", "cloud", "--port", "0", *args],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2, result
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def _faults(cloud: CloudProcess) -> dict[str, object]:
    return cloud._client().get(f"{cloud.base_url}/_livelambda/faults").json()["faults"]


def _ack(cloud: CloudProcess) -> None:
    """Dial, and be told connection_ack."""
    with connect(cloud.realtime_url, subprotocols=cloud.subprotocols(), open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"


def test_faults_given_at_start_are_in_force_and_change_at_run_time(tmp_path: Path) -> None:
    options = ("--refuse-connections-for", "600", "--delay-delivery", "5", "--duplicate-delivery",
               "--drop-after-frames", "3", "--abrupt-drops")  # fmt: skip
    cloud = _launch(tmp_path / "cloud", options)
    try:
        faults = _faults(cloud)
        assert 590 < faults["refusing_connections_for_s"] <= 600  # type: ignore[operator]
        assert faults["delay_delivery_ms"] == 5 and faults["duplicate_delivery"] is True
        assert faults["drop_after_frames"] == 3 and faults["drop_after_abrupt"] is True
        before = cloud.stats()["connections_refused"]
        with pytest.raises(InvalidStatus) as refused:
            _ack(cloud)
        assert refused.value.response.status_code == 503
        assert cloud.stats()["connections_refused"] == before + 1  # counted
        cloud.faults(refuse_connections_for_s=0)  # at run time: accepted again
        _ack(cloud)
        assert cloud.stats()["connections_refused"] == before + 1
    finally:
        cloud.close()


def test_flapping_from_the_command_line(tmp_path: Path) -> None:
    """Refuse 0.4 s, accept 0.4 s, and so on: a connection made while it accepts is dropped when the
    next refusal begins, and dials in a refusal are refused (and counted)."""
    cloud = _launch(tmp_path / "cloud", ("--flap-connections", "0.4:0.4", "--flap-seed", "1"))
    try:
        flap = _faults(cloud)["flap_connections"]
        assert isinstance(flap, dict)
        assert (flap["accept_s"], flap["refuse_s"], flap["seed"], flap["drop"]) == (0.4, 0.4, 1, True)
        refused = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # each dial meets a refusal or a connection that is dropped
            try:
                with connect(cloud.realtime_url, subprotocols=cloud.subprotocols(), open_timeout=10) as ws:
                    ws.send(json.dumps({"type": "connection_init"}))
                    with pytest.raises(ConnectionClosed):
                        while True:  # connection_ack, keep-alives, until the next refusal drops it
                            ws.recv(timeout=10)
                    break
            except InvalidStatus as exc:
                assert exc.response.status_code == 503
                refused += 1
        else:
            pytest.fail("no connection was accepted, then dropped, within 30 s")
        assert cloud.stats()["connections_refused"] == refused
        cloud.faults(flap_connections=None)  # stopped at run time
        _ack(cloud)
    finally:
        cloud.close()
