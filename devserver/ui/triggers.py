"""Guess which AWS service produced an event, from its shape alone (for the feed and the terminal)."""

from __future__ import annotations

from typing import Any

_EVENT_SOURCES = {
    "aws:sqs": "SQS",
    "aws:sns": "SNS",
    "aws:s3": "S3",
    "aws:dynamodb": "DynamoDB",
    "aws:kinesis": "Kinesis",
    "aws:kafka": "Kafka",
    "aws:ses": "SES",
    "aws:codecommit": "CodeCommit",
}


def guess_trigger(event: Any) -> str:
    if not isinstance(event, dict):
        return "direct"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        source = records[0].get("eventSource") or records[0].get("EventSource") or ""
        return _EVENT_SOURCES.get(source, "direct")
    rc = event.get("requestContext")
    if isinstance(rc, dict):
        if "elb" in rc:
            return "ALB"
        if event.get("version") == "2.0" or "http" in rc:
            return "Function URL" if ".lambda-url." in str(rc.get("domainName", "")) else "API Gateway HTTP"
        if "connectionId" in rc:
            return "API Gateway WebSocket"
        return "API Gateway REST"
    if "detail-type" in event and "source" in event:
        return "Scheduled" if event.get("detail-type") == "Scheduled Event" else "EventBridge"
    if "awslogs" in event:
        return "CloudWatch Logs"
    if "triggerSource" in event and "userPoolId" in event:
        return "Cognito"
    if "RequestType" in event and "ResponseURL" in event:
        return "CloudFormation"
    if event.get("eventSource") in ("aws:kafka", "SelfManagedKafka"):
        return "Kafka"
    return "direct"
