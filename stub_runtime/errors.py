"""Error types shared by the stub and the dev server, typed by whose fault they are (as h11 does).

`error_type` is what a Lambda caller sees as `errorType` when the error ends an invocation.
"""

from __future__ import annotations


class LivelambdaError(Exception):
    """Base of every error livelambda raises on purpose."""

    error_type = "Livelambda.Error"


class LocalProtocolError(LivelambdaError):
    """We were about to send something the protocol forbids (our bug, or bad input from our caller)."""

    error_type = "Livelambda.LocalProtocolError"


class RemoteProtocolError(LivelambdaError):
    """The peer sent something the protocol forbids (malformed, forged, out of order)."""

    error_type = "Livelambda.RemoteProtocolError"
