"""Fuzzing the dev server's inbound path, the Invoke API and the dashboard API with hypothesis, against
real processes: `livelambda cloud --live` and `livelambda dev` on the chaos app (tests/chaos_harness.py,
whose handler writes one line per run).

- Inbound: anyone with the API key can publish on the session's request channel. Junk, envelopes of
  the wrong shape, forged or altered signatures, other sessions, stale or expired invocations,
  truncated chunks and compressed streams, signed messages of the wrong kind, replays: each one is
  counted once, under its reason, in the dev server's rejections (`/api/connection`), none runs a
  handler, and a genuine invocation beside them still runs, once.
- The Invoke API: any name, qualifier, payload and headers get Lambda's answer or one of its errors
  (never a 5xx), and the emulator counts every error it answered (`rejected` in its Lambda stats).
- The dashboard API: requests generated from its own OpenAPI document (`/openapi.json`), with values
  in and out of their schemas, a wrong Host or Origin now and then: never a 5xx, every answer one the
  document lists (or the guard's 403), and a 2xx body with the fields its schema requires.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devserver.live.session import load_existing
from stub_runtime import live_protocol as lp
from stub_runtime.envelope import ENVELOPE_VERSION, MAX_CHUNKS, _event, new_id
from tests.chaos_harness import ChaosStack, chaos_stack
from tests.lambda_fixtures import lambda_client

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
WAIT_S = 20.0

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
# Events a handler gets from the fuzzer: anything but a `sleep` (the handler would take it).
events = json_values.filter(lambda v: not (isinstance(v, dict) and "sleep" in v))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    with chaos_stack(tmp_path_factory.mktemp("fuzz-dev"), concurrency=4) as running:
        yield running


class Genuine:
    """Genuine invocations through boto3, interleaved with the fuzz: each must run its handler once."""

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.client = lambda_client(stack.cloud_url)
        self.ids: list[str] = []
        self._n = itertools.count()

    def check(self) -> str:
        n = next(self._n)
        response = self.client.invoke(FunctionName="work3", Payload=json.dumps({"n": n}))
        rid = response["ResponseMetadata"]["RequestId"]
        assert json.loads(response["Payload"].read()) == {"rid": rid, "n": n}
        self.ids.append(rid)
        return rid


# ------------------------------------------------------------------------------------------ inbound


class Forger:
    """Builds what lands on the request channel: genuine-looking envelopes, signed or not."""

    def __init__(self, session: str, secret: bytes) -> None:
        self.session = session
        self.secret = secret

    def chunk(self, *, kind: str = lp.INVOKE, session: str | None = None, secret: bytes | None = None,
              ts_ms: int | None = None, body: Any = None, **fields: Any) -> dict[str, Any]:  # fmt: skip
        """One signed one-chunk envelope (as a dict); `fields` override the head before signing."""
        now = int(time.time() * 1000)
        data = json.dumps(body if body is not None else _invoke_body(now - 1000), separators=(",", ":"))
        session = self.session if session is None else session
        head = {"livelambda": ENVELOPE_VERSION, "kind": kind, "session": session,
                "invocation_id": "fuzz-" + new_id()[:12], "sandbox_id": "fuzzsb", "message_id": new_id(),
                "chunk": 0, "chunks": 1, "ts_ms": now if ts_ms is None else ts_ms, "codec": "json",
                "data": data, "mac": ""}  # fmt: skip
        head.update(fields)
        return json.loads(_event(head, self.secret if secret is None else secret))


def _invoke_body(deadline_ms: int) -> dict[str, Any]:
    """An invoke's body whose deadline has passed (should it ever get past the checks, it must not run)."""
    return {"event": {"fuzz": True}, "context": {"deadline_ms": deadline_ms, "function_name": "work3"}}


KINDS = (
    "junk", "not-envelope", "retyped", "missing-field", "extra-field", "altered", "forged", "other-session",
    "foreign-session", "stale", "expired", "wrong-kind", "bad-ids", "bad-chunks", "too-many-chunks",
    "truncated-text", "truncated-zlib", "replay",
)  # fmt: skip
FIELDS = ("chunk", "chunks", "codec", "data", "invocation_id", "kind", "livelambda", "mac", "message_id",
          "sandbox_id", "session", "ts_ms")  # fmt: skip


@st.composite
def inbound(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A case: its kind and what it is drawn with. `build` makes the events (fresh ids and clocks:
    hypothesis needs the drawing itself to be repeatable)."""
    kind = draw(st.sampled_from(KINDS))
    p: dict[str, Any] = {}
    if kind == "junk":
        p["value"] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
    elif kind == "not-envelope":
        p["value"] = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
    elif kind in ("retyped", "missing-field"):
        p["key"] = draw(st.sampled_from(FIELDS))
        p["value"] = draw(json_values)
    elif kind == "extra-field":
        p["key"] = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in FIELDS))
        p["value"] = draw(json_values)
    elif kind == "altered":  # a genuine chunk, one string field changed after signing
        p["key"] = draw(st.sampled_from(["kind", "session", "invocation_id", "sandbox_id", "message_id",
                                         "data", "codec"]))  # fmt: skip
        p["value"] = draw(st.text(max_size=20))
    elif kind == "forged":
        p["secret"] = draw(st.binary(min_size=1, max_size=32)).ljust(32, b"!")
    elif kind == "other-session":
        p["session"] = draw(st.text("abcdef0123456789-", min_size=1, max_size=30))
    elif kind == "stale":
        p["skew_ms"] = draw(st.integers(5 * 60_000 + 10_000, 10**9)) * draw(st.sampled_from([1, -1]))
    elif kind == "wrong-kind":
        p["kind"] = draw(st.sampled_from([lp.ACK, lp.HEARTBEAT, lp.RESULT, lp.REJECT, "hello", "x_y"]))
    elif kind == "bad-ids":  # signed, but a kind or id no livelambda sends
        p["field"] = draw(st.sampled_from([("kind", "Invoke"), ("kind", "x" * 40), ("message_id", ""),
                                           ("session", ""), ("sandbox_id", "a b"),
                                           ("message_id", "m" * 129)]))  # fmt: skip
    elif kind == "bad-chunks":
        p["numbers"] = draw(st.sampled_from([(1, 1), (-1, 1), (3, 2), (0, 0)]))
    elif kind == "too-many-chunks":
        p["chunks"] = MAX_CHUNKS + draw(st.integers(1, 10**6))
    elif kind in ("truncated-text", "truncated-zlib"):
        p["cut"] = draw(st.floats(0, 1, exclude_max=True))
        p["parts"] = draw(st.integers(1, 4))
        p["order"] = draw(st.randoms(use_true_random=False))
    return kind, p


def build(kind: str, p: dict[str, Any], f: Forger) -> tuple[list[Any], Counter[str]]:
    """The events to publish (each a JSON value AppSync carries) and the rejections, by reason, they
    must cause."""
    if kind in ("junk", "not-envelope"):
        return [p["value"]], Counter(malformed=1)
    chunk = f.chunk()
    if kind == "retyped":  # a field of the wrong JSON type: refused before the signature is checked
        value = p["value"]
        chunk[p["key"]] = value if type(value) is not type(chunk[p["key"]]) else [value]
        return [chunk], Counter(malformed=1)
    if kind == "missing-field":
        del chunk[p["key"]]
        return [chunk], Counter(malformed=1)
    if kind == "extra-field":
        chunk[p["key"]] = p["value"]
        return [chunk], Counter(malformed=1)
    if kind == "altered":
        chunk[p["key"]] = p["value"] if p["value"] != chunk[p["key"]] else p["value"] + "x"
        return [chunk], Counter(bad_signature=1)
    if kind == "forged":
        return [f.chunk(secret=p["secret"])], Counter(bad_signature=1)
    if kind == "other-session":  # signed with our secret, for another session
        session = p["session"] if p["session"] != f.session else p["session"] + "x"
        return [f.chunk(session=session)], Counter(wrong_session=1)
    if kind == "foreign-session":  # another session's own message: its secret is not ours
        return [f.chunk(session="someone-else", secret=b"x" * 32)], Counter(bad_signature=1)
    if kind == "stale":
        return [f.chunk(ts_ms=int(time.time() * 1000) + p["skew_ms"])], Counter(stale=1)
    if kind == "expired":
        return [chunk], Counter(expired=1)
    if kind == "wrong-kind":
        return [f.chunk(kind=p["kind"])], Counter(unexpected_kind=1)
    if kind == "bad-ids":
        key, value = p["field"]
        return [f.chunk(**{key: value})], Counter(malformed=1)
    if kind == "bad-chunks":
        number, count = p["numbers"]
        return [f.chunk(chunk=number, chunks=count)], Counter(malformed=1)
    if kind == "too-many-chunks":
        return [f.chunk(chunks=p["chunks"])], Counter(too_large=1)
    if kind == "truncated-text":  # a chunk's text cut short, carried as a JSON string
        text = json.dumps(chunk, separators=(",", ":"))
        return [text[: int(p["cut"] * len(text))]], Counter(malformed=1)
    if kind == "truncated-zlib":  # genuine, signed chunks of a compressed stream cut short
        raw = zlib.compress(json.dumps(_invoke_body(int(time.time() * 1000) - 1000)).encode() * 3, 1)
        data = base64.b64encode(raw[: max(1, int(p["cut"] * len(raw)))]).decode()
        size = -(-len(data) // p["parts"])
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        mid, rid, now = new_id(), "fuzz-" + new_id()[:12], int(time.time() * 1000)
        chunks = [json.loads(_event({"livelambda": ENVELOPE_VERSION, "kind": lp.INVOKE, "session": f.session,
                                     "invocation_id": rid, "sandbox_id": "fuzzsb", "message_id": mid,
                                     "chunk": i, "chunks": len(pieces), "ts_ms": now, "codec": "zlib",
                                     "data": piece, "mac": ""}, f.secret))
                  for i, piece in enumerate(pieces)]  # fmt: skip
        p["order"].shuffle(chunks)  # in any order: one message all the same
        return chunks, Counter(malformed=1)
    assert kind == "replay"  # the same expired invoke twice: the second within the replay window
    return [chunk, chunk], Counter(expired=1, replay=1)


def test_inbound_path(stack: ChaosStack) -> None:
    session = load_existing(stack.root)
    assert session is not None
    forger = Forger(session.id, session.secret)
    genuine = Genuine(stack)
    genuine.check()
    channel = lp.request_channel(session.id)
    http = httpx.Client(timeout=10)
    headers = {"x-api-key": stack.cloud["api_key"], "host": stack.cloud["host"]}
    tally: Counter[str] = Counter()

    def rejected() -> Counter[str]:
        return Counter(stack.dev_api("connection")["rejected"])

    @FUZZ
    @given(case=inbound())
    def fuzz(case: tuple[str, dict[str, Any]]) -> None:
        values, expected = build(*case, forger)
        runs_before, before = sum(stack.runs().values()), rejected()
        for i in range(0, len(values), 5):
            batch = [json.dumps(v) for v in values[i : i + 5]]
            response = http.post(f"http://{stack.cloud['host']}/event", headers=headers,
                                 json={"channel": channel, "events": batch})  # fmt: skip
            assert response.status_code == 200 and response.json()["failed"] == [], response.text
        want = sum(expected.values())

        def counted() -> Counter[str] | None:
            now = rejected()
            return now if (now - before).total() >= want else None

        after = stack.wait_for(counted, f"{want} rejection(s) counted", WAIT_S)
        assert after - before == expected, (values, after - before, expected)
        rid = genuine.check()  # a genuine one still runs, once
        runs = stack.runs()
        assert sum(runs.values()) == runs_before + 1 and runs[rid] == 1
        tally.update(expected)

    try:
        fuzz()
    finally:
        http.close()
    runs = stack.runs()
    assert not any(rid.startswith("fuzz-") for rid in runs)  # none of the fuzz ran
    assert all(runs[rid] == 1 for rid in genuine.ids)
    records = stack.dev_api("invocations?limit=100000")
    assert not [r["id"] for r in records if r["id"].startswith("fuzz-")]
    print(f"inbound fuzz: rejected {dict(tally)}; genuine invocations {len(genuine.ids)}")


# ------------------------------------------------------------------------------------- Invoke API


@st.composite
def invoke_requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes, dict[str, str]]:
    """(path, query, body, headers) of an Invoke API request: names and qualifiers that exist or not,
    in every spelling; payloads of any JSON, junk, empty or too large; the headers right or wrong."""
    arn = "arn:aws:lambda:us-east-1:000000000000:function:"
    name = draw(st.sampled_from(["work3", "work10", f"{arn}work3", "000000000000:function:work10",
                                 "work3:$LATEST", "work3", "work10"]))  # fmt: skip
    if draw(st.integers(0, 3)) == 0:  # one that does not exist, or a wrong qualifier
        name = draw(st.sampled_from(["work3:7", "nosuch", f"{arn}nosuch"])
                    | st.text(min_size=1, max_size=30).filter(lambda t: "/" not in t))  # fmt: skip
    query = {}
    if draw(st.integers(0, 4)) == 0:
        query["Qualifier"] = draw(st.sampled_from(["$LATEST", "1", "prod"]) | st.text(max_size=10))
    kind = draw(st.sampled_from(["json", "json", "json", "junk", "empty", "huge"]))
    if kind == "json":
        body = json.dumps(draw(events)).encode()
    elif kind == "junk":
        body = draw(st.binary(max_size=100))
    elif kind == "empty":
        body = b""
    else:
        body = b'"' + b"x" * draw(st.integers(6_291_456, 6_400_000)) + b'"'
    headers = {}
    if draw(st.booleans()):
        headers["X-Amz-Invocation-Type"] = draw(
            st.sampled_from(["RequestResponse", "Event", "DryRun"]) | st.text("abcXYZ", max_size=12)
        )
    if draw(st.booleans()):
        headers["X-Amz-Log-Type"] = draw(st.sampled_from(["Tail", "None", "tail"]))
    if draw(st.integers(0, 3)) == 0:
        context = draw(st.sampled_from(["json", "junk", "latin"]))
        headers["X-Amz-Client-Context"] = {
            "json": base64.b64encode(json.dumps({"custom": {"a": 1}}).encode()).decode(),
            "junk": draw(st.text("abc!@#", max_size=10)),
            "latin": base64.b64encode(b"\xff\xfe").decode(),
        }[context]
    path = "/2015-03-31/functions/" + urllib.parse.quote(name, safe="") + "/invocations"
    return path, query, body, headers


def test_invoke_api(stack: ChaosStack) -> None:
    genuine = Genuine(stack)
    http = httpx.Client(base_url=stack.cloud_url, timeout=30)
    statuses: Counter[int] = Counter()

    def rejected() -> Counter[str]:
        return Counter(http.get("/_livelambda/lambda/stats").json()["rejected"])

    @FUZZ
    @given(request=invoke_requests())
    def fuzz(request: tuple[str, dict[str, str], bytes, dict[str, str]]) -> None:
        path, query, body, headers = request
        before = rejected()
        response = http.post(path, params=query, content=body, headers=headers)
        status = response.status_code
        assert status in (200, 202, 204, 400, 404, 413, 429), (status, response.text, request[:2])
        counted = rejected() - before
        if status >= 400:  # Lambda's error shape, and counted
            kind = response.headers["x-amzn-errortype"]
            assert response.json()["Type"] == "User" and response.json()["message"]
            assert counted == Counter({kind: 1}), (counted, kind)
        else:
            assert counted == Counter()
        if status == 200:
            json.loads(response.content)  # the handler's answer or its error, as JSON
        statuses[status] += 1
        genuine.check()

    try:
        fuzz()
    finally:
        http.close()
    print(f"invoke api fuzz: statuses {dict(statuses)}; genuine invocations {len(genuine.ids)}")
    assert statuses[200] and sum(n for s, n in statuses.items() if s >= 400)


# ---------------------------------------------------------------------------------- dashboard API


RECENT = "the-latest-genuine-invocation"  # stands for an id the store holds right now (see the test)


class OpenApi:
    """The dashboard's OpenAPI document: its operations, and hypothesis strategies for their inputs."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.operations = [
            (method.upper(), path, op)
            for path, ops in document["paths"].items()
            for method, op in ops.items()
            if path != "/api/feed"  # a stream that never ends: read once, below
        ]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.doc["components"]["schemas"][name]
        return schema

    def values(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        """Values of `schema` (limits included), mixed with values of other types and out of range."""
        schema = self.resolve(schema)
        kind = schema.get("type")
        if "anyOf" in schema:
            fitting = st.one_of([self.values(s) for s in schema["anyOf"]])
        elif kind == "integer":
            fitting = st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
        elif kind == "array":
            fitting = st.lists(self.values(schema.get("items", {})), max_size=3)
        elif kind == "string":
            fitting = st.text(max_size=20)
        elif kind == "null":
            fitting = st.none()
        else:
            fitting = json_values
        wrong = st.integers() | st.text(max_size=10) | st.floats(allow_nan=True)
        return st.one_of(fitting, fitting, wrong)

    def required(self, schema: dict[str, Any]) -> tuple[list[str], str | None]:
        """(required fields, "array" or "object") of a response schema."""
        schema = self.resolve(schema)
        if schema.get("type") == "array":
            return self.resolve(schema.get("items", {})).get("required", []), "array"
        return schema.get("required", []), "object" if schema.get("properties") else None


@st.composite
def dashboard_requests(draw: st.DrawFn, api: OpenApi, ids: list[str]) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) for one documented operation."""
    method, path, op = draw(st.sampled_from(api.operations))
    query: list[tuple[str, str]] = []
    for param in op.get("parameters", []):
        if param["in"] == "path":
            # (a "/" or a dot segment would make another route: not this operation's input)
            other = st.text(min_size=1, max_size=20).filter(lambda v: "/" not in v and v not in (".", ".."))
            value = draw(st.just(RECENT) | st.just(RECENT) | st.sampled_from(ids) | other)
            path = path.replace("{" + param["name"] + "}", urllib.parse.quote(str(value), safe=""))
        elif param["in"] == "query" and draw(st.booleans()):
            value = draw(api.values(param["schema"]))
            values = value if isinstance(value, list) else [value]
            query += [(param["name"], json.dumps(v) if not isinstance(v, str) else v) for v in values]
    if draw(st.integers(0, 5)) == 0:
        query.append((draw(st.text("abcxyz", min_size=1, max_size=6)), draw(st.text(max_size=8))))
    kwargs: dict[str, Any] = {"params": query, "headers": {}}
    if "requestBody" in op:
        body = draw(st.sampled_from(["none", "replay", "event", "json", "junk"]))
        if body == "replay":
            kwargs["json"] = {}
        elif body == "event":
            kwargs["json"] = {"event": draw(events)}
        elif body == "json":
            kwargs["json"] = draw(events)
        elif body == "junk":
            kwargs["content"] = draw(st.binary(max_size=50))
            kwargs["headers"]["content-type"] = "application/json"
    if draw(st.integers(0, 9)) == 0:  # another Host (DNS rebinding) or Origin (CSRF): the guard's 403
        header = draw(st.sampled_from(["host", "origin"]))
        kwargs["headers"][header] = draw(st.sampled_from(["evil.example", "http://evil.example:8791"]))
    return method, path, kwargs


def test_dashboard_api(stack: ChaosStack) -> None:
    assert stack.dev is not None
    genuine = Genuine(stack)
    ids = [genuine.check() for _ in range(3)]
    http = httpx.Client(base_url=stack.dev.url, timeout=30)
    api = OpenApi(http.get("/openapi.json").json())
    statuses: Counter[str] = Counter()

    @FUZZ
    @given(request=dashboard_requests(api, ids))
    def fuzz(request: tuple[str, str, dict[str, Any]]) -> None:
        method, path, kwargs = request
        path = path.replace(RECENT, genuine.ids[-1])  # in the store even after a DELETE cleared it
        response = http.request(method, path, **kwargs)
        status = response.status_code
        template = next(p for m, p, _ in api.operations if m == method and _matches(p, path))
        op = api.doc["paths"][template][method.lower()]
        assert status < 500, (method, path, kwargs, status, response.text)
        documented = set(op["responses"])
        assert str(status) in documented, (method, path, kwargs, status, response.text, sorted(documented))
        if status >= 400:
            assert response.json()["detail"]  # says why
        elif response.headers.get("content-type", "").startswith("application/json"):
            content = op["responses"][str(status)].get("content", {}).get("application/json", {})
            fields, shape = api.required(content.get("schema", {}))
            body = response.json()
            for item in (body if shape == "array" else [body] if shape == "object" else []):
                assert set(fields) <= set(item), (path, sorted(set(fields) - set(item)))
        statuses[f"{method} {template} {status}"] += 1
        genuine.check()

    try:
        fuzz()
        # The feed: documented, a stream; its first event arrives and the stream closes cleanly.
        with http.stream("GET", "/api/feed") as feed:
            assert feed.status_code == 200
            first = next(feed.iter_lines())
            assert first.startswith(("retry:", "event:")), first
    finally:
        http.close()
    print(f"dashboard fuzz: {dict(statuses)}; genuine invocations {len(genuine.ids)}")
    assert len({key.rsplit(" ", 1)[0] for key in statuses}) >= 7  # most operations were exercised


def _matches(template: str, path: str) -> bool:
    t, p = template.strip("/").split("/"), path.split("?")[0].strip("/").split("/")
    return len(t) == len(p) and all(a == b or a.startswith("{") for a, b in zip(t, p, strict=True))

