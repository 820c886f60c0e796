"""AppSync Events client, as used by the stub (inside Lambda) and by the dev server.

- `frames`: sans-I/O builders and parser of the wire frames (../shared/PROTOCOL.md).
- `auth`: ApiKeyAuth, IamAuth (SigV4; botocore imported only when signing), TokenAuth.
- `errors`: what can fail, shared by both clients; `publishing`: batches of five, results, HTTP publish.
- `session`: AppSyncSession, sans-I/O: one connection's protocol (texts and times in, events out),
  driven by both clients; `ws_messages`: whole WebSocket messages from websockets' frames.
- `client`: AppSyncEventsClient, one WebSocket connection plus HTTP publish, asyncio (the dev server).
- `reconnecting`: ReconnectingClient, the asyncio shell around `stub_runtime.reconnect.ReconnectPolicy`
  that keeps the dev server's connection up.
- `blocking`: BlockingConnection and OnDemandConnection, the stub's: no event loop, dialled only for
  an invocation.

Names are importable from this package; each submodule is imported on first use only, so
`import stub_runtime.appsync.frames` does not pull in websockets.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ApiKeyAuth": "auth",
    "IamAuth": "auth",
    "TokenAuth": "auth",
    "AppSyncServiceError": "frames",
    "parse_server_frame": "frames",
    "AppSyncEventsClient": "client",
    "Subscription": "client",
    "AppSyncConnectionError": "errors",
    "ClientClosed": "errors",
    "ConnectFailed": "errors",
    "ConnectionLost": "errors",
    "HttpPublishFailed": "errors",
    "InvalidEvents": "errors",
    "OperationTimeout": "errors",
    "ConnectGiveUp": "errors",
    "CircuitOpen": "errors",
    "PublishResult": "publishing",
    "AppSyncSession": "session",
    "ReconnectingClient": "reconnecting",
    "ConnectionState": "reconnecting",
    "BlockingConnection": "blocking",
    "OnDemandConnection": "blocking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
