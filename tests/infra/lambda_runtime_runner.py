"""Runs one Lambda handler the way the Python runtime does; started by tests/infra/integration/test_lambda_runtime.py under an
interpreter whose site-packages hold only the runtime's own SDK (boto3, botocore and their dependencies).

    python lambda_runtime_runner.py TASK_ROOT LAYER_DIR[:LAYER_DIR...] HANDLER EVENT.json RESULT.json

sys.path is the runtime's order: the function's code (/var/task), then each layer's ``python/`` (/opt/python),
then the runtime's packages. Nothing of the test's environment is importable. The handler's return value, or the
error the runtime would report, goes to RESULT.json with the SDK versions the handler ran with.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
import uuid


class LambdaContext:
    """The attributes and method the runtime's context object has that the handlers and Powertools read."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"
        self._deadline = time.monotonic() + 300

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def main(task_root: str, layers: str, handler: str, event_file: str, result_file: str) -> None:
    sys.path[:0] = [task_root, *layers.split(":")]
    with open(event_file, encoding="utf-8") as f:
        event = json.load(f)
    result: dict[str, object] = {}
    try:
        module_name, function_name = handler.rsplit(".", 1)
        function = getattr(importlib.import_module(module_name), function_name)
        result["response"] = function(event, LambdaContext(handler))
    except Exception as exc:  # noqa: BLE001 - reported the way the runtime reports an unhandled error
        result["error"] = {"errorType": type(exc).__name__, "errorMessage": str(exc),
                           "stackTrace": traceback.format_exception(exc)[-6:]}
    import botocore

    result["botocore"] = botocore.__version__
    result["botocore_file"] = botocore.__file__
    result["awscrt"] = "awscrt" in sys.modules and sys.modules["awscrt"].__file__
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump(result, f, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:6])
