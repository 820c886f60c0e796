"""The smallest Lambda function: invoke it with {"name": "Ada"}."""


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"saying hello to {name}")
    return {
        "message": f"Hello, {name}!",
        "function": context.function_name,
        "request_id": context.aws_request_id,
    }
