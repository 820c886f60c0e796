"""The live-mode conversation between the stub (in Lambda) and the dev server: its channels, message
kinds and timings. The two halves that speak it are sans-I/O objects: the stub's in
stub_runtime/conversation.py (driven by sandbox.py), the dev server's in devserver/live/conversation.py
(driven by devserver/live/bridge.py); their docstrings give the rules, tests/test_conversation_*.py
prove them.

Channels (scoped to one live session so two developers never see each other's invocations; the
namespace is `livelambda` with `livelambda cloud`, and one of the session's own with `aws up`,
because AppSync's IAM policies can tell namespaces apart but not channels):
  /<namespace>/<session>/req              stub -> dev server: `invoke`
  /<namespace>/<session>/res/<sandbox>    dev server -> that sandbox: `ack`, `heartbeat`, `result`, `reject`

An invocation: the stub publishes `invoke`; the dev server answers with its `result` (with `logs`,
the end of the handler's output, when it printed anything: the stub prints it, so that it lands in the
function's log, CloudWatch, and the caller's log tail, as the handler's own output would). If the handler
is still running after ACK_DELAY_S it sends an `ack` first, then a `heartbeat` every
HEARTBEAT_INTERVAL_S until the `result`. The stub asks again now and then until it hears anything,
and after a reconnect. A redelivered `invoke` is acknowledged again and, if already finished, answered
with the same `result`: the handler runs at most once per invocation id. An `invoke` the dev server
will not run (its deadline passed on the way, or it ran before the dev server restarted) is answered
with `reject` (`{"message": why}`): the stub ends the invocation at once with `Livelambda.Rejected`
instead of waiting out its ack timeout. Like every message it is signed with the session's secret, so
only the dev server can end an invocation that way.
"""

from __future__ import annotations

import re
from typing import Any

NAMESPACE = "livelambda"
HEARTBEAT_INTERVAL_S = 1.0
# Well under the stub's first re-ask (a quarter of its 3 s ack timeout by default).
ACK_DELAY_S = 0.15

INVOKE = "invoke"
ACK = "ack"
HEARTBEAT = "heartbeat"
RESULT = "result"
REJECT = "reject"

# Result statuses, as the dev server's runner reports them.
OK = "ok"
# The most of the handler's output a result carries (its end, as the caller's 4 KB log tail shows).
RESULT_LOG_BYTES = 4096

_SEGMENT = re.compile(r"[^A-Za-z0-9-]+")

# Env var names whose values never leave the sandbox in the hello.
_SECRET_NAME = re.compile(
    r"(secret|token|passw|pwd|credential|private|api[-_]?key|auth|cookie|session)", re.IGNORECASE
)
_ALWAYS_HIDDEN_PREFIXES = ("AWS_", "LIVELAMBDA_", "_")


def safe_segment(text: str, *, max_len: int = 50) -> str:
    """Turn any text into a valid AppSync channel segment (alphanumerics and '-', alnum at both ends)."""
    seg = _SEGMENT.sub("-", text).strip("-")[:max_len].strip("-")
    return seg or "x"


def request_channel(session: str, namespace: str = NAMESPACE) -> str:
    return f"/{namespace}/{session}/req"


def response_channel(session: str, sandbox_id: str, namespace: str = NAMESPACE) -> str:
    return f"/{namespace}/{session}/res/{sandbox_id}"


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def public_environment(env: dict[str, str]) -> dict[str, str]:
    """The function's own configuration variables, minus anything that is or looks like a credential."""
    return {
        k: v
        for k, v in env.items()
        if not k.startswith(_ALWAYS_HIDDEN_PREFIXES) and not looks_secret(k) and k not in _RUNTIME_VARS
    }


_RUNTIME_VARS = frozenset(
    {
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_DISABLE_PREVIEW_WARN",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "LANG",
        "LD_LIBRARY_PATH",
        "PATH",
        "PYTHONPATH",
        "TZ",
        "PWD",
        "SHLVL",
        "HOME",
    }
)


def context_to_dict(context: Any, deadline_ms: int, timeout_ms: int | None = None) -> dict[str, Any]:
    """Everything of a Lambda context object the local handler's context must reproduce.
    `timeout_ms`: the time left when the stub got the invocation, i.e. the function's timeout (Lambda
    tells a function its deadline, not its timeout)."""
    identity = getattr(context, "identity", None)
    client_context = getattr(context, "client_context", None)
    return {
        "aws_request_id": context.aws_request_id,
        "deadline_ms": deadline_ms,
        "timeout_ms": timeout_ms,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": str(context.memory_limit_in_mb),
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": _identity_dict(identity),
        "client_context": _client_context_dict(client_context),
        "tenant_id": getattr(context, "tenant_id", None),
    }


def _identity_dict(identity: Any) -> dict[str, Any] | None:
    if identity is None:
        return None
    pool = getattr(identity, "cognito_identity_pool_id", None)
    ident = getattr(identity, "cognito_identity_id", None)
    if pool is None and ident is None:
        return None
    return {"cognitoIdentityId": ident, "cognitoIdentityPoolId": pool}


def _client_context_dict(cc: Any) -> dict[str, Any] | None:
    if cc is None:
        return None
    client = getattr(cc, "client", None)
    return {
        "client": None
        if client is None
        else {
            "installation_id": getattr(client, "installation_id", None),
            "app_title": getattr(client, "app_title", None),
            "app_version_name": getattr(client, "app_version_name", None),
            "app_version_code": getattr(client, "app_version_code", None),
            "app_package_name": getattr(client, "app_package_name", None),
        },
        "custom": getattr(cc, "custom", None),
        "env": getattr(cc, "env", None),
    }
