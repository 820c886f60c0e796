import pytest

from devserver.ui.triggers import guess_trigger


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"Records": [{"eventSource": "aws:sqs", "body": "x"}]}, "SQS"),
        ({"Records": [{"EventSource": "aws:sns"}]}, "SNS"),
        ({"Records": [{"eventSource": "aws:s3", "s3": {}}]}, "S3"),
        ({"httpMethod": "GET", "requestContext": {"stage": "dev"}}, "API Gateway REST"),
        ({"version": "2.0", "requestContext": {"http": {"method": "GET"}}}, "API Gateway HTTP"),
        (
            {"version": "2.0", "requestContext": {"http": {}, "domainName": "a.lambda-url.eu-west-1.on.aws"}},
            "Function URL",
        ),
        ({"requestContext": {"elb": {"targetGroupArn": "x"}}}, "ALB"),
        ({"detail-type": "Order Placed", "source": "shop"}, "EventBridge"),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "Scheduled"),
        ({"awslogs": {"data": "x"}}, "CloudWatch Logs"),
        ({"name": "world"}, "direct"),
        ([1, 2], "direct"),
        ("text", "direct"),
        ({"eventSource": "aws:kafka", "records": {}}, "Kafka"),
    ],
)
def test_guess_trigger(event: object, expected: str) -> None:
    assert guess_trigger(event) == expected
