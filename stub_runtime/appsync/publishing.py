"""Publishing, without I/O: events checked and cut into publishes of five, the answers merged back
into one result indexed like the caller's events; and the HTTP publish (`POST /event`), blocking."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def http_publish(
    http_url: str, auth: Auth, channel: str, payload: list[str], timeout: float
) -> f.PublishEntries:
    """One HTTP publish (at most 5 events), blocking: the service's answer, or the error it means."""
    body = f.publish_body(channel, payload)
    headers = {"content-type": "application/json"}
    headers.update(auth.headers(body))
    try:
        status, raw = _http_post(http_url, body.encode(), headers, timeout)
    except OSError as exc:  # URLError, timeouts, resets
        raise HttpPublishFailed(f"HTTP publish to {http_url} failed: {exc}") from exc
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


def _http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
