"""`livelambda aws up`: switch deployed functions to live mode.

Shared steps first (the account's Event API, the session's namespace and key, the connection alarm,
the stub layer), then each function in a bounded pool of threads, each in this order: read its
configuration; decide (runtime, local code, session, VPC, environment size); record the original in
SSM; in IAM mode put the session's inline policy on its role; switch it (one
`update_function_configuration`, refused by Lambda if the function changed since it was read). A crash
at any point leaves nothing `aws down` cannot put back: the record exists before any change."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from devserver.aws import alarm, event_api, role_policy, stub_layer, targets
from devserver.aws.context import AwsContext
from devserver.aws.live_config import (
    STUB_HANDLER,
    EnvironmentTooLarge,
    FunctionState,
    LiveChange,
    apply_state,
    eligibility,
    fit_settings,
    live_session,
)
from devserver.aws.progress import FunctionResult, Progress
from devserver.aws.records import LiveRecord, RecordStore
from devserver.aws.vpc import VpcCheckDenied, check_function_vpc
from devserver.config import DEFAULT_PRODUCTION_STAGES, AppConfig
from devserver.live.session import LiveSession, aws_file, state_dir
from devserver.servers.bounded import write_json_atomically
from stub_runtime.errors import CallerFault, LivelambdaError

WORKERS = 16  # functions switched at once: AWS calls are I/O, and Lambda's control plane takes it


class UpRefused(CallerFault):
    error_type = "Livelambda.UpRefused"


@dataclass(frozen=True)
class UpOptions:
    auth: str = "iam"  # "iam" | "api_key"
    vpc: str = "refuse"  # "refuse" | "detach" | "keep"
    timeout: int | None = None
    take_over: bool = False
    force: bool = False  # production-looking names
    stack: str | None = None
    tag: str | None = None
    functions: Sequence[str] = ()
    production_stages: Sequence[str] = DEFAULT_PRODUCTION_STAGES
    workers: int = WORKERS


@dataclass(frozen=True)
class Endpoint:
    """What `livelambda dev` connects with (written to .livelambda/aws.json)."""

    region: str
    api_id: str
    http_url: str
    realtime_url: str
    auth: str
    api_key: str | None
    namespace: str
    session: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class UpResult:
    endpoint: Endpoint
    results: list[FunctionResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


class Attach:
    def __init__(
        self, ctx: AwsContext, app: AppConfig, session: LiveSession, options: UpOptions, progress: Progress
    ) -> None:
        self.ctx = ctx
        self.app = app
        self.session = session
        self.options = options
        self.progress = progress
        self.store = RecordStore(ctx.client("ssm"))
        self.namespace = event_api.namespace_for(session.id)
        self._roles_done: set[str] = set()
        self._roles_lock = threading.Lock()

    # ------------------------------------------------------------------ the whole command
    def run(self) -> UpResult:
        o = self.options
        found = self._targets()
        self.owner = self.ctx.identity().arn
        # The layer (a build, then a lookup or an upload) and the records go on beside the API's steps.
        with ThreadPoolExecutor(max_workers=2) as side:
            layer = side.submit(self._layer)
            records = side.submit(lambda: {r.function: r for r in self.store.all()})
            self.endpoint = self._api()
            self.layer_arn = layer.result()
            self.records = records.result()
        # dev needs the endpoint even if a switch fails (to answer the ones that worked)
        write_json_atomically(aws_file(self.app.root), self.endpoint.to_json())
        result = UpResult(self.endpoint)
        with ThreadPoolExecutor(max_workers=max(1, min(o.workers, len(found)))) as pool:
            for one in pool.map(self._one, found):
                self.progress.finished(one)
                result.results.append(one)
        return result

    def _api(self) -> Endpoint:
        """The shared API (and its alarm), the session's namespace, and its key in api-key mode."""
        o, appsync = self.options, self.ctx.client("appsync")
        self.progress.note("finding the account's AppSync Events API")
        api, made = event_api.find_or_create_api(appsync)
        self.api = api
        self.progress.note(f"{'created' if made else 'using'} AppSync Events API {api.api_id}")
        cloudwatch = self.ctx.client("cloudwatch")
        _, changed = alarm.ensure_connection_alarm(cloudwatch, api.api_id, event_api.API_NAME)
        if changed:
            self.progress.note(f"connection alarm {alarm.alarm_name(api.api_id)} set")
        event_api.ensure_namespace(appsync, api.api_id, self.namespace, o.auth)
        session = self.session.id
        key = event_api.ensure_session_key(appsync, api.api_id, session) if o.auth == "api_key" else None
        http, realtime = api.urls(self.ctx.endpoint_url("appsync"))
        return Endpoint(self.ctx.region, api.api_id, http, realtime, o.auth, key, self.namespace, session)

    def _layer(self) -> str:
        build = stub_layer.build(state_dir(self.app.root))
        arn, published = stub_layer.ensure_stub_layer(self.ctx.client("lambda"), build)
        version = ":".join(arn.rsplit(":", 2)[-2:])
        self.progress.note(f"{'published' if published else 'using'} stub layer {version}")
        return arn

    def _targets(self) -> list[targets.Target]:
        o = self.options
        if o.stack:
            return targets.from_stack(self.ctx.client("cloudformation"), o.stack)
        if o.tag:
            key, value = targets.parse_tag(o.tag)
            return targets.from_tag(self.ctx.client("resourcegroupstaggingapi"), key, value)
        return targets.from_config(self.app, o.functions)

    # ------------------------------------------------------------------ one function
    def _one(self, target: targets.Target) -> FunctionResult:
        try:
            return self._switch(target)
        except LivelambdaError as exc:
            return FunctionResult(target.deployed, "refused", str(exc))
        except Exception as exc:  # an AWS call failed: this function only; the others go on
            return FunctionResult(target.deployed, "failed", f"{type(exc).__name__}: {exc}")

    def _switch(self, target: targets.Target) -> FunctionResult:
        name, o, lam = target.deployed, self.options, self.ctx.client("lambda")
        self.progress.step(name, "reading its configuration")
        try:
            cfg = lam.get_function_configuration(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            return FunctionResult(name, "skipped", f"no such function in {self.ctx.region}")
        why_not = eligibility(cfg)
        if why_not:
            return FunctionResult(name, "skipped", why_not)
        local, how = targets.match_local(self.app, target, str(cfg.get("Handler", "")))
        if local is None:
            return FunctionResult(name, "skipped", how)
        prod = targets.looks_like_production(
            [name, self.app.stage, *([o.stack] if o.stack else [])], o.production_stages
        )
        if prod and not o.force:
            return FunctionResult(
                name,
                "refused",
                f"looks like production ({prod!r}); `livelambda aws up --force` if you mean it",
                local.name,
            )
        record = self.records.get(name)
        current = FunctionState.from_configuration(cfg)
        session = live_session(cfg)
        since = time.time()
        if session is not None and session != self.session.id:
            if record is None or record.session != session:
                return FunctionResult(
                    name, "refused",
                    f"it is live for session {session}, but no record of its original configuration "
                    f"exists; restore it by hand or run `livelambda aws down --session {session}`",
                    local.name,
                )  # fmt: skip
            if not o.take_over:
                return FunctionResult(name, "refused", _taken(record), local.name)
            original = record.original
        elif session == self.session.id:
            if record is None or record.session != session:
                return FunctionResult(
                    name, "refused",
                    "it is live for this session but its record is gone (deleted by hand?); put its "
                    "configuration back by hand, then run `livelambda aws up` again",
                    local.name,
                )  # fmt: skip
            original, since = record.original, record.since
        else:
            original = current
        detach, vpc_detail = self._vpc(name, cfg, original)
        settings = fit_settings(original.environment, self._settings(local.name, original, vpc_detail))
        change = LiveChange(self.layer_arn, settings, o.timeout, detach)
        live = change.apply(original)
        new_record = LiveRecord(
            function=name,
            function_arn=str(cfg["FunctionArn"]),
            role_arn=str(cfg.get("Role", "")),
            session=self.session.id,
            namespace=self.namespace,
            app=self.app.app,
            stage=self.app.stage,
            owner=self.owner,
            host=socket.gethostname(),
            since=since,
            original=original,
            change=change,
        )
        if live == current and record == new_record:
            return FunctionResult(name, "already live", f"matched {how}", local.name)
        self.progress.step(name, "recording its original configuration")
        self.store.put(new_record)  # before any change: `down` can always put it back
        if o.auth == "iam":
            self._role_policy(new_record.role_arn)
        if record is not None and record.session != self.session.id:
            self._drop_policy_of(record)
        self.progress.step(name, "switching it to the stub")
        differs = live.differences(apply_state(lam, cfg, live))
        if differs:
            return FunctionResult(
                name, "failed", "Lambda did not apply all of it: " + "; ".join(differs), local.name
            )
        taken = f", taken over from {record.session}" if record and record.session != self.session.id else ""
        return FunctionResult(name, "live", f"runs {local.name} here (matched {how}){taken}", local.name)

    def _settings(self, local: str, original: FunctionState, vpc_detail: str) -> dict[str, str]:
        e = self.endpoint
        settings = {
            **self.session.stub_env(),
            "LIVELAMBDA_HTTP_URL": e.http_url,
            "LIVELAMBDA_REALTIME_URL": e.realtime_url,
            "LIVELAMBDA_AUTH": e.auth,
            "LIVELAMBDA_NAMESPACE": e.namespace,
            "LIVELAMBDA_FUNCTION": local,
            "LIVELAMBDA_ORIGINAL_HANDLER": original.handler,
        }
        if e.api_key:
            settings["LIVELAMBDA_API_KEY"] = e.api_key
        if vpc_detail:
            settings["LIVELAMBDA_VPC"] = vpc_detail
        return settings

    def _vpc(self, name: str, cfg: dict[str, Any], original: FunctionState) -> tuple[bool, str]:
        """(detach the VPC while live?, the VPC facts for the stub's messages). Raises UpRefused."""
        if not original.in_vpc:
            return False, ""
        mode = self.options.vpc
        if mode == "detach":
            return True, ""
        vpc_config = {**(cfg.get("VpcConfig") or {}), "SubnetIds": list(original.subnet_ids)}
        if mode == "keep":
            return False, f"{vpc_config.get('VpcId', 'a VPC')} (kept with --vpc keep)"
        self.progress.step(name, "checking its VPC's routes")
        try:
            verdict = check_function_vpc(self.ctx.client("ec2"), vpc_config, self.ctx.region)
        except VpcCheckDenied as exc:
            raise UpRefused(str(exc)) from None
        for warning in verdict.warnings:
            self.progress.note(f"{name}: {warning}")
        refusal = verdict.refusal_message(name)
        if refusal:
            raise UpRefused(refusal)
        return False, verdict.env_detail

    def _role_policy(self, role_arn: str) -> None:
        with self._roles_lock:  # one put per role per run, though many functions share a role
            if role_arn in self._roles_done:
                return
            self._roles_done.add(role_arn)
        role_policy.put_policy(
            self.ctx.client("iam"), role_arn, self.session.id, self.api.arn, self.namespace
        )

    def _drop_policy_of(self, taken: LiveRecord) -> None:
        """Taking over: the old session's policy leaves the role unless it still has functions there."""
        still = [
            r for r in self.records.values()
            if r.session == taken.session and r.role_arn == taken.role_arn and r.function != taken.function
        ]  # fmt: skip
        if not still:
            role_policy.delete_policy(self.ctx.client("iam"), taken.role_arn, taken.session)


def _taken(record: LiveRecord) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.since))
    return (
        f"it is live for session {record.session} (app {record.app}, stage {record.stage}) of "
        f"{record.owner or 'someone'} on {record.host or 'another machine'} since {when}; "
        "`livelambda aws up --take-over` takes it over"
    )


__all__ = ["STUB_HANDLER", "Attach", "Endpoint", "EnvironmentTooLarge", "UpOptions", "UpRefused", "UpResult"]
