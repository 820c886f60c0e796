"""What `aws up` changes on a function and what `aws down` puts back, as plain values (no AWS calls).

A `FunctionState` is the part of a function's configuration livelambda touches: handler, layers,
environment, timeout and VPC. `up` records the original state, then applies a `LiveChange` to it;
`down` expects to find exactly the changed state (anything else was changed behind livelambda's back)
and puts the original back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from stub_runtime.errors import CallerFault

STUB_HANDLER = "stub_runtime.handler.handler"
ENV_LIMIT_BYTES = 4096  # Lambda: keys and values of a function's environment, in all
MAX_LAYERS = 5
SESSION_VAR = "LIVELAMBDA_SESSION"
# Settings the stub can do without, dropped first when the environment would not fit.
OPTIONAL_VARS = ("LIVELAMBDA_VPC", "LIVELAMBDA_ORIGINAL_HANDLER")


class EnvironmentTooLarge(CallerFault):
    error_type = "Livelambda.EnvironmentTooLarge"


@dataclass(frozen=True)
class FunctionState:
    handler: str
    layers: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: int = 3
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()

    @classmethod
    def from_configuration(cls, cfg: Mapping[str, Any]) -> FunctionState:
        """From `get_function_configuration` (or `update_function_configuration`'s answer)."""
        vpc = cfg.get("VpcConfig") or {}
        return cls(
            handler=str(cfg.get("Handler") or ""),
            layers=tuple(str(layer["Arn"]) for layer in cfg.get("Layers") or ()),
            environment=dict((cfg.get("Environment") or {}).get("Variables") or {}),
            timeout=int(cfg.get("Timeout") or 3),
            subnet_ids=tuple(sorted(vpc.get("SubnetIds") or ())),
            security_group_ids=tuple(sorted(vpc.get("SecurityGroupIds") or ())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "handler": self.handler,
            "layers": list(self.layers),
            "environment": dict(self.environment),
            "timeout": self.timeout,
            "subnet_ids": list(self.subnet_ids),
            "security_group_ids": list(self.security_group_ids),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FunctionState:
        return cls(
            handler=str(data["handler"]),
            layers=tuple(data.get("layers") or ()),
            environment=dict(data.get("environment") or {}),
            timeout=int(data.get("timeout") or 3),
            subnet_ids=tuple(data.get("subnet_ids") or ()),
            security_group_ids=tuple(data.get("security_group_ids") or ()),
        )

    @property
    def in_vpc(self) -> bool:
        return bool(self.subnet_ids)

    def differences(self, other: FunctionState) -> list[str]:
        """Field by field, what `other` has that this state does not ("timeout: 3 -> 30")."""
        out: list[str] = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "environment":
                out.extend(_env_differences(mine, theirs))
            elif mine != theirs:
                out.append(f"{f.name}: {_show(mine)} -> {_show(theirs)}")
        return out

    def update_from(self, current: FunctionState) -> dict[str, Any]:
        """`update_function_configuration` arguments that turn `current` into this state; only the
        fields that differ, so an unchanged VPC config is never re-applied."""
        kwargs: dict[str, Any] = {}
        if self.handler != current.handler:
            kwargs["Handler"] = self.handler
        if self.layers != current.layers:
            kwargs["Layers"] = list(self.layers)
        if dict(self.environment) != dict(current.environment):
            kwargs["Environment"] = {"Variables": dict(self.environment)}
        if self.timeout != current.timeout:
            kwargs["Timeout"] = self.timeout
        if (self.subnet_ids, self.security_group_ids) != (current.subnet_ids, current.security_group_ids):
            kwargs["VpcConfig"] = {
                "SubnetIds": list(self.subnet_ids),
                "SecurityGroupIds": list(self.security_group_ids),
            }
        return kwargs


@dataclass(frozen=True)
class LiveChange:
    """What live mode changes: the stub's handler, its layer, its settings, maybe timeout and VPC."""

    layer: str  # the stub layer version's ARN
    settings: Mapping[str, str]  # LIVELAMBDA_* variables added to the environment
    timeout: int | None = None  # raise the timeout to this, if asked
    detach_vpc: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "settings": dict(self.settings),
            "timeout": self.timeout,
            "detach_vpc": self.detach_vpc,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiveChange:
        return cls(
            layer=str(data["layer"]),
            settings=dict(data.get("settings") or {}),
            timeout=data.get("timeout"),
            detach_vpc=bool(data.get("detach_vpc")),
        )

    def apply(self, original: FunctionState) -> FunctionState:
        """The function's state while live."""
        layers = (*(arn for arn in original.layers if not is_stub_layer(arn)), self.layer)
        return FunctionState(
            handler=STUB_HANDLER,
            layers=layers,
            environment={**original.environment, **self.settings},
            timeout=max(original.timeout, self.timeout) if self.timeout else original.timeout,
            subnet_ids=() if self.detach_vpc else original.subnet_ids,
            security_group_ids=() if self.detach_vpc else original.security_group_ids,
        )


def is_stub_layer(arn: str) -> bool:
    return ":layer:livelambda-stub:" in arn


def live_session(cfg: Mapping[str, Any]) -> str | None:
    """The live session a function is switched to, or None when it runs its own code."""
    env = (cfg.get("Environment") or {}).get("Variables") or {}
    session = env.get(SESSION_VAR)
    return str(session) if session else None


def apply_state(lambda_client: Any, cfg: Mapping[str, Any], target: FunctionState) -> FunctionState:
    """Make the function read in `cfg` have `target`'s state (one update with only what differs,
    refused by Lambda if the function changed since `cfg` was read; then wait until it is applied);
    returns the state Lambda reports afterwards."""
    current = FunctionState.from_configuration(cfg)
    kwargs = target.update_from(current)
    if not kwargs:
        return current
    name = cfg["FunctionName"]
    answer = lambda_client.update_function_configuration(FunctionName=name, **revision_guard(cfg), **kwargs)
    lambda_client.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
    )
    return FunctionState.from_configuration(answer)


def revision_guard(cfg: Mapping[str, Any]) -> dict[str, str]:
    """`RevisionId` for an update: Lambda refuses it if the function changed since `cfg` was read
    (someone else's change in between). Left out where the server has none (moto)."""
    return {"RevisionId": str(cfg["RevisionId"])} if cfg.get("RevisionId") else {}


def env_size(env: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in env.items())


def fit_settings(original: Mapping[str, str], settings: Mapping[str, str]) -> dict[str, str]:
    """`settings`, less the optional ones if need be, so that the function's environment with them stays
    within Lambda's 4 KB; raises EnvironmentTooLarge when even the required ones do not fit."""
    kept = dict(settings)
    for name in (None, *OPTIONAL_VARS):
        if name is not None:
            kept.pop(name, None)
        total = env_size({**original, **kept})
        if total <= ENV_LIMIT_BYTES:
            return kept
    own = env_size(original)
    raise EnvironmentTooLarge(
        f"its environment variables take {own:,} bytes and live mode needs {total - own:,} more for its "
        f"settings, over Lambda's {ENV_LIMIT_BYTES:,}-byte limit by {total - ENV_LIMIT_BYTES:,}; "
        "move large values out of the environment (SSM Parameter Store, Secrets Manager), then run "
        "`livelambda aws up` again"
    )


def eligibility(cfg: Mapping[str, Any]) -> str | None:
    """Why this function cannot go live, or None when it can."""
    if cfg.get("PackageType") == "Image":
        return (
            "a container image: live mode swaps the handler and adds a layer, which only .zip functions have"
        )
    runtime = str(cfg.get("Runtime") or "")
    if not runtime.startswith("python3"):
        return f"runtime {runtime or 'unknown'} is not Python; livelambda runs Python handlers only"
    layers = [layer["Arn"] for layer in cfg.get("Layers") or () if not is_stub_layer(layer["Arn"])]
    if len(layers) >= MAX_LAYERS:
        return f"it already has {len(layers)} layers, Lambda's limit; live mode needs one more for its stub"
    return None


def _env_differences(mine: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    out = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in theirs:
            out.append(f"environment {key}: removed")
        elif key not in mine:
            out.append(f"environment {key}: added")
        elif mine[key] != theirs[key]:
            out.append(f"environment {key}: changed")  # values may be secrets: never print them
    return out


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]" if value else "none"
    return repr(value)
