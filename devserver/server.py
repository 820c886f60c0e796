"""`livelambda dev`: the dev server. One asyncio process: the bridge (AppSync), the runner (workers),
the watcher (hot reload), the dashboard (FastAPI), and the terminal lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from rich.markup import escape

from devserver.config import AppConfig, FunctionConfig
from devserver.live.bridge import Bridge, Endpoint, LiveInvocation, livelambda_error, result_body
from devserver.live.budget import LiveBudget, live_budget, raise_timeout_hint
from devserver.live.executed import ExecutedLog
from devserver.live.session import LiveSession, aws_file, cloud_file, state_dir
from devserver.reload.generations import Runner, UnknownFunction
from devserver.reload.save_report import SaveReporter
from devserver.reload.watcher import Watcher
from devserver.runtime import app_env
from devserver.runtime.invocation import InvocationOutcome, InvocationRequest
from devserver.status import ConnectionStatus, FunctionStatus
from devserver.ui.dashboard import mount_dashboard
from devserver.ui.invocations import InvocationRecord, InvocationStore
from devserver.ui.terminal import Terminal
from devserver.ui.triggers import guess_trigger

log = logging.getLogger("livelambda.dev")


@dataclass(frozen=True)
class DevSettings:
    app: AppConfig
    session: LiveSession
    endpoint: Endpoint
    host: str = "127.0.0.1"
    port: int = 8791


class DevServer:
    """Everything `livelambda dev` runs; also what the dashboard reads (DashboardSources)."""

    def __init__(self, settings: DevSettings, terminal: Terminal | None = None) -> None:
        self.settings = settings
        self.app_config = settings.app
        self.terminal = terminal or Terminal()
        self.store = InvocationStore(settings.app.dashboard.keep)
        self.region = settings.app.region or settings.endpoint.region
        self.runner = Runner(settings.app, region=self.region, on_reload=self._on_reload)
        self.bridge = Bridge(
            settings.endpoint,
            settings.session.id,
            settings.session.secret,
            self.execute,
            on_state=self.terminal.connection,
            on_published=self._published,
            executed=ExecutedLog(state_dir(settings.app.root) / "executed.log", int(time.time() * 1000)),
        )
        self.watcher = Watcher(settings.app, on_change=self._on_change)
        self.saves = SaveReporter(self.runner, self.terminal, settings.app.root, settings.app.path.name)
        self._tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.runner.start()
        self._tasks.append(asyncio.ensure_future(self.bridge.run()))
        self._tasks.append(asyncio.ensure_future(self.watcher.run()))
        await self.watcher.wait_watching()  # serve only once a save is seen, even one made right away

    async def stop(self) -> None:
        await self.watcher.close()
        await self.saves.close()
        await self.bridge.close()
        if self.bridge.executed is not None:
            self.bridge.executed.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.close()

    # ------------------------------------------------------------------ running invocations
    def resolve(self, function_name: str, local: str | None = None) -> FunctionConfig:
        """The local function that runs the deployed `function_name`: the one `aws up` named (`local`),
        else one whose `deployed` name it is, or which it is named after."""
        functions = self.app_config.functions
        if local is not None and local in functions:
            return functions[local]
        found = self.app_config.function_for(function_name)
        if found is not None:
            return found
        known = ", ".join(sorted(functions)) or "none"
        raise UnknownFunction(
            f"function {function_name!r} is not in {self.app_config.path.name} (functions there: {known}); "
            "add it under [functions] (or set `deployed` on the function that runs it), or put it back "
            f"with `livelambda aws down --function {function_name}`"
        )

    async def execute(self, inv: LiveInvocation) -> dict[str, Any]:
        """Run one live invocation (called by the bridge); returns the result body for the stub."""
        ctx = inv.context
        record = InvocationRecord(
            id=inv.request_id,
            function=str(ctx.get("function_name", "?")),
            source="live",
            event=inv.event,
            trigger=guess_trigger(inv.event),
            started_at=time.time(),
            deadline_ms=int(ctx.get("deadline_ms") or 0),
            sandbox_id=inv.sandbox_id,
            timings={"sent": float(inv.sent_ms), "received": inv.received_ms},
        )
        try:
            function = self.resolve(record.function, inv.function)
        except UnknownFunction as exc:
            self.store.add(record)
            self._finish_error(record, exc.error_type, str(exc))
            return livelambda_error(exc.error_type, str(exc))
        record.function = function.name
        if inv.hello:
            self._apply_hello(function.name, inv.hello)
        budget = self._budget(function, record.deadline_ms, ctx.get("timeout_ms"), inv.sent_ms)
        if budget is not None:
            record.timeout_s, record.timeout_note = budget.seconds, budget.note
        request = InvocationRequest(
            payload=json.dumps(inv.event).encode(),
            request_id=inv.request_id,
            deadline_ms=budget.deadline_ms if budget else None,
            timeout_s=budget.seconds if budget else None,
            timeout_note=budget.note if budget else None,
            invoked_function_arn=ctx.get("invoked_function_arn") or None,
            client_context=json.dumps(ctx["client_context"]) if ctx.get("client_context") else None,
            cognito_identity=json.dumps(ctx["identity"]) if ctx.get("identity") else None,
            on_result=self._publish_early,
        )
        return await self._run(function, record, request)

    def _budget(
        self, function: FunctionConfig, deadline_ms: int, timeout_ms: Any, sent_ms: int
    ) -> LiveBudget | None:
        """The deployed function's timeout less the way back (None without a deadline). A stub that
        does not say its timeout (an older layer) published when it got the invocation."""
        if not deadline_ms:
            return None
        if not isinstance(timeout_ms, int) or timeout_ms <= 0:
            timeout_ms = max(0, deadline_ms - sent_ms)
        endpoint, config_file = self.settings.endpoint.realtime_url, self.app_config.path.name
        hint = raise_timeout_hint(endpoint, function.name, config_file)
        return live_budget(deadline_ms=deadline_ms, timeout_ms=timeout_ms, hint=hint)

    async def replay(self, invocation_id: str, event: Any | None) -> InvocationRecord:
        """Run a recorded invocation again, locally (same event, or the edited one)."""
        original = self.store.get(invocation_id)
        if original is None:
            raise KeyError(f"no invocation {invocation_id!r} in memory")
        function = self.resolve(original.function)
        event = original.event if event is None else event
        request_id = str(uuid.uuid4())
        record = InvocationRecord(
            id=request_id,
            function=function.name,
            source="replay",
            event=event,
            trigger=guess_trigger(event),
            started_at=time.time(),
            deadline_ms=int((time.time() + function.timeout) * 1000),
            timeout_s=function.timeout,  # not live: the function's whole timeout
            replay_of=invocation_id,
        )
        request = InvocationRequest(payload=json.dumps(event).encode(), request_id=request_id)
        await self._run(function, record, request)
        return record

    async def _run(
        self, function: FunctionConfig, record: InvocationRecord, request: InvocationRequest
    ) -> dict[str, Any]:
        self.store.add(record)
        record.timings["started"] = time.time() * 1000
        outcome = await self.runner.invoke(function.name, request)
        record.timings.setdefault("finished", time.time() * 1000)  # (unless _publish_early stamped it)
        body = result_body(outcome.status, outcome.value, outcome.logs)  # (parsed once, on the outcome)
        error = body.get("error") or {}
        self.store.finish(
            record,
            status=outcome.status,
            duration_ms=outcome.duration_ms,
            response=body.get("response"),
            error_type=error.get("errorType"),
            error_message=error.get("errorMessage"),
            stack_trace=list(error.get("stackTrace") or []),
            logs=outcome.logs,
            cold=outcome.cold,
            generation=outcome.generation,
            worker_id=outcome.worker_id,
        )
        # Printed once the result is on its way: a rich line costs ~0.2-0.5 ms of the round trip.
        asyncio.get_running_loop().call_soon(self.terminal.invocation, record)
        return body

    def _finish_error(self, record: InvocationRecord, error_type: str, message: str) -> None:
        self.store.finish(
            record, status="livelambda_error", error_type=error_type, error_message=message, duration_ms=0.0
        )
        self.terminal.invocation(record)

    def _publish_early(self, outcome: InvocationOutcome) -> None:
        """A live request's on_result hook: the runtime just answered (the outcome's bookkeeping comes
        a loop step later), so its result goes out now."""
        record = self.store.get(outcome.request_id)
        if record is not None:
            record.timings["finished"] = time.time() * 1000
        self.bridge.answer(outcome.request_id, result_body(outcome.status, outcome.value, outcome.logs))

    def _published(self, request_id: str, at_ms: float) -> None:
        record = self.store.get(request_id)
        if record is not None:
            record.timings["published"] = at_ms
            self.store.update(record)

    def _apply_hello(self, name: str, hello: dict[str, Any]) -> None:
        env = hello.get("environment")
        if isinstance(env, dict):  # the runner starts a new generation only if it changes anything
            self.runner.set_function_env(name, env)

    # ------------------------------------------------------------------ reloads
    async def _on_change(self, functions: set[str], config_changed: bool) -> None:
        if config_changed:
            from devserver.config import ConfigError, load_config

            try:
                new = load_config(self.app_config.root)
            except ConfigError as exc:
                self.terminal.info(f"[red]✗ {exc}[/red]  (keeping the last good configuration)")
                return
            self.app_config = new
            await self._refresh_env(new)  # a function that lost its `python` key needs the app's venv
            await self.runner.reload_config(new)
            self.watcher.update(new)
            self.terminal.info(f"↻ {new.path.name} reloaded")
            return
        restarted = await self._refresh_env(self.app_config)  # requirements.txt saved: a new venv
        generations = {
            name: await self.runner.reload_function(name) for name in sorted(functions - set(restarted))
        }
        generations.update({n: g for n, g in restarted.items() if n in functions})
        self.saves.report(self.watcher.last_files, generations)  # one line, once the code has loaded

    async def _refresh_env(self, app: AppConfig) -> dict[str, int]:
        """When the app's declaration changed, make its venv again in a thread (the loop keeps
        serving) and restart the functions that run in it; their new generations."""
        if not app_env.uses_app_env(app) or await asyncio.to_thread(app_env.is_current, app.root):
            return {}
        try:
            await asyncio.to_thread(app_env.ensure_app_env, app.root, self._progress)
        except app_env.AppEnvError as exc:
            self.terminal.info(f"[red]✗ {escape(str(exc))}[/red]")
            return {}
        restarted = {}
        for name, runner in self.runner.functions.items():
            if runner.function.app_env is not None:
                generation = runner.environment_changed()
                if generation is not None:
                    restarted[name] = generation
        return restarted

    def _progress(self, line: str) -> None:
        self.terminal.info(escape(line))

    def _on_reload(self, function: str, generation: int, error: str | None) -> None:
        if not self.saves.covers(function, generation):  # a save's own line says it
            self.terminal.reload(function, generation, error)

    # ------------------------------------------------------------------ dashboard sources
    def functions(self) -> list[FunctionStatus]:
        return self.runner.status()

    def connection(self) -> ConnectionStatus:
        return self.bridge.status()


def create_app(dev: DevServer) -> FastAPI:
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await dev.start()
        try:
            yield
        finally:
            stop.set()
            await dev.stop()

    app = FastAPI(
        title="livelambda dev",
        description="The dev server's dashboard and its JSON API.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN: the dashboard serves /docs
        redoc_url=None,
    )
    app.state.dev = dev
    mount_dashboard(app, dev, stop=stop)
    return app


def endpoint_for(app: AppConfig, cloud_info: dict[str, Any] | None) -> Endpoint:
    """Where the AppSync Events API is: the local cloud's (from its ready file), the one `aws up` set up
    (.livelambda/aws.json), or the configured one."""
    ep = app.endpoint
    region = app.region or "us-east-1"
    if cloud_info is not None:
        info = cloud_info
        return Endpoint(info["http_url"], info["realtime_url"], "api_key", info["api_key"], region)
    attached = read_aws_info(app.root)
    if attached is not None:
        return Endpoint(
            attached["http_url"], attached["realtime_url"], attached["auth"], attached.get("api_key"),
            attached["region"], attached["namespace"],
        )  # fmt: skip
    if ep.mode == "local":
        raise FileNotFoundError("livelambda cloud is not running for this app")
    return Endpoint(ep.http_url, ep.realtime_url, ep.auth, ep.api_key, region)


def read_aws_info(app_root: Path) -> dict[str, Any] | None:
    """What the last `livelambda aws up` for this app wrote (None when nothing is live)."""
    return _read_json(aws_file(app_root))


def read_cloud_info(app_root: Path) -> dict[str, Any] | None:
    return _read_json(cloud_file(app_root))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
