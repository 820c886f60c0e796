"""AppSync Events channel names: validation and wildcard matching, shared by the client and the emulator.

A channel is `/namespace/seg/...`:
- at most 5 segments, the namespace included (a trailing `*` counts as one);
- every segment is 1-50 characters of `[A-Za-z0-9-]`, starting and ending with a letter or digit
  (the rule AppSync documents for namespace names; we apply it to every segment);
- the first segment names an existing namespace (checked when the caller knows the namespaces);
- a subscription may end in `/*`; a publish may not. `*` anywhere else is invalid.

Matching (`channel_matches`): a pattern without `*` matches only the identical channel. A pattern
`/ns/a/*` matches every channel *strictly below* `/ns/a`, at any depth: `/ns/a/b`, `/ns/a/b/c`, but not
`/ns/a` itself and not `/ns/ab`. Segments compare case-sensitively.

Standard library only: this module is imported on every Lambda cold start.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection

from stub_runtime.errors import LocalProtocolError

MAX_SEGMENTS = 5
MAX_SEGMENT_LENGTH = 50
WILDCARD = "*"
INVALID_CHANNEL_FORMAT = "Invalid Channel Format"  # AppSync's message, verbatim

_SEGMENT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?")


class InvalidChannel(LocalProtocolError):
    """A channel name AppSync would reject with BadRequestException "Invalid Channel Format".

    `str(exc)` starts with AppSync's message and goes on to say which rule failed; `message` is the
    bare AppSync message (what the emulator puts on the wire), `reason` the rule, `channel` the input.
    """

    error_type = "Livelambda.InvalidChannel"
    appsync_error_type = "BadRequestException"
    message = INVALID_CHANNEL_FORMAT

    def __init__(self, channel: object, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"{INVALID_CHANNEL_FORMAT}: {reason} (channel {channel!r})")


def validate_channel(
    channel: str, *, subscribe: bool, namespaces: Collection[str] | None = None
) -> list[str]:
    """Return the channel's segments (namespace first, a trailing `"*"` kept) or raise InvalidChannel.

    `subscribe=True` allows a trailing `/*`. Pass `namespaces` to also require that the first segment
    names one of them (the emulator does; a client usually cannot know the API's namespaces).
    """
    if isinstance(channel, str) and (namespaces is None or isinstance(namespaces, frozenset)):
        return list(_validated(channel, subscribe, namespaces))  # a live session reuses a few channels
    return _validate(channel, subscribe, namespaces)


@functools.lru_cache(maxsize=256)
def _validated(channel: str, subscribe: bool, namespaces: frozenset[str] | None) -> tuple[str, ...]:
    return tuple(_validate(channel, subscribe, namespaces))


def _validate(channel: object, subscribe: bool, namespaces: Collection[str] | None) -> list[str]:
    if not isinstance(channel, str):
        raise InvalidChannel(channel, "a channel must be a string")
    if not channel.startswith("/"):
        raise InvalidChannel(channel, "a channel starts with '/', as in '/namespace/name'")
    segments = channel[1:].split("/")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidChannel(channel, f"at most {MAX_SEGMENTS} segments, the namespace included")
    for position, segment in enumerate(segments):
        is_last = position == len(segments) - 1
        if segment == WILDCARD:
            if not subscribe:
                raise InvalidChannel(channel, "a wildcard '/*' is allowed on subscribe only, not on publish")
            if not is_last:
                raise InvalidChannel(channel, "a wildcard '*' may only be the last segment")
            if position == 0:
                raise InvalidChannel(channel, "the first segment must be a namespace, not '*'")
            continue
        if not _SEGMENT.fullmatch(segment):
            raise InvalidChannel(
                channel,
                f"segment {segment!r} must be 1-{MAX_SEGMENT_LENGTH} characters of A-Z, a-z, 0-9 and '-', "
                "starting and ending with a letter or digit",
            )
    if namespaces is not None and segments[0] not in namespaces:
        raise InvalidChannel(channel, f"namespace {segments[0]!r} does not exist")
    return segments


def channel_matches(pattern: str, channel: str) -> bool:
    """Whether an event published to `channel` reaches a subscription to `pattern` (see module doc).

    Both are taken as already valid; an invalid pair simply does not match.
    """
    if pattern == channel and not pattern.endswith(WILDCARD):
        return True
    want = pattern.strip("/").split("/")
    have = channel.strip("/").split("/")
    if want[-1] == WILDCARD:
        prefix = want[:-1]
        return len(have) > len(prefix) and have[: len(prefix)] == prefix
    return want == have
