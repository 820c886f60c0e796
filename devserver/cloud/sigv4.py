"""Verify AWS SigV4 (AWS_IAM) authorization the way AppSync Events does, by recomputing it with botocore.

AppSync Events always signs `POST https://{HTTP host}/event` for service `appsync`; what differs is the
body: connect signs `{}`, subscribe `{"channel":...}`, a WebSocket publish `{"channel":...,"events":[...]}`,
an HTTP publish its real body (see PROTOCOL.md). The caller passes the candidate body or bodies; the
signature is accepted if it matches any of them.

We recompute over exactly the headers the client lists in `SignedHeaders`, with the values it sent,
rather than re-signing with our own clock (botocore's `add_auth` stamps the current time), so that a
signature made a few seconds ago still verifies.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from devserver.cloud.options import IamCredentials
from stub_runtime.errors import CallerFault

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "appsync"
MAX_CLOCK_SKEW_S = 300.0  # AWS rejects a request whose x-amz-date is more than 5 minutes off
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class SignatureError(CallerFault):
    """The request is not validly signed; `str(exc)` says why (for our log, never for the wire)."""


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key_id: str
    date: str  # YYYYMMDD from the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Parse `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, SignedHeaders=..,
    Signature=..`."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(f"authorization is not {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key] = val
    try:
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
    except KeyError as exc:
        raise SignatureError(f"authorization lacks {exc.args[0]}") from None
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise SignatureError("malformed credential scope")
    return ParsedAuthorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=tuple(h for h in signed.split(";") if h),
        signature=signature,
    )


def parse_amz_date(value: str) -> float:
    """Seconds since the epoch of an `x-amz-date` such as `20250101T120000Z`."""
    try:
        return float(calendar.timegm(time.strptime(value, _AMZ_DATE_FORMAT)))
    except (TypeError, ValueError):
        raise SignatureError(f"malformed x-amz-date {value!r}") from None


def verify_sigv4(
    headers: Mapping[str, str],
    bodies: Iterable[bytes],
    *,
    credentials: Iterable[IamCredentials],
    region: str,
    expected_hosts: Collection[str],
    now: float | None = None,
) -> str:
    """Check a SigV4-signed AppSync request; return the access key id, or raise SignatureError.

    `headers` are the auth headers (any case). `bodies` are the payloads the client may have signed.
    `expected_hosts` are the spellings of the API's HTTP host the signed `host` may take (lowercase).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    auth = parse_authorization(lower.get("authorization", ""))
    creds = _find_credentials(credentials, auth.access_key_id)
    if auth.service != SERVICE:
        raise SignatureError(f"signed for service {auth.service!r}, expected {SERVICE!r}")
    if auth.region != region:
        raise SignatureError(f"signed for region {auth.region!r}, this API is in {region!r}")
    for required in ("host", "x-amz-date"):
        if required not in auth.signed_headers:
            raise SignatureError(f"{required!r} is not among the signed headers")
    missing = [h for h in auth.signed_headers if h not in lower]
    if missing:
        raise SignatureError(f"signed headers {missing} are not present")
    host = lower["host"]
    if host.lower() not in expected_hosts:
        raise SignatureError(f"signed for host {host!r}, expected one of {sorted(expected_hosts)}")
    amz_date = lower["x-amz-date"]
    skew = abs((time.time() if now is None else now) - parse_amz_date(amz_date))
    if skew > MAX_CLOCK_SKEW_S:
        raise SignatureError(f"x-amz-date {amz_date} is {skew:.0f} s away from now (limit 300 s)")
    if amz_date[:8] != auth.date:
        raise SignatureError("credential scope date does not match x-amz-date")
    _check_session_token(creds, lower.get("x-amz-security-token"))

    signer = SigV4Auth(
        Credentials(creds.access_key_id, creds.secret_access_key, creds.session_token), SERVICE, region
    )
    signed = {name: lower[name] for name in auth.signed_headers}
    for body in bodies:
        if "x-amz-content-sha256" in signed and not hmac.compare_digest(
            signed["x-amz-content-sha256"], hashlib.sha256(body).hexdigest()
        ):
            continue  # the client claims a different body than this one
        expected = _signature(signer, signed, host, amz_date, body)
        if hmac.compare_digest(expected, auth.signature):
            return creds.access_key_id
    raise SignatureError("signature does not match")


def _find_credentials(credentials: Iterable[IamCredentials], access_key_id: str) -> IamCredentials:
    for creds in credentials:
        if hmac.compare_digest(creds.access_key_id, access_key_id):
            return creds
    raise SignatureError(f"unknown access key {access_key_id!r}")


def _check_session_token(creds: IamCredentials, token: str | None) -> None:
    if creds.session_token is None:
        if token is not None:
            raise SignatureError("a session token was sent for long-term credentials")
    elif token is None or not hmac.compare_digest(creds.session_token, token):
        raise SignatureError("session token missing or wrong")


def _signature(signer: SigV4Auth, headers: dict[str, str], host: str, amz_date: str, body: bytes) -> str:
    request = AWSRequest(method="POST", url=f"https://{host}/event", data=body, headers=headers)
    request.context["timestamp"] = amz_date
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)
