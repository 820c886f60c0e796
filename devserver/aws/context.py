"""One boto3 session for a command: the standard credential chain (env, profile, SSO), a region, and
clients made once and shared by the worker threads (boto3 clients are thread-safe; sessions are not).

Endpoints are botocore's business: `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` are honoured
by every client made here, which is how the tests point them at local servers."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from stub_runtime.errors import CallerFault


class AwsNotConfigured(CallerFault):
    """No credentials or no region: nothing was changed."""

    error_type = "Livelambda.AwsNotConfigured"


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str  # the caller's ARN: who switched a function live


class AwsContext:
    def __init__(self, *, profile: str | None = None, region: str | None = None, pool_size: int = 16) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        try:
            self.session = boto3.session.Session(profile_name=profile, region_name=region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise AwsNotConfigured(f"{exc}; list your profiles with `aws configure list-profiles`") from None
        if not self.session.region_name:
            raise AwsNotConfigured(
                "no AWS region: pass --region, set `region` in livelambda.toml, or set AWS_REGION"
            )
        self.region: str = self.session.region_name
        self.profile = profile
        # Standard retries absorb throttling; the pool fits the threads that switch functions at once.
        self._config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=pool_size,
            connect_timeout=10,
            read_timeout=60,
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._identity: Identity | None = None

    def client(self, service: str) -> Any:
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self.session.client(service, config=self._config)
                self._clients[service] = client
            return client

    def endpoint_url(self, service: str) -> str:
        """Where this service's calls go (a local server's URL in the tests)."""
        return str(self.client(service).meta.endpoint_url)

    def identity(self) -> Identity:
        """The account and caller (one `sts get-caller-identity`); a missing credential stops here."""
        if self._identity is None:
            import botocore.exceptions

            try:
                me = self.client("sts").get_caller_identity()
            except botocore.exceptions.NoCredentialsError:
                raise AwsNotConfigured(
                    "no AWS credentials found: set AWS_PROFILE (or pass --profile), run `aws sso login`, "
                    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                ) from None
            except botocore.exceptions.ClientError as exc:
                raise AwsNotConfigured(f"AWS refused your credentials: {exc}") from None
            self._identity = Identity(account=str(me["Account"]), arn=str(me["Arn"]))
        return self._identity
