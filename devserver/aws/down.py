"""`livelambda aws down`: put every function of a live session back exactly as its record says, from
any machine. A function changed behind livelambda's back while live is left alone unless `--force`;
an original layer version deleted since is named, and skipped only with `--skip-missing-layers`.

Then what the session added goes: the role policies, its namespace and key; the shared API, alarm and
stub layer too with `--purge`, once no session uses them."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devserver.aws import alarm, event_api, role_policy, stub_layer
from devserver.aws.context import AwsContext
from devserver.aws.live_config import FunctionState, apply_state, live_session
from devserver.aws.progress import FunctionResult, Progress
from devserver.aws.records import LiveRecord, RecordStore
from devserver.aws.up import WORKERS
from devserver.live.session import aws_file
from stub_runtime.errors import CallerFault, LivelambdaError


class DownRefused(CallerFault):
    error_type = "Livelambda.DownRefused"


@dataclass(frozen=True)
class DownOptions:
    functions: Sequence[str] = ()  # only these (deployed names); default: the whole session
    force: bool = False  # restore even a function changed while live
    skip_missing_layers: bool = False
    purge: bool = False
    workers: int = WORKERS


@dataclass
class DownResult:
    session: str
    results: list[FunctionResult] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)  # what else was removed, in words

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


class Detach:
    def __init__(
        self,
        ctx: AwsContext,
        session: str,
        options: DownOptions,
        progress: Progress,
        app_root: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.options = options
        self.progress = progress
        self.app_root = app_root
        self.store = RecordStore(ctx.client("ssm"))

    def run(self) -> DownResult:
        o = self.options
        records = list(self.store.all())
        mine = [r for r in records if r.session == self.session]
        if o.functions:
            unknown = set(o.functions) - {r.function for r in mine}
            if unknown:
                raise DownRefused(
                    f"{', '.join(sorted(unknown))}: not live for session {self.session} "
                    "(`livelambda aws status` lists what is live)"
                )
            mine = [r for r in mine if r.function in o.functions]
        result = DownResult(self.session)
        if mine:
            with ThreadPoolExecutor(max_workers=max(1, min(o.workers, len(mine)))) as pool:
                for one in pool.map(self._one, mine):
                    self.progress.finished(one)
                    result.results.append(one)
        restored = {r.function for r, res in zip(mine, result.results, strict=True) if _record_gone(res)}
        remaining = [r for r in records if r.function not in restored]
        self._clean_up(mine, restored, remaining, result)
        return result

    # ------------------------------------------------------------------ one function
    def _one(self, record: LiveRecord) -> FunctionResult:
        try:
            return self._restore(record)
        except LivelambdaError as exc:
            return FunctionResult(record.function, "refused", str(exc))
        except Exception as exc:  # an AWS call failed: its record stays, `down` can be run again
            return FunctionResult(record.function, "failed", f"{type(exc).__name__}: {exc}")

    def _restore(self, record: LiveRecord) -> FunctionResult:
        name, lam = record.function, self.ctx.client("lambda")
        self.progress.step(name, "reading its configuration")
        try:
            cfg = lam.get_function_configuration(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            self.store.delete(name)
            return FunctionResult(name, "gone", "the function no longer exists; its record was removed")
        current = FunctionState.from_configuration(cfg)
        session = live_session(cfg)
        if session is None:
            # Put back already (a `down` stopped before removing the record), or never switched (an
            # `up` stopped between recording and switching).
            self.store.delete(name)
            differs = record.original.differences(current)
            detail = "was not live; " + (
                "it matches its recorded original" if not differs else "since recorded: " + "; ".join(differs)
            )
            return FunctionResult(name, "not live", detail)
        if session != record.session:
            return FunctionResult(
                name,
                "refused",
                f"it was taken over by session {session}; that session's `aws down` restores it",
            )
        changed = record.live.differences(current)
        if changed and not self.options.force:
            return FunctionResult(
                name,
                "refused",
                "it was changed while live (" + "; ".join(changed) + "); restoring would undo that. "
                "`livelambda aws down --force` puts the recorded original back anyway",
            )
        target = self._without_missing_layers(record.original)
        self.progress.step(name, "putting its own configuration back")
        after = apply_state(lam, cfg, target)
        differs = record.original.differences(after)
        self.store.delete(name)
        if differs:
            return FunctionResult(name, "restored", "restored, except: " + "; ".join(differs))
        return FunctionResult(
            name, "restored", "restored exactly (handler, layers, environment, timeout, VPC)"
        )

    def _without_missing_layers(self, original: FunctionState) -> FunctionState:
        lam = self.ctx.client("lambda")
        missing = []
        for arn in original.layers:
            layer, _, version = arn.rpartition(":")
            try:
                lam.get_layer_version(LayerName=layer, VersionNumber=int(version))
            except lam.exceptions.ResourceNotFoundException:
                missing.append(arn)
            except lam.exceptions.ClientError:
                pass  # another account's layer we may not read: Lambda itself will judge it
        if not missing:
            return original
        if not self.options.skip_missing_layers:
            raise DownRefused(
                f"its original layer version {', '.join(missing)} has been deleted since, so it cannot be "
                "put back as it was; `livelambda aws down --skip-missing-layers` restores it without it"
            )
        return FunctionState(
            handler=original.handler,
            layers=tuple(a for a in original.layers if a not in missing),
            environment=original.environment,
            timeout=original.timeout,
            subnet_ids=original.subnet_ids,
            security_group_ids=original.security_group_ids,
        )

    # ------------------------------------------------------------------ what the session added
    def _clean_up(
        self, mine: list[LiveRecord], restored: set[str], remaining: list[LiveRecord], result: DownResult
    ) -> None:
        iam = self.ctx.client("iam")
        still_used = {r.role_arn for r in remaining if r.session == self.session}
        for role in sorted({r.role_arn for r in mine if r.function in restored} - still_used):
            if role and role_policy.delete_policy(iam, role, self.session):
                result.cleaned.append(
                    f"policy {role_policy.policy_name(self.session)} on {role_policy.role_name(role)}"
                )
        if any(r.session == self.session for r in remaining):
            return  # the session still has live functions: its namespace and key stay
        appsync = self.ctx.client("appsync")
        api = event_api.find_api(appsync)
        if api is not None:
            namespace = event_api.namespace_for(self.session)
            if event_api.delete_namespace(appsync, api.api_id, namespace):
                result.cleaned.append(f"channel namespace {namespace}")
            if event_api.delete_session_keys(appsync, api.api_id, self.session):
                result.cleaned.append("the session's API key")
        if self.app_root is not None:
            aws_file(self.app_root).unlink(missing_ok=True)
        if self.options.purge:
            self._purge(api, remaining, result)

    def _purge(self, api: event_api.EventApi | None, remaining: list[LiveRecord], result: DownResult) -> None:
        others = sorted({r.session for r in remaining})
        if others:
            raise DownRefused(
                f"not purged: sessions {', '.join(others)} still have live functions on the shared API "
                "(`livelambda aws status` lists them)"
            )
        if api is not None:
            alarm.delete_connection_alarm(self.ctx.client("cloudwatch"), api.api_id)
            self.ctx.client("appsync").delete_api(apiId=api.api_id)
            result.cleaned.append(f"AppSync Events API {api.api_id} and its alarm")
        layers = stub_layer.delete_stub_layers(self.ctx.client("lambda"))
        if layers:
            result.cleaned.append(f"{layers} stub layer version(s)")


def _record_gone(result: FunctionResult) -> bool:
    return result.status in ("restored", "not live", "gone")
