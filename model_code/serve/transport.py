"""HTTP/1.1 on uvicorn (httptools' parser, uvloop), in gunicorn's worker processes.

uvicorn parses, keeps connections alive, answers pipelined requests in order and drains on SIGTERM;
gunicorn replaces a dead worker and kills a stuck one. What neither does is written here, in a subclass
of uvicorn's httptools protocol:

* limits on the request head, which uvicorn's httptools protocol does not bound (its h11 protocol
  bounds the whole head at 16 KiB, with a 400): a URL over ``MAX_URL_BYTES`` gets 414, more than
  ``MAX_HEADERS`` header lines or a head over ``MAX_HEAD_BYTES`` get 431, before the head is held in
  memory whole;
* every request the parser refuses answered as the application's errors are, in JSON: an unknown
  method 405, a malformed or conflicting Content-Length ``bad_content_length``, anything else
  ``bad_request`` with the parser's reason (uvicorn's own answer is a plain-text 400).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from http import HTTPStatus

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from model_code.serve.config import log
from model_code.serve.protocol import RequestError

MAX_URL_BYTES = 8 * 1024
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
# the limits of gunicorn's own parser (limit_request_line 4094, _fields 100, _field_size 8190) and
# nginx's large_client_header_buffers (8 KiB lines): SageMaker's requests are a few hundred bytes


class _Refused(Exception):
    """Raised from a parser callback; httptools re-raises it as HttpParserCallbackError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _refusal: RequestError | None = None
    _in_head = False
    _head_bytes = 0
    _header_bytes = 0
    _received = b""
    _began_in_read = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._refusal, self._in_head, self._head_bytes, self._header_bytes = None, True, 0, 0
        self._began_in_read = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._refuse(414, "uri_too_long", f"the request URL is longer than {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if len(self.headers) >= MAX_HEADERS:
            self._refuse(431, "header_fields_too_large", f"the request has more than {MAX_HEADERS} header fields")
        if self._header_bytes > MAX_HEAD_BYTES:
            self._refuse(431, "header_fields_too_large", f"the request's headers exceed {MAX_HEAD_BYTES} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        head_began = self._in_head
        self._received, self._began_in_read = data, False
        super().data_received(data)
        # httptools holds an incomplete header line until its end arrives: bound what a head may
        # hold across reads (a read that starts a head is not counted, so the bound is this plus one read)
        if head_began and self._in_head and not self._began_in_read and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refusal = RequestError(
                    431, "header_fields_too_large", f"the request head exceeds {MAX_HEAD_BYTES} bytes"
                )
                self._answer(self._refusal)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = RequestError(status, code, message)
        raise _Refused(message)

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this from its `except httptools.HttpParserError` block: the error is at hand."""
        self._answer(self._refusal or _parser_refusal(sys.exc_info()[1], self._received))

    def _answer(self, error: RequestError) -> None:
        body = error.body()
        head = (
            f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()
        log("request_refused", level="warning", status=error.status, code=error.code, error=error.message,
            client=self.client[0] if self.client else None)


_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ /")  # a method token, then a path


def _parser_refusal(exc: BaseException | None, received: bytes) -> RequestError:
    """llhttp's reason, as a status: an unknown method that is a well-formed token is 405, not garbage."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httptools.HttpParserInvalidMethodError) and _REQUEST_LINE.match(received):
        return RequestError(405, "method_not_allowed", f"unknown HTTP method ({reason}); "
                                                       "use GET /ping, GET /metrics, POST /invocations")
    if "content-length" in reason.lower():
        return RequestError(400, "bad_content_length", f"Content-Length refused: {reason}")
    return RequestError(400, "bad_request", f"malformed HTTP request: {reason}")


class Worker(UvicornWorker):
    """gunicorn's worker running uvicorn with the protocol above."""

    drain_seconds = 25
    """How long uvicorn waits for in-flight requests after SIGTERM; `server.serve` sets it before forking."""
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": LimitedHttpToolsProtocol,
        "ws": "none",
        "lifespan": "on",
        "proxy_headers": False,  # nothing forwards to the container; X-Forwarded-* would be a client's claim
        "server_header": False,
    }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = self.drain_seconds

    def handle_exit(self, sig: int, frame: object) -> None:
        """SIGQUIT (what the arbiter sends on SIGINT, its quick shutdown) drains like SIGTERM. uvicorn-worker
        routes SIGQUIT here, where gunicorn only clears a flag uvicorn never reads: the worker went on
        serving until the arbiter's SIGKILL, and its capture was lost."""
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's own handler: stop accepting, drain, lifespan shutdown
