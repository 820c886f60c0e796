"""The message envelope: round trips of any body and size, chunk order, redelivery, tampering, replay."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import subprocess
import sys
import zlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stub_runtime import envelope as env
from stub_runtime.envelope import (
    EVENT_BUDGET_BYTES,
    MAX_EVENT_BYTES,
    MAX_MESSAGE_BYTES,
    REJECT_REASONS,
    EnvelopeRejected,
    InvalidMessage,
    Message,
    MessageTooLarge,
    Reassembler,
    encode,
    new_id,
)
from stub_runtime.errors import LocalProtocolError, RemoteProtocolError

SECRET = b"s" * 32
SESSION = "sess-1"
NOW = 1_700_000_000_000
MB = 1024 * 1024


def msg(body=None, **kw) -> Message:
    fields = {"kind": "result", "session": SESSION, "invocation_id": "req-1", "sandbox_id": "sb-1"}
    fields.update(kw)
    return Message(body=body, **fields)


def sent(message: Message, now: int = NOW) -> Message:
    """What the receiver should get back: the message stamped with the send time."""
    return dataclasses.replace(message, ts_ms=now)


def feed_all(r: Reassembler, events, now: int = NOW) -> list[Message]:
    return [m for m in (r.feed(e, now) for e in events) if m is not None]


def resign(fields: dict, secret: bytes = SECRET) -> str:
    """An event built from raw fields and signed properly (to reach the checks after the MAC)."""
    fields = dict(fields)
    fields["mac"] = env._mac(secret, fields)
    return json.dumps(fields, separators=(",", ":"))


def compressible(size: int) -> dict:
    rows, n = [], 0
    while n < size:
        row = {"id": len(rows), "name": f"user-{len(rows)}", "email": f"u{len(rows)}@example.com",
               "tags": ["alpha", "beta"], "score": len(rows) * 1.5, "active": len(rows) % 3 == 0}
        rows.append(row)
        n += len(json.dumps(row)) + 1
    return {"rows": rows}


def incompressible(size: int, seed: int = 0) -> dict:
    rnd = random.Random(seed)
    return {"blobs": [base64.b64encode(rnd.randbytes(min(size, 500_000) * 3 // 4)).decode()
                      for _ in range(0, size, 500_000)]}


# ---------------------------------------------------------------- round trips

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=10), kids, max_size=6),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(body=json_values, compress=st.sampled_from([None, True, False]),
       budget=st.sampled_from([EVENT_BUDGET_BYTES, 700, 420]), data=st.data())
def test_any_json_body_round_trips_in_any_chunk_order(body, compress, budget, data):
    m = msg(body)
    events = encode(m, SECRET, NOW, compress=compress, budget_bytes=budget)
    assert all(len(e.encode()) <= budget for e in events)
    order = data.draw(st.permutations(events))
    r = Reassembler(SECRET, SESSION)
    results = [r.feed(e, NOW + i) for i, e in enumerate(order)]
    assert results[:-1] == [None] * (len(events) - 1)
    assert results[-1] == sent(m)
    assert len(r._pending) == 0 and r._pending_bytes == 0
    # Compact JSON on the wire, exactly as json.dumps writes it (the events are built by hand).
    assert all(json.dumps(json.loads(e), ensure_ascii=False, separators=(",", ":")) == e for e in events)


def test_small_bodies_stay_readable_and_big_ones_are_compressed():
    (small,) = encode(msg({"hello": "world"}), SECRET, NOW)
    fields = json.loads(small)
    assert fields["codec"] == "json" and fields["data"] == '{"hello":"world"}'
    assert fields["chunks"] == 1 and fields["ts_ms"] == NOW
    big = encode(msg(compressible(20_000)), SECRET, NOW)
    assert json.loads(big[0])["codec"] == "zlib"
    # compress=None does not compress what would not shrink
    assert json.loads(encode(msg(incompressible(20_000)), SECRET, NOW)[0])["codec"] == "json"
    assert json.loads(encode(msg(incompressible(2 * MB)), SECRET, NOW)[0])["codec"] == "json"
    assert json.loads(encode(msg({"x": 1}), SECRET, NOW, compress=True)[0])["codec"] == "zlib"
    assert json.loads(encode(msg(compressible(20_000)), SECRET, NOW, compress=False)[0])["codec"] == "json"


def test_dict_events_are_accepted_like_strings():
    m = msg([1, "two", {"three": 3.0}])
    (event,) = encode(m, SECRET, NOW)
    assert Reassembler(SECRET, SESSION).feed(json.loads(event), NOW) == sent(m)


def test_unicode_and_escapes_split_across_chunks():
    rnd = random.Random(3)
    alphabet = "aé\"\\ 😀\n\t\x00\u2028"
    body = {"s": "".join(rnd.choice(alphabet) for _ in range(20_000)), "lone": "\ud800 surrogate"}
    m = msg(body)
    for compress in (False, True):
        events = encode(m, SECRET, NOW, compress=compress, budget_bytes=2000)
        assert len(events) > 1 and all(len(e.encode()) <= 2000 for e in events)
        assert feed_all(Reassembler(SECRET, SESSION), reversed(events)) == [sent(m)]


SIZES = [1_000, 250_000, 1 * MB, 6 * MB]


@pytest.mark.parametrize("make", [compressible, incompressible])
@pytest.mark.parametrize("size", SIZES)
def test_large_bodies_shuffled_with_duplicates(make, size):
    body = make(size)
    m = msg(body)
    events = encode(m, SECRET, NOW)
    assert all(len(e.encode()) <= EVENT_BUDGET_BYTES < MAX_EVENT_BYTES for e in events)
    rnd = random.Random(size)
    order = events[:]
    rnd.shuffle(order)
    # AppSync redelivers: interleave copies of chunks already seen, before the last new one arrives
    stream = []
    for e in order[:-1]:
        stream.append(e)
        if rnd.random() < 0.5:
            stream.append(rnd.choice(stream))
    dups = len(stream) - (len(order) - 1)
    stream.append(order[-1])
    r = Reassembler(SECRET, SESSION)
    assert feed_all(r, stream) == [sent(m)]
    assert r.duplicates == dups
    assert not r.rejected


def test_six_megabytes_event_counts():
    """The figures quoted in the docs: how many events 6 MB of JSON becomes."""
    comp = encode(msg(compressible(6 * MB)), SECRET, NOW)
    inc = encode(msg(incompressible(6 * MB)), SECRET, NOW)
    assert json.loads(comp[0])["codec"] == "zlib" and len(comp) <= 10
    assert json.loads(inc[0])["codec"] == "json" and len(inc) <= 35


part_sizes = st.integers(1, 15).map(lambda k: k * 100_000) | st.integers(0, 1_500_000)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.tuples(part_sizes, st.booleans()), min_size=1, max_size=4),
       seed=st.integers(0, 2**32), compress=st.sampled_from([None, True, False]))
@example(parts=[(1_500_000, True)] * 4, seed=1, compress=None)
@example(parts=[(1_500_000, False)] * 4, seed=2, compress=False)
def test_property_big_payloads_round_trip(parts, seed, compress):
    rnd = random.Random(seed)
    # each part is about n bytes of JSON: random base64, or a pattern with escapes (5 chars, 7 bytes)
    body = [base64.b64encode(rnd.randbytes(n * 3 // 4)).decode() if random_ else "ab\"c\\" * (n // 7)
            for n, random_ in parts]
    m = msg(body, kind="invoke")
    events = encode(m, SECRET, NOW, compress=compress)
    assert all(len(e.encode()) <= EVENT_BUDGET_BYTES for e in events)
    rnd.shuffle(events)
    r = Reassembler(SECRET, SESSION)
    assert feed_all(r, events) == [sent(m)]


def test_body_too_large_is_a_local_error():
    with pytest.raises(MessageTooLarge) as exc:
        encode(msg("x" * (MAX_MESSAGE_BYTES + 1)), SECRET, NOW)
    assert isinstance(exc.value, LocalProtocolError)
    assert "make the payload smaller" in str(exc.value)


@pytest.mark.parametrize("bad", [
    {"kind": "Invoke"}, {"kind": ""}, {"kind": "a" * 33}, {"session": ""}, {"message_id": ""},
    {"invocation_id": 'has"quote'}, {"sandbox_id": "has space"}, {"session": "é"},
])
def test_invalid_headers_are_refused_by_encode(bad):
    with pytest.raises(InvalidMessage):
        encode(msg({}, **bad), SECRET, NOW)


def test_unserializable_body_and_bad_secret_are_refused():
    with pytest.raises(InvalidMessage, match="cannot be sent as JSON"):
        encode(msg({"when": object()}), SECRET, NOW)
    with pytest.raises(InvalidMessage):
        encode(msg({}), b"", NOW)
    with pytest.raises(InvalidMessage):
        Reassembler(b"", SESSION)


# ---------------------------------------------------------------- tampering

ALTERATIONS = [lambda b: b ^ 0x01, lambda b: b ^ 0x20, lambda b: ord("0") if b != ord("0") else ord("1"),
               lambda b: ord('"') if b != ord('"') else ord("a"), lambda b: 0xFF]


def tampered(event: str, position: int, alter) -> str:
    raw = bytearray(event.encode())
    raw[position] = alter(raw[position])
    return raw.decode("utf-8", "surrogateescape")


def test_every_single_byte_tamper_of_a_small_message_is_rejected():
    m = msg({"cmd": "run", "n": 1}, invocation_id="abc-123")
    (event,) = encode(m, SECRET, NOW)
    r = Reassembler(SECRET, SESSION)
    tried = 0
    for position in range(len(event.encode())):
        for alter in ALTERATIONS:
            bad = tampered(event, position, alter)
            if bad == event:
                continue
            with pytest.raises(EnvelopeRejected) as exc:
                r.feed(bad, NOW)
            assert exc.value.reason in ("bad_signature", "malformed"), (position, bad)
            tried += 1
    assert sum(r.rejected.values()) == tried and len(r._pending) == 0
    assert r.feed(event, NOW) == sent(m)  # the untouched original still goes through


@pytest.fixture(scope="module")
def big_events():
    m = msg(incompressible(1 * MB, seed=7), kind="invoke")
    return m, encode(m, SECRET, NOW)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), flip=st.integers(1, 255))
def test_tampering_anywhere_in_a_big_message_never_yields_it(big_events, data, flip):
    m, events = big_events
    which = data.draw(st.integers(0, len(events) - 1))
    position = data.draw(st.integers(0, len(events[which].encode()) - 1))
    bad = tampered(events[which], position, lambda b: b ^ flip)
    r = Reassembler(SECRET, SESSION)
    others = events[:which] + events[which + 1:]
    assert feed_all(r, others) == []
    with pytest.raises(EnvelopeRejected) as exc:
        r.feed(bad, NOW)
    assert exc.value.reason in ("bad_signature", "malformed")
    assert r.feed(events[which], NOW) == sent(m)


@pytest.mark.parametrize(("name", "value"), [
    ("invocation_id", "req-2"), ("chunk", 1), ("chunks", 7), ("kind", "invoke"), ("ts_ms", NOW + 1),
    ("session", "sess-2"), ("sandbox_id", "sb-2"), ("message_id", "f" * 32), ("codec", "zlib"),
    ("data", '{"cmd":"rm"}'),
])
def test_altered_fields_that_still_parse_are_bad_signatures(name, value):
    events = encode(msg({"cmd": "run", "pad": "x" * 900}), SECRET, NOW, budget_bytes=600)
    assert len(events) >= 3
    fields = json.loads(events[0])
    assert fields[name] != value
    fields[name] = value
    with pytest.raises(EnvelopeRejected) as exc:
        Reassembler(SECRET, SESSION).feed(json.dumps(fields), NOW)
    assert exc.value.reason == "bad_signature"


def test_mac_compare_is_exact_even_on_case():
    (event,) = encode(msg(1), SECRET, NOW)
    fields = json.loads(event)
    fields["mac"] = fields["mac"].upper()
    with pytest.raises(EnvelopeRejected, match="bad_signature"):
        Reassembler(SECRET, SESSION).feed(json.dumps(fields), NOW)


# ---------------------------------------------------------------- authentication and sessions

def test_wrong_secret_is_bad_signature_with_a_helpful_message():
    (event,) = encode(msg("hi"), b"another secret", NOW)
    r = Reassembler(SECRET, SESSION)
    with pytest.raises(EnvelopeRejected) as exc:
        r.feed(event, NOW)
    assert exc.value.reason == "bad_signature"
    assert isinstance(exc.value, RemoteProtocolError)
    text = str(exc.value)
    assert text.startswith("envelope rejected (bad_signature): ")
    assert "`livelambda dev`" in text and "`livelambda aws up`" in text
    assert r.rejected == {"bad_signature": 1}
    assert r.recent_rejections[-1][:2] == (NOW, "bad_signature")


def test_other_session_under_another_key_is_bad_signature_naming_both_sessions():
    """The MAC is checked first: another session signs with another secret, so it is bad_signature;
    the detail names the session it claims, as a hint."""
    (event,) = encode(msg("hi", session="sess-other"), b"other session's secret", NOW)
    with pytest.raises(EnvelopeRejected) as exc:
        Reassembler(SECRET, SESSION).feed(event, NOW)
    assert exc.value.reason == "bad_signature"
    assert "sess-other" in str(exc.value) and SESSION in str(exc.value)


def test_other_session_under_the_same_key_is_wrong_session():
    (event,) = encode(msg("hi", session="sess-other"), SECRET, NOW)
    r = Reassembler(SECRET, SESSION)
    with pytest.raises(EnvelopeRejected) as exc:
        r.feed(event, NOW)
    assert exc.value.reason == "wrong_session"
    assert "sess-other" in exc.value.detail and "aws up" in str(exc.value)
    assert r.rejected["wrong_session"] == 1


@pytest.mark.parametrize("offset", [-5 * 60_000 - 1, 5 * 60_000 + 1, -10**9, 10**9])
def test_stale_timestamps_are_rejected(offset):
    (event,) = encode(msg("hi"), SECRET, NOW + offset)
    r = Reassembler(SECRET, SESSION)
    with pytest.raises(EnvelopeRejected) as exc:
        r.feed(event, NOW)
    assert exc.value.reason == "stale"
    assert ("ago" if offset < 0 else "in the future") in exc.value.detail
    assert "clock" in str(exc.value)


@pytest.mark.parametrize("offset", [-5 * 60_000, 5 * 60_000, 0])
def test_timestamps_within_skew_are_accepted(offset):
    m = msg("hi")
    (event,) = encode(m, SECRET, NOW + offset)
    assert Reassembler(SECRET, SESSION).feed(event, NOW) == sent(m, NOW + offset)


# ---------------------------------------------------------------- replay, duplicates, consistency

def test_refeeding_a_completed_message_is_a_replay():
    events = encode(msg("x" * 2000, kind="invoke"), SECRET, NOW, compress=False, budget_bytes=700)
    r = Reassembler(SECRET, SESSION)
    assert len(feed_all(r, events)) == 1
    for event in events:
        with pytest.raises(EnvelopeRejected) as exc:
            r.feed(event, NOW + 1000)
        assert exc.value.reason == "replay"
    assert r.rejected["replay"] == len(events)


def test_replay_memory_outlives_a_short_window_until_the_message_is_stale():
    (event,) = encode(msg("x"), SECRET, NOW)
    r = Reassembler(SECRET, SESSION, max_skew_ms=60_000, replay_window_ms=1_000)
    assert r.feed(event, NOW) is not None
    with pytest.raises(EnvelopeRejected, match=r"\(replay\)"):
        r.feed(event, NOW + 30_000)  # window passed, but the timestamp is still acceptable
    with pytest.raises(EnvelopeRejected, match=r"\(stale\)"):
        r.feed(event, NOW + 60_001)
    assert not r._done  # forgotten once stale


def test_replay_memory_lasts_the_window():
    (event,) = encode(msg("x"), SECRET, NOW)
    r = Reassembler(SECRET, SESSION, max_skew_ms=10**12, replay_window_ms=5_000)
    assert r.feed(event, NOW) is not None
    r.expire(NOW + 4_999)
    with pytest.raises(EnvelopeRejected, match="replay"):
        r.feed(event, NOW + 4_999)


def test_duplicate_chunks_are_counted_not_raised():
    events = encode(msg("y" * 3000), SECRET, NOW, compress=False, budget_bytes=700)
    r = Reassembler(SECRET, SESSION)
    assert r.feed(events[0], NOW) is None
    assert r.feed(events[0], NOW) is None
    assert r.feed(json.loads(events[0]), NOW) is None
    assert r.duplicates == 2 and not r.rejected
    assert len(feed_all(r, events[1:])) == 1


def test_same_message_id_with_another_chunk_count_is_inconsistent():
    m = msg("z" * 3000)
    a = encode(m, SECRET, NOW, compress=False, budget_bytes=700)
    b = encode(m, SECRET, NOW, compress=False, budget_bytes=1500)
    assert len(a) != len(b)
    r = Reassembler(SECRET, SESSION)
    r.feed(a[0], NOW)
    with pytest.raises(EnvelopeRejected) as exc:
        r.feed(b[1], NOW)
    assert exc.value.reason == "inconsistent" and "chunks" in exc.value.detail
    assert "bug" in str(exc.value)
    assert r.rejected == {"inconsistent": 1}


def test_reencoding_at_another_time_is_inconsistent():
    m = msg("z" * 3000)
    a = encode(m, SECRET, NOW, compress=False, budget_bytes=700)
    b = encode(m, SECRET, NOW + 5, compress=False, budget_bytes=700)
    r = Reassembler(SECRET, SESSION)
    r.feed(a[0], NOW)
    with pytest.raises(EnvelopeRejected, match="ts_ms"):
        r.feed(b[1], NOW)


def test_same_chunk_with_other_data_is_inconsistent():
    events = encode(msg("q" * 3000), SECRET, NOW, compress=False, budget_bytes=700)
    fields = json.loads(events[0])
    fields["data"] = fields["data"][:-1] + "r"
    r = Reassembler(SECRET, SESSION)
    r.feed(events[0], NOW)
    with pytest.raises(EnvelopeRejected, match="inconsistent"):
        r.feed(resign(fields), NOW)


def test_partial_messages_expire():
    events = encode(msg("w" * 3000), SECRET, NOW, compress=False, budget_bytes=700)
    r = Reassembler(SECRET, SESSION, partial_timeout_ms=60_000)
    assert r.feed(events[0], NOW) is None and r.feed(events[1], NOW + 10) is None
    assert len(r._pending) == 1 and r._pending_bytes > 0
    assert r.expire(NOW + 59_999) == 0
    assert r.expire(NOW + 60_000) == 1
    assert len(r._pending) == 0 and r._pending_bytes == 0
    assert r.rejected["incomplete"] == 1
    when, reason, detail = r.recent_rejections[-1]
    assert (when, reason) == (NOW + 60_000, "incomplete") and "2 of" in detail
    # the rest arriving late starts over and never completes on its own
    assert feed_all(r, events[2:], NOW + 60_001) == []


def test_feed_expires_old_partials_itself():
    events = encode(msg("w" * 3000), SECRET, NOW, compress=False, budget_bytes=700)
    other = encode(msg("v"), SECRET, NOW + 61_000)
    r = Reassembler(SECRET, SESSION, partial_timeout_ms=60_000)
    r.feed(events[0], NOW)
    assert r.feed(other[0], NOW + 61_000) is not None
    assert len(r._pending) == 0 and r.rejected["incomplete"] == 1


def test_recent_rejections_are_bounded():
    r = Reassembler(SECRET, SESSION)
    for i in range(120):
        with pytest.raises(EnvelopeRejected):
            r.feed("not json", NOW + i)
    assert len(r.recent_rejections) == 50
    assert r.recent_rejections[0][0] == NOW + 70
    assert r.rejected == {"malformed": 120}


# ---------------------------------------------------------------- malformed and too large

@pytest.mark.parametrize("event", [
    "", "not json", "[1,2]", "42", '"a string"', "{}", '{"livelambda":2}', "{" * 5000 + "}" * 5000,
])
def test_garbage_is_malformed(event):
    with pytest.raises(EnvelopeRejected) as exc:
        Reassembler(SECRET, SESSION).feed(event, NOW)
    assert exc.value.reason == "malformed"


@pytest.mark.parametrize("change", [
    lambda f: f.pop("mac"), lambda f: f.update(extra=1), lambda f: f.update(ts_ms=float(NOW)),
    lambda f: f.update(chunk=True), lambda f: f.update(data=None), lambda f: f.update(livelambda=2),
    lambda f: f.update(livelambda="1"),
])
def test_wrong_shapes_are_malformed(change):
    (event,) = encode(msg("hi"), SECRET, NOW)
    fields = json.loads(event)
    change(fields)
    with pytest.raises(EnvelopeRejected) as exc:
        Reassembler(SECRET, SESSION).feed(fields, NOW)
    assert exc.value.reason == "malformed"


@pytest.mark.parametrize("change", [
    {"kind": "NOPE"}, {"codec": "gzip"}, {"chunk": 1}, {"chunk": -1}, {"chunks": 0},
    {"message_id": ""}, {"invocation_id": "a b"},
])
def test_signed_but_invalid_headers_are_malformed(change):
    """Only a holder of the secret can get here (a buggy sender): still rejected, as malformed."""
    (event,) = encode(msg("hi"), SECRET, NOW)
    fields = {**json.loads(event), **change}
    with pytest.raises(EnvelopeRejected) as exc:
        Reassembler(SECRET, SESSION).feed(resign(fields), NOW)
    assert exc.value.reason == "malformed"


def test_signed_bodies_that_do_not_decode_are_malformed():
    (event,) = encode(msg("hi"), SECRET, NOW)
    base = json.loads(event)
    for codec, data in [("json", "{not json"), ("zlib", "!!!"), ("zlib", base64.b64encode(b"nope").decode()),
                        ("zlib", base64.b64encode(zlib.compress(b'"ok"')[:-2]).decode())]:
        with pytest.raises(EnvelopeRejected) as exc:
            Reassembler(SECRET, SESSION).feed(resign({**base, "codec": codec, "data": data}), NOW)
        assert exc.value.reason == "malformed", (codec, data)


def test_oversized_inputs_are_too_large():
    r = Reassembler(SECRET, SESSION)
    with pytest.raises(EnvelopeRejected, match=r"\(too_large\)"):
        r.feed("x" * (MAX_EVENT_BYTES + 1), NOW)
    (event,) = encode(msg("hi"), SECRET, NOW)
    base = json.loads(event)
    with pytest.raises(EnvelopeRejected, match=r"\(too_large\)"):
        r.feed(resign({**base, "chunks": env.MAX_CHUNKS + 1}), NOW)
    # a zlib bomb: tiny on the wire, over the limit once inflated
    bomb = base64.b64encode(zlib.compress(b" " * (MAX_MESSAGE_BYTES + 10), 9)).decode()
    with pytest.raises(EnvelopeRejected, match=r"\(too_large\)"):
        r.feed(resign({**base, "codec": "zlib", "data": bomb}), NOW)
    assert r.rejected["too_large"] == 3


def test_pending_bytes_are_capped():
    events = encode(msg(incompressible(100_000)), SECRET, NOW, budget_bytes=20_000)
    r = Reassembler(SECRET, SESSION, max_pending_bytes=50_000)
    r.feed(events[0], NOW)
    r.feed(events[1], NOW)
    with pytest.raises(EnvelopeRejected, match=r"\(too_large\)"):
        r.feed(events[2], NOW)
    assert r._pending_bytes <= 50_000


# ---------------------------------------------------------------- ids, imports

def test_new_ids_are_unique_hex():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert msg(1).message_id != msg(1).message_id


def test_reject_reasons_have_hints():
    for reason in REJECT_REASONS:
        assert str(EnvelopeRejected(reason, "detail")).startswith(f"envelope rejected ({reason}): detail; ")


def test_module_imports_only_the_standard_library():
    code = ("import sys, stub_runtime.envelope; heavy = ('asyncio', 'websockets', 'botocore', 'boto3'); "
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
