"""A no-op handler: returns a constant, so a benchmark measures the platform alone."""


def handler(event, context):
    return {"ok": True}
