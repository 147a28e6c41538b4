"""``python -m model_code serve``: the model behind SageMaker's bring-your-own-container contract.

SageMaker runs the image with the argument ``serve`` and talks HTTP to port 8080
(``SAGEMAKER_BIND_TO_PORT``); the model archive is extracted into ``/opt/ml/model``
(``SM_MODEL_DIR``; a folder holding model.joblib or model.tar.gz, or a path to either file).
Local mode runs the same entrypoint as a process on 127.0.0.1.

API
---
``GET /ping``
    200 ``{"status": "ok", ...model info}``. The model is loaded before the port is bound and the
    workers fork from that process, so every worker that accepts a connection has it.
``POST /invocations``
    Request ``Content-Type``:

    * ``text/csv``: one row per line, the schema's 13 features in schema order, no label. A first
      line made of feature names is a header: then columns may come in any order and a label
      column is ignored. Empty fields are missing values.
    * ``application/json``: ``{"instances": [row, ...]}`` (or a bare ``[row, ...]``); a row is a
      list in schema order or an object keyed by feature name (the label key is ignored).
      ``null`` is a missing value; numbers may be JSON numbers or numeric strings. ``NaN`` and
      ``Infinity`` are not JSON and are refused (``bad_json``); a list where a number belongs is a
      ``type`` error; an integer too large for a float is ``out_of_range``, and one past Python's
      4,300-digit limit is ``bad_json``. ``"nan"`` (CSV or a JSON string) is a ``type`` error: a missing
      value is an empty CSV field or JSON ``null``.

    * ``application/jsonlines``: one row per non-blank line, a list in schema order or an object keyed by
      feature name (what Batch Transform sends with SplitType Line); row i is the i-th non-blank line.

    ``X-Amzn-SageMaker-Inference-Id`` (InvokeEndpoint's InferenceId, 1-64 printable ASCII characters;
    a new UUID when absent) is echoed in the response and kept in the capture record
    (``eventMetadata.inferenceId``), where ground truth joins on it.

    Response in the ``Accept`` type (absent or ``*/*``: the request's type):

    * ``text/csv``: one positive-class probability per line, in request order.
    * ``application/json``: ``{"predictions": [{"score": p, "label": 0|1}, ...]}`` with
      ``label = score >= threshold`` (the threshold stored in the model artifact).
    * ``application/jsonlines``: the same prediction objects, one per line (Batch Transform's AssembleWith Line
      then gives one output line per input record).

    Validation (the schema embedded in the model; rows are 0-based data rows, header excluded):
    wrong field count, unknown or absent columns, non-numeric values, fractional values of integer
    features, values outside the schema's range, and categories the model never saw are rejected
    with 400 (``MLOPS_SERVE_UNKNOWN_CATEGORIES=score`` scores unknown categories as missing instead,
    like ``LoadedModel.predict_proba``). Missing values are scored (the model handles them).

    What scores: the scikit-learn pipeline of model.joblib, or with ``MLOPS_SERVE_RUNTIME=onnx`` onnxruntime on
    the model.onnx train exported beside it (model_code/edge/; the same answers within 1e-5). serve refuses to
    start, saying why, when the artifact records no export or the file's sha256 is not the recorded one.
``GET /execution-parameters``
    What Batch Transform asks before its first mini-batch when the job leaves them unset:
    ``{"MaxConcurrentTransforms": <workers>, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": <limit>}``. In a
    transform job (``SAGEMAKER_BATCH=true``) the payload limit is the job's ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` and serve
    captures nothing itself: the job's DataCaptureConfig does.
``GET /metrics``
    Prometheus text (``prometheus_client``, multiprocess mode: the sum over live and past workers):
    ``mlops_serve_requests_total{handler,code}``, ``mlops_serve_request_duration_seconds{handler,code}``
    (histogram), ``mlops_serve_rows_scored_total``,
    ``mlops_serve_capture_records_total{outcome=written|dropped|failed}``, ``mlops_serve_workers`` (live
    workers) and ``mlops_serve_model_info{model_sha256, content_sha256, mlflow_run_id, git_sha,
    format_version, sklearn} 1`` (model_sha256: of model.joblib, as metrics.json / evaluation.json record it).

Errors are JSON (``application/json``) whatever the Accept header::

    {"status": 400, "code": "unknown_category",
     "message": "field 'sex': value(s) ['M'] at row(s) [1] not among the categories ...",
     "errors": [{"code": "unknown_category", "field": "sex", "rows": [1], "message": "..."}]}

Codes: 400 (``invalid_input``-family codes: ``field_count``, ``missing_field``, ``unknown_field``,
``type``, ``not_integer``, ``out_of_range``, ``unknown_category``, ``empty_body``, ``bad_json``,
``bad_csv``, ``bad_encoding``, ``bad_inference_id``; and from the HTTP parser ``bad_content_length``
(malformed, signed or conflicting) and ``bad_request``), 404 unknown path, 405 other methods (``Allow``
names the route's; an unknown method token too), 406 unsupported Accept, 413 body over
``MLOPS_SERVE_MAX_PAYLOAD_BYTES`` (6 MiB; chunked bodies are read up to it), 414 URL over 8 KiB, 415
unsupported Content-Type, 431 over 100 header fields or 64 KiB of head, 503 model not loaded. Bad input
never gets a 5xx; every error, the parser's included, is JSON with ``Connection: close`` where the
connection cannot be reused.

Process model
-------------
gunicorn's arbiter loads the model, binds the port and forks ``SAGEMAKER_MODEL_SERVER_WORKERS`` uvicorn
workers (``serve.transport``: HTTP/1.1 keep-alive and pipelining, httptools, uvloop). A worker that
dies is replaced at once (forked from the loaded model); one silent for 60 s is killed and replaced.
Scoring is vectorised (one matrix per request) on the worker's event loop. SIGTERM: the listening
socket closes first (new connections are refused, so a balancer's health check fails), in-flight
requests finish and idle connections close, each worker flushes its data capture, and the server exits
0 -- within ``MLOPS_SERVE_SHUTDOWN_TIMEOUT`` -- or 1 if a worker's capture lost records. SIGINT
(Ctrl-C) does the same. Logs: one JSON line per request on stdout (``method, path, status,
latency_ms, rows, worker``), plus lifecycle events and gunicorn's and uvicorn's own lines
(``event: server``). Data capture: see ``model_code.capture``.
"""

from model_code.serve.app import App, Response
from model_code.serve.config import ServeConfig, log
from model_code.serve.metrics import Metrics
from model_code.serve.protocol import Batch, Features, RequestError, negotiate, parse_csv, parse_json, validate
from model_code.serve.scorer import Scorer
from model_code.serve.server import build_parser, main, serve

__all__ = [
    "App",
    "Batch",
    "Features",
    "Metrics",
    "RequestError",
    "Response",
    "Scorer",
    "ServeConfig",
    "build_parser",
    "log",
    "main",
    "negotiate",
    "parse_csv",
    "parse_json",
    "serve",
    "validate",
]
