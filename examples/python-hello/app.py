"""A JSON transform: normalizes a list of orders and totals them.

Module-level state lives as long as the execution environment, so a warm
environment counts the invocations it has served.
"""

import os

invocations = 0


def handler(event, context):
    global invocations
    invocations += 1
    orders = event.get("orders", [])
    items = [
        {"sku": str(order["sku"]).upper(), "quantity": int(order.get("quantity", 1))}
        for order in orders
    ]
    return {
        "items": items,
        "total_quantity": sum(item["quantity"] for item in items),
        "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "request_id": context.aws_request_id,
        "invocations_in_this_environment": invocations,
    }
