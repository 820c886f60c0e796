"""The API's documentation page (`/docs`) works offline: written from /openapi.json by the dev server,
with no asset from a CDN; in a real Chromium, every request it makes stays on the dashboard's host.
And the detail of a live invocation says what timeout its handler had here, and why."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devserver.config import load_config
from devserver.live.bridge import Endpoint
from devserver.live.session import LiveSession
from devserver.server import DevServer, DevSettings, create_app
from devserver.ui.terminal import Terminal
from tests.browser_fixtures import checked_page, chromium_context, needs_chromium
from tests.dashboard_app import DashboardServer, make_record

_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


async def test_the_dev_servers_docs_page_needs_nothing_from_outside(tmp_path: Path) -> None:
    (tmp_path / "livelambda.toml").write_text('[functions.orders]\nhandler = "orders.handler"\n')
    endpoint = Endpoint(
        "http://127.0.0.1:9/event", "ws://127.0.0.1:9/event/realtime", "api_key", "k", "us-east-1"
    )
    settings = DevSettings(load_config(tmp_path), LiveSession("s-1", b"k" * 32), endpoint)
    app = create_app(DevServer(settings, Terminal(file=io.StringIO(), color=False)))
    transport = httpx.ASGITransport(app=app)  # no lifespan: nothing starts, the routes answer
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not _EXTERNAL.search(page.text), _EXTERNAL.search(page.text)
        for path in ("/api/invocations", "/api/invocations/{invocation_id}/replay", "/api/connection"):
            assert path in page.text, path
        assert "InvocationDetail" in page.text and "/openapi.json" in page.text
        assert (await client.get("/redoc")).status_code == 404  # FastAPI's other CDN page is off too


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    with DashboardServer() as srv:
        yield srv


@needs_chromium
def test_the_docs_page_in_a_browser_loads_only_from_the_dashboard(
    server: DashboardServer, tmp_path: Path
) -> None:
    pytest.importorskip("playwright.sync_api")
    with chromium_context(tmp_path / "profile", 20_000) as context, checked_page(context) as page:
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{server.url}/docs")
        page.get_by_text("/api/invocations/{invocation_id}/replay").first.wait_for()
        page.locator("#model-InvocationDetail").wait_for()
        assert requested and all(url.startswith(server.url) for url in requested), requested


@needs_chromium
def test_the_detail_says_the_live_timeout_and_why(server: DashboardServer, tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api")
    note = "the function's 3 s less 0.4 s for the answer's way back; raise it with `livelambda aws up`"
    record = server.add(make_record(status="timeout", timeout_s=2.6, timeout_note=note))
    with chromium_context(tmp_path / "profile", 20_000) as context, checked_page(context) as page:
        page.goto(f"{server.url}/#/invocations/{record.id}")
        timeout = page.locator("#detail-timeout")
        timeout.wait_for()
        assert timeout.inner_text() == f"timeout 2.60 s ({note})"
