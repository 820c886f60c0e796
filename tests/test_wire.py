"""stub_runtime/wire.py against the standard library: byte for byte what compact json.dumps writes, and
uuid4 text as the uuid module writes it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stub_runtime import wire
from stub_runtime.envelope import _FIELDS, _SIGNED_HEAD


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# Any text, lone surrogates, quotes, backslashes and control characters included.
TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
INDEX = st.integers(0, 4)


@given(TEXT)
def test_json_string_is_compact_json_of_a_str(s: str) -> None:
    assert wire.json_string(s) == compact(s)


@given(JSON)
def test_compact_json_is_json_dumps_compact(value: Any) -> None:
    assert wire.compact_json(value) == compact(value)


@given(st.binary(min_size=16, max_size=16))
def test_uuid4_text_is_the_uuid_modules(raw: bytes) -> None:
    assert wire.uuid4_text(raw) == str(uuid.UUID(bytes=raw, version=4))


def test_new_ids_are_random_uuid4_text() -> None:
    ids = [wire.new_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122


@given(TEXT, TEXT)
def test_data_frame(subscription_id: str, event: str) -> None:
    expected = compact({"type": "data", "id": subscription_id, "event": event})
    assert wire.data_frame(subscription_id, event) == expected


@given(
    TEXT,
    # in the emulator's key order (fixed_dictionaries does not keep it)
    st.lists(st.builds(lambda i, n: {"identifier": i, "index": n}, TEXT, INDEX), max_size=5),
    st.lists(
        st.builds(lambda i, n, c, m: {"identifier": i, "index": n, "code": c, "message": m},
                  st.none() | TEXT, INDEX, st.none() | st.integers() | TEXT, TEXT),
        max_size=5,
    ),
)
def test_publish_success_frame(pub_id: str, successful: list[dict], failed: list[dict]) -> None:
    expected = compact({"type": "publish_success", "id": pub_id, "successful": successful, "failed": failed})
    assert wire.publish_success_frame(pub_id, successful, failed) == expected


# What the envelope's checks let through: printable ASCII without space, quote or backslash.
ID = st.text(st.characters(codec="ascii", min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
             max_size=128)
FIELDS = st.fixed_dictionaries({
    "livelambda": st.just(1),
    "kind": st.from_regex(r"[a-z_]{1,32}", fullmatch=True),
    "session": ID.filter(bool), "invocation_id": ID, "sandbox_id": ID, "message_id": ID.filter(bool),
    "chunk": st.integers(0, 1023), "chunks": st.integers(1, 1024), "ts_ms": st.integers(0, 2**53),
    "codec": st.sampled_from(["json", "zlib"]),
    "data": TEXT,
    "mac": st.text("0123456789abcdef", min_size=64, max_size=64),
})


@given(FIELDS)
def test_envelope_event(fields: dict[str, Any]) -> None:
    in_order = {name: fields[name] for name in _FIELDS}
    assert wire.envelope_event(in_order, fields["mac"]) == compact(in_order)


@given(FIELDS)
def test_envelope_signed_head(fields: dict[str, Any]) -> None:
    expected = json.dumps([fields[name] for name in _SIGNED_HEAD], separators=(",", ":")).encode("ascii")
    assert wire.envelope_signed_head(fields) == expected


def test_module_imports_only_the_standard_library() -> None:
    # It ships in the stub's layer, on the cold start's path.
    code = ("import sys; before = set(sys.modules); import stub_runtime.wire; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - set(sys.stdlib_module_names)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['stub_runtime']"
