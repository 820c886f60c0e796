"""The inline policy `aws up` puts on a live function's role in IAM mode: connect to the one API, and
publish/subscribe on its own session's namespace; nothing else. Named for livelambda and the session,
so `down` (from any machine) knows what to remove."""

from __future__ import annotations

import json
from typing import Any


def policy_name(session: str) -> str:
    return f"livelambda-{session}"[:128]


def role_name(role_arn: str) -> str:
    """`arn:aws:iam::123:role/path/name` -> `name` (what the IAM API takes)."""
    return role_arn.rsplit("/", 1)[-1]


def session_policy(api_arn: str, namespace: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LivelambdaConnect",
                "Effect": "Allow",
                "Action": "appsync:EventConnect",
                "Resource": api_arn,
            },
            {
                "Sid": "LivelambdaSessionChannels",
                "Effect": "Allow",
                "Action": ["appsync:EventPublish", "appsync:EventSubscribe"],
                "Resource": f"{api_arn}/channelNamespace/{namespace}",
            },
        ],
    }


def put_policy(iam: Any, role_arn: str, session: str, api_arn: str, namespace: str) -> None:
    iam.put_role_policy(
        RoleName=role_name(role_arn),
        PolicyName=policy_name(session),
        PolicyDocument=json.dumps(session_policy(api_arn, namespace)),
    )


def delete_policy(iam: Any, role_arn: str, session: str) -> bool:
    try:
        iam.delete_role_policy(RoleName=role_name(role_arn), PolicyName=policy_name(session))
    except iam.exceptions.NoSuchEntityException:
        return False
    return True
