"""The application as ASGI: routes, the request body under its size limit, one response per request, a
metric and a log line for each. The HTTP itself (parsing, keep-alive, pipelining) is uvicorn's."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from model_code.serve.app import App, Response, error_response
from model_code.serve.config import log
from model_code.serve.protocol import INFERENCE_ID_HEADER, RequestError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

ROUTES = {"/ping": "GET", "/invocations": "POST", "/metrics": "GET", "/execution-parameters": "GET"}
ROUTE_LIST = ", ".join(f"{method} {path}" for path, method in ROUTES.items())
_INFERENCE_ID = INFERENCE_ID_HEADER.lower().encode()


class AsgiApp:
    """`App` behind ASGI 3. Scoring runs on the event loop: it is CPU-bound, so a thread would only add
    a hand-off, and each worker process scores one request at a time either way."""

    def __init__(self, app: App, capture_flush_seconds: float) -> None:
        self.app = app
        self.capture_flush_seconds = capture_flush_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Startup: this worker's capture writer. Shutdown (after uvicorn drained the connections): flush it."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.app.start_worker()
                except OSError as exc:  # e.g. a capture folder that cannot be created
                    log("worker_start_failed", level="error", error=f"{type(exc).__name__}: {exc}")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.app.stop_worker(self.capture_flush_seconds)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        allowed = ROUTES.get(path)
        handler = path[1:] if allowed else "other"
        headers = dict(scope["headers"])  # uvicorn lowercases names; a repeated header keeps its last value
        if allowed is None:
            response = error_response(RequestError(404, "not_found", f"no route {path!r}; routes: {ROUTE_LIST}"))
        elif method != allowed:
            response = error_response(
                RequestError(405, "method_not_allowed", f"{method} {path} is not supported; use {allowed} {path}")
            )
            response.headers["Allow"] = allowed
            response.close = True  # any request body is not read
        elif path == "/ping":
            response = self.app.ping()
        elif path == "/metrics":
            response = self.app.metrics_text()
        elif path == "/execution-parameters":
            response = self.app.execution_parameters()
        else:
            try:
                body = await self._read_body(headers, receive)
            except RequestError as exc:
                response = error_response(exc)
            else:
                if body is None:  # the client went away before its body was complete
                    return
                response = self.app.invocations(
                    _text(headers.get(b"content-type")),
                    _text(headers.get(b"accept")),
                    body,
                    _text(headers.get(_INFERENCE_ID)),
                )
        seconds = time.perf_counter() - started
        # counted before the client can see the response: a /metrics read after it includes it
        self.app.metrics.observe(handler, response.status, seconds)
        await send({"type": "http.response.start", "status": response.status, "headers": _headers(response)})
        await send({"type": "http.response.body", "body": response.body})
        fields: dict[str, Any] = {"method": method, "path": path, "status": response.status,
                                  "latency_ms": round(seconds * 1000, 3), "rows": response.rows}
        if response.error:
            fields["error"] = response.error
        log("request", level="info" if response.status < 500 else "error", **fields)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        """The body, refused with 413 before reading when Content-Length says it is too large, and while
        reading when a chunked one grows past the limit."""
        limit = self.app.config.max_payload_bytes
        declared = headers.get(b"content-length")  # uvicorn's parser refused a malformed or conflicting one
        if declared is not None and int(declared) > limit:
            raise _too_large(f"of {int(declared)} bytes", limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(f"of more than {limit} bytes", limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(size: str, limit: int) -> RequestError:
    message = f"request body {size} exceeds the limit of {limit} bytes (MLOPS_SERVE_MAX_PAYLOAD_BYTES)"
    return RequestError(413, "payload_too_large", message, close=True)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _headers(response: Response) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", response.content_type.encode()), (b"content-length", str(len(response.body)).encode())]
    out += [(name.lower().encode(), value.encode("latin-1")) for name, value in response.headers.items()]
    if response.close:
        out.append((b"connection", b"close"))
    return out
