"""A reload never serves a file caught mid-write (issue #15, item 5).

Editors and `open(path, "w")` save in place: truncate, then write (sometimes in several chunks). A
watcher batch can end between the two, and a generation loaded from that read answers
`Runtime.HandlerNotFound` (an empty module) or `Runtime.UserCodeSyntaxError` (half a module). Here a real
`livelambda dev --cloud` gets many in-place saves of three kinds while a thread invokes the function
back to back through the whole live path: every answer is the old code or the new one, never an error
from a partial file, the new code answers after each save, and no save's reload reports such an error.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devserver.reload.watcher import DEFAULT_DEBOUNCE_MS, DEFAULT_STEP_MS
from tests.dev_fixtures import HELLO, DevProcess, running_dev

PARTIAL_FILE_ERRORS = ("Runtime.HandlerNotFound", "Runtime.ImportModuleError", "Runtime.UserCodeSyntaxError")
# An editor's pause between truncating and writing (or between two chunks): long enough that the
# watcher's batch (step + debounce) ends inside it, so the dev server is told of the half-written file.
# This is the behaviour under test, not a wait for a condition.
EDITOR_PAUSE_S = 3 * (DEFAULT_STEP_MS + DEFAULT_DEBOUNCE_MS) / 1000
ROUNDS = 6  # of each kind of save below


def save_truncate_write(path: Path, text: str) -> None:
    with path.open("w") as f:  # truncates at open, writes on close: as most editors save
        f.write(text)


def save_truncate_pause_write(path: Path, text: str) -> None:
    with path.open("w") as f:
        f.flush()
        threading.Event().wait(EDITOR_PAUSE_S)
        f.write(text)


def save_in_two_chunks(path: Path, text: str, *, cut: int) -> None:
    with path.open("w") as f:
        f.write(text[:cut])
        f.flush()
        threading.Event().wait(EDITOR_PAUSE_S)
        f.write(text[cut:])


def cut_before_handler(text: str) -> int:
    """A cut at a line boundary where the first part compiles but defines no handler."""
    return text.index("def handler")


class Invoker:
    """Invokes `hello` back to back in a thread; every answer is kept, in order."""

    def __init__(self, dev: DevProcess) -> None:
        self.dev = dev
        self.answers: list[tuple[str, str]] = []  # ("version", "v3") or ("error", errorType)
        self.failures: list[BaseException] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invoker", daemon=True)

    def _run(self) -> None:
        client = self.dev.client()
        while not self._stop.is_set():
            try:
                payload = json.loads(client.invoke(FunctionName="hello", Payload=b"{}")["Payload"].read())
            except Exception as exc:  # reported by the test
                self.failures.append(exc)
                payload = {"errorType": f"invoke failed: {exc}"}
            if "version" in payload:
                answer = ("version", str(payload["version"]))
            else:
                answer = ("error", str(payload.get("errorType", "?")))
            with self._changed:
                self.answers.append(answer)
                self._changed.notify_all()

    def wait_for_version(self, version: str, since: int, timeout: float = 30.0) -> None:
        """Until an answer after the first `since` ones comes from `version`."""

        def seen() -> bool:
            return ("version", version) in self.answers[since:]

        with self._changed:
            if not self._changed.wait_for(seen, timeout):
                raise AssertionError(
                    f"{version} never answered; answers since the save: {self.answers[since:][-20:]}\n"
                    f"{self.dev.output()[-3000:]}"
                )

    def __enter__(self) -> Invoker:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)


@contextlib.contextmanager
def dev_with_invoker(tmp_path: Path) -> Iterator[tuple[DevProcess, Invoker]]:
    with running_dev(tmp_path, hello=HELLO.format(version="v0")) as dev:
        assert dev.invoke("hello", {})[1]["version"] == "v0"
        with Invoker(dev) as invoker:
            yield dev, invoker


def test_in_place_saves_never_serve_a_half_written_file(tmp_path: Path) -> None:
    kinds: list[Callable[[Path, str], None]] = [
        save_truncate_write,
        save_truncate_pause_write,
        lambda path, text: save_in_two_chunks(path, text, cut=len(text) // 2),  # mid-line
        lambda path, text: save_in_two_chunks(path, text, cut=cut_before_handler(text)),
    ]
    saves = 0
    with dev_with_invoker(tmp_path) as (dev, invoker):
        path = dev.app / "hello.py"
        for _ in range(ROUNDS):
            for save in kinds:
                saves += 1
                version = f"v{saves}"
                since = len(invoker.answers)
                save(path, HELLO.format(version=version))
                invoker.wait_for_version(version, since)
        answers = list(invoker.answers)
        output = dev.output()

    errors = [a for a in answers if a[0] == "error"]
    assert not invoker.failures, invoker.failures[:3]
    assert errors == [], f"{len(errors)} of {len(answers)} invocations failed: {errors[:10]}"
    # Each save was answered by its own code, in order; none went backwards.
    versions = [int(v[1:]) for kind, v in answers if kind == "version"]
    assert versions == sorted(versions)
    assert set(range(1, saves + 1)) <= set(versions)
    # No reload loaded a partial file, even one no invocation happened to meet.
    for error in PARTIAL_FILE_ERRORS:
        assert error not in output, output[-3000:]
