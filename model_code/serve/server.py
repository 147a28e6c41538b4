"""The server: gunicorn's arbiter forking uvicorn workers (`transport.Worker`) on one listening socket,
after loading the model once; and the command line (`python -m model_code serve`)."""

from __future__ import annotations

import argparse
import gc
import math
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from model_code import env
from model_code.serve.config import ServeConfig, log

LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, tarfile.TarError)
WORKER_TIMEOUT_SECONDS = 60
"""A worker silent this long is killed and replaced: InvokeEndpoint gives up on a request after 60 s."""
KEEPALIVE_SECONDS = 75
"""Idle keep-alive connections live longer than the 60 s idle timeout of the balancer in front
(SageMaker's, an ALB's), so the server never closes one the balancer is about to reuse."""
CAPTURE_FLUSH_SECONDS = 5.0


def serve(config: ServeConfig) -> int:
    """Load the model, then run gunicorn with ``config.workers`` workers until SIGTERM (graceful) or
    SIGINT; 1 if the model does not load or a worker's final capture flush lost records."""
    metrics_dir = tempfile.mkdtemp(prefix="mlops-serve-metrics-")
    previous = env.use_multiprocess_metrics(Path(metrics_dir))  # before prometheus_client is imported
    server = os.getpid()
    try:
        return _serve(config, server)
    finally:
        if os.getpid() == server:  # a worker's exit passes through here too: the folder is the server's
            shutil.rmtree(metrics_dir, ignore_errors=True)
            env.use_multiprocess_metrics(previous)


def _serve(config: ServeConfig, server: int) -> int:
    from gunicorn.app.base import BaseApplication

    from model_code.serve.app import App
    from model_code.serve.asgi import AsgiApp
    from model_code.serve.metrics import Metrics, mark_process_dead
    from model_code.serve.transport import Worker

    app = App(config, Metrics())
    try:
        # once, before forking: the workers share the model copy-on-write and start at once. One OpenMP
        # thread while loading (the scorer's probe predicts): a thread pool started here would not survive
        # the fork (libgomp), and the workers would hang in their first predict
        with threadpool_limits(1, user_api="openmp"):
            app.load()
    except LOAD_ERRORS as exc:
        log("model_load_failed", level="error", path=str(config.model_path), error=f"{type(exc).__name__}: {exc}")
        return 1
    # What is loaded now lives as long as the server: out of the collector's sight, a full collection in
    # a worker no longer walks the model's objects (nor writes to their pages, which the fork shares)
    gc.freeze()
    flush = min(CAPTURE_FLUSH_SECONDS, config.shutdown_timeout / 3)
    Worker.drain_seconds = max(1, int(config.shutdown_timeout - flush))
    host = f"[{config.host}]" if ":" in config.host else config.host

    def when_ready(arbiter: Any) -> None:
        port = arbiter.LISTENERS[0].sock.getsockname()[1]
        log("listening", host=config.host, port=port, workers=config.workers, model=str(config.model_path),
            capture=str(config.capture.directory) if config.capture else None)

    def child_exit(_arbiter: Any, worker: Any) -> None:
        mark_process_dead(worker.pid)

    options = {
        "bind": [f"{host}:{config.port}"],
        "workers": config.workers,
        "worker_class": f"{Worker.__module__}.{Worker.__qualname__}",
        "preload_app": True,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "graceful_timeout": math.ceil(config.shutdown_timeout) + 1,  # uvicorn drains, capture flushes, SIGKILL
        "keepalive": KEEPALIVE_SECONDS,
        "backlog": 2048,
        "when_ready": when_ready,
        "child_exit": child_exit,
        "logconfig_dict": LOGGING,
        "accesslog": None,  # one JSON line per request comes from the application (asgi.py)
        "proc_name": "model_code-serve",
        # gunicorn's runtime control socket (change the worker count, reload) at one path per user: off,
        # nothing manages the server but its signals, and two servers on a host would share the path
        "control_socket_disable": True,
    }

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return AsgiApp(app, flush)

    code: Any = 0
    try:
        Server().run()
    except SystemExit as exc:  # the arbiter ends with sys.exit; so does a worker, forked inside run()
        if os.getpid() != server:
            raise
        code = exc.code
    code = (code if isinstance(code, int) else 1) or int(app.flush_failures.value > 0)
    log("stopped", level="error" if code else "info", exit_code=code, capture_flushed=app.flush_failures.value == 0)
    return code


LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"json": {"class": "model_code.serve.config.JsonLogHandler"}},
    "loggers": {
        "gunicorn.error": {"handlers": ["json"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["json"], "level": "WARNING"},
}
"""gunicorn's and uvicorn's own log lines as the same JSON lines as the application's (config.log)."""


# --- command line ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_code.serve",
        description="Serve the model over HTTP on SageMaker's container contract (GET /ping, POST /invocations, "
        "GET /metrics). Options override the environment variables (python -m model_code env).",
    )
    p.add_argument(
        "--model",
        type=Path,
        help="model.joblib, model.tar.gz, or a folder holding one (default: $SM_MODEL_DIR or /opt/ml/model)",
    )
    p.add_argument("--host", help="address to bind (default: $MLOPS_SERVE_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080; 0 = any free port)")
    p.add_argument(
        "--workers", type=int, help="worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS, else one per CPU)"
    )
    return p


def main(argv: Sequence[str] | None = None, *, environ: Any = None) -> int:
    args = build_parser().parse_args(argv)
    env.limit_openmp_threads()  # before sklearn (and its OpenMP runtime) is imported
    if args.workers is not None and args.workers < 1:
        print("--workers must be >= 1", file=sys.stderr)
        return 2
    try:
        config = ServeConfig.from_env(
            environ, model_path=args.model, host=args.host, port=args.port, workers=args.workers
        )
    except env.EnvError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
