"""The dashboard in a real Chromium against the REAL dev server: `livelambda dev --cloud` on a temp copy
of examples/hello, invoked through boto3 (boto3 -> cloud -> stub -> AppSync emulator -> dev server).

The page is always loaded first, then the function is invoked, edited or disconnected: whatever shows
up arrives over the page's live feed. Behaviour only: every wait is Playwright's auto-waiting `expect`
(generous timeout) or `DevProcess.wait_for`. Screenshots go to test-output/dashboard-live/ (git-ignored):
look at them after a change to the page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_fixtures import checked_page, chromium_context, needs_chromium
from tests.dev_fixtures import DevProcess, running_dev

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "dashboard-live"
TIMEOUT_MS = 30_000  # two shared cores: a reload, a reconnect or a cold start may take a while

pytestmark = needs_chromium
expect.set_options(timeout=TIMEOUT_MS)

# Replaces examples/hello's hello.py: an error raised one call below the handler, after a print.
RAISING = """
def handler(event, context):
    print("checking", event.get("name"))
    return check(event)


def check(event):
    raise ValueError("no greeting for " + repr(event.get("name")))
"""

API_EVENT = {
    "version": "2.0",
    "routeKey": "GET /greet",
    "rawPath": "/greet",
    "rawQueryString": "name=Grace",
    "queryStringParameters": {"name": "Grace"},
    "requestContext": {"http": {"method": "GET", "path": "/greet"}},
}


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium_context(tmp_path_factory.mktemp("chromium-profile"), TIMEOUT_MS) as context:
        yield context


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    with running_dev(tmp_path) as process:
        yield process


@pytest.fixture
def page(browser_context: Any, dev: DevProcess) -> Iterator[Any]:
    """A fresh tab (closed before the dev server stops, so no feed stream holds its shutdown)."""
    with checked_page(browser_context) as page:
        yield page


def open_page(page: Any, dev: DevProcess, hash_: str = "") -> None:
    """Load the dashboard, wait for its live feed, and mark the document: `assert_not_reloaded`."""
    page.goto(dev.dashboard_url + hash_)
    expect(page.locator("#feed-pill")).to_have_class("pill feed-pill feed-live")
    page.evaluate("window.__loadedOnce = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__loadedOnce === true"), "the page was reloaded"


def row(page: Any, record_id: str) -> Any:
    return page.locator(f'#feed-body tr[data-id="{record_id}"]')


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def hello_card(page: Any) -> Any:
    return page.locator('.fn-card[data-function="hello"]')


def generation_shown(card: Any) -> int:
    """The number in the card's "gen N" badge (once there is one)."""
    badge = card.locator(".badge.gen")
    expect(badge).to_have_text(re.compile(r"^gen \d+$"))
    return int(badge.inner_text().split()[1])


# -- the feed and the detail -------------------------------------------------------------------------


def test_a_live_invocation_appears_without_reload_with_its_event_response_and_logs(
    page: Any, dev: DevProcess
) -> None:
    open_page(page, dev)
    expect(page.locator("#feed-empty")).to_be_visible()

    response, payload = dev.invoke("hello", {"name": "Ada"})
    assert "FunctionError" not in response, payload
    rid = payload["request_id"]  # the handler returns context.aws_request_id: the record's id
    r = row(page, rid)
    expect(r).to_be_visible()
    expect(r.locator(".c-fn")).to_have_text("hello")
    expect(r.locator(".c-outcome")).to_have_text("ok")
    expect(r.locator(".c-trigger")).to_have_text("direct")
    expect(r.locator(".c-id")).to_contain_text(rid[:8])
    expect(r.locator(".c-dur")).to_have_text(re.compile(r"\d ms$"))
    expect(r.locator(".c-gen")).to_have_text(re.compile(r"^g\d+$"))
    expect(r.locator(".c-start")).to_have_text(re.compile(r"^(cold|warm)$"))
    _, api_payload = dev.invoke("api", API_EVENT)
    api_rid = json.loads(api_payload["body"])["request_id"]
    expect(row(page, api_rid).locator(".c-trigger")).to_have_text("API Gateway HTTP")
    expect(page.locator("#feed-body tr").first).to_have_attribute("data-id", api_rid)  # newest first
    expect(page.locator("#feed-body tr")).to_have_count(2)
    assert_not_reloaded(page)
    shot(page, "feed")

    r.click()
    detail = page.locator("#detail")
    expect(detail.locator("#detail-id")).to_have_text(rid)
    head = detail.locator(".detail-head")
    expect(head.locator(".outcome")).to_have_text("ok")
    expect(head).to_contain_text("sandbox")  # it came through a (emulated) Lambda sandbox
    expect(detail.locator(".event-section .json")).to_contain_text('"name": "Ada"')
    response_box = detail.locator(".response-section .json")
    expect(response_box).to_contain_text('"message": "Hello, Ada!"')
    expect(response_box).to_contain_text(f'"request_id": "{rid}"')
    expect(detail.locator("#logs .log-line")).to_have_text(["saying hello to Ada"])
    # every hop was timed: the stub's send, the dev server's receive, the run, the result's publish
    timing = detail.locator(".timing-section")
    for label in ("AppSync hop in", "dispatch to a worker", "local run", "hop out", "round trip"):
        expect(timing).to_contain_text(label)
    expect(detail.locator(".error-section")).to_have_count(0)
    assert_not_reloaded(page)
    shot(page, "detail")


def test_a_handler_error_shows_its_traceback(page: Any, dev: DevProcess) -> None:
    open_page(page, dev)
    (dev.app / "hello.py").write_text(RAISING)
    # The dev server hot-reloads the save; until then the old code answers (and shows up as ok).
    _, payload = dev.wait_for(
        lambda: (r := dev.invoke("hello", {"name": "Bob"}))[1].get("errorType") == "ValueError" and r,
        "the saved handler raises",
    )
    r = row(page, payload["requestId"])
    expect(r.locator(".c-outcome")).to_have_text("handler error")
    r.click()
    section = page.locator(".error-section")
    expect(section).to_contain_text("ValueError: no greeting for 'Bob'")
    trace = page.locator("#traceback")
    expect(trace).to_contain_text("Traceback (most recent call last):")
    expect(trace).to_contain_text(re.compile(r'File ".*hello\.py", line \d+, in handler'))
    expect(trace).to_contain_text(re.compile(r'File ".*hello\.py", line \d+, in check'))
    expect(trace).to_contain_text('raise ValueError("no greeting for " + repr(event.get("name")))')
    expect(page.locator(".response-section")).to_contain_text("No response: the invocation failed")
    expect(page.locator("#logs")).to_contain_text("checking Bob")
    assert_not_reloaded(page)
    shot(page, "detail-error")
    page.locator(".timing-section").scroll_into_view_if_needed()
    shot(page, "detail-error-logs")


def test_edit_and_replay_runs_the_real_handler_on_the_edited_event(page: Any, dev: DevProcess) -> None:
    open_page(page, dev)
    _, payload = dev.invoke("hello", {"name": "Ada"})
    original = payload["request_id"]
    row(page, original).click()
    expect(page.locator("#detail-id")).to_have_text(original)

    page.locator("#edit-replay-btn").click()
    editor = page.locator("#edit-event")
    expect(editor).to_be_visible()
    assert json.loads(editor.input_value()) == {"name": "Ada"}
    editor.fill(json.dumps({"name": "Grace"}, indent=2))
    shot(page, "edit-replay")
    page.locator("#edit-run").click()

    head = page.locator("#detail .detail-head")
    expect(head).to_contain_text(f"replay of {original[:8]}")
    expect(head.locator(".replay-mark")).to_be_visible()
    new_id = page.locator("#detail-id").inner_text()
    assert new_id != original
    expect(page).to_have_url(f"{dev.dashboard_url}#/invocations/{new_id}")
    new_row = row(page, new_id)
    expect(new_row.locator(".replay-mark")).to_be_visible()
    expect(new_row.locator(".c-outcome")).to_have_text("ok")
    expect(row(page, original).locator(".replay-mark")).to_have_count(0)
    expect(page.locator("#feed-body tr")).to_have_count(2)
    expect(page.locator("#feed-body tr").first).to_have_attribute("data-id", new_id)
    # the real handler ran the edited event, under the replay's own request id
    expect(page.locator(".event-section .json")).to_contain_text('"name": "Grace"')
    response_box = page.locator(".response-section .json")
    expect(response_box).to_contain_text('"message": "Hello, Grace!"')
    expect(response_box).to_contain_text(f'"request_id": "{new_id}"')
    expect(page.locator("#logs .log-line")).to_have_text(["saying hello to Grace"])
    assert_not_reloaded(page)
    shot(page, "replay")
    # what the API has agrees with the page
    record = dev.api(f"invocations/{new_id}")
    assert (record["source"], record["replay_of"], record["event"]) == ("replay", original, {"name": "Grace"})
    assert record["response"]["message"] == "Hello, Grace!"


# -- connection and functions ------------------------------------------------------------------------


def test_the_connection_panel_shows_a_reconnect(page: Any, dev: DevProcess) -> None:
    open_page(page, dev, "#/connection")
    state = page.locator("#conn-state")
    attempts = page.locator("#conn-attempts")
    expect(state).to_have_text("connected")
    expect(attempts).to_have_text(re.compile(r"^\d+$"))
    before = int(attempts.inner_text())
    assert before >= 1
    expect(page.locator("#conn-losses")).to_have_text("0")
    expect(page.locator("#panel-connection")).to_contain_text(dev.info["cloud"]["host"])

    dropped = dev.cloud_faults(drop_connections=True)["dropped"]
    assert dropped >= 1  # at least the dev server's own connection

    expect(attempts).not_to_have_text(str(before))
    assert int(attempts.inner_text()) > before
    expect(page.locator("#conn-losses")).to_have_text("1")
    expect(state).to_have_text("connected")
    expect(page.locator("#conn-pill")).to_contain_text("connected")
    # and the new connection carries invocations: one shows up in the feed
    _, payload = dev.invoke("hello", {"name": "again"})
    expect(row(page, payload["request_id"]).locator(".c-outcome")).to_have_text("ok")
    assert_not_reloaded(page)
    shot(page, "connection")


def test_the_functions_panel_shows_handlers_workers_generations_and_the_reload_error(
    page: Any, dev: DevProcess
) -> None:
    open_page(page, dev, "#/functions")
    expect(page.locator(".fn-card")).to_have_count(2)
    expect(page.locator("#fn-count")).to_have_text("2")
    card = hello_card(page)
    api = page.locator('.fn-card[data-function="api"]')
    expect(card.locator("table.kv").first).to_contain_text("hello.handler")
    expect(api.locator("table.kv").first).to_contain_text("api.handler")
    expect(api.locator("table.env")).to_contain_text("GREETING")
    for c in (card, api):
        expect(c.locator(".badge.gen")).to_have_text("gen 1")
        workers = c.locator("table.grid tbody tr")  # the warm worker, started ahead of demand
        expect(workers).to_have_count(1)
        expect(workers.locator("td").nth(2)).to_have_text("idle")
        expect(workers.locator("td").nth(3)).to_have_text("g1")
        expect(c).to_contain_text("not reloaded yet")
        expect(c.locator(".reload-error")).to_have_count(0)
    shot(page, "functions")

    (dev.app / "hello.py").write_text("def handler(event, context)\n    return 1\n")  # a broken save
    error = card.locator(".reload-error")
    expect(error).to_contain_text("Runtime.UserCodeSyntaxError")
    expect(error).to_contain_text("expected ':'")
    expect(error).to_contain_text("hello.py")
    expect(card.locator(".badge", has_text="reload failed")).to_be_visible()
    broken = generation_shown(card)
    assert broken > 1
    expect(card).to_contain_text("No live worker")  # the new code's warm worker could not load it
    # api.py shares the directory, so api reloaded too: its code still loads
    expect(api.locator(".reload-error")).to_have_count(0)
    assert_not_reloaded(page)
    shot(page, "functions-reload-error")

    (dev.app / "hello.py").write_text((Path(__file__).parent.parent / "examples/hello/hello.py").read_text())
    expect(card.locator(".reload-error")).to_have_count(0)
    expect(card.locator(".badge", has_text="reload failed")).to_have_count(0)
    fixed = generation_shown(card)
    assert fixed > broken
    workers = card.locator("table.grid tbody tr")
    expect(workers).to_have_count(1)
    expect(workers.locator("td").nth(2)).to_have_text("idle")
    expect(workers.locator("td").nth(3)).to_have_text(f"g{fixed}")
    assert_not_reloaded(page)
