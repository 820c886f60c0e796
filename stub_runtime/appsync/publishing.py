"""Publishing, without I/O: events checked and cut into publishes of five, the answers merged back
into one result indexed like the caller's events, the HTTP publish's request and the meaning of its
answer; and `HttpPublisher`, the stub's blocking HTTP publish over one kept-alive connection."""

from __future__ import annotations

import json
import select
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from stub_runtime.appsync import frames as f
from stub_runtime.appsync.auth import Auth
from stub_runtime.appsync.errors import HttpPublishFailed, InvalidEvents
from stub_runtime.appsync.frames import AppSyncServiceError, FailedEntry, PublishedEntry
from stub_runtime.channels import validate_channel
from stub_runtime.errors import RemoteProtocolError


def check_channel(channel: str, *, subscribe: bool) -> None:
    """Validate a channel locally so a bad one fails fast with InvalidChannel, before any I/O."""
    validate_channel(channel, subscribe=subscribe)


class PublishResult(f._Record):
    """Outcome of a publish; indexes refer to the caller's `events` list (across batches of 5)."""

    __slots__ = _fields = ("successful", "failed")

    def __init__(
        self, successful: list[PublishedEntry] | None = None, failed: list[FailedEntry] | None = None
    ) -> None:
        self.successful: list[PublishedEntry] = successful if successful is not None else []
        self.failed: list[FailedEntry] = failed if failed is not None else []

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_for_failed(self) -> None:
        if self.failed:
            first = self.failed[0]
            raise AppSyncServiceError(
                f"{len(self.failed)} of {len(self.failed) + len(self.successful)} published event(s)",
                [f.ServiceErrorDetail("PublishFailed", first.message, first.code)],
            )


def plan_publish(
    channel: str, events: Sequence[str], max_event_bytes: int | None
) -> tuple[list[list[int]], PublishResult]:
    """Validate; split the sendable events into batches (of indexes) of at most 5. The result starts
    with the events too large to send (`local=True`)."""
    check_channel(channel, subscribe=False)
    if isinstance(events, (str, bytes)) or not all(isinstance(e, str) for e in events):
        raise InvalidEvents("events must be a list of JSON-encoded strings (e.g. json.dumps(value))")
    result = PublishResult()
    sendable = []
    for i, event in enumerate(events):
        size = len(event.encode())
        if max_event_bytes is not None and size > max_event_bytes:
            result.failed.append(
                FailedEntry(
                    None,
                    i,
                    "EventTooLarge",
                    f"event {i} is {size} bytes, over AppSync's limit of {max_event_bytes}: "
                    "not sent; split it (stub_runtime.envelope chunks messages)",
                    local=True,
                )
            )
        else:
            sendable.append(i)
    n = f.MAX_EVENTS_PER_PUBLISH
    return [sendable[k : k + n] for k in range(0, len(sendable), n)], result


def publish_frame(auth: Auth, channel: str, payload: list[str]) -> f.Publish:
    body = f.publish_body(channel, payload) if getattr(auth, "signs_body", True) else "{}"
    return f.Publish(channel, payload, auth.headers(body))


def raise_reply(frame: f.ServerFrame, what: str) -> None:
    """Raise AppSyncServiceError for an answer that is an error frame."""
    if isinstance(frame, (f.SubscribeError, f.UnsubscribeError, f.PublishError, f.Error)):
        raise AppSyncServiceError(what, frame.errors)


def merge_reply(result: PublishResult, batch: list[int], reply: f.ServerFrame, what: str) -> None:
    """Fold one publish's answer (publish_success, or an error frame: raised) into `result`."""
    raise_reply(reply, what)
    if not isinstance(reply, f.PublishSuccess):
        raise RemoteProtocolError(f"{what} was answered with {type(reply).__name__}")
    merge(result, batch, reply.successful, reply.failed)


def merge(
    result: PublishResult,
    batch: list[int],
    successful: Sequence[PublishedEntry],
    failed: Sequence[FailedEntry],
) -> None:
    def remap(index: int) -> int:
        if not 0 <= index < len(batch):
            raise RemoteProtocolError(f"publish answer has index {index} for a batch of {len(batch)}")
        return batch[index]

    result.successful.extend(PublishedEntry(e.identifier, remap(e.index)) for e in successful)
    result.failed.extend(
        FailedEntry(e.identifier, remap(e.index), e.code, e.message, e.local) for e in failed
    )


def sorted_result(result: PublishResult) -> PublishResult:
    result.successful.sort(key=lambda e: e.index)
    result.failed.sort(key=lambda e: e.index)
    return result


def normalise_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/event"
    return url


def http_publish_request(auth: Auth, channel: str, payload: list[str]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one HTTP publish (at most 5 events), signed over the real body."""
    body = f.publish_body(channel, payload)
    headers = {"content-type": "application/json"}
    headers.update(auth.headers(body))
    return body.encode(), headers


def http_publish_answer(http_url: str, channel: str, status: int, raw: bytes) -> f.PublishEntries:
    """What an HTTP publish's answer means: its entries, or the error it stands for (raised)."""
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if 200 <= status < 300:
        if not isinstance(answer, dict):
            raise RemoteProtocolError(f"HTTP publish got {status} with a body that is not a JSON object")
        return f.parse_publish_entries(answer)
    if isinstance(answer, dict) and isinstance(answer.get("errors"), list):
        errors = f.parse_errors(answer["errors"])
        raise AppSyncServiceError(f"an HTTP publish to {channel} (HTTP {status})", errors, status=status)
    raise RemoteProtocolError(f"HTTP publish to {http_url} got HTTP {status}: {raw[:200]!r}")


_tls_context: ssl.SSLContext | None = None


def default_tls_context() -> ssl.SSLContext:
    """The system's CAs, or those `$SSL_CERT_FILE` / `$SSL_CERT_DIR` name (OpenSSL's defaults read
    them), made once a process: the WebSocket and the HTTP publishes share it, and loading a CA bundle
    (~10 ms) is not paid again on each dial."""
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


# A kept connection that fails like this was already dead when reused (closed by the server while
# idle, or while the Lambda sandbox was frozen): the request got no answer, so it goes once more on a
# new connection. Not a timeout: that request may be in AppSync's hands.
_DEAD_CONNECTION = (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class HttpPublisher:
    """HTTP publishes (`POST /event`) over one kept-alive HTTP/1.1 connection, blocking, standard
    library only: the stub's, one per sandbox, reused across publishes and invocations. A new TCP +
    TLS connection costs two round trips before its request; a kept one costs none.

    A kept connection found closed before use (it became readable: the server's FIN or reset), or
    failing as a dead one does, is replaced once; a new connection's failure is the publish's. One
    idle for over `max_idle_s` (on `clock`) is not trusted at all: after a long Lambda freeze the
    server or a NAT may have forgotten it without a word, and a request into that silence would only
    end at its timeout, while a new connection next to AppSync costs milliseconds.
    `stats`: connections opened, requests answered, kept connections replaced."""

    def __init__(
        self,
        http_url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = normalise_http_url(http_url)
        parts = urlsplit(self.url)
        self.secure = parts.scheme == "https"
        self._address = (parts.hostname or "", parts.port or (443 if self.secure else 80))
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.ssl_context = ssl_context  # None: default_tls_context()
        self.max_idle_s = max_idle_s
        self.clock = clock
        self._conn: Any = None  # http.client.HTTPConnection, imported on first use (cold start)
        self._idle_since = 0.0
        self.stats = {"connections": 0, "requests": 0, "reopened": 0}

    def __repr__(self) -> str:
        return f"<HttpPublisher {self.url} {'kept' if self._conn is not None else 'idle'}>"

    def publish(self, auth: Auth, channel: str, payload: list[str], timeout: float) -> f.PublishEntries:
        """One HTTP publish (at most 5 events): the service's answer, or the error it means."""
        body, headers = http_publish_request(auth, channel, payload)
        try:
            status, raw = self.post(body, headers, timeout)
        except OSError as exc:  # refused, reset, TLS, timeouts
            raise HttpPublishFailed(f"HTTP publish to {self.url} failed: {exc}") from exc
        return http_publish_answer(self.url, channel, status, raw)

    def post(self, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        """POST `body`; (status, response body). Raises OSError when no answer came."""
        while True:
            conn, kept = self._connection(timeout)
            try:
                conn.request("POST", self._target, body, headers)
                response = conn.getresponse()
                raw = response.read()
            except _DEAD_CONNECTION:
                self.close()
                if not kept:
                    raise
                self.stats["reopened"] += 1
                continue
            except BaseException:
                self.close()  # a half-read answer would poison the next request
                raise
            self.stats["requests"] += 1
            self._idle_since = self.clock()
            if response.will_close:
                self.close()
            return response.status, raw

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self, timeout: float) -> tuple[Any, bool]:
        """The kept connection (True) if it is still usable, else a new one (False)."""
        conn = self._conn
        if conn is not None and conn.sock is not None:
            sock = conn.sock
            # Readable while idle: nothing is due, so it is the server's close (or garbage).
            if self.clock() - self._idle_since <= self.max_idle_s and not _readable(sock):
                sock.settimeout(timeout)
                return conn, True
            self.stats["reopened"] += 1
        self.close()
        import http.client  # only IAM publishes over HTTP: not on every cold start

        host, port = self._address
        if self.secure:
            context = self.ssl_context or default_tls_context()
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.connect()  # TCP (it sets TCP_NODELAY), then TLS
        self._conn = conn
        self.stats["connections"] += 1
        return conn, False


def _readable(sock: Any) -> bool:
    poller = select.poll()  # not select(): no limit on the descriptor's number
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
