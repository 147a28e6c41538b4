"""Serving configuration (SageMaker's and our environment variables) and structured logs."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_code import env
from model_code.capture import CaptureConfig


# --- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ServeConfig:
    model_path: Path
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    max_payload_bytes: int = 6 * 1024 * 1024
    unknown_categories: str = "reject"
    runtime: str = "sklearn"
    """What scores: the scikit-learn pipeline or onnxruntime on the model's ONNX export (MLOPS_SERVE_RUNTIME)."""
    shutdown_timeout: float = 30.0
    capture: CaptureConfig | None = None
    batch: bool = False
    """A Batch Transform job's container (SAGEMAKER_BATCH): the job captures, serve does not."""

    @classmethod
    def from_env(cls, environ: Any = None, **overrides: Any) -> ServeConfig:
        batch = env.SAGEMAKER_BATCH.get(environ)
        env.SAGEMAKER_BATCH_STRATEGY.get(environ)  # a value Batch Transform never sends fails at startup
        capture_dir = env.MLOPS_CAPTURE_DIR.get(environ)
        capture = None
        if capture_dir is not None and not batch:
            capture = CaptureConfig(
                directory=capture_dir,
                sampling_percentage=env.MLOPS_CAPTURE_SAMPLING_PERCENTAGE.get(environ),
                endpoint=env.MLOPS_CAPTURE_ENDPOINT_NAME.get(environ),
                variant=env.MLOPS_CAPTURE_VARIANT_NAME.get(environ),
                rotate_seconds=env.MLOPS_CAPTURE_ROTATE_SECONDS.get(environ),
                s3_uri=env.MLOPS_CAPTURE_S3_URI.get(environ),
            )
        workers = env.SAGEMAKER_MODEL_SERVER_WORKERS.get(environ)
        values: dict[str, Any] = {
            "model_path": env.SM_MODEL_DIR.get(environ),
            "host": env.MLOPS_SERVE_HOST.get(environ),
            "port": env.SAGEMAKER_BIND_TO_PORT.get(environ),
            "workers": workers or env.cpu_count(),
            "max_payload_bytes": _max_payload_bytes(environ, batch),
            "unknown_categories": env.MLOPS_SERVE_UNKNOWN_CATEGORIES.get(environ),
            "runtime": env.MLOPS_SERVE_RUNTIME.get(environ),
            "shutdown_timeout": env.MLOPS_SERVE_SHUTDOWN_TIMEOUT.get(environ),
            "capture": capture,
            "batch": batch,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


MIB = 1024 * 1024
BATCH_PAYLOAD_CEILING_MB = 100
"""Batch Transform's largest MaxPayloadInMB; also serve's limit for its chunked bodies (MaxPayloadInMB 0)."""


def _max_payload_bytes(environ: Any, batch: bool) -> int:
    """MLOPS_SERVE_MAX_PAYLOAD_BYTES when set; in a batch job the mini-batch size SageMaker announces; else 6 MiB."""
    declared_mb = env.SAGEMAKER_MAX_PAYLOAD_IN_MB.get(environ)
    if env.MLOPS_SERVE_MAX_PAYLOAD_BYTES.is_set(environ) or not batch or declared_mb is None:
        return env.MLOPS_SERVE_MAX_PAYLOAD_BYTES.get(environ)
    return (declared_mb or BATCH_PAYLOAD_CEILING_MB) * MIB


# --- structured logs ----------------------------------------------------------------------------
_log_lock = threading.Lock()


def log(event: str, level: str = "info", **fields: Any) -> None:
    """One JSON line on stdout (SageMaker ships container stdout to CloudWatch Logs)."""
    record = {
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "level": level,
        "event": event,
        "worker": os.getpid(),
        **fields,
    }
    line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class JsonLogHandler(logging.Handler):
    """gunicorn's and uvicorn's log records as `log` lines (event "server"), under the same lock."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            log("server", level=record.levelname.lower(), logger=record.name, message=message)
        except Exception:  # noqa: BLE001 -- logging's contract: a handler reports its own failure
            self.handleError(record)
