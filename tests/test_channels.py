"""stub_runtime.channels: AppSync Events channel-name rules and wildcard matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stub_runtime.channels import (
    INVALID_CHANNEL_FORMAT,
    MAX_SEGMENTS,
    InvalidChannel,
    channel_matches,
    validate_channel,
)
from stub_runtime.errors import LocalProtocolError

NAMESPACES = ("default", "livelambda")

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
segments = st.one_of(
    st.sampled_from(_ALNUM),
    st.builds(
        lambda first, middle, last: first + middle + last,
        st.sampled_from(_ALNUM),
        st.text(alphabet=_ALNUM + "-", max_size=48),
        st.sampled_from(_ALNUM),
    ),
)
channels = st.lists(segments, min_size=1, max_size=MAX_SEGMENTS).map(lambda segs: "/" + "/".join(segs))


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("/default", ["default"]),
        ("/default/a", ["default", "a"]),
        ("/default/a-b/C9/x/0", ["default", "a-b", "C9", "x", "0"]),
        ("/livelambda/" + "a" * 50, ["livelambda", "a" * 50]),
    ],
)
def test_valid_channels_return_their_segments(channel: str, expected: list[str]) -> None:
    assert validate_channel(channel, subscribe=False) == expected
    assert validate_channel(channel, subscribe=True, namespaces=NAMESPACES) == expected


@pytest.mark.parametrize(
    "channel", ["/default/*", "/default/a/*", "/default/a/b/c/*", "/livelambda/s-1/*"]
)
def test_trailing_wildcard_is_allowed_on_subscribe_only(channel: str) -> None:
    assert validate_channel(channel, subscribe=True)[-1] == "*"
    with pytest.raises(InvalidChannel, match="subscribe only"):
        validate_channel(channel, subscribe=False)


@pytest.mark.parametrize(
    ("channel", "why"),
    [
        ("", "starts with '/'"),
        ("default/a", "starts with '/'"),
        ("/", "segment ''"),
        ("/default/", "segment ''"),
        ("/default//a", "segment ''"),
        ("//default", "segment ''"),
        ("/default/a/b/c/d/e", "at most 5 segments"),
        ("/default/a/b/c/d/*", "at most 5 segments"),
        ("/default/a_b", "segment 'a_b'"),
        ("/default/a b", "segment 'a b'"),
        ("/default/-a", "segment '-a'"),
        ("/default/a-", "segment 'a-'"),
        ("/default/é", "segment 'é'"),
        ("/default/a.b", "segment 'a.b'"),
        ("/default/" + "a" * 51, "1-50 characters"),
        ("/*", "namespace, not '*'"),
        ("/default/*/a", "only be the last segment"),
        ("/default/a*", "segment 'a\\*'"),
        ("/default/**", "segment '\\*\\*'"),
    ],
)
def test_invalid_channels_are_rejected_with_appsync_message(channel: str, why: str) -> None:
    with pytest.raises(InvalidChannel, match=why) as info:
        validate_channel(channel, subscribe=True)
    exc = info.value
    assert isinstance(exc, LocalProtocolError)
    assert str(exc).startswith(INVALID_CHANNEL_FORMAT)
    assert exc.message == "Invalid Channel Format"
    assert exc.appsync_error_type == "BadRequestException"
    assert exc.channel == channel


def test_namespace_must_exist_when_namespaces_are_given() -> None:
    assert validate_channel("/nope/a", subscribe=False) == ["nope", "a"]  # the client cannot know
    with pytest.raises(InvalidChannel, match="namespace 'nope' does not exist"):
        validate_channel("/nope/a", subscribe=False, namespaces=NAMESPACES)
    with pytest.raises(InvalidChannel, match="namespace 'Default' does not exist"):
        validate_channel("/Default/a", subscribe=False, namespaces=NAMESPACES)  # case-sensitive


@pytest.mark.parametrize("channel", [None, 42, b"/default/a", ["/default"]])
def test_non_strings_are_invalid(channel: object) -> None:
    with pytest.raises(InvalidChannel, match="must be a string"):
        validate_channel(channel, subscribe=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "channel", "matches"),
    [
        ("/default/a", "/default/a", True),
        ("/default/a", "/default/b", False),
        ("/default/a", "/default/a/b", False),  # exact subscriptions do not cover children
        ("/default/a", "/default", False),
        ("/default/a/*", "/default/a/b", True),
        ("/default/a/*", "/default/a/b/c/d", True),  # any depth below the prefix
        ("/default/a/*", "/default/a", False),  # not the prefix itself
        ("/default/a/*", "/default/ab", False),  # segment-wise, not string prefix
        ("/default/a/*", "/default/ab/c", False),
        ("/default/a/*", "/other/a/b", False),
        ("/default/*", "/default/x", True),
        ("/default/*", "/default", False),
        ("/default/*", "/livelambda/x", False),
        ("/default/A", "/default/a", False),  # case-sensitive
    ],
)
def test_channel_matches(pattern: str, channel: str, matches: bool) -> None:
    assert channel_matches(pattern, channel) is matches


@given(channels)
def test_generated_valid_channels_validate_and_round_trip(channel: str) -> None:
    segs = validate_channel(channel, subscribe=False)
    assert "/" + "/".join(segs) == channel
    assert channel_matches(channel, channel)


@given(channels, st.characters(blacklist_categories=("Cs",)).filter(lambda c: c not in _ALNUM + "-/*"))
def test_any_foreign_character_invalidates(channel: str, bad: str) -> None:
    with pytest.raises(InvalidChannel):
        validate_channel(channel + bad, subscribe=True)


@given(channels, st.integers(min_value=1, max_value=MAX_SEGMENTS - 1))
def test_wildcard_matches_exactly_the_channels_strictly_below_its_prefix(channel: str, cut: int) -> None:
    segs = channel[1:].split("/")
    pattern = "/" + "/".join(segs[:cut]) + "/*"
    validate_channel(pattern, subscribe=True)
    assert channel_matches(pattern, channel) is (len(segs) > cut)
    assert not channel_matches(pattern, "/" + "/".join(segs[:cut]))
