"""The application: routes to responses (ping, invocations), one per worker process, independent of the
HTTP server that carries it."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_code.capture import CaptureWriter
from model_code.schema import Schema
from model_code.serve import metrics
from model_code.serve.config import MIB, ServeConfig, log
from model_code.serve.metrics import Metrics
from model_code.serve.protocol import (
    CSV,
    INFERENCE_ID_HEADER,
    JSON,
    JSONLINES,
    SUPPORTED,
    RequestError,
    inference_id,
    media_type,
    negotiate,
    parse_csv,
    parse_json,
    parse_jsonlines,
    validate,
)
from model_code.serve.scorer import OnnxScorer, Scorer


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes
    rows: int = 0
    error: str | None = None
    close: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def render(output: np.ndarray, scorer: Scorer | OnnxScorer, schema: Schema, response_type: str) -> bytes:
    """The response body per task. CSV: one line per row, the positive class's probability (binary),
    the predicted class (multiclass) or the value (regression). JSON ``{"predictions": [...]}``:
    ``{"score": p, "label": class}`` (binary), ``{"label": class, "score": p of that class,
    "probabilities": {class: p}}`` (multiclass), ``{"value": v}`` (regression). JSON Lines: those objects,
    one per line."""
    task = scorer.task
    if task == "multiclass":
        best = output.argmax(axis=1)
        labels = [schema.label_values[i] for i in best.tolist()]
        if response_type == CSV:
            return ("\n".join(map(str, labels)) + "\n").encode()
        names = [str(v) for v in schema.label_values]
        predictions: list[dict[str, Any]] = [
            {"label": label, "score": row[i], "probabilities": dict(zip(names, row, strict=True))}
            for label, i, row in zip(labels, best.tolist(), output.tolist(), strict=True)]
    elif response_type == CSV:
        return ("\n".join(map(repr, output.tolist())) + "\n").encode()
    elif task == "regression":
        predictions = [{"value": v} for v in output.tolist()]
    else:
        negative, positive = schema.label_values
        threshold = scorer.threshold
        predictions = [{"score": s, "label": positive if s >= threshold else negative} for s in output.tolist()]
    if response_type == JSONLINES:
        return "".join(json.dumps(p) + "\n" for p in predictions).encode()
    return json.dumps({"predictions": predictions}).encode()


def _json_response(status: int, doc: Any) -> Response:
    return Response(status, JSON, json.dumps(doc).encode())


def error_response(exc: RequestError) -> Response:
    return Response(exc.status, JSON, exc.body(), error=exc.message, close=exc.close)


class App:
    """Loaded once in the server's first process (the workers fork from it, the model shared copy-on-write);
    each worker then calls `start_worker` (its capture writer thread) and `stop_worker` when draining."""

    def __init__(self, config: ServeConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.scorer: Scorer | OnnxScorer | None = None
        self.schema: Schema | None = None
        self.info: dict[str, str] = {}
        self.capture: CaptureWriter | None = None
        # workers whose final capture flush lost records: shared memory made before the workers fork,
        # read by the server when they are gone (its exit status)
        self.flush_failures = multiprocessing.Value("i", 0)

    def start_worker(self) -> None:
        if self.config.capture is not None:
            counter = self.metrics.capture
            self.capture = CaptureWriter(
                self.config.capture,
                on_written=lambda n: counter.labels("written").inc(n),
                on_failed=self._capture_failed,
                on_dropped=self._capture_dropped,
            )
        if self.info:
            self.metrics.model_info.labels(*(self.info.get(k, "") for k in metrics.MODEL_INFO_LABELS)).set(1)
        self.metrics.workers.inc()
        log("worker_started", capture=self.capture is not None)

    def stop_worker(self, timeout: float) -> bool:
        """Flush capture; False if any record offered since the worker started was lost."""
        flushed = self.capture.close(timeout) if self.capture is not None else True
        if not flushed:
            with self.flush_failures.get_lock():
                self.flush_failures.value += 1
        log("worker_stopped", capture_flushed=flushed, level="info" if flushed else "error")
        return flushed

    def _capture_failed(self, n: int, reason: str) -> None:
        self.metrics.capture.labels("failed").inc(n)
        log("capture_failed", level="error", records=n, reason=reason)

    def _capture_dropped(self, n: int) -> None:
        self.metrics.capture.labels("dropped").inc(n)
        log("capture_dropped", level="warning", records=n, reason="capture queue full")

    def load(self) -> None:
        from model_code.model import load_model

        started = time.perf_counter()
        model = load_model(self.config.model_path)
        digest = hashlib.sha256()
        with open(model.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        artifact = model.artifact
        mlflow = artifact.get("mlflow") or {}
        provenance = artifact.get("provenance") or {}
        self.info = {
            "model_sha256": digest.hexdigest(),
            "format_version": str(artifact.get("format_version")),
            "mlflow_run_id": str(mlflow.get("run_id") or ""),
            "git_sha": str(provenance.get("MLOPS_GIT_SHA") or ""),
            "sklearn": str((artifact.get("versions") or {}).get("sklearn") or ""),
        }
        if artifact.get("content_sha256"):  # the estimator's digest, equal for equal models
            self.info["content_sha256"] = str(artifact["content_sha256"])
        scorer = OnnxScorer(model) if self.config.runtime == "onnx" else Scorer(model)
        self.schema = model.schema
        self.scorer = scorer  # set last: scores from here on
        log(
            "model_loaded",
            path=str(model.path),
            seconds=round(time.perf_counter() - started, 3),
            runtime=self.config.runtime,
            fast_path=scorer.fast,
            threshold=scorer.threshold,
            **self.info,
        )

    def ping(self) -> Response:
        """200 once the model is loaded (the server forks its workers after that, so every worker is)."""
        if self.scorer is None:
            return _json_response(503, {"status": "loading"})
        return _json_response(200, {"status": "ok", **self.info})

    def execution_parameters(self) -> Response:
        """Batch Transform asks this before its first mini-batch when the job leaves them unset: as many
        concurrent requests as workers, as many records per request as fit the payload limit."""
        return _json_response(200, {
            "MaxConcurrentTransforms": self.config.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": max(1, self.config.max_payload_bytes // MIB),
        })

    def metrics_text(self) -> Response:
        return Response(200, self.metrics.content_type, self.metrics.render())

    def invocations(
        self, content_type: str | None, accept: str | None, body: bytes, inference: str | None = None
    ) -> Response:
        """Score one request; `inference` is its InferenceId header (a new id when absent)."""
        scorer, schema = self.scorer, self.schema
        if scorer is None or schema is None:
            return _json_response(
                503, {"status": 503, "code": "loading", "message": "model not loaded yet", "errors": []}
            )
        try:
            invocation = inference_id(inference)
            request_type = media_type(content_type)
            if request_type not in SUPPORTED:
                raise RequestError(
                    415,
                    "unsupported_content_type",
                    f"Content-Type {content_type!r} is not supported; use one of {list(SUPPORTED)}",
                )
            response_type = negotiate(accept, request_type)
            if response_type is None:
                raise RequestError(406, "not_acceptable", f"Accept {accept!r} matches none of {list(SUPPORTED)}")
            if not body.strip():
                raise RequestError(400, "empty_body", "request body is empty")
            parse = {CSV: parse_csv, JSON: parse_json, JSONLINES: parse_jsonlines}[request_type]
            batch = parse(body, schema)
            features = validate(batch, schema, self.config.unknown_categories == "reject")
        except RequestError as exc:
            return error_response(exc)
        out = render(scorer.score(features), scorer, schema, response_type)
        self.metrics.rows_scored.inc(features.rows)
        if self.capture is not None and self.capture.sampled():
            self.capture.offer(request_type, body, response_type, out, invocation)
        return Response(200, response_type, out, rows=features.rows, headers={INFERENCE_ID_HEADER: invocation})
