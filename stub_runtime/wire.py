"""JSON and ids written by hand where the standard library's way costs measurably more on the live
path, in one place, each pinned to the standard library by a property test (tests/test_wire.py: byte
for byte what `json.dumps(value, separators=(",", ":"), ensure_ascii=False)` gives; a uuid4's text).

A trick stays only while it pays: each says its measured ratio (the stdlib's time over the trick's,
CPython 3.11, timeit on a 1 KB invocation's sizes); at 200 KB each costs what json.dumps does, as
escaping the big string is all the work. Measured and dropped: the `publish` frame by hand (1.1x:
frames.Publish uses compact_json). Measured and kept, in frames.py: its slotted record base rather
than @dataclass(slots=True) (0.33 ms a class at import against 0.01 ms: ~7 ms of the stub's cold
start for its twenty-odd records); the dev server's ConnectionState, off that path, is a dataclass.

Standard library only: this ships in the stub's layer.
"""

from __future__ import annotations

import json
import os
from typing import Any

# A str as compact_json() writes it, quotes included (the json module's own C function).
json_string = json.encoder.encode_basestring

# One encoder for every call: json.dumps() with arguments builds a new JSONEncoder each time (1.5x).
_compact_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def compact_json(value: Any) -> str:
    """JSON the way AWS's SDKs write it (JSON.stringify): no spaces, non-ASCII kept as is."""
    return _compact_encoder.encode(value)


def uuid4_text(raw: bytes) -> str:
    """str(uuid.UUID(bytes=raw, version=4)) of 16 bytes, without building the UUID object."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def new_id() -> str:
    """A random (version 4) UUID string, as the service's ids are: str(uuid.uuid4()) at 2.4x the speed
    (a publish and its answer carry one each)."""
    return uuid4_text(os.urandom(16))


# ----------------------------------------------------------------------------- AppSync frames (the emulator)
def data_frame(subscription_id: str, event: str) -> str:
    """The `data` frame delivering `event` (a JSON text) to a subscription (2.1x): the live path relays
    two an invocation."""
    return f'{{"type":"data","id":{json_string(subscription_id)},"event":{json_string(event)}}}'


def publish_success_frame(pub_id: str, successful: list[dict[str, Any]], failed: list[dict[str, Any]]) -> str:
    """The `publish_success` frame (2.8x): `successful` holds {"identifier": str, "index": int} in that
    order; `failed`, rare, is written by the encoder."""
    js = json_string
    done = ",".join(f'{{"identifier":{js(e["identifier"])},"index":{e["index"]}}}' for e in successful)
    failures = compact_json(failed) if failed else "[]"
    pub = json_string(pub_id)
    return f'{{"type":"publish_success","id":{pub},"successful":[{done}],"failed":{failures}}}'


# ----------------------------------------------------------------------------- the envelope's chunks
# Both take a chunk's fields in envelope._FIELDS order whose ids, kind and codec passed its checks
# (printable ASCII without space, quote or backslash: nothing to escape) and whose numbers are ints.
def envelope_event(fields: dict[str, Any], mac: str) -> str:
    """One chunk with its `mac`, as compact JSON (3.2x): only `data` needs escaping."""
    f = fields
    return (f'{{"livelambda":{f["livelambda"]},"kind":"{f["kind"]}","session":"{f["session"]}",'
            f'"invocation_id":"{f["invocation_id"]}","sandbox_id":"{f["sandbox_id"]}",'
            f'"message_id":"{f["message_id"]}","chunk":{f["chunk"]},"chunks":{f["chunks"]},'
            f'"ts_ms":{f["ts_ms"]},"codec":"{f["codec"]}","data":{json_string(f["data"])},"mac":"{mac}"}}')


def envelope_signed_head(fields: dict[str, Any]) -> bytes:
    """The signed head: the JSON array (ASCII) of every field but `data` and `mac`, in order (4x)."""
    f = fields
    return (f'[{f["livelambda"]},"{f["kind"]}","{f["session"]}","{f["invocation_id"]}",'
            f'"{f["sandbox_id"]}","{f["message_id"]}",{f["chunk"]},{f["chunks"]},{f["ts_ms"]},'
            f'"{f["codec"]}"]').encode("ascii")
