"""Options of `livelambda cloud`, filled from the command line or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    live_auth: str = "api_key"  # how the live stubs sign: "api_key", or "iam" (as `aws up --auth iam`)
    tls_cert: Path | None = None  # serve https/wss with this certificate (chain) and key, as AppSync does
    tls_key: Path | None = None
    faults: dict[str, Any] = field(default_factory=dict)  # a faults.py request applied at start
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def urls(self, host: str) -> tuple[str, str]:
        """(HTTP publish URL, realtime URL) of this cloud at `host` ("ADDRESS:PORT")."""
        if self.tls:
            return f"https://{host}/event", f"wss://{host}/event/realtime"
        return f"http://{host}/event", f"ws://{host}/event/realtime"
