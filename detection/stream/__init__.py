"""The fast path: a consumer of the real-time log stream that revokes on concurrent evidence within seconds,
beside the scheduled workflow (the full policy). See :mod:`detection.stream.consumer`."""
