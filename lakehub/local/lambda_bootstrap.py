"""Child process of the local Lambda runner: call a function's handler once.

Reads {"event", "context", "handler"} as JSON on stdin; the function's unpacked code is the
working directory (and first on sys.path). Exit 0 when the handler returned, 1 when it raised.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
import traceback
import uuid


class Context:
    """The parts of the Lambda context object that crhelper and handlers use."""

    def __init__(self, info: dict):
        self.function_name = info["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = info["invoked_function_arn"]
        self.memory_limit_in_mb = info["memory_limit_in_mb"]
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = info["log_group_name"]
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + float(info["timeout"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    request = json.loads(sys.stdin.read())
    sys.path.insert(0, ".")
    module_name, _, func_name = request["handler"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
        result = getattr(module, func_name)(request["event"], Context(request["context"]))
    except Exception:  # noqa: BLE001 - reported like Lambda: in the log, non-zero exit
        traceback.print_exc()
        return 1
    print(json.dumps({"result": result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
