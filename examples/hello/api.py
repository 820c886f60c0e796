"""An API Gateway proxy handler: reads the HTTP method, path, query string and JSON body of an
HTTP API (payload 2.0) or REST API (payload 1.0) event and answers with an HTTP response."""

import base64
import json
import os

GREETING = os.environ.get("GREETING", "Hello")


def handler(event, context):
    http = event.get("requestContext", {}).get("http", {})
    method = http.get("method") or event.get("httpMethod", "GET")
    path = event.get("rawPath") or event.get("path", "/")
    query = event.get("queryStringParameters") or {}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return _respond(400, {"error": "the body must be JSON"})

    name = query.get("name") or (data.get("name") if isinstance(data, dict) else None) or "world"
    print(f"{method} {path} name={name}")
    return _respond(
        200,
        {
            "message": f"{GREETING}, {name}!",
            "method": method,
            "path": path,
            "request_id": context.aws_request_id,
        },
    )


def _respond(status, payload):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }
