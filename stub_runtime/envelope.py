"""The message envelope: how a livelambda message travels over AppSync Events, sans-I/O.

Why: AppSync carries JSON strings of at most 240 KB, five a publish, and anyone who holds the API key
can publish on our channels, while the dev server runs what arrives with the developer's credentials.
So every message (an invocation's event and context, a result up to Lambda's 6 MB, an ack, a
heartbeat) is compressed when that helps, cut into chunks well under the event limit, and each chunk
is signed with the live session's secret (HMAC-SHA256) and stamped with the sender's clock. The
receiver (`Reassembler`) checks the signature before it trusts any field, reassembles chunks arriving
in any order, drops redeliveries, and rejects forged, altered, foreign, stale or replayed chunks.

No sockets, no asyncio, no clock: callers pass wall-clock milliseconds as `now_ms`.

One AppSync event is one chunk, a compact JSON object whose fields are all signed:

    {"livelambda":1,"kind":"result","session":"s1","invocation_id":"<request id>","sandbox_id":"sb1",
     "message_id":"<hex>","chunk":0,"chunks":3,"ts_ms":1700000000000,"codec":"zlib",
     "data":"<this chunk's slice>","mac":"<64 lowercase hex>"}

codec "json": joining the `data` slices gives the body's JSON text; codec "zlib": it gives the base64 of
the body's UTF-8 JSON text compressed with zlib level 1.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .errors import LocalProtocolError, RemoteProtocolError
from .wire import compact_json, envelope_event, envelope_signed_head

ENVELOPE_VERSION = 1
MAX_EVENT_BYTES = 240 * 1024  # AppSync's limit for one event
EVENT_BUDGET_BYTES = 200_000  # what encode() targets per event (UTF-8 bytes, everything included)
MAX_MESSAGE_BYTES = 7 * 1024 * 1024  # largest body, as UTF-8 JSON bytes before compression
MAX_CHUNKS = 1024
# compress=None compresses bodies larger than this, when it helps. Not 1 KB: a body of a few KB fits
# one event and one TCP window either way, so zlib + base64 (~30 us a message each side) bought nothing
# but CPU on the live path; above ~4 KB it saves wire time on a real uplink, and events above 200 KB.
COMPRESS_ABOVE_BYTES = 4 * 1024

REJECT_REASONS = (
    "malformed", "bad_signature", "wrong_session", "stale", "replay", "expired", "too_large", "inconsistent",
)
INCOMPLETE = "incomplete"  # the counter `expire()` uses for partial messages it drops

_FIELDS = ("livelambda", "kind", "session", "invocation_id", "sandbox_id", "message_id",
           "chunk", "chunks", "ts_ms", "codec", "data", "mac")
_FIELD_SET = frozenset(_FIELDS)
_SIGNED_HEAD = _FIELDS[:-2]  # signed as one canonical JSON array, then the data
_INT_FIELDS = ("livelambda", "chunk", "chunks", "ts_ms")
_ID_FIELDS = ("session", "invocation_id", "sandbox_id", "message_id")
_CODECS = ("json", "zlib")
_MAC_DOMAIN = b"livelambda envelope v1\n"
_COMPACT = (",", ":")
_MAX_HEAD_BYTES = 1024  # every field but `data`, at its longest (four 128-character ids)
_KIND_RE = re.compile(r"[a-z_]{1,32}")
_ID_RE = re.compile(r'[!#-\[\]-~]{0,128}')  # printable ASCII without space, '"' and '\'
# Largest `data` total a message may carry: the base64 of a zlib stream of MAX_MESSAGE_BYTES.
_MAX_DATA = {
    "json": MAX_MESSAGE_BYTES,
    "zlib": (MAX_MESSAGE_BYTES + MAX_MESSAGE_BYTES // 500 + 1024) * 4 // 3,
}

_HINTS = {
    "malformed": "this is not a livelambda envelope, or the stub and the dev server run different "
                 "livelambda versions — deploy the stub again with `livelambda aws up`",
    "bad_signature": "the HMAC does not match; the sender uses another session secret (or someone with "
                     "the API key forged it) — restart `livelambda dev` and re-run `livelambda aws up`",
    "wrong_session": "it belongs to another live session (a second laptop, or a stub deployed for an older "
                     "session) — re-run `livelambda aws up` from this session",
    "stale": "the sender's clock and ours differ too much, or the message was held back and replayed "
             "— check that both clocks are synchronised (NTP)",
    "replay": "this message was already received and handled; the copy is ignored",
    "expired": "the invocation's deadline had passed when it arrived (held back, or replayed); "
               "it was not run",
    "too_large": "it exceeds livelambda's size limits (Lambda allows 6 MB payloads)",
    "inconsistent": "chunks with the same message id disagree — the sender reused a message id; "
                    "this is a livelambda bug, please report it",
}


def new_id() -> str:
    """A fresh random id (32 hex digits) for messages."""
    return os.urandom(16).hex()


@dataclass(frozen=True)
class Message:
    kind: str  # "invoke", "ack", "heartbeat", "result", "error", "hello", ...: [a-z_]{1,32}
    session: str  # live session id; a Reassembler only accepts its own session
    invocation_id: str  # Lambda request id ("" when not tied to one)
    sandbox_id: str  # which Lambda sandbox (response channel) this concerns
    body: Any  # any JSON value
    message_id: str = field(default_factory=new_id)  # unique per message: replay detection
    ts_ms: int = 0  # sender's wall clock when encoded (encode() stamps it)


class InvalidMessage(LocalProtocolError):
    """encode() was given a message it cannot send (bad kind or id, body that is not JSON)."""

    error_type = "Livelambda.InvalidMessage"


class MessageTooLarge(LocalProtocolError):
    """encode() was given a body larger than MAX_MESSAGE_BYTES."""

    error_type = "Livelambda.MessageTooLarge"


class EnvelopeRejected(RemoteProtocolError):
    """A received event was dropped; `reason` is one of REJECT_REASONS, `detail` says what was wrong."""

    error_type = "Livelambda.EnvelopeRejected"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"envelope rejected ({reason}): {detail}; {_HINTS[reason]}")


def _mac(secret: bytes, fields: dict[str, Any], *, checked: bool = False) -> str:
    """HMAC-SHA256 (lowercase hex) over a canonical serialization of every field but `mac`.

    The head is a JSON array (ASCII, no raw newline) of the fixed fields, so `head + "\\n" + data`
    is unambiguous; data is hashed as sent (before base64 or JSON decoding). `checked`: the ids and
    kind passed `_check_ids` (no quote or backslash), so the sender writes the array by hand (wire.py);
    a receiver has not checked them yet and lets json.dumps write it.
    """
    if checked:
        head = envelope_signed_head(fields)
    else:
        head = json.dumps([fields[k] for k in _SIGNED_HEAD], separators=_COMPACT).encode("ascii")
    # One call into OpenSSL (hmac.new() and three updates are eight Python calls, on every message).
    signed = b"".join((_MAC_DOMAIN, head, b"\n", fields["data"].encode("utf-8", "surrogatepass")))
    return hmac.digest(secret, signed, "sha256").hex()


def _what(f: dict[str, Any]) -> str:
    """How an error message names a chunk (only built when there is an error)."""
    return f"message {f['message_id']!r:.40} ({f['kind']!r:.40}, chunk {f['chunk']} of {f['chunks']})"


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or not secret:
        raise InvalidMessage("the session secret must be non-empty bytes (see new_secret())")


def _check_ids(kind: str, ids: dict[str, str]) -> str | None:
    """What is wrong with a message's kind and ids, or None."""
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        return f"kind {kind!r:.60} is not 1-32 characters of [a-z_]"
    for name, value in ids.items():
        if not isinstance(value, str) or not _ID_RE.fullmatch(value):
            return (f"{name} {value!r:.60} is not up to 128 printable ASCII characters "
                    "(no space, quote or backslash)")
    for name in ("session", "message_id"):
        if not ids[name]:
            return f"{name} is empty"
    return None


def _serialize(body: Any) -> tuple[str, bytes]:
    """The body's compact JSON text and its UTF-8 bytes."""
    try:
        text = compact_json(body)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMessage(f"the message body cannot be sent as JSON: {exc}") from None
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates in a string: let JSON escape them
        text = json.dumps(body, separators=_COMPACT)
        return text, text.encode("ascii")


def _split_text(text: str, budget: int) -> list[str]:
    """Cut JSON text into slices whose JSON-string form (without quotes) fits `budget` UTF-8 bytes.

    The text comes from json.dumps, so it holds no raw control character: inside a JSON string
    only '"' and '\\' grow (to two bytes each).
    """
    pieces = []
    start = 0
    while start < len(text):
        take = min(budget, len(text) - start)
        while True:
            piece = text[start:start + take]
            size = len(piece.encode("utf-8")) + piece.count('"') + piece.count("\\")
            if size <= budget:
                break
            take = max(1, min(take - 1, take * budget // size))
        pieces.append(piece)
        start += take
    return pieces


def _may_shrink(raw: bytes) -> bool:
    """Whether compressing a big body is worth trying: deflating 6 MB of base64 (as binary API
    responses are) would cost a small Lambda a second of CPU for nothing. Judged on a middle sample."""
    if len(raw) <= 1024 * 1024:
        return True
    middle = len(raw) // 2
    sample = raw[middle:middle + 64 * 1024]
    return len(zlib.compress(sample, 1)) * 4 < len(sample) * 3 * 0.95  # base64 of it < 95 %


def encode(message: Message, secret: bytes, now_ms: int, *, compress: bool | None = None,
           budget_bytes: int = EVENT_BUDGET_BYTES) -> list[str]:
    """Return the AppSync event strings carrying `message`, in chunk order, stamped with `now_ms`.

    compress=None compresses bodies over COMPRESS_ABOVE_BYTES when that makes them smaller; True or
    False force it. Every string is at most `budget_bytes` UTF-8 bytes. Re-sending after a failed
    publish: send the same strings again (re-encoding the same message_id with another time is
    rejected as inconsistent or replay).
    Raises MessageTooLarge (body over MAX_MESSAGE_BYTES) or InvalidMessage.
    """
    _check_secret(secret)
    ids = {"session": message.session, "invocation_id": message.invocation_id,
           "sandbox_id": message.sandbox_id, "message_id": message.message_id}
    problem = _check_ids(message.kind, ids)
    if problem:
        raise InvalidMessage(f"cannot encode message: {problem}")
    if type(now_ms) is not int:
        raise InvalidMessage(f"now_ms must be an int of milliseconds, not {type(now_ms).__name__}")
    if not 0 < budget_bytes <= MAX_EVENT_BYTES:
        raise InvalidMessage(f"budget_bytes must be in 1..{MAX_EVENT_BYTES}")
    text, raw = _serialize(message.body)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"the {message.kind} message body is {len(raw):,} bytes of JSON; livelambda carries at most "
            f"{MAX_MESSAGE_BYTES:,} (Lambda's own limit is 6 MB) — make the payload smaller")
    codec, packed = "json", ""
    if compress or (compress is None and len(raw) > COMPRESS_ABOVE_BYTES and _may_shrink(raw)):
        packed = base64.b64encode(zlib.compress(raw, 1)).decode("ascii")
        if compress or len(packed) < len(raw):
            codec = "zlib"
    head: dict[str, Any] = {"livelambda": ENVELOPE_VERSION, "kind": message.kind, **ids,
                            "chunk": MAX_CHUNKS, "chunks": MAX_CHUNKS, "ts_ms": now_ms, "codec": codec,
                            "data": "", "mac": "0" * 64}
    if codec == "json" and 2 * len(raw) + _MAX_HEAD_BYTES <= budget_bytes:
        # One chunk whatever the escaping (at most 2 bytes a byte): the common, small message.
        return [_event({**head, "chunk": 0, "chunks": 1, "data": text}, secret)]
    data_budget = budget_bytes - len(json.dumps(head, separators=_COMPACT))
    if data_budget < 16:
        raise InvalidMessage(f"budget_bytes={budget_bytes} leaves no room for data after the header")
    if codec == "zlib":
        pieces = [packed[i:i + data_budget] for i in range(0, len(packed), data_budget)]
    else:
        pieces = _split_text(text, data_budget)
    if len(pieces) > MAX_CHUNKS:
        raise MessageTooLarge(f"the {message.kind} message needs {len(pieces)} events, more than "
                              f"{MAX_CHUNKS} — make the payload smaller")
    events = []
    for index, piece in enumerate(pieces):
        event = _event({**head, "chunk": index, "chunks": len(pieces), "data": piece}, secret)
        if len(event.encode("utf-8")) > budget_bytes:  # cannot happen: the sizes above are exact
            raise LocalProtocolError(f"envelope bug: chunk {index} exceeds {budget_bytes} bytes")
        events.append(event)
    return events


def _event(fields: dict[str, Any], secret: bytes) -> str:
    """One chunk's JSON, signed. Its ids and kind are checked (printable ASCII without quote or
    backslash), which wire.envelope_event needs: only `data` is escaped."""
    return envelope_event(fields, _mac(secret, fields, checked=True))


def _parse(event: str | dict) -> dict[str, Any]:
    """The event's fields, type-checked; raises malformed or too_large. Nothing here is trusted yet."""
    if isinstance(event, str):
        if len(event) > MAX_EVENT_BYTES:
            raise EnvelopeRejected("too_large", f"an event of {len(event):,} characters exceeds "
                                                f"{MAX_EVENT_BYTES:,}")
        try:
            event = json.loads(event)
        except (ValueError, RecursionError):
            raise EnvelopeRejected("malformed", "the event is not valid JSON") from None
    if not isinstance(event, dict):
        raise EnvelopeRejected("malformed", f"the event is a JSON {type(event).__name__}, not an object")
    version = event.get("livelambda")
    if "livelambda" in event and version != ENVELOPE_VERSION:
        raise EnvelopeRejected("malformed", f"envelope version {version!r:.20} is not {ENVELOPE_VERSION}")
    if event.keys() != _FIELD_SET:
        missing = sorted(_FIELD_SET - event.keys())
        extra = sorted(str(k) for k in event.keys() - _FIELD_SET)
        raise EnvelopeRejected("malformed", f"missing fields {missing}, unexpected fields {extra[:5]}")
    for name in _FIELDS:
        want = int if name in _INT_FIELDS else str
        if type(event[name]) is not want:
            raise EnvelopeRejected("malformed", f"field {name!r} is a {type(event[name]).__name__}, "
                                                f"not {want.__name__}")
    if len(event["data"]) > MAX_EVENT_BYTES:
        raise EnvelopeRejected("too_large", f"a chunk of {len(event['data']):,} characters exceeds "
                                            f"{MAX_EVENT_BYTES:,}")
    return event


def _decode_body(codec: str, data: str) -> Any:
    """The body of a complete, authenticated message."""
    try:
        if codec == "json":
            return json.loads(data)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(data, validate=True), MAX_MESSAGE_BYTES + 1)
        if len(raw) > MAX_MESSAGE_BYTES:
            raise EnvelopeRejected("too_large", f"the body inflates to more than {MAX_MESSAGE_BYTES:,} bytes")
        if not inflater.eof or inflater.unused_data:
            raise EnvelopeRejected("malformed", "the zlib stream is truncated or followed by junk")
        return json.loads(raw)
    except (ValueError, RecursionError, binascii.Error, zlib.error) as exc:
        raise EnvelopeRejected("malformed", f"the {codec} body does not decode: {exc}") from None


class _Partial:
    __slots__ = ("first_ms", "head", "pieces", "size")

    def __init__(self, head: tuple, first_ms: int) -> None:
        self.head = head
        self.first_ms = first_ms
        self.pieces: dict[int, str] = {}
        self.size = 0


class Reassembler:
    """Turns received AppSync events back into Messages for one live session (see feed())."""

    def __init__(self, secret: bytes, session: str, *, max_skew_ms: int = 5 * 60_000,
                 replay_window_ms: int = 10 * 60_000, partial_timeout_ms: int = 60_000,
                 max_pending_bytes: int = 64 * 1024 * 1024) -> None:
        _check_secret(secret)
        self.session = session
        self.max_skew_ms = max_skew_ms
        self.replay_window_ms = replay_window_ms
        self.partial_timeout_ms = partial_timeout_ms
        self.max_pending_bytes = max_pending_bytes
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self.recent_rejections: deque[tuple[int, str, str]] = deque(maxlen=50)
        self._secret = secret
        self._pending: dict[str, _Partial] = {}
        self._pending_bytes = 0
        self._done: dict[str, int] = {}  # message_id -> forget after (ms); insertion ~ completion order

    def feed(self, event: str | dict, now_ms: int) -> Message | None:
        """Accept one AppSync event (its JSON string or decoded dict) received at `now_ms`.

        Returns the Message once its last missing chunk arrives (chunks in any order), else None.
        A chunk received before (redelivery) is counted in `duplicates` and returns None. Anything
        else wrong raises EnvelopeRejected, counted in `rejected` and `recent_rejections`. Drops
        expired partial messages first (see expire()).
        """
        self.expire(now_ms)
        try:
            return self._feed(event, now_ms)
        except EnvelopeRejected as exc:
            self._count(now_ms, exc.reason, exc.detail)
            raise

    def expire(self, now_ms: int) -> int:
        """Drop partial messages older than partial_timeout_ms (counted as "incomplete") and replay
        memory past its window; returns how many partial messages were dropped."""
        late = [mid for mid, p in self._pending.items() if now_ms - p.first_ms >= self.partial_timeout_ms]
        for mid in late:
            partial = self._pending.pop(mid)
            self._pending_bytes -= partial.size
            self._count(now_ms, INCOMPLETE, f"message {mid} (kind {partial.head[0]}) got "
                                            f"{len(partial.pieces)} of {partial.head[4]} chunks in "
                                            f"{self.partial_timeout_ms} ms; dropped")
        while self._done:
            mid, forget_at = next(iter(self._done.items()))
            if forget_at > now_ms:
                break
            del self._done[mid]
        return len(late)

    def count_rejection(self, now_ms: int, reason: str, detail: str) -> None:
        """Count a message refused after reassembly (a replay across restarts, an expired invocation)
        with the ones refused here, so that one tally says what was dropped and why."""
        self._count(now_ms, reason, detail)

    def _count(self, now_ms: int, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        self.recent_rejections.append((now_ms, reason, detail))

    def _feed(self, event: str | dict, now_ms: int) -> Message | None:
        f = _parse(event)
        mid, index, count, ts = f["message_id"], f["chunk"], f["chunks"], f["ts_ms"]
        if not hmac.compare_digest(_mac(self._secret, f).encode(), f["mac"].encode("utf-8", "surrogatepass")):
            detail = "the chunk's HMAC does not verify with this session's secret"
            if f["session"] != self.session:
                detail += f" (it claims session {f['session']!r:.70}; this is session {self.session!r})"
            raise EnvelopeRejected("bad_signature", detail)
        # Authentic from here on: the sender holds our secret.
        problem = _check_ids(f["kind"], {k: f[k] for k in _ID_FIELDS})
        if problem or f["codec"] not in _CODECS or not 0 <= index < count:
            raise EnvelopeRejected("malformed", f"{_what(f)}: {problem or 'bad codec or chunk numbers'}")
        if count > MAX_CHUNKS:
            raise EnvelopeRejected("too_large", f"{_what(f)}: more than {MAX_CHUNKS} chunks")
        if f["session"] != self.session:
            raise EnvelopeRejected("wrong_session", f"{_what(f)} is for session {f['session']!r}, "
                                                    f"this is session {self.session!r}")
        if abs(now_ms - ts) > self.max_skew_ms:
            age = (now_ms - ts) / 1000
            when = f"{age:.1f} s ago" if age > 0 else f"{-age:.1f} s in the future"
            raise EnvelopeRejected("stale", f"{_what(f)} was stamped {when}; at most "
                                            f"{self.max_skew_ms / 1000:.0f} s either way is accepted")
        forget_at = self._done.get(mid)
        if forget_at is not None and forget_at > now_ms:
            raise EnvelopeRejected("replay", f"{_what(f)} was already completed")
        if count == 1 and mid not in self._pending:  # the common case: a message in one event
            return self._complete(f, f["data"], now_ms)
        head = (f["kind"], f["session"], f["invocation_id"], f["sandbox_id"], count, ts, f["codec"])
        partial = self._pending.get(mid)
        if partial is not None:
            if partial.head != head:
                names = ("kind", "session", "invocation_id", "sandbox_id", "chunks", "ts_ms", "codec")
                diff = [n for n, a, b in zip(names, partial.head, head, strict=True) if a != b]
                raise EnvelopeRejected("inconsistent",
                                       f"{_what(f)} differs from its earlier chunks in {diff}")
            seen = partial.pieces.get(index)
            if seen is not None:
                if seen != f["data"]:
                    raise EnvelopeRejected("inconsistent", f"{_what(f)} arrived twice with different data")
                self.duplicates += 1
                return None
        size = len(f["data"])
        if self._pending_bytes + size > self.max_pending_bytes:
            raise EnvelopeRejected("too_large", f"{_what(f)}: partial messages would hold more than "
                                                f"{self.max_pending_bytes:,} bytes")
        if partial is None:
            partial = self._pending[mid] = _Partial(head, now_ms)
        partial.pieces[index] = f["data"]
        partial.size += size
        self._pending_bytes += size
        if partial.size > _MAX_DATA[f["codec"]]:
            self._drop(mid)
            raise EnvelopeRejected("too_large", f"{_what(f)}: the message's data exceeds "
                                                f"{_MAX_DATA[f['codec']]:,} characters")
        if len(partial.pieces) < count:
            return None
        self._drop(mid)
        return self._complete(f, "".join(partial.pieces[i] for i in range(count)), now_ms)

    def _complete(self, f: dict[str, Any], data: str, now_ms: int) -> Message:
        # Remember it until it would be stale anyway, so a replay is caught whatever the window.
        self._done[f["message_id"]] = max(now_ms + self.replay_window_ms, f["ts_ms"] + self.max_skew_ms + 1)
        body = _decode_body(f["codec"], data)
        return Message(kind=f["kind"], session=f["session"], invocation_id=f["invocation_id"],
                       sandbox_id=f["sandbox_id"], body=body, message_id=f["message_id"], ts_ms=f["ts_ms"])

    def _drop(self, mid: str) -> None:
        partial = self._pending.pop(mid)
        self._pending_bytes -= partial.size
