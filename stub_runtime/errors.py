"""Every error livelambda raises on purpose, typed by whose fault it is.

`error_type` is what a Lambda caller sees as `errorType` when the error ends an invocation (and what
the dev server's terminal and dashboard show); a fault branch's own is the fallback of the classes
under it that have none. Catch a branch to handle a kind of failure, a leaf for one case. This module
ships in the stub's layer: standard library only.

The tree, [module] where a class is defined outside this one (stub_runtime. and devserver. left out
where the name says it), and the builtin a class also derives from where callers catch that::

    LivelambdaError
     +-- HandlerFault: the user's handler raised, or was still running at the function's timeout
     |    +-- HandlerError [sandbox] (error_type: the handler's own, e.g. "ValueError")
     |    +-- DeadlineExceeded [outcomes]
     +-- DevServerFault: livelambda's side on the developer's machine (the dev server, its workers,
     |    |  the local cloud, the layer build) is not there, stopped, or failed
     |    +-- DevServerNotRunning, DevServerLost, Rejected [outcomes]
     |    +-- RunnerClosed [reload.generations], PoolClosed [runtime.pool], WorkerBusy [runtime.worker]
     |    +-- LaunchError, also an OSError [runtime.launcher]
     |    |    +-- ForkServerError [runtime.fork_launcher]
     |    |         +-- ForkServerThreaded
     |    +-- LayerBuildFailed [devserver.layer], CloudFailed [commands.dev]
     +-- ConnectionFault: the way between the function and the dev server failed: AppSync or the
     |    |  network refused the connection, lost it, or never answered (a black hole)
     |    +-- AppSyncConnectionError [appsync.errors]
     |    |    +-- ConnectFailed, ConnectionLost, OperationTimeout, HttpPublishFailed
     |    |    +-- ConnectGiveUp
     |    |         +-- CircuitOpen
     |    +-- EndpointUnreachable [outcomes], EventApiError [aws.event_api]
     +-- CallerFault: what livelambda was given is wrong: a command line, a config or setting, an
          |  argument, credentials, or a message (malformed, forged, stale, refused as invalid)
          +-- LocalProtocolError: we were asked to send what the protocol forbids
          |    +-- InvalidMessage, MessageTooLarge [envelope], InvalidChannel [channels]
          |    +-- ClientClosed, InvalidEvents [appsync.errors], AuthConfigError [appsync.auth]
          +-- RemoteProtocolError: the other side sent what the protocol forbids, or refused ours
          |    +-- EnvelopeRejected [envelope]
          |    +-- AppSyncServiceError [appsync.frames] (error_type: AppSync's first errorType)
          |    +-- ControlPlaneError [cloud.appsync_control]: the emulated control plane's error
          |         answers: InternalFailure, BadRequest, NotFound, Conflict,
          |         ApiKeyValidityOutOfBounds, ApiKeyLimitExceeded
          +-- AppSyncRejected [outcomes], StubMisconfigured [settings]
          +-- UsageError [usage], ConfigError [config], DevServerRunning [dev_lock],
          |   UnknownFunction [runner], NoCloudForApp [commands.invoke], AppEnvError [runtime.app_env]
          +-- AwsNotConfigured, TargetsNotFound, UpRefused, DownRefused, VpcCheckDenied,
          |   EnvironmentTooLarge [aws.*]
          +-- TooManyRequests [runtime.pool], FunctionNotFound [cloud.lambda_emulator]
          +-- AppSyncError [cloud.appsync_emulator] (error_type: the service's, e.g. BadRequestException)
          |    +-- Unauthorized
          +-- SignatureError [cloud.sigv4], FaultSpecError, also a ValueError [cloud.faults]
"""

from __future__ import annotations


class LivelambdaError(Exception):
    """Base of every error livelambda raises on purpose; derive from a fault branch, not from this."""

    error_type = "Livelambda.Error"


class HandlerFault(LivelambdaError):
    """The user's handler raised, or was still running at the function's timeout."""

    error_type = "Livelambda.HandlerFault"


class DevServerFault(LivelambdaError):
    """livelambda's side on the developer's machine is not there, stopped, or failed."""

    error_type = "Livelambda.DevServerError"  # what the stub has always been told for a dev server failure


class ConnectionFault(LivelambdaError):
    """AppSync or the network refused the connection, lost it, or never answered."""

    error_type = "Livelambda.ConnectionFault"


class CallerFault(LivelambdaError):
    """What livelambda was given is wrong: usage, config, credentials, an argument, a message."""

    error_type = "Livelambda.CallerFault"


class LocalProtocolError(CallerFault):
    """We were about to send something the protocol forbids (our bug, or bad input from our caller)."""

    error_type = "Livelambda.LocalProtocolError"


class RemoteProtocolError(CallerFault):
    """The peer sent something the protocol forbids (malformed, forged, out of order), or refused ours."""

    error_type = "Livelambda.RemoteProtocolError"
