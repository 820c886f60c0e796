"""Which deployed functions `aws up` switches, and which local function runs each.

From the config (each function's `deployed` name or ARN, by default its own name), from a
CloudFormation stack's resources (nested stacks included: SAM, CDK, Serverless and plain templates
all end up as AWS::Lambda::Function), or from a tag."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devserver.config import AppConfig, FunctionConfig, deployed_function_name
from stub_runtime.errors import CallerFault


class TargetsNotFound(CallerFault):
    error_type = "Livelambda.TargetsNotFound"


@dataclass(frozen=True)
class Target:
    deployed: str  # the deployed function's name
    logical_id: str | None = None  # its logical id in the CloudFormation stack it came from


def from_config(app: AppConfig, only: Sequence[str] = ()) -> list[Target]:
    """The app's functions' deployed names (`only`: local or deployed names to keep)."""
    targets = [Target(app.deployed_name(f)) for f in app.functions.values()]
    if only:
        wanted = set(only)
        unknown = wanted - {t.deployed for t in targets} - set(app.functions)
        if unknown:
            raise TargetsNotFound(
                f"{', '.join(sorted(unknown))}: not a function of {app.path.name} "
                f"(its functions: {', '.join(sorted(app.functions))})"
            )
        pairs = zip(targets, app.functions.values(), strict=True)
        targets = [t for t, f in pairs if {t.deployed, f.name} & wanted]
    return targets


def from_stack(cloudformation: Any, stack: str) -> list[Target]:
    """Every Lambda function of the stack and of its nested stacks."""
    targets: list[Target] = []
    pending, seen = [stack], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            pages = list(cloudformation.get_paginator("list_stack_resources").paginate(StackName=name))
        except cloudformation.exceptions.ClientError as exc:
            if name == stack and "does not exist" in str(exc):
                raise TargetsNotFound(
                    f"no CloudFormation stack {stack!r} in this account and region"
                ) from None
            raise
        for page in pages:
            for res in page.get("StackResourceSummaries", ()):
                if res.get("ResourceStatus", "").startswith("DELETE") or not res.get("PhysicalResourceId"):
                    continue
                if res["ResourceType"] == "AWS::Lambda::Function":
                    targets.append(Target(res["PhysicalResourceId"], res["LogicalResourceId"]))
                elif res["ResourceType"] == "AWS::CloudFormation::Stack":
                    pending.append(res["PhysicalResourceId"])
    if not targets:
        raise TargetsNotFound(f"the stack {stack!r} (and its nested stacks) has no Lambda functions")
    return targets


def from_tag(tagging: Any, key: str, value: str) -> list[Target]:
    pages = tagging.get_paginator("get_resources").paginate(
        ResourceTypeFilters=["lambda:function"], TagFilters=[{"Key": key, "Values": [value]}]
    )
    targets = [
        Target(deployed_function_name(res["ResourceARN"]))
        for page in pages
        for res in page.get("ResourceTagMappingList", ())
    ]
    if not targets:
        raise TargetsNotFound(f"no Lambda function in this account and region has the tag {key}={value}")
    return targets


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise TargetsNotFound(f"--tag expects KEY=VALUE, got {text!r}")
    return key, value


def match_local(app: AppConfig, target: Target, handler: str) -> tuple[FunctionConfig | None, str]:
    """The local function whose code runs `target`, and how it was matched (or why none was)."""
    found = app.function_for(target.deployed)
    if found is not None:
        return found, "by name"
    if target.logical_id:
        by_id = _by_normalized(app.functions, target.logical_id)
        if by_id is not None:
            return by_id, f"by its stack logical id {target.logical_id}"
    same_handler = [f for f in app.functions.values() if f.handler == handler]
    if len(same_handler) == 1:
        return same_handler[0], f"by its handler {handler}"
    why = (
        f"several local functions have its handler {handler} ({', '.join(f.name for f in same_handler)})"
        if same_handler
        else f"no local function has its name or its handler {handler}"
    )
    return None, f'{why}; set `deployed = "{target.deployed}"` on the one in {app.path.name} that runs it'


def _by_normalized(functions: Mapping[str, FunctionConfig], logical_id: str) -> FunctionConfig | None:
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower()).removesuffix("function")

    wanted = norm(logical_id)
    hits = [f for name, f in functions.items() if norm(name) == wanted]
    return hits[0] if len(hits) == 1 else None


def looks_like_production(names: Iterable[str], stages: Iterable[str]) -> str | None:
    """The first production-like word among the names' segments ("orders-prod-api" -> "prod")."""
    wanted = {s.lower() for s in stages}
    for name in names:
        for word in re.split(r"[-_./:]+", name.lower()):
            if word in wanted:
                return word
    return None
