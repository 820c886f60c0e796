"""Options of `livelambda cloud`, filled from the command line or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class IamCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    @classmethod
    def parse(cls, text: str) -> IamCredentials:
        """Parse `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`."""
        parts = text.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(
                f"--iam-credentials expects ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN], got {text!r}"
            )
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


@dataclass(frozen=True)
class CloudOptions:
    host: str = "127.0.0.1"
    port: int = 8790
    api_key: str | None = None  # None: generate one and print it
    iam_credentials: tuple[IamCredentials, ...] = ()
    region: str = "us-east-1"
    namespaces: tuple[str, ...] = ("livelambda", "default")
    ka_interval_s: float = 60.0
    connection_timeout_ms: int = 300_000
    app_dir: Path | None = None  # serve this app's functions through the Lambda emulator
    live: bool = False  # run the app's functions in live mode: the stub forwards to `livelambda dev`
    extra: dict[str, str] = field(default_factory=dict)
