"""The live session: the channel scope and the HMAC secret shared by the stub and this dev server.

Kept in `<app>/.livelambda/session.json` (mode 0600) so that `livelambda cloud`, `livelambda dev` and
`aws up` agree on it, and a restarted dev server keeps answering the sandboxes already configured.
It never travels over a channel.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from stub_runtime.live_protocol import safe_segment

STATE_DIR = ".livelambda"


@dataclass(frozen=True)
class LiveSession:
    id: str
    secret: bytes

    def stub_env(self) -> dict[str, str]:
        return {"LIVELAMBDA_SESSION": self.id, "LIVELAMBDA_SECRET": self.secret.hex()}


def state_dir(app_root: Path) -> Path:
    path = app_root / STATE_DIR
    path.mkdir(mode=0o700, exist_ok=True)
    gitignore = path / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")  # the secret must never be committed by accident
    return path


def cloud_file(app_root: Path) -> Path:
    """Where `livelambda cloud --app` writes its endpoints and API key for `dev` and `invoke`."""
    return app_root / STATE_DIR / "cloud.json"


def aws_file(app_root: Path) -> Path:
    """Where `livelambda aws up` writes the AppSync endpoint and auth that `livelambda dev` connects with."""
    return app_root / STATE_DIR / "aws.json"


def load_existing(app_root: Path) -> LiveSession | None:
    """The app's session if it has one (never creates it)."""
    return _read(app_root / STATE_DIR / "session.json")


def _read(path: Path) -> LiveSession | None:
    try:
        data = json.loads(path.read_text())
        return LiveSession(str(data["id"]), bytes.fromhex(data["secret"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: a new session (the stub must be re-configured anyway)


def load_or_create(app_root: Path, app: str, stage: str) -> LiveSession:
    """The app's session, created on first use. Safe when two processes start at once."""
    directory = state_dir(app_root)
    path = directory / "session.json"
    with open(directory / "session.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _read(path)
        if found is not None:
            return found
        # A random suffix: two laptops on the same app and stage never share a session.
        session = LiveSession(
            safe_segment(f"{app}-{stage}", max_len=40) + "-" + secrets.token_hex(4), secrets.token_bytes(32)
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"id": session.id, "secret": session.secret.hex()}, out)
        return session
