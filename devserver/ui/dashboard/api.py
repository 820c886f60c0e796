"""The dashboard's routes: the page, its static files, the JSON API and the live feed (SSE).

    mount_dashboard(app, sources)   # sources: a DashboardSources (see sources.py)

The routes live on this module's `router`; what they serve is the app's `Dashboard` (`app.state.dashboard`:
the sources and the feed's settings), handed to them as a dependency. The page is plain HTML/JS/CSS
from `static/`; it loads the feed from `GET /api/invocations`, then follows `GET /api/feed`, a
Server-Sent Events stream. Nothing is kept in the browser: a reload reads everything back from the
store. Functions and the connection are the dev server's own snapshots (devserver/status.py), served
as they are: their docstrings are the API's documentation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from devserver.status import ConnectionStatus, FunctionStatus
from devserver.ui.dashboard.docs import render_docs
from devserver.ui.dashboard.masking import (
    DISPLAY_LIMIT_BYTES,
    dumps,
    for_display,
    is_secret_name,
    secret_keys,
)
from devserver.ui.dashboard.sources import DashboardSources
from devserver.ui.invocations import InvocationRecord

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# Response models (what /docs shows)

FAILED = ("handler_error", "timeout", "crashed", "init_error", "livelambda_error")


class InvocationSummary(BaseModel):
    """One row of the feed: an invocation without its payloads."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="The Lambda request id (a replay gets a fresh one).")
    function: str
    source: str = Field(description="live | replay | local")
    trigger: str = Field(description="The service the event came from, guessed from its shape.")
    started_at: float = Field(description="Epoch seconds.")
    deadline_ms: int = Field(description="The Lambda deadline, epoch milliseconds.")
    timeout_s: float | None = Field(
        None, description="Seconds the handler gets here: live, the function's timeout less the way back."
    )
    timeout_note: str | None = Field(None, description="Why the timeout is what it is, and how to raise it.")
    status: str = Field(
        description="running | ok | handler_error | timeout | crashed | init_error | livelambda_error"
    )
    finished_at: float | None = None
    duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    cold: bool | None = Field(None, description="True when a fresh worker (cold start) ran it.")
    generation: int | None = Field(None, description="The code generation that ran it.")
    worker_id: str | None = None
    sandbox_id: str | None = None
    replay_of: str | None = Field(None, description="For a replay: the id of the invocation replayed.")
    timings: dict[str, float] = Field(
        default_factory=dict,
        description="Milestones in wall-clock ms: sent (stub), received, started, finished, published.",
    )


class InvocationDetail(InvocationSummary):
    """A whole invocation. Payloads over `display_limit` bytes of JSON are cut down (same shape, with
    '…[truncated: …]' markers); download them whole from /event and /response."""

    event: Any = None
    response: Any = None
    logs: str = ""
    stack_trace: list[str] = Field(default_factory=list)
    event_size: int = Field(description="Bytes of the whole event's JSON.")
    response_size: int = Field(description="Bytes of the whole response's JSON.")
    event_truncated: bool = False
    response_truncated: bool = False
    display_limit: int = DISPLAY_LIMIT_BYTES
    secret_keys: list[str] = Field(
        default_factory=list,
        description="Key names, anywhere in the event or response, whose values the page masks.",
    )


class ReplayRequest(BaseModel):
    """Leave `event` out (or send no body) to replay the recorded event; give it to replay an edited
    one. `"event": null` also means the recorded event (`DashboardSources.replay` takes None so)."""

    event: Any = Field(None, description="The event to run instead of the recorded one.")


class Cleared(BaseModel):
    cleared: int = Field(description="How many invocations were forgotten.")


def _field_docs_of(base: type) -> Callable[[dict[str, Any]], None]:
    """A schema hook giving a dataclass's own fields the descriptions `base` documents (pydantic reads
    attribute docstrings from the class itself only)."""
    docs: dict[str, str] = {}

    def extra(schema: dict[str, Any]) -> None:
        if not docs:
            properties = TypeAdapter(base).json_schema()["properties"]
            docs.update(
                {name: prop["description"] for name, prop in properties.items() if "description" in prop}
            )
        for name, prop in schema.get("properties", {}).items():
            if name in docs:
                prop.setdefault("description", docs[name])

    return extra


@dataclass(frozen=True)
class FunctionInfo(FunctionStatus):
    """A function the dev server runs (its status), and which of its variables the page masks."""

    __pydantic_config__ = ConfigDict(
        use_attribute_docstrings=True, json_schema_extra=_field_docs_of(FunctionStatus)
    )

    secret_keys: tuple[str, ...]
    """Names in `environment` whose values look secret: the page masks them."""


# ---------------------------------------------------------------------------------------------------
# Helpers


def _summary(record: InvocationRecord) -> dict[str, Any]:
    return record.summary()


def _detail(record: InvocationRecord) -> dict[str, Any]:
    data = record.summary()  # not record.full(): that deep-copies the payloads
    event, event_size, event_cut = for_display(record.event)
    response, response_size, response_cut = for_display(record.response)
    data.update(
        event=event,
        response=response,
        logs=record.logs,
        stack_trace=list(record.stack_trace),
        event_size=event_size,
        response_size=response_size,
        event_truncated=event_cut,
        response_truncated=response_cut,
        display_limit=DISPLAY_LIMIT_BYTES,
        secret_keys=secret_keys(record.event, record.response),
    )
    return data


def _matches_status(record: InvocationRecord, wanted: set[str]) -> bool:
    if not wanted:
        return True
    if record.status in wanted:
        return True
    return "errors" in wanted and record.status in FAILED


def _search(records: list[InvocationRecord], needle: str, limit: int) -> list[InvocationRecord]:
    found: list[InvocationRecord] = []
    for record in records:
        if _matches_text(record, needle):
            found.append(record)
            if len(found) >= limit:
                break
    return found


def _matches_text(record: InvocationRecord, needle: str) -> bool:
    fields = (record.id, record.function, record.trigger, record.error_type, record.error_message)
    if any(f and needle in f.lower() for f in fields):
        return True
    if needle in record.logs.lower() or any(needle in line.lower() for line in record.stack_trace):
        return True
    return needle in dumps(record.event).lower() or needle in dumps(record.response).lower()


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _host_of(value: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
}


def _static_text(name: str) -> str:
    return resources.files("devserver.ui.dashboard").joinpath("static", name).read_text("utf-8")


_NO_CACHE = {"Cache-Control": "no-cache"}

# ---------------------------------------------------------------------------------------------------
# The dashboard an app serves, and its dependencies


@dataclass
class Dashboard:
    """What the routes serve: the dev server's sources, and the settings of the feed and the guard.

    poll_interval_s  how often the live feed checks `connection()` and `functions()` for changes
    max_stream_s     a feed stream ends after this long and the page reconnects (and resyncs)
    allowed_hosts    Host names the dashboard answers to (None: any; pass the bind address if it is
                     not loopback)
    stop             when set, every open feed stream ends (set it before uvicorn's graceful shutdown
                     waits for connections, or give uvicorn `timeout_graceful_shutdown`)
    """

    sources: DashboardSources
    poll_interval_s: float = 1.0
    max_stream_s: float = 300.0
    allowed_hosts: Sequence[str] | None = _LOOPBACK_HOSTS
    stop: asyncio.Event | None = None

    def functions(self) -> list[FunctionInfo]:
        return [_function_info(f) for f in self.sources.functions()]


def mount_dashboard(app: FastAPI, sources: DashboardSources, **settings: Any) -> Dashboard:
    """Serve the dashboard of `sources` on `app` (`settings`: Dashboard's); the page at /, the API
    under /api."""
    dashboard = Dashboard(sources, **settings)
    app.state.dashboard = dashboard
    app.include_router(router)
    return dashboard


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


Board = Annotated[Dashboard, Depends(_dashboard)]


async def _guard(request: Request, dashboard: Board) -> None:
    """Refuse requests for another Host (DNS rebinding) and changes made from another origin (CSRF):
    the dashboard can re-run handlers with the developer's credentials."""
    host = request.headers.get("host", "")
    allowed = dashboard.allowed_hosts
    if allowed is not None and _host_of(host) not in {h.lower() for h in allowed}:
        raise HTTPException(
            403, f"the livelambda dashboard answers only on {', '.join(sorted(allowed))}, not {host!r}"
        )
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.split("://", 1)[-1].lower() != host.lower():
        raise HTTPException(403, f"cross-origin request from {origin} refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")


def _record(invocation_id: str, dashboard: Board) -> InvocationRecord:
    store = dashboard.sources.store
    record = store.get(invocation_id)
    if record is None:
        raise HTTPException(
            404,
            f"no invocation {invocation_id!r} in memory: it never ran, was cleared, or is older "
            f"than the last {store.keep} the dev server keeps",
        )
    return record


Record = Annotated[InvocationRecord, Depends(_record)]

router = APIRouter(
    dependencies=[Depends(_guard)],
    responses={403: {"description": "Another Host (DNS rebinding) or, for a change, another Origin"}},
)

# ---------------------------------------------------------------------------------------------------
# The page


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(_static_text("index.html"), headers=_NO_CACHE)


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    """The API's documentation, offline (create the app with `docs_url=None, redoc_url=None`)."""
    return HTMLResponse(render_docs(request.app.openapi()), headers=_NO_CACHE)


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    if name not in _STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return Response(_static_text(name), media_type=_STATIC[name], headers=_NO_CACHE)


# ---------------------------------------------------------------------------------------------------
# Invocations


@router.get("/api/invocations", response_model=list[InvocationSummary], tags=["invocations"])
async def list_invocations(
    dashboard: Board,
    function: str | None = Query(None, description="Only this function."),
    status: list[str] = Query(
        [],
        description="Only these outcomes (repeatable): ok, handler_error, timeout, crashed, "
        "init_error, livelambda_error, running, or `errors` for every failure.",
    ),
    outcome: list[str] = Query([], description="Same as `status`."),
    source: str | None = Query(None, description="live | replay | local"),
    q: str | None = Query(
        None, description="Case-insensitive text searched in the event, response, logs, error, id."
    ),
    limit: int = Query(200, ge=1, le=100_000, description="At most this many, newest first."),
) -> list[dict[str, Any]]:
    """Invocation summaries, newest first, filtered."""
    wanted = {s for value in (*status, *outcome) for s in value.split(",") if s}
    needle = (q or "").strip().lower()
    # The store is read on the event loop (where it changes); a text search, which encodes
    # payloads of up to 6 MB, runs in a thread so that the dev server's heartbeats keep going.
    candidates = [
        record
        for record in dashboard.sources.store.newest_first()
        if (not function or record.function == function)
        and (not source or record.source == source)
        and _matches_status(record, wanted)
    ]
    if needle:
        candidates = await run_in_threadpool(_search, candidates, needle, limit)
    return [_summary(record) for record in candidates[:limit]]


@router.delete("/api/invocations", response_model=Cleared, tags=["invocations"])
async def clear_invocations(dashboard: Board) -> dict[str, int]:
    """Forget every invocation (the feed of every open page empties too)."""
    store = dashboard.sources.store
    count = len(store)
    store.clear()
    return {"cleared": count}


@router.get(
    "/api/invocations/{invocation_id}",
    response_model=InvocationDetail,
    tags=["invocations"],
    responses={404: {"description": "Not in memory"}},
)
async def get_invocation(record: Record) -> dict[str, Any]:
    """One invocation whole: event, response, logs, error and stack trace, timings."""
    return await run_in_threadpool(_detail, record)


@router.get(
    "/api/invocations/{invocation_id}/event",
    tags=["invocations"],
    responses={
        200: {"content": {"application/json": {}}, "description": "The whole event"},
        404: {"description": "Not in memory"},
    },
)
async def download_event(record: Record) -> Response:
    """The whole event as a JSON file (attachment), never cut down nor masked."""
    return await _download(record, "event")


@router.get(
    "/api/invocations/{invocation_id}/response",
    tags=["invocations"],
    responses={
        200: {"content": {"application/json": {}}, "description": "The whole response"},
        404: {"description": "Not in memory"},
    },
)
async def download_response(record: Record) -> Response:
    """The whole response as a JSON file (attachment), never cut down nor masked."""
    return await _download(record, "response")


async def _download(record: InvocationRecord, part: str) -> Response:
    value = record.event if part == "event" else record.response
    return Response(
        await run_in_threadpool(lambda: dumps(value, indent=2).encode()),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{record.id}-{part}.json"'},
    )


@router.post(
    "/api/invocations/{invocation_id}/replay",
    response_model=InvocationDetail,
    tags=["invocations"],
    responses={
        400: {"description": "The body is not JSON"},
        404: {"description": "Not in memory"},
        502: {"description": "The replay failed"},
    },
)
async def replay(dashboard: Board, record: Record, body: ReplayRequest | None = Body(None)) -> dict[str, Any]:
    """Run an invocation again on this machine, with its own event or with `event` from the body.
    Answers when the replay has finished, with the new invocation (source "replay")."""
    event = body.event if body is not None and "event" in body.model_fields_set else None
    try:
        replayed = await dashboard.sources.replay(record.id, event)
    except HTTPException:
        raise
    except Exception as exc:
        message = f"replay of {record.id} failed: {type(exc).__name__}: {exc}"
        raise HTTPException(502, message) from exc
    return await run_in_threadpool(_detail, replayed)


# ---------------------------------------------------------------------------------------------------
# Functions and connection


@router.get("/api/functions", response_model=list[FunctionInfo], tags=["dev server"])
async def functions(dashboard: Board) -> list[FunctionInfo]:
    """The functions being run, their workers, code generation and last reload."""
    return dashboard.functions()


@router.get("/api/connection", response_model=ConnectionStatus, tags=["dev server"])
async def connection(dashboard: Board) -> ConnectionStatus:
    """The AppSync Events connection: state, reconnects, backoff, keep-alives, rejections."""
    return dashboard.sources.connection()


def _function_info(status: FunctionStatus) -> FunctionInfo:
    return FunctionInfo(
        **vars(status), secret_keys=tuple(sorted(k for k in status.environment if is_secret_name(k)))
    )


# ---------------------------------------------------------------------------------------------------
# The live feed

_FUNCTIONS_JSON = TypeAdapter(list[FunctionInfo])
_CONNECTION_JSON = TypeAdapter(ConnectionStatus)


@router.get(
    "/api/feed",
    tags=["live feed"],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: `hello` {keep, server_time}; `invocation` (an "
            "invocation summary, each time one starts or changes); `cleared`; `connection` (as "
            "GET /api/connection, when it changes); `functions` (as GET /api/functions, when they "
            "change); `bye` before the stream ends (the browser reconnects by itself).",
        }
    },
)
async def feed(dashboard: Board) -> StreamingResponse:
    """The live feed, as Server-Sent Events (EventSource in a browser)."""
    return StreamingResponse(
        _feed_stream(dashboard),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _snapshots(dashboard: Dashboard) -> dict[str, Callable[[], str]]:
    """The JSON text of connection() and functions(), as the API serves them, by feed event name."""
    return {
        "connection": lambda: _CONNECTION_JSON.dump_json(dashboard.sources.connection()).decode(),
        "functions": lambda: _FUNCTIONS_JSON.dump_json(dashboard.functions()).decode(),
    }


def _snapshot(name: str, read: Callable[[], str]) -> str | None:
    """A snapshot's JSON text, None (and logged) if the source failed."""
    try:
        return read()
    except Exception:
        logger.exception("dashboard: reading %s() for the live feed failed", name)
        return None


def _records_sse(batch: list[InvocationRecord | None]) -> str:
    """A batch of store changes as SSE text: one event per record (its latest state), in order."""
    out: list[str] = []
    pending: dict[str, InvocationRecord] = {}
    for record in batch:
        if record is None:
            pending.clear()
            out.clear()
            out.append(_sse("cleared", {}))
        else:  # keeps the place of its first change: new records arrive oldest first
            pending[record.id] = record
    out.extend(_sse("invocation", _summary(r)) for r in pending.values())
    return "".join(out)


async def _feed_stream(dashboard: Dashboard) -> AsyncIterator[str]:
    store = dashboard.sources.store
    stop = dashboard.stop
    snapshots = _snapshots(dashboard)
    queue = store.listen()
    try:
        loop = asyncio.get_running_loop()
        last = {name: _snapshot(name, read) for name, read in snapshots.items()}
        head = "retry: 1000\n\n" + _sse("hello", {"keep": store.keep, "server_time": time.time()})
        for name, text in last.items():
            if text is not None:
                head += f"event: {name}\ndata: {text}\n\n"
        yield head
        end = loop.time() + dashboard.max_stream_s
        next_poll = loop.time() + dashboard.poll_interval_s
        last_sent = loop.time()
        while True:
            now = loop.time()
            stopping = stop is not None and stop.is_set()
            if now >= end or stopping:
                yield _sse("bye", {"reason": "stopping" if stopping else "renew"})
                return
            try:
                first = await asyncio.wait_for(queue.get(), max(0.0, min(next_poll, end) - now))
            except TimeoutError:
                pass
            else:
                batch = [first]
                while not queue.empty() and len(batch) < 1000:
                    batch.append(queue.get_nowait())
                last_sent = loop.time()
                yield _records_sse(batch)
                if loop.time() < next_poll:
                    continue
            next_poll = loop.time() + dashboard.poll_interval_s
            for name, read in snapshots.items():
                text = _snapshot(name, read)
                if text is not None and text != last[name]:
                    last[name] = text
                    last_sent = loop.time()
                    yield f"event: {name}\ndata: {text}\n\n"
            if loop.time() - last_sent > 15:
                last_sent = loop.time()
                yield ": keep-alive\n\n"
    finally:
        store.unlisten(queue)
