import json
import os

# Module state survives between invocations of a warm instance.
invocations = 0


def handler(event, context):
    global invocations
    invocations += 1
    name = event.get("name", "World") if isinstance(event, dict) else "World"
    print(f"greeting {name} (invocation {invocations} of this instance)")
    return {
        "message": f"{os.environ.get('GREETING', 'Hello')}, {name}!",
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "invocations": invocations,
    }
