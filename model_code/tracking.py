"""MLflow tracking as the steps use it: one error type, one-line messages naming the server.

mlflow is imported only when a step tracks, so steps run without it when tracking is off. The
tracking URI is whatever the pipeline hands the step: a SageMaker managed server's ARN (resolved by
the sagemaker-mlflow plugin in requirements.txt) or an http(s) server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from model_code import env


class TrackingError(RuntimeError):
    """The MLflow tracking server cannot be used (unreachable, refused, or a URI MLflow cannot resolve)."""


@contextmanager
def tracking(uri: str) -> Iterator[Any]:
    """The mlflow module pointed at `uri`; any MLflow failure inside becomes one TrackingError line."""
    env.disable_mlflow_telemetry()
    import mlflow
    from mlflow.exceptions import MlflowException

    # sagemaker-mlflow's request-header plugin claims every tracking URI and fails to parse a non-ARN
    # one; MLflow then logs a warning per request (and still sends it). Keep those out of the job's log.
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    try:
        mlflow.set_tracking_uri(uri)
        yield mlflow
    except MlflowException as exc:
        reason = " ".join(str(exc).split())[:400]
        raise TrackingError(f"MLflow tracking server {uri} cannot be used: {reason}") from None
