"""The HTTP server: a pre-forked pool of standard-library HTTP/1.1 workers on one listening socket, and
the command line (`python -m model_code serve`)."""

from __future__ import annotations

import argparse
import os
import pickle
import select
import signal
import socket
import socketserver
import sys
import tarfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from model_code import env
from model_code.serve.app import App, Response, error_response
from model_code.serve.config import ServeConfig, log
from model_code.serve.metrics import Metrics
from model_code.serve.protocol import INFERENCE_ID_HEADER, RequestError

KEEPALIVE_SECONDS = 60.0
SOCKET_TIMEOUT_SECONDS = 60.0


# --- HTTP ----------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mlops-stack-serve"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = SOCKET_TIMEOUT_SECONDS
    server: Server

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            if not self._await_request():
                return
            self.handle_one_request()

    def _await_request(self) -> bool:
        """Wait for the next request on a keep-alive connection, giving up at shutdown or idle timeout."""
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLPRI)
        idle_until = time.monotonic() + KEEPALIVE_SECONDS
        while True:
            if poller.poll(200):  # bytes already sent are a request in flight, even while stopping
                return True
            if self.server.stopping.is_set() or time.monotonic() > idle_until:
                return False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log("http", level="warning", client=self.client_address[0], message=format % args)

    def _send(self, response: Response, started: float, handler: str) -> None:
        close = response.close or self.server.stopping.is_set()
        head = [
            f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            f"Server: {self.server_version}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if close:
            head.append("Connection: close")
            self.close_connection = True
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
        seconds = time.perf_counter() - started
        # counted before the client can see the response: a /metrics read after it includes it
        self.server.metrics.observe(handler, response.status, seconds)
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True
        fields: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "status": response.status,
            "latency_ms": round(seconds * 1000, 3),
            "rows": response.rows,
        }
        if response.error:
            fields["error"] = response.error
        log("request", level="info" if response.status < 500 else "error", **fields)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path == "/ping":
            self._send(app.ping(), started, "ping")
        elif path == "/metrics":
            text = self.server.metrics.render().encode()
            self._send(Response(200, "text/plain; version=0.0.4; charset=utf-8", text), started, "metrics")
        elif path == "/invocations":
            self._send(
                error_response(RequestError(405, "method_not_allowed", "use POST /invocations")), started, "invocations"
            )
        else:
            self._send(
                error_response(
                    RequestError(
                        404, "not_found", f"no route {path!r}; routes: GET /ping, POST /invocations, GET /metrics"
                    )
                ),
                started,
                "other",
            )

    def do_POST(self) -> None:  # noqa: N802
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        handler = "invocations" if path == "/invocations" else "other"
        try:
            body = self._read_body()
        except RequestError as exc:
            self._send(error_response(exc), started, handler)
            return
        if body is None:  # client went away mid-body
            self.close_connection = True
            return
        if path != "/invocations":
            status, message = (405, "use GET") if path in ("/ping", "/metrics") else (404, f"no route {path!r}")
            self._send(
                error_response(RequestError(status, "not_found" if status == 404 else "method_not_allowed", message)),
                started,
                handler,
            )
            return
        response = self.server.app.invocations(
            self.headers.get("Content-Type"), self.headers.get("Accept"), body, self.headers.get(INFERENCE_ID_HEADER)
        )
        self._send(response, started, handler)

    def _not_allowed(self) -> None:
        started = time.perf_counter()
        try:
            self._read_body()
        except RequestError:
            self.close_connection = True
        self._send(
            error_response(
                RequestError(
                    405,
                    "method_not_allowed",
                    f"{self.command} is not supported; use GET /ping, GET /metrics, POST /invocations",
                )
            ),
            started,
            "other",
        )

    do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError(
                411, "length_required", "chunked bodies are not supported; send Content-Length", close=True
            )
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else 0
            if length < 0:
                raise ValueError(raw)
        except ValueError as exc:
            raise RequestError(
                400, "bad_content_length", f"Content-Length {raw!r} is not a byte count", close=True
            ) from exc
        limit = self.server.app.config.max_payload_bytes
        if length > limit:
            raise RequestError(
                413,
                "payload_too_large",
                f"request body of {length} bytes exceeds the limit of {limit} bytes (MLOPS_SERVE_MAX_PAYLOAD_BYTES)",
                close=True,
            )
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:
            return None
        return body if len(body) == length else None


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A TCP server on an already listening socket; tracks its connection threads for draining."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, app: App, metrics: Metrics) -> None:
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.app, self.metrics = app, metrics
        self.stopping = threading.Event()
        self._connections: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        with self._threads_lock:
            self._connections.add(thread)
        thread.start()

    def _run(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._threads_lock:
                self._connections.discard(threading.current_thread())

    def drain(self, deadline: float) -> bool:
        """Wait for the connection threads (in-flight requests) until the deadline."""
        while True:
            with self._threads_lock:
                threads = list(self._connections)
            if not threads:
                return True
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                with self._threads_lock:
                    return not self._connections


LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, tarfile.TarError)


def run_worker(config: ServeConfig, sock: socket.socket, metrics: Metrics) -> int:
    """One worker: serve at once (ping 503), load the model (ping 200), serve until SIGTERM, drain."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app = App(config, metrics)
    server = Server(sock, app, metrics)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="accept", daemon=True)
    loop.start()
    code = 0
    try:
        app.load()
    except LOAD_ERRORS as exc:
        log("model_load_failed", level="error", path=str(config.model_path), error=f"{type(exc).__name__}: {exc}")
        stop.set()
        code = 1
    while not stop.wait(0.5):
        pass
    log("stopping", reason="load failed" if code else "signal")
    deadline = time.monotonic() + config.shutdown_timeout
    server.stopping.set()
    server.shutdown()
    drained = server.drain(deadline)
    flushed = app.capture.close(max(0.0, deadline - time.monotonic())) if app.capture is not None else True
    server.server_close()
    log("stopped", drained=drained, capture_flushed=flushed)
    return code if drained and flushed else (code or 1)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    # Non-blocking accept: every worker's selector wakes for a new connection but only one gets
    # it; the others must not block in accept() (they could never notice a shutdown request).
    sock.setblocking(False)
    return sock


def serve(config: ServeConfig) -> int:
    """Bind, then run one worker in-process or fork ``config.workers`` of them."""
    import model_code.model  # noqa: F401 -- imported once before forking (copy-on-write for the workers)

    sock = bind(config.host, config.port)
    metrics = Metrics()
    metrics.workers = config.workers
    log(
        "listening",
        host=config.host,
        port=sock.getsockname()[1],
        workers=config.workers,
        model=str(config.model_path),
        capture=str(config.capture.directory) if config.capture else None,
    )
    if config.workers == 1:
        return run_worker(config, sock, metrics)
    return _supervise(config, sock, metrics)


def _supervise(config: ServeConfig, sock: socket.socket, metrics: Metrics) -> int:
    children: dict[int, int] = {}
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(config.workers):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = run_worker(config, sock, metrics)
            finally:
                sys.stdout.flush()
                os._exit(code)
        children[pid] = index
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0 or not stopping:
            log("worker_exited", level="error" if exit_code else "warning", pid=pid, exit_code=exit_code)
            code = 1
            if not stopping:
                forward(signal.SIGTERM, None)
    sock.close()
    log("stopped", exit_code=code)
    return code


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


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
