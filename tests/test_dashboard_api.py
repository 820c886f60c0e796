"""The dashboard's JSON API and live feed, over HTTP against a real uvicorn port (tests/dashboard_app.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devserver.ui.dashboard.masking import (
    DISPLAY_LIMIT_BYTES,
    TRUNCATION_MARK,
    for_display,
    is_secret_name,
    secret_keys,
)
from tests.dashboard_app import DashboardServer, api_gateway_event, make_record


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    with DashboardServer() as srv:
        yield srv


@pytest.fixture
def client(server: DashboardServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        yield c


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# -- listing, filtering, searching --------------------------------------------------------------------


def test_list_is_newest_first_with_summaries_only(server: DashboardServer, client: httpx.Client) -> None:
    records = [server.add(make_record(event={"n": i}, response={"r": i}, logs=f"log {i}")) for i in range(5)]
    items = client.get("/api/invocations").json()
    assert ids(items) == [r.id for r in reversed(records)]
    assert "event" not in items[0] and "response" not in items[0] and "logs" not in items[0]
    assert items[0]["status"] == "ok" and items[0]["function"] == "hello"
    assert ids(client.get("/api/invocations", params={"limit": 2}).json()) == [records[4].id, records[3].id]


def test_filters_by_function_outcome_and_source(server: DashboardServer, client: httpx.Client) -> None:
    ok = server.add(make_record(function="a"))
    failed = server.add(make_record(function="a", status="handler_error", error_type="ValueError"))
    timeout = server.add(make_record(function="b", status="timeout"))
    running = server.add(make_record(function="b", status="running"))
    replay = server.add(make_record(function="b", source="replay", replay_of=ok.id))

    def listed(**params: Any) -> list[str]:
        response = client.get("/api/invocations", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert listed(function="a") == [failed.id, ok.id]
    assert listed(status="handler_error") == [failed.id]
    assert listed(outcome="timeout") == [timeout.id]
    assert listed(status="errors") == [timeout.id, failed.id]
    assert listed(status=["ok", "running"]) == [replay.id, running.id, ok.id]
    assert listed(status="ok,running", function="b") == [replay.id, running.id]
    assert listed(source="replay") == [replay.id]
    assert listed(function="nope") == []


def test_text_search_covers_event_response_logs_and_errors(
    server: DashboardServer, client: httpx.Client
) -> None:
    in_event = server.add(make_record(event={"customer": "Ada Lovelace"}))
    in_response = server.add(make_record(response={"greeting": "hello Grace"}))
    in_logs = server.add(make_record(logs="START\ncharging card for LINUS\nEND\n"))
    in_error = server.add(make_record(status="handler_error", error_message="bad qty for Ken"))
    server.add(make_record(event={"customer": "someone else"}))

    def search(q: str) -> list[str]:
        return ids(client.get("/api/invocations", params={"q": q}).json())

    assert search("ada love") == [in_event.id]
    assert search("GRACE") == [in_response.id]
    assert search("linus") == [in_logs.id]
    assert search("ken") == [in_error.id]
    assert search(in_event.id[:8]) == [in_event.id]
    assert search("nobody at all") == []


# -- one invocation -------------------------------------------------------------------------------------


def test_detail_is_the_whole_record(server: DashboardServer, client: httpx.Client) -> None:
    record = server.add(
        make_record(
            event={"name": "ada"},
            status="handler_error",
            error_type="ValueError",
            error_message="no",
            stack_trace=['  File "/var/task/app.py", line 3, in handler\n    raise ValueError("no")\n'],
            logs="one\ntwo\n",
            cold=True,
            generation=7,
            timings={"sent": 1.0, "received": 2.0, "started": 3.0, "finished": 9.0, "published": 10.0},
        )
    )
    detail = client.get(f"/api/invocations/{record.id}").json()
    assert detail["event"] == {"name": "ada"}
    assert detail["response"] is None
    assert detail["logs"] == "one\ntwo\n"
    assert detail["stack_trace"] == record.stack_trace
    assert (detail["error_type"], detail["error_message"]) == ("ValueError", "no")
    assert detail["cold"] is True and detail["generation"] == 7
    assert detail["timings"] == record.timings
    assert detail["event_truncated"] is False and detail["event_size"] == len('{"name":"ada"}')
    assert detail["secret_keys"] == []


def test_detail_names_the_keys_to_mask(server: DashboardServer, client: httpx.Client) -> None:
    event = api_gateway_event({"username": "ada", "password": "hunter2"})
    event["queryStringParameters"] = {"api_key": "k1", "x": "1"}
    record = server.add(make_record(event=event, response={"token": "t", "user": "ada", "Set-Cookie": "a=b"}))
    detail = client.get(f"/api/invocations/{record.id}").json()
    assert detail["event"] == event  # whole: the page masks, so that "reveal" needs no round trip
    assert detail["secret_keys"] == sorted(
        ["authorization", "cookie", "password", "api_key", "token", "Set-Cookie"]
    )


@pytest.mark.parametrize(
    "name",
    ["password", "Password", "token", "X-Auth-Token", "secret", "client_secret", "authorization",
     "Authorization", "api key", "api_key", "apiKey", "x-api-key", "API.Key", "cookie", "Cookie", "cookies"],
)  # fmt: skip
def test_secret_names_the_issue_lists_are_masked(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["name", "user", "email", "body", "headers", "TABLE_NAME", "qty"])
def test_ordinary_names_are_not_masked(name: str) -> None:
    assert not is_secret_name(name)


def test_secret_keys_are_found_at_any_depth_and_inside_json_strings() -> None:
    value = {"a": [{"b": {"Password": "x"}}], "body": json.dumps({"inner": {"apiKey": "y"}}), "n": 1}
    assert secret_keys(value) == ["Password", "apiKey"]
    assert secret_keys("not json", None, [1, 2]) == []


def test_downloads_are_whole_attachments(server: DashboardServer, client: httpx.Client) -> None:
    big = "x" * (DISPLAY_LIMIT_BYTES * 2)
    record = server.add(make_record(event={"blob": big, "password": "hunter2"}, response={"ok": True}))
    event = client.get(f"/api/invocations/{record.id}/event")
    assert event.status_code == 200
    assert event.headers["content-type"].startswith("application/json")
    assert event.headers["content-disposition"] == f'attachment; filename="{record.id}-event.json"'
    assert event.json() == {"blob": big, "password": "hunter2"}
    response = client.get(f"/api/invocations/{record.id}/response")
    assert response.headers["content-disposition"] == f'attachment; filename="{record.id}-response.json"'
    assert response.json() == {"ok": True}


def test_large_payloads_are_cut_down_for_display_keeping_their_shape(
    server: DashboardServer, client: httpx.Client
) -> None:
    records = [{"id": i, "body": "y" * 5000} for i in range(300)]
    record = server.add(make_record(event={"Records": records, "note": "small"}, response="z" * 200_000))
    detail = client.get(f"/api/invocations/{record.id}").json()
    assert detail["event_truncated"] is True and detail["response_truncated"] is True
    assert detail["event_size"] > DISPLAY_LIMIT_BYTES and detail["response_size"] > 200_000
    assert len(json.dumps(detail["event"])) <= DISPLAY_LIMIT_BYTES + 1024
    assert detail["event"]["note"] == "small"
    shown = detail["event"]["Records"]
    assert shown[0]["id"] == 0 and TRUNCATION_MARK in shown[0]["body"]
    assert shown[-1].startswith(TRUNCATION_MARK) and "more items" in shown[-1]
    assert detail["response"].startswith("zzz") and "more characters" in detail["response"]


def test_cut_down_json_strings_stay_json_so_masking_still_applies() -> None:
    body = json.dumps({"password": "hunter2", "items": list(range(50_000))})
    shown, size, cut = for_display({"body": body})
    assert cut and size > DISPLAY_LIMIT_BYTES
    inner = json.loads(shown["body"])
    assert inner["password"] == "hunter2" and "more items" in inner["items"][-1]


def test_unknown_ids_are_404_with_a_clear_message(server: DashboardServer, client: httpx.Client) -> None:
    for path in ("", "/event", "/response"):
        response = client.get(f"/api/invocations/no-such-id{path}")
        assert response.status_code == 404
        assert "no invocation 'no-such-id' in memory" in response.json()["detail"]
    response = client.post("/api/invocations/no-such-id/replay")
    assert response.status_code == 404
    assert "no-such-id" in response.json()["detail"]
    assert server.sources.replays == []


def test_clear_forgets_everything(server: DashboardServer, client: httpx.Client) -> None:
    for _ in range(3):
        server.add(make_record())
    assert client.delete("/api/invocations").json() == {"cleared": 3}
    assert client.get("/api/invocations").json() == []


# -- replay -----------------------------------------------------------------------------------------


def test_replay_same_event(server: DashboardServer, client: httpx.Client) -> None:
    original = server.add(make_record(event={"name": "ada"}))
    response = client.post(f"/api/invocations/{original.id}/replay")
    assert response.status_code == 200, response.text
    replay = response.json()
    assert server.sources.replays == [(original.id, None)]
    assert replay["source"] == "replay" and replay["replay_of"] == original.id
    assert replay["event"] == {"name": "ada"} and replay["response"] == {"echo": {"name": "ada"}}
    assert ids(client.get("/api/invocations").json()) == [replay["id"], original.id]


def test_replay_with_an_edited_event(server: DashboardServer, client: httpx.Client) -> None:
    original = server.add(make_record(event={"name": "ada"}))
    edited = {"name": "grace", "tags": [1, 2]}
    response = client.post(f"/api/invocations/{original.id}/replay", json={"event": edited})
    assert response.status_code == 200, response.text
    assert server.sources.replays == [(original.id, edited)]
    assert response.json()["response"] == {"echo": edited}
    # an empty body, or one without "event", replays the same event
    client.post(f"/api/invocations/{original.id}/replay", json={})
    assert server.sources.replays[-1] == (original.id, None)


def test_a_failing_replay_says_why(server: DashboardServer, client: httpx.Client) -> None:
    original = server.add(make_record())

    async def broken(invocation_id: str, event: Any) -> Any:
        raise RuntimeError("no worker could start: SyntaxError in app.py line 3")

    server.sources.replay = broken  # type: ignore[method-assign]
    response = client.post(f"/api/invocations/{original.id}/replay")
    assert response.status_code == 502
    assert "SyntaxError in app.py line 3" in response.json()["detail"]


# -- functions and connection ----------------------------------------------------------------------


def test_functions_and_connection(server: DashboardServer, client: httpx.Client) -> None:
    functions = client.get("/api/functions").json()
    assert [f["name"] for f in functions] == ["hello"]
    hello = functions[0]
    assert hello["handler"] == "app.handler" and hello["generation"] == 3
    assert [w["state"] for w in hello["workers"]] == ["idle", "busy"]
    assert hello["secret_keys"] == ["STRIPE_API_KEY"]
    connection = client.get("/api/connection").json()
    assert connection["state"] == "connected" and connection["attempts"] == 0
    server.set_connection(state="backoff", attempts=2, rejected={"bad-signature": 3})
    connection = client.get("/api/connection").json()
    assert (connection["state"], connection["attempts"], connection["rejected"]) == (
        "backoff",
        2,
        {"bad-signature": 3},
    )


def test_openapi_describes_the_api(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/invocations",
        "/api/invocations/{invocation_id}",
        "/api/invocations/{invocation_id}/event",
        "/api/invocations/{invocation_id}/response",
        "/api/invocations/{invocation_id}/replay",
        "/api/functions",
        "/api/connection",
        "/api/feed",
    ):
        assert path in paths, path
    assert (
        "delete" in paths["/api/invocations"] and "post" in paths["/api/invocations/{invocation_id}/replay"]
    )
    assert "InvocationDetail" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_the_page_and_its_files(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/../api.py").status_code == 404
    assert client.get("/static/secret.txt").status_code == 404


def test_other_hosts_and_cross_origin_changes_are_refused(
    server: DashboardServer, client: httpx.Client
) -> None:
    record = server.add(make_record())
    rebound = client.get("/api/invocations", headers={"Host": "attacker.example"})
    assert rebound.status_code == 403 and "answers only on" in rebound.json()["detail"]
    forged = client.post(
        f"/api/invocations/{record.id}/replay", headers={"Origin": "https://attacker.example"}
    )
    assert forged.status_code == 403
    assert (
        client.delete("/api/invocations", headers={"Origin": "https://attacker.example"}).status_code == 403
    )
    same = client.post(f"/api/invocations/{record.id}/replay", headers={"Origin": server.url})
    assert same.status_code == 200
    assert client.get("/api/invocations", headers={"Host": f"localhost:{server.port}"}).status_code == 200


# -- the live feed ---------------------------------------------------------------------------------


class Feed:
    """Reads Server-Sent Events from /api/feed, one at a time."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines

    def next(self) -> tuple[str, Any]:
        event, data = "message", []
        for line in self.lines:
            if line == "":
                if data:
                    return event, json.loads("\n".join(data))
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        raise AssertionError("the feed ended")

    def until(self, predicate: Any, limit: int = 500) -> tuple[str, Any]:
        for _ in range(limit):
            event, data = self.next()
            if predicate(event, data):
                return event, data
        raise AssertionError("the expected feed event never came")


def test_feed_streams_new_and_changed_records_and_clears(server: DashboardServer) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=20) as client,
        client.stream("GET", "/api/feed") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        feed = Feed(stream.iter_lines())
        assert feed.next()[0] == "hello"
        assert feed.next() == ("connection", client.get("/api/connection").json())
        assert feed.next()[0] == "functions"

        record = server.add(make_record(status="running", event={"name": "ada"}))
        _, data = feed.until(lambda e, d: e == "invocation")
        assert data["id"] == record.id and data["status"] == "running" and "event" not in data

        server.finish(record, status="ok", duration_ms=12.5, response={"ok": 1})
        _event, data = feed.until(lambda e, d: e == "invocation" and d["status"] != "running")
        assert (data["id"], data["status"], data["duration_ms"]) == (record.id, "ok", 12.5)

        server.call(server.store.clear)
        assert feed.until(lambda e, d: e != "connection" and e != "functions")[0] == "cleared"


def test_feed_sends_connection_and_function_changes(server: DashboardServer) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=20) as client,
        client.stream("GET", "/api/feed") as stream,
    ):
        feed = Feed(stream.iter_lines())
        feed.until(lambda e, d: e == "functions")
        server.set_connection(state="backoff", attempts=3, next_retry_at=time.time() + 4, backoff_s=4.0)
        _, data = feed.until(lambda e, d: e == "connection")
        assert (data["state"], data["attempts"], data["backoff_s"]) == ("backoff", 3, 4.0)
        server.set_function(generation=4, last_reload_error="SyntaxError: invalid syntax (app.py, line 2)")
        _, data = feed.until(lambda e, d: e == "functions")
        assert data[0]["generation"] == 4 and "SyntaxError" in data[0]["last_reload_error"]


def test_feed_listeners_are_released_when_the_browser_goes(server: DashboardServer) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        for _ in range(3):
            with client.stream("GET", "/api/feed") as stream:
                Feed(stream.iter_lines()).until(lambda e, d: e == "functions")
    deadline = time.monotonic() + 20
    while server.call(lambda: len(server.store._listeners)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.call(lambda: len(server.store._listeners)) == 0


def test_feed_sends_a_burst_of_changes_in_order(server: DashboardServer) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=20) as client,
        client.stream("GET", "/api/feed") as stream,
    ):
        feed = Feed(stream.iter_lines())
        feed.until(lambda e, d: e == "functions")
        a = make_record(status="running")
        b = make_record(status="running")

        def burst() -> None:
            server.store.add(a)
            server.store.add(b)
            server.store.finish(a, status="ok", duration_ms=1.0)

        server.call(burst)
        seen: list[tuple[str, str]] = []
        while ("ok" not in [status for _id, status in seen if _id == a.id]) or b.id not in [
            i for i, _ in seen
        ]:
            _, data = feed.until(lambda e, d: e == "invocation")
            seen.append((data["id"], data["status"]))
        assert [i for i, _ in seen][:2] == [a.id, b.id]  # oldest first, so the page puts b on top


def test_feed_survives_a_failing_source(server: DashboardServer) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("bridge not started")

    server.sources.connection = broken  # type: ignore[method-assign]
    with (
        httpx.Client(base_url=server.url, timeout=20) as client,
        client.stream("GET", "/api/feed") as stream,
    ):
        feed = Feed(stream.iter_lines())
        assert feed.next()[0] == "hello"
        assert feed.next()[0] == "functions"
        record = server.add(make_record())
        _, data = feed.until(lambda e, d: e == "invocation")
        assert data["id"] == record.id
