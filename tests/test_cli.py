import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devserver.cloud.options import IamCredentials


def test_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "devserver", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "cloud" in out


def test_iam_credentials_parse() -> None:
    assert IamCredentials.parse("AK:SK") == IamCredentials("AK", "SK", None)
    assert IamCredentials.parse("AK:SK:TOK:EN") == IamCredentials("AK", "SK", "TOK:EN")
    with pytest.raises(ValueError, match="ACCESS_KEY_ID:SECRET_ACCESS_KEY"):
        IamCredentials.parse("AK")


def test_bad_iam_credentials_flag_is_a_clear_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devserver", "cloud", "--iam-credentials", "nocolon"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--iam-credentials expects" in proc.stderr


def test_dev_without_a_config_names_the_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devserver", "dev", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "livelambda.toml" in proc.stderr


def test_invoke_with_nothing_listening_says_what_to_start(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devserver",
            "invoke",
            "hello",
            '{"a": 1}',
            "--endpoint-url",
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "nothing listens at" in proc.stderr and "make dev" in proc.stderr


def test_invoke_rejects_a_payload_that_is_not_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devserver", "invoke", "hello", "{name: x}"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "not valid JSON" in proc.stderr
