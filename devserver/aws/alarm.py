"""A CloudWatch alarm on each AppSync Event API's WebSocket connection count, and that count for
`livelambda aws status`.

The incident this project exists for was a reconnect loop that grew one account's AppSync
connections to ~80,000. The stub bounds its own reconnects; this alarm is the guard for everything
else (an old stub, another tool, a bug): one alarm per Event API, on its active connections.

The metric (from the AWS AppSync Events guide, "CloudWatch metrics", cw-metrics):
- Namespace `AWS/AppSync`. Event API metrics are keyed by the dimension `EventAPIId` (GraphQL APIs use
  `GraphQLAPIId`); the guide lists the real-time endpoint metrics, which cover WebSocket
  connections, under `EventAPIId` and `ChannelNamespaceName`. Verified from the guide.
- Metric name `ActiveConnections`, statistic `Sum` over 60 s. The guide's real-time group includes
  "active connections"; `ActiveConnections` (Unit Count, "Use the Sum statistic") is AppSync's name
  for it in the GraphQL guide. The exact name for Event APIs, and that it is emitted with
  `EventAPIId` alone (a connection belongs to no namespace until it subscribes), are NOT verified
  against a live account. Check with
  `aws cloudwatch list-metrics --namespace AWS/AppSync --metric-name ActiveConnections` and change
  `METRIC_NAME` / `dimensions()` here if it differs: every call below takes them from there.

`alarm_spec` is pure (the keyword arguments of `put_metric_alarm`); the other functions are thin
boto3 shells around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

NAMESPACE = "AWS/AppSync"
METRIC_NAME = "ActiveConnections"
DIMENSION = "EventAPIId"
STATISTIC = "Sum"
PERIOD_S = 60
# 3 of the last 5 minutes above the threshold: a burst of cold starts passes, a runaway loop
# (which only grows) raises the alarm within a few minutes.
EVALUATION_PERIODS = 5
DATAPOINTS_TO_ALARM = 3
DEFAULT_THRESHOLD = 1000
# How far back `connection_count` looks: CloudWatch publishes a minute's datapoint a few minutes late.
LOOKBACK = timedelta(minutes=10)


def alarm_name(api_id: str) -> str:
    return f"livelambda-{api_id}-connections"


def dimensions(api_id: str) -> list[dict[str, str]]:
    return [{"Name": DIMENSION, "Value": api_id}]


def alarm_spec(
    api_id: str, api_name: str, threshold: int, sns_topic_arn: str | None = None
) -> dict[str, Any]:
    """The keyword arguments of `cloudwatch.put_metric_alarm` for this API's connection alarm."""
    if threshold < 1:
        raise ValueError(f"the connection alarm threshold must be at least 1, not {threshold}")
    return {
        "AlarmName": alarm_name(api_id),
        "AlarmDescription": (
            f"livelambda: AppSync Event API {api_name} ({api_id}) holds more than {threshold} WebSocket "
            "connections; a client may be reconnecting in a loop. See `livelambda aws status`; "
            "`livelambda aws down` switches the functions back to their own code."
        ),
        "ActionsEnabled": True,
        "AlarmActions": [sns_topic_arn] if sns_topic_arn else [],
        "Namespace": NAMESPACE,
        "MetricName": METRIC_NAME,
        "Dimensions": dimensions(api_id),
        "Statistic": STATISTIC,
        "Period": PERIOD_S,
        "EvaluationPeriods": EVALUATION_PERIODS,
        "DatapointsToAlarm": DATAPOINTS_TO_ALARM,
        "Threshold": float(threshold),
        "ComparisonOperator": "GreaterThanThreshold",
        # No datapoint means no connection: an idle API must not sit in ALARM or INSUFFICIENT_DATA.
        "TreatMissingData": "notBreaching",
    }


def _same(existing: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """Whether the alarm CloudWatch holds already says what `spec` says."""
    for key, want in spec.items():
        have = existing.get(key)
        if key == "Dimensions":

            def as_set(dims: Any) -> set[tuple[Any, Any]]:
                return {(d.get("Name"), d.get("Value")) for d in dims or []}

            if as_set(have) != as_set(want):
                return False
        elif key == "AlarmActions":
            if sorted(have or []) != sorted(want):
                return False
        elif key == "Threshold":
            if have is None or float(have) != float(want):
                return False
        elif have != want:
            return False
    return True


def ensure_connection_alarm(
    cloudwatch: Any,
    api_id: str,
    api_name: str,
    threshold: int = DEFAULT_THRESHOLD,
    sns_topic_arn: str | None = None,
) -> tuple[str, bool]:
    """Create or update the API's connection alarm; (its name, whether it was created or changed).

    Idempotent: an alarm that already matches is left alone (one describe_alarms, no write).
    """
    spec = alarm_spec(api_id, api_name, threshold, sns_topic_arn)
    found = cloudwatch.describe_alarms(AlarmNames=[spec["AlarmName"]], AlarmTypes=["MetricAlarm"])
    existing = found.get("MetricAlarms") or []
    if existing and _same(existing[0], spec):
        return spec["AlarmName"], False
    cloudwatch.put_metric_alarm(**spec)
    return spec["AlarmName"], True


def delete_connection_alarm(cloudwatch: Any, api_id: str) -> None:
    """Delete the API's connection alarm (nothing happens when there is none)."""
    cloudwatch.delete_alarms(AlarmNames=[alarm_name(api_id)])


def connection_count(cloudwatch: Any, api_id: str, now: datetime) -> int | None:
    """The API's latest per-minute connection count within the last ~10 minutes; None without data.

    `now` is wall-clock time (naive values are taken as UTC). The newest minute may still be filling
    in; `aws status` shows it as the current figure all the same.
    """
    end = now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)
    answer = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=METRIC_NAME,
        Dimensions=dimensions(api_id),
        StartTime=end - LOOKBACK,
        EndTime=end,
        Period=PERIOD_S,
        Statistics=[STATISTIC],
    )
    points = [p for p in answer.get("Datapoints") or [] if p.get(STATISTIC) is not None]
    if not points:
        return None
    latest = max(points, key=lambda p: p["Timestamp"])
    return round(latest[STATISTIC])
