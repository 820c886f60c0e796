"""The "try:" lines `livelambda dev --cloud` prints work as printed: pasted into a new shell (no AWS_*
variables, livelambda not on PATH) in the directory the dev server was started from, as after
`make dev`."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from devserver.commands.try_lines import try_lines
from tests.dev_fixtures import REPO, running_dev

HEADER = "  try, from this directory"


def _printed_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        found.append(line[4:])
    return found


def _new_shell(line: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`line` in sh, from the directory the dev server ran in, with a new shell's bare environment."""
    return subprocess.run(
        ["sh", "-c", line],
        cwd=REPO,  # (running_dev starts the dev server here, as `make dev` does)
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_printed_lines_work_in_a_new_shell(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        cli, boto3_line, aws = _printed_lines(dev.output())
        for line in (cli, boto3_line):
            done = _new_shell(line, tmp_path)
            assert done.returncode == 0, (line, done.stderr)
            assert json.loads(done.stdout)["message"] == "Hello, world!", done.stdout
        records = dev.wait_for(lambda: len(r := dev.api("invocations")) >= 2 and r, "both in the dashboard")
        assert [r["function"] for r in records].count("hello") == 2

        # The AWS CLI is not installed here: its line's shape, for v1 and v2 alike.
        echo, command = aws.split(" | ")
        assert json.loads(shlex.split(echo)[1]) == {"name": "world"}
        words = shlex.split(command)
        env = dict(w.split("=", 1) for w in words[:3])
        assert set(env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
        assert words[3:6] == ["aws", "lambda", "invoke"]
        options = dict(zip(words[6:-1:2], words[7:-1:2], strict=True))
        assert options == {
            "--endpoint-url": dev.cloud_url,
            "--function-name": "hello",
            "--payload": "fileb:///dev/stdin",  # raw bytes in v1 and v2; no v2-only --cli-binary-format
        }
        assert words[-1] == "/dev/stdout"


def test_after_make_dev_the_lines_name_the_repos_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # where `make dev` runs
    cli, boto3_line, _ = try_lines("hello", REPO / "examples" / "hello", "http://127.0.0.1:8790")
    assert cli == """.venv/bin/livelambda invoke hello '{"name": "world"}' --app examples/hello"""
    assert boto3_line.startswith(
        "AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 .venv/bin/python -c "
    )
