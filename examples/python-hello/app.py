"""A greeting function: returns a message for the `name` in the event."""

import os

# Module-level state lives as long as the execution environment, so a warm
# environment counts the invocations it has served.
invocations = 0


def handler(event, context):
    global invocations
    invocations += 1
    name = (event or {}).get("name", "world")
    return {
        "message": f"Hello, {name}!",
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "invocations_in_this_environment": invocations,
    }
