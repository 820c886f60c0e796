"""The connection-storm alarm and the connection count of `aws status`, against moto in-process."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devserver.aws.alarm import (
    alarm_name,
    alarm_spec,
    connection_count,
    delete_connection_alarm,
    ensure_connection_alarm,
)

REGION = "eu-west-1"
API = "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def cloudwatch() -> Any:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def calls(cloudwatch: Any) -> Counter[str]:
    """How many times each CloudWatch operation was called (botocore's before-call hook)."""
    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    cloudwatch.meta.events.register("before-call.cloudwatch", count)
    return seen


def alarms(cloudwatch: Any) -> list[dict[str, Any]]:
    return cloudwatch.describe_alarms(AlarmNamePrefix="livelambda-")["MetricAlarms"]


def put_connections(cloudwatch: Any, api_id: str, value: float, at: datetime) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/AppSync",
        MetricData=[
            {
                "MetricName": "ActiveConnections",
                "Dimensions": [{"Name": "EventAPIId", "Value": api_id}],
                "Value": value,
                "Unit": "Count",
                "Timestamp": at,
            }
        ],
    )


# --- the spec (pure) --------------------------------------------------------------------------------


def test_spec_fields() -> None:
    spec = alarm_spec(API, "livelambda", 1000)
    assert spec["AlarmName"] == f"livelambda-{API}-connections" == alarm_name(API)
    assert spec["Namespace"] == "AWS/AppSync"
    assert spec["MetricName"] == "ActiveConnections"
    assert spec["Dimensions"] == [{"Name": "EventAPIId", "Value": API}]
    assert spec["Statistic"] == "Sum" and spec["Period"] == 60
    assert 1 <= spec["DatapointsToAlarm"] <= spec["EvaluationPeriods"] <= 5
    assert spec["Threshold"] == 1000.0 and spec["ComparisonOperator"] == "GreaterThanThreshold"
    assert spec["TreatMissingData"] == "notBreaching"
    assert spec["AlarmActions"] == [] and spec["ActionsEnabled"] is True
    assert "livelambda" in spec["AlarmDescription"] and API in spec["AlarmDescription"]
    assert "livelambda aws status" in spec["AlarmDescription"]
    assert len(spec["AlarmDescription"]) <= 1024  # CloudWatch's limit


def test_spec_with_sns_topic_notifies_it() -> None:
    topic = "arn:aws:sns:eu-west-1:123456789012:ops"
    assert alarm_spec(API, "n", 5, topic)["AlarmActions"] == [topic]


@pytest.mark.parametrize("threshold", [0, -1])
def test_spec_refuses_a_threshold_below_one(threshold: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        alarm_spec(API, "n", threshold)


def test_spec_is_accepted_by_cloudwatch(cloudwatch: Any) -> None:
    cloudwatch.put_metric_alarm(**alarm_spec(API, "livelambda", 250, "arn:aws:sns:eu-west-1:123456789012:t"))
    (alarm,) = alarms(cloudwatch)
    assert alarm["Threshold"] == 250.0 and alarm["MetricName"] == "ActiveConnections"


# --- ensure / delete --------------------------------------------------------------------------------


def test_ensure_creates_once_then_does_nothing(cloudwatch: Any, calls: Counter[str]) -> None:
    assert ensure_connection_alarm(cloudwatch, API, "livelambda") == (f"livelambda-{API}-connections", True)
    assert calls["PutMetricAlarm"] == 1
    (alarm,) = alarms(cloudwatch)
    assert alarm["Threshold"] == 1000.0 and alarm["Dimensions"] == [{"Name": "EventAPIId", "Value": API}]

    calls.clear()
    assert ensure_connection_alarm(cloudwatch, API, "livelambda") == (f"livelambda-{API}-connections", False)
    assert calls["PutMetricAlarm"] == 0 and calls["DescribeAlarms"] == 1
    assert len(alarms(cloudwatch)) == 1


def test_ensure_updates_a_changed_threshold(cloudwatch: Any, calls: Counter[str]) -> None:
    ensure_connection_alarm(cloudwatch, API, "livelambda", threshold=1000)
    calls.clear()
    assert ensure_connection_alarm(cloudwatch, API, "livelambda", threshold=50) == (alarm_name(API), True)
    assert calls["PutMetricAlarm"] == 1
    (alarm,) = alarms(cloudwatch)
    assert alarm["Threshold"] == 50.0


def test_ensure_repairs_an_alarm_edited_by_hand(cloudwatch: Any) -> None:
    spec = alarm_spec(API, "livelambda", 1000)
    cloudwatch.put_metric_alarm(**{**spec, "TreatMissingData": "breaching", "Statistic": "Average"})
    assert ensure_connection_alarm(cloudwatch, API, "livelambda")[1] is True
    (alarm,) = alarms(cloudwatch)
    assert (alarm["TreatMissingData"], alarm["Statistic"]) == ("notBreaching", "Sum")


def test_ensure_keeps_one_alarm_per_api(cloudwatch: Any) -> None:
    ensure_connection_alarm(cloudwatch, "api1", "a")
    ensure_connection_alarm(cloudwatch, "api2", "b")
    assert sorted(a["AlarmName"] for a in alarms(cloudwatch)) == [
        "livelambda-api1-connections",
        "livelambda-api2-connections",
    ]


def test_delete_removes_only_that_api_and_tolerates_absence(cloudwatch: Any) -> None:
    ensure_connection_alarm(cloudwatch, "api1", "a")
    ensure_connection_alarm(cloudwatch, "api2", "b")
    delete_connection_alarm(cloudwatch, "api1")
    assert [a["AlarmName"] for a in alarms(cloudwatch)] == ["livelambda-api2-connections"]
    delete_connection_alarm(cloudwatch, "api1")  # already gone: no error
    assert len(alarms(cloudwatch)) == 1


# --- connection_count -------------------------------------------------------------------------------


def test_count_is_none_without_data(cloudwatch: Any) -> None:
    assert connection_count(cloudwatch, API, datetime.now(timezone.utc)) is None


def test_count_reads_the_latest_datapoint(cloudwatch: Any) -> None:
    now = datetime.now(timezone.utc)
    put_connections(cloudwatch, API, 40, now - timedelta(minutes=4))
    put_connections(cloudwatch, API, 7, now - timedelta(minutes=1))
    put_connections(cloudwatch, "other-api", 999, now - timedelta(seconds=30))
    assert connection_count(cloudwatch, API, now) == 7


def test_count_ignores_data_older_than_the_lookback(cloudwatch: Any) -> None:
    now = datetime.now(timezone.utc)
    put_connections(cloudwatch, API, 12, now - timedelta(minutes=30))
    assert connection_count(cloudwatch, API, now) is None


def test_count_takes_naive_now_as_utc(cloudwatch: Any) -> None:
    now = datetime.now(timezone.utc)
    put_connections(cloudwatch, API, 3, now - timedelta(minutes=2))
    assert connection_count(cloudwatch, API, now.replace(tzinfo=None)) == 3
