import subprocess
import sys

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
