"""The dashboard page in a real Chromium (Debian's /usr/bin/chromium, headless), against the harness.

Behaviour only: every wait is Playwright's auto-waiting `expect` with a generous timeout."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devserver.ui.dashboard.masking import DISPLAY_LIMIT_BYTES
from tests.browser_fixtures import checked_page, chromium_context, needs_chromium
from tests.dashboard_app import (
    TRACEBACK,
    DashboardServer,
    HarnessSources,
    api_gateway_event,
    default_function,
    make_record,
    sample_records,
)

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "dashboard"
TIMEOUT_MS = 20_000

pytestmark = needs_chromium
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with chromium_context(tmp_path_factory.mktemp("chromium-profile"), TIMEOUT_MS) as context:
        yield context


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    with DashboardServer() as srv:
        yield srv


@pytest.fixture
def page(browser_context: object) -> Iterator[object]:
    with checked_page(browser_context) as page:
        yield page


def open_page(page: object, server: DashboardServer, hash_: str = "") -> None:
    page.goto(f"{server.url}/{hash_}")  # type: ignore[attr-defined]
    expect(page.locator("#feed-pill")).to_have_class("pill feed-pill feed-live")  # type: ignore[attr-defined]


def row(page: object, record_id: str) -> object:
    return page.locator(f'#feed-body tr[data-id="{record_id}"]')  # type: ignore[attr-defined]


# -- the live feed -----------------------------------------------------------------------------------


def test_a_new_record_appears_without_reload_and_updates(page, server: DashboardServer) -> None:
    open_page(page, server)
    expect(page.locator("#feed-empty")).to_be_visible()
    record = server.add(make_record(status="running", event={"name": "ada"}, cold=True, generation=5))
    r = row(page, record.id)
    expect(r).to_be_visible()
    expect(r.locator(".c-outcome")).to_have_text("running")
    expect(r.locator(".c-start")).to_have_text("cold")
    expect(r.locator(".c-gen")).to_have_text("g5")
    expect(r.locator(".c-id")).to_contain_text(record.id[:8])
    expect(r.locator(".c-trigger")).to_have_text("direct")
    server.finish(record, status="ok", duration_ms=12.5, response={"hi": "ada"})
    expect(r.locator(".c-outcome")).to_have_text("ok")
    expect(r.locator(".c-dur")).to_have_text("12.5 ms")
    newer = server.add(make_record(event={"Records": [{"eventSource": "aws:sqs", "body": "x"}]}))
    expect(page.locator("#feed-body tr").first).to_have_attribute("data-id", newer.id)
    expect(row(page, newer.id).locator(".c-trigger")).to_have_text("SQS")
    # the feed lives in the dev server: a reload shows the same rows
    page.reload()
    expect(page.locator("#feed-body tr")).to_have_count(2)
    expect(page.locator("#feed-body tr").first).to_have_attribute("data-id", newer.id)


def test_outcome_badges(page, server: DashboardServer) -> None:
    labels = {
        "ok": "ok",
        "handler_error": "handler error",
        "timeout": "timeout",
        "crashed": "crashed",
        "livelambda_error": "livelambda error",
        "running": "running",
    }
    records = {status: server.add(make_record(status=status)) for status in labels}
    replay = server.add(make_record(source="replay", replay_of=records["ok"].id))
    open_page(page, server)
    for status, label in labels.items():
        expect(row(page, records[status].id).locator(".c-outcome .badge")).to_have_text(label)
    expect(row(page, replay.id).locator(".replay-mark")).to_be_visible()
    expect(row(page, records["ok"].id).locator(".replay-mark")).to_have_count(0)


# -- detail ---------------------------------------------------------------------------------------------


def test_detail_shows_event_response_logs_and_timings(page, server: DashboardServer) -> None:
    record = server.add(
        make_record(
            event={"name": "ada", "nested": {"deep": [1, 2, {"deeper": True}]}},
            response={"statusCode": 200, "body": "hello ada"},
            logs="first line\nsecond line\nthird line\n",
            timings={
                "sent": 1000.0,
                "received": 1008.0,
                "started": 1009.0,
                "finished": 1021.5,
                "published": 1024,
            },
        )
    )
    open_page(page, server)
    row(page, record.id).click()
    expect(page).to_have_url(f"{server.url}/#/invocations/{record.id}")
    detail = page.locator("#detail")
    expect(detail.locator("#detail-id")).to_have_text(record.id)
    expect(detail.locator(".event-section .json")).to_contain_text('"name": "ada"')
    expect(detail.locator(".event-section .json")).to_contain_text('"deeper": true')
    expect(detail.locator(".response-section .json")).to_contain_text('"body": "hello ada"')
    expect(detail.locator("#logs .log-line")).to_have_text(["first line", "second line", "third line"])
    timing = detail.locator(".timing-section")
    expect(timing).to_contain_text("AppSync hop in")
    expect(timing).to_contain_text("8.0 ms")
    expect(timing).to_contain_text("local run")
    expect(timing).to_contain_text("12.5 ms")
    expect(timing).to_contain_text("hop out")
    # collapsing a JSON node hides its children
    nested = detail.locator(".event-section .j-line", has_text='"nested"').first
    deeper = detail.locator(".event-section .j-key", has_text="deeper")
    expect(deeper).to_be_visible()
    nested.locator(".j-toggle").first.click()
    expect(deeper).to_be_hidden()
    expect(nested).to_contain_text("1 key")
    nested.locator(".j-toggle").first.click()
    expect(deeper).to_be_visible()
    # a reload keeps the detail open (the URL hash says which)
    page.reload()
    expect(page.locator("#detail-id")).to_have_text(record.id)
    expect(page.locator(f'#feed-body tr.selected[data-id="{record.id}"]')).to_be_visible()


def test_an_open_detail_follows_its_running_invocation(page, server: DashboardServer) -> None:
    record = server.add(make_record(status="running", event={"name": "ada"}, logs="started\n"))
    open_page(page, server, f"#/invocations/{record.id}")
    head = page.locator("#detail .detail-head")
    expect(head.locator(".outcome")).to_have_text("running")
    expect(page.locator(".response-section")).to_contain_text("still running")
    server.finish(record, status="ok", duration_ms=41.0, response={"done": True}, logs="started\nfinished\n")
    expect(head.locator(".outcome")).to_have_text("ok")
    expect(head).to_contain_text("41.0 ms")
    expect(page.locator(".response-section .json")).to_contain_text('"done": true')
    expect(page.locator("#logs .log-line")).to_have_text(["started", "finished"])


def test_a_handler_error_shows_its_traceback(page, server: DashboardServer) -> None:
    record = server.add(
        make_record(
            status="handler_error",
            error_type="ValueError",
            error_message="qty must be positive, got -2",
            stack_trace=TRACEBACK,
        )
    )
    open_page(page, server, f"#/invocations/{record.id}")
    section = page.locator(".error-section")
    expect(section).to_contain_text("ValueError: qty must be positive, got -2")
    trace = page.locator("#traceback")
    expect(trace).to_contain_text("Traceback (most recent call last):")
    expect(trace).to_contain_text('File "/var/task/orders.py", line 9, in parse')
    expect(trace).to_contain_text('raise ValueError(f"qty must be positive, got {qty}")')
    expect(page.locator(".response-section")).to_contain_text("No response: the invocation failed")


def test_an_unknown_id_in_the_url_says_so(page, server: DashboardServer) -> None:
    open_page(page, server, "#/invocations/gone-1234")
    expect(page.locator("#detail")).to_contain_text("Not in memory")
    expect(page.locator("#detail")).to_contain_text("no invocation 'gone-1234' in memory")


def test_large_payloads_are_truncated_with_a_download_link(page, server: DashboardServer) -> None:
    big = {"Records": [{"id": i, "body": "y" * 3000} for i in range(100)]}
    assert len(json.dumps(big)) > DISPLAY_LIMIT_BYTES
    record = server.add(make_record(event=big, response={"ok": True}))
    open_page(page, server, f"#/invocations/{record.id}")
    banner = page.locator("#event-truncated")
    expect(banner).to_contain_text("shown cut down")
    link = banner.locator("a")
    expect(link).to_have_attribute("href", f"api/invocations/{record.id}/event")
    expect(page.locator(".event-section .j-cut").first).to_be_visible()
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert json.loads(Path(download.path()).read_text()) == big
    expect(page.locator("#response-truncated")).to_have_count(0)


def test_copy_as_livelambda_invoke(page, server: DashboardServer, browser_context) -> None:
    browser_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    record = server.add(make_record(function="orders", event={"name": "O'Brien", "n": 1}))
    open_page(page, server, f"#/invocations/{record.id}")
    page.locator("#copy-invoke-btn").click()
    expect(page.locator("#toast")).to_contain_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == """livelambda invoke orders '{"name":"O'\\''Brien","n":1}'"""


# -- replay --------------------------------------------------------------------------------------------


def test_replay_the_same_event(page, server: DashboardServer) -> None:
    record = server.add(make_record(event={"name": "ada"}))
    open_page(page, server, f"#/invocations/{record.id}")
    page.locator("#replay-btn").click()
    expect(page.locator("#detail .detail-head")).to_contain_text(f"replay of {record.id[:8]}")
    new_id = page.locator("#detail-id").inner_text()
    assert new_id != record.id
    expect(row(page, new_id).locator(".replay-mark")).to_be_visible()
    expect(page.locator(".response-section .json")).to_contain_text('"echo"')
    assert server.sources.replays == [(record.id, None)]


def test_edit_and_replay(page, server: DashboardServer) -> None:
    record = server.add(make_record(event={"name": "ada", "qty": 1}))
    open_page(page, server, f"#/invocations/{record.id}")
    page.locator("#edit-replay-btn").click()
    editor = page.locator("#edit-event")
    expect(editor).to_be_visible()
    assert json.loads(editor.input_value()) == {"name": "ada", "qty": 1}
    # invalid JSON: a clear inline error, nothing is run
    editor.fill('{"name": "grace", "qty": }')
    page.locator("#edit-run").click()
    expect(page.locator("#edit-error")).to_be_visible()
    expect(page.locator("#edit-error")).to_contain_text("Invalid JSON")
    expect(editor).to_have_attribute("aria-invalid", "true")
    assert server.sources.replays == []
    # valid: a new entry, marked as a replay, that ran the edited event
    editor.fill('{"name": "grace", "qty": 2}')
    expect(page.locator("#edit-error")).to_be_hidden()
    page.locator("#edit-run").click()
    expect(page.locator("#detail .detail-head")).to_contain_text(f"replay of {record.id[:8]}")
    new_id = page.locator("#detail-id").inner_text()
    expect(page).to_have_url(f"{server.url}/#/invocations/{new_id}")
    expect(row(page, new_id).locator(".replay-mark")).to_be_visible()
    expect(page.locator(".event-section .json")).to_contain_text('"name": "grace"')
    expect(page.locator(".response-section .json")).to_contain_text('"qty": 2')
    assert server.sources.replays == [(record.id, {"name": "grace", "qty": 2})]
    expect(page.locator("#feed-body tr")).to_have_count(2)


def test_edit_and_replay_keeps_masked_secrets(page, server: DashboardServer) -> None:
    event = api_gateway_event({"username": "ada", "password": "hunter2"})
    record = server.add(make_record(event=event))
    open_page(page, server, f"#/invocations/{record.id}")
    page.locator("#edit-replay-btn").click()
    editor = page.locator("#edit-event")
    expect(editor).to_be_visible()
    text = editor.input_value()
    assert "hunter2" not in text and "eyJhbGciOiJIUzI1NiJ9" not in text and "••••" in text
    editor.fill(text.replace('"rawPath": "/login"', '"rawPath": "/login2"'))
    page.locator("#edit-run").click()
    expect(page.locator("#detail .detail-head")).to_contain_text("replay of")
    (_, ran), *_ = server.sources.replays
    assert ran == {**event, "rawPath": "/login2"}  # the secrets went through as recorded


def test_a_failed_replay_is_shown(page, server: DashboardServer) -> None:
    record = server.add(make_record(event={"name": "ada"}))

    async def broken(invocation_id: str, event: object) -> object:
        raise RuntimeError("no worker could start: SyntaxError in app.py line 3")

    server.sources.replay = broken  # type: ignore[method-assign]
    open_page(page, server, f"#/invocations/{record.id}")
    page.locator("#replay-btn").click()
    expect(page.locator("#action-error")).to_contain_text("SyntaxError in app.py line 3")


# -- functions and connection ----------------------------------------------------------------------------


def test_connection_panel_follows_state_changes(page, server: DashboardServer) -> None:
    open_page(page, server)
    page.locator("#tab-connection").click()
    expect(page).to_have_url(f"{server.url}/#/connection")
    state = page.locator("#conn-state")
    expect(state).to_have_text("connected")
    expect(page.locator("#conn-attempts")).to_have_text("0")
    server.set_connection(
        state="backoff",
        since=time.time(),
        attempts=1,
        failures=1,
        backoff_s=2.0,
        next_retry_at=time.time() + 60,
        rejected={"bad-signature": 2, "stale": 1},
        recent_rejections=[{"at": time.time(), "reason": "bad-signature", "detail": "HMAC mismatch"}],
    )
    expect(state).to_have_text("backoff")
    expect(page.locator("#conn-attempts")).to_have_text("1")
    panel = page.locator("#panel-connection")
    expect(panel).to_contain_text("2.0 s")
    expect(panel).to_contain_text("Rejected messages (3)")
    expect(panel.locator("table.recent")).to_contain_text("HMAC mismatch")
    expect(page.locator("#conn-pill")).to_contain_text("backoff")
    server.set_connection(state="connected", since=time.time(), attempts=2, next_retry_at=None)
    expect(state).to_have_text("connected")
    expect(page.locator("#conn-attempts")).to_have_text("2")
    expect(page.locator("#conn-pill")).to_contain_text("connected")


def test_functions_panel_shows_workers_reloads_and_masked_env(page, server: DashboardServer) -> None:
    open_page(page, server, "#/functions")
    card = page.locator('.fn-card[data-function="hello"]')
    expect(card).to_contain_text("app.handler")
    expect(card).to_contain_text("gen 3")
    expect(card.locator("table.grid tbody tr")).to_have_count(2)
    env = card.locator("table.env")
    expect(env).to_contain_text("orders-dev")
    expect(env).not_to_contain_text("sk_test_51Hx")
    env.locator("button.reveal").click()
    expect(env).to_contain_text("sk_test_51Hx")
    server.set_function(generation=4, last_reload_error="SyntaxError: invalid syntax (app.py, line 2)")
    expect(card).to_contain_text("gen 4")
    expect(card).to_contain_text("SyntaxError: invalid syntax (app.py, line 2)")


# -- secrets, filters, clear ---------------------------------------------------------------------------


def test_secrets_are_masked_until_revealed(page, server: DashboardServer) -> None:
    event = {
        "user": "ada",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc.def", "Cookie": "sid=77", "x-api-key": "k-999"},
        "body": json.dumps({"token": "tok-123", "qty": 2}),
    }
    record = server.add(make_record(event=event, response={"secret": "s3cr3t", "ok": True}))
    open_page(page, server, f"#/invocations/{record.id}")
    event_box = page.locator(".event-section .json")
    expect(event_box).to_contain_text('"user": "ada"')
    for hidden in ("hunter2", "Bearer abc.def", "sid=77", "k-999", "tok-123"):
        expect(event_box).not_to_contain_text(hidden)
    expect(page.locator(".response-section .json")).not_to_contain_text("s3cr3t")
    expect(event_box).to_contain_text('"qty": 2')
    assert "hunter2" not in page.locator("body").inner_text()
    # one value: its own toggle
    line = event_box.locator(".j-line", has_text='"password"').last
    line.locator("button.reveal").click()
    expect(event_box).to_contain_text("hunter2")
    expect(event_box).not_to_contain_text("Bearer abc.def")
    line.locator("button.reveal").click()
    expect(event_box).not_to_contain_text("hunter2")
    # everything at once
    page.locator("#reveal-all").check()
    for shown in ("hunter2", "Bearer abc.def", "sid=77", "k-999", "tok-123"):
        expect(page.locator(".event-section .json")).to_contain_text(shown)
    expect(page.locator(".response-section .json")).to_contain_text("s3cr3t")


def test_filters(page, server: DashboardServer) -> None:
    a_ok = server.add(make_record(function="alpha", event={"customer": "ada"}))
    a_err = server.add(make_record(function="alpha", status="handler_error", event={"customer": "grace"}))
    b_ok = server.add(make_record(function="beta", response={"greeting": "hello linus"}))
    b_timeout = server.add(make_record(function="beta", status="timeout"))
    open_page(page, server)
    rows = page.locator("#feed-body tr")
    expect(rows).to_have_count(4)

    page.locator("#filter-function").select_option("alpha")
    expect(rows).to_have_count(2)
    expect(row(page, a_ok.id)).to_be_visible()
    expect(row(page, a_err.id)).to_be_visible()
    # a new record for another function stays out while the filter is on
    other = server.add(make_record(function="beta"))
    mine = server.add(make_record(function="alpha"))
    expect(row(page, mine.id)).to_be_visible()
    expect(row(page, other.id)).to_have_count(0)

    page.locator("#filter-function").select_option("")
    page.locator("#filter-outcome").select_option("errors")
    expect(rows).to_have_count(2)
    expect(row(page, a_err.id)).to_be_visible()
    expect(row(page, b_timeout.id)).to_be_visible()

    page.locator("#filter-outcome").select_option("")
    page.locator("#filter-q").fill("LINUS")
    expect(rows).to_have_count(1)
    expect(row(page, b_ok.id)).to_be_visible()
    page.locator("#filter-q").fill("grace")
    expect(rows).to_have_count(1)
    expect(row(page, a_err.id)).to_be_visible()
    # a new record matching the search shows up; one that does not, does not
    match = server.add(make_record(function="beta", event={"note": "amazing grace"}))
    server.add(make_record(function="beta", event={"note": "nothing"}))
    expect(row(page, match.id)).to_be_visible()
    expect(rows).to_have_count(2)
    page.locator("#filter-q").fill("nobody-at-all")
    expect(rows).to_have_count(0)
    expect(page.locator("#feed-empty")).to_contain_text("No invocation matches the filters")


def test_clear_button(page, server: DashboardServer) -> None:
    for _ in range(3):
        server.add(make_record())
    open_page(page, server)
    expect(page.locator("#feed-body tr")).to_have_count(3)
    clear = page.locator("#clear-btn")
    clear.click()
    expect(clear).to_have_text("Click again to clear")
    assert len(server.call(lambda: list(server.store.newest_first()))) == 3
    clear.click()
    expect(page.locator("#feed-body tr")).to_have_count(0)
    expect(page.locator("#feed-empty")).to_be_visible()
    assert server.call(lambda: len(server.store)) == 0


# -- screenshots (look at them: test-output/dashboard/) ----------------------------------------------


def test_screenshots(browser_context) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    sources = HarnessSources()
    sources._functions.append(default_function("orders-worker"))
    reload_error = (
        'Traceback (most recent call last):\n  File "/home/alice/src/shop/orders/app.py", line 12\n'
        "    def handler(event, context)\n                               ^\nSyntaxError: expected ':'"
    )
    sources.update_function(1, last_reload_error=reload_error)
    records = sample_records()
    for record in records:
        sources.store.add(record)
    page = browser_context.new_page()
    try:
        with DashboardServer(sources) as server:
            open_page(page, server)
            expect(page.locator("#feed-body tr")).to_have_count(len(records))
            page.screenshot(path=str(SHOTS / "feed.png"))
            login, failing = records[0], records[2]
            row(page, login.id).click()
            expect(page.locator(".event-section .json")).to_contain_text("routeKey")
            page.screenshot(path=str(SHOTS / "detail.png"))
            row(page, failing.id).click()
            expect(page.locator("#traceback")).to_be_visible()
            page.screenshot(path=str(SHOTS / "detail-error.png"))
            page.locator("#edit-replay-btn").click()
            expect(page.locator("#edit-event")).to_be_visible()
            page.locator("#edit-event").fill('{"Records": [}')
            page.locator("#edit-run").click()
            expect(page.locator("#edit-error")).to_be_visible()
            page.screenshot(path=str(SHOTS / "edit-replay.png"))
            page.locator("#tab-functions").click()
            expect(page.locator(".fn-card")).to_have_count(2)
            page.screenshot(path=str(SHOTS / "functions.png"))
            server.set_connection(
                state="backoff",
                since=time.time() - 12,
                attempts=3,
                failures=3,
                backoff_s=4.0,
                next_retry_at=time.time() + 3.5,
                rejected={"bad-signature": 2, "stale-timestamp": 1},
                recent_rejections=[
                    {"at": time.time() - 40, "reason": "stale-timestamp", "detail": "sent 412 s ago"},
                    {"at": time.time() - 5, "reason": "bad-signature", "detail": "HMAC mismatch on invoke"},
                ],
            )
            page.locator("#tab-connection").click()
            expect(page.locator("#conn-state")).to_have_text("backoff")
            page.screenshot(path=str(SHOTS / "connection.png"))
    finally:
        page.close()
    for name in ("feed", "detail", "detail-error", "edit-replay", "functions", "connection"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
