"""`livelambda aws status`: which functions are live, for which session, since when, whether each still
matches what `aws up` made of it, and the shared API's connection count."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from devserver.aws import alarm, event_api
from devserver.aws.context import AwsContext
from devserver.aws.live_config import FunctionState, live_session
from devserver.aws.records import LiveRecord, RecordStore
from devserver.aws.up import WORKERS


@dataclass(frozen=True)
class LiveFunction:
    record: LiveRecord
    state: str  # "live" | "changed" | "not live" | "taken over" | "gone"
    detail: str = ""


@dataclass
class Status:
    api_id: str | None
    connections: int | None
    functions: list[LiveFunction] = field(default_factory=list)


def status(ctx: AwsContext) -> Status:
    records = sorted(RecordStore(ctx.client("ssm")).all(), key=lambda r: (r.session, r.function))
    api = event_api.find_api(ctx.client("appsync"))
    connections = None
    if api is not None:
        connections = alarm.connection_count(
            ctx.client("cloudwatch"), api.api_id, datetime.datetime.now(datetime.timezone.utc)
        )
    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(records)))) as pool:
        functions = list(pool.map(lambda r: _check(ctx, r), records))
    return Status(api.api_id if api else None, connections, functions)


def _check(ctx: AwsContext, record: LiveRecord) -> LiveFunction:
    lam = ctx.client("lambda")
    try:
        cfg = lam.get_function_configuration(FunctionName=record.function)
    except lam.exceptions.ResourceNotFoundException:
        return LiveFunction(record, "gone", "the function no longer exists")
    session = live_session(cfg)
    if session is None:
        return LiveFunction(record, "not live", "runs its own code; `livelambda aws down` removes the record")
    if session != record.session:
        return LiveFunction(record, "taken over", f"live for session {session}")
    changed = record.live.differences(FunctionState.from_configuration(cfg))
    if changed:
        return LiveFunction(record, "changed", "changed while live: " + "; ".join(changed))
    return LiveFunction(record, "live")
