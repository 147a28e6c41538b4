"""Our application (`model_code.serve.app.App`) behind WSGI, for gunicorn's threaded worker: the other
transport the serving benchmark measures (the image serves through `model_code.serve.asgi`).

    SM_MODEL_DIR=path/to/model gunicorn -k gthread --threads 8 -w N bench.peers.wsgi_app:application
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from model_code.serve.app import App, error_response
from model_code.serve.config import ServeConfig
from model_code.serve.metrics import Metrics
from model_code.serve.protocol import RequestError

APP = App(ServeConfig.from_env(), Metrics())
APP.load()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/ping" and method == "GET":
        response = APP.ping()
    elif path == "/invocations" and method == "POST":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        response = APP.invocations(environ.get("CONTENT_TYPE"), environ.get("HTTP_ACCEPT"), body,
                                   environ.get("HTTP_X_AMZN_SAGEMAKER_INFERENCE_ID"))
    else:
        response = error_response(RequestError(404, "not_found", f"{method} {path}"))
    start_response(f"{response.status} -", [("Content-Type", response.content_type),
                                            ("Content-Length", str(len(response.body)))])
    return [response.body]
