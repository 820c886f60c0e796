"""Which changes reload a function: its code and the data files shipped with it, not what the dev
server or a handler writes next to the code (a log of `livelambda dev > dev.txt`, an SQLite database, a
file a worker holds open), with `[watch] include/exclude` in the configuration; and the terminal's one
line per save names the file."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from watchfiles import Change

from devserver.config import ConfigError, WatchConfig, load_config
from devserver.reload.watch_filter import ReloadFilter
from devserver.reload.watcher import Watcher
from tests.dev_fixtures import running_dev


def test_the_filter_reloads_code_and_shipped_data_not_what_code_writes(tmp_path: Path) -> None:
    config = tmp_path / "livelambda.toml"
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr\n")  # a virtualenv of any name
    judge = ReloadFilter([tmp_path], config, WatchConfig(), own_output=[tmp_path / "out.txt"])
    for code in ("app.py", "pkg/mod.py", "data.json", "conf/settings.yaml", "templates/page.html", "x.csv"):
        assert judge(Change.modified, str(tmp_path / code)), code
    for noise in (
        "dev.log",
        "app.log.1",
        "data.db",
        "data.db-journal",
        "cache.sqlite3",
        "cache.sqlite-wal",
        "out.txt",  # this process's own output
        ".cache/x.json",
        "env/lib/python3.12/site-packages/x.py",
        "__pycache__/app.cpython-311.pyc",
        ".livelambda/session.json",
        ".git/index",
        "node_modules/x/package.json",
        "picture.png",  # not a kind of file code reads by default
    ):
        assert not judge(Change.modified, str(tmp_path / noise)), noise
    assert judge(Change.modified, str(config))
    custom = ReloadFilter([tmp_path], config, WatchConfig(include=("*.py", "*.png"), exclude=("legacy",)))
    assert custom(Change.modified, str(tmp_path / "picture.png"))
    assert not custom(Change.modified, str(tmp_path / "data.json"))
    assert not custom(Change.modified, str(tmp_path / "legacy" / "old.py"))


def test_watch_patterns_come_from_the_configuration(tmp_path: Path) -> None:
    head = '[functions.hello]\nhandler = "hello.handler"\n'
    (tmp_path / "livelambda.toml").write_text(head + '[watch]\ninclude = ["*.py"]\nexclude = ["gen/*"]\n')
    assert load_config(tmp_path).watch == WatchConfig(include=("*.py",), exclude=("gen/*",))
    (tmp_path / "livelambda.toml").write_text(head + '[watch]\ninclude = "*.py"\n')
    with pytest.raises(ConfigError, match=r"livelambda.toml: watch.include must be a list of glob patterns"):
        load_config(tmp_path)
    (tmp_path / "livelambda.toml").write_text(head + '[watch]\nexclud = ["*.log"]\n')
    with pytest.raises(ConfigError, match=r"watch\.exclud is not a known key; did you mean 'exclude'"):
        load_config(tmp_path)


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[Watcher, asyncio.Queue[tuple[Path, ...]]]]:
    (tmp_path / "livelambda.toml").write_text('[functions.hello]\nhandler = "hello.handler"\n')
    seen: asyncio.Queue[tuple[Path, ...]] = asyncio.Queue()
    watcher = Watcher(load_config(tmp_path), on_change=lambda *_: seen.put_nowait(watcher.last_files))
    task = asyncio.ensure_future(watcher.run())
    await watcher.wait_watching()
    yield watcher, seen
    await watcher.close()
    await asyncio.wait_for(task, 10)


async def test_files_written_next_to_the_code_do_not_reload(tmp_path: Path, watched) -> None:
    _, seen = watched
    # A handler's process keeps a .txt open for writing (a log handler, say): not code.
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            out = open(sys.argv[1], "w")
            out.write("line\\n"); out.flush()
            print("ready", flush=True)
            sys.stdin.read()
            out.write("more\\n"); out.flush()
        """), str(tmp_path / "handler-output.txt")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        (tmp_path / "app.log").write_text("a log line\n")
        (tmp_path / "data.db").write_bytes(b"SQLite format 3\x00")
        (tmp_path / "data.db-journal").write_bytes(b"\x00")
        (tmp_path / "hello.py").write_text("def handler(e, c): return 1\n")  # the sentinel
        batches = []
        while not batches or tmp_path / "hello.py" not in batches[-1]:
            batches.append(await asyncio.wait_for(seen.get(), 10))
    finally:
        holder.communicate("", timeout=10)
    assert all(files == (tmp_path / "hello.py",) for files in batches), batches


HANDLER = """
import os
import sqlite3

VERSION = "{version}"
HERE = os.path.dirname(os.path.abspath(__file__))


def handler(event, context):
    db = sqlite3.connect(os.path.join(HERE, "data.db"))  # a database next to the code
    db.execute("create table if not exists hits (n integer)")
    db.execute("insert into hits values (1)")
    db.commit()
    hits = db.execute("select count(*) from hits").fetchone()[0]
    db.close()
    print("hit", hits)
    return {{"version": VERSION, "hits": hits}}
"""


def test_dev_server_output_and_handler_database_in_the_app_reload_nothing(tmp_path: Path) -> None:
    app = tmp_path / "hello"
    with running_dev(tmp_path, hello=HANDLER.format(version="v1"), log=app / "dev.txt") as dev:

        def generations() -> dict[str, int]:
            return {f["name"]: f["generation"] for f in dev.api("functions")}

        for n in range(1, 4):  # each one writes data.db and a terminal line into dev.txt
            assert dev.invoke("hello", {})[1] == {"version": "v1", "hits": n}
        assert generations() == {"hello": 1, "api": 1}

        for version, generation in (("v2", 2), ("v3", 3)):
            (app / "hello.py").write_text(HANDLER.format(version=version))
            dev.wait_for(lambda v=version: dev.invoke("hello", {})[1]["version"] == v, f"{version} answers")
            saves = dev.wait_for(
                lambda g=generation: len(lines := _save_lines(dev.output())) == g - 1 and lines,
                "one terminal line per save",
            )
            # Written after the new code loaded: its line into dev.txt, and the invocations' lines
            # since, reloaded nothing more.
            assert generations() == {"hello": generation, "api": generation}
            assert saves[-1].endswith(f"hello.py changed: reloaded api, hello (gen {generation})"), saves


def _save_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " changed: " in line]
