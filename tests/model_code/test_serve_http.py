"""The server as a hostile client drives it, over raw sockets: every request answered (JSON for errors),
pipelined requests in order, a killed worker replaced while the others serve, draining refuses new
connections, a failed capture flush is an error exit. Each case failed on the hand-written transport."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_code.test_serve import GOOD, Server, metric_values, start_server, wait_for


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(model_dir, tmp_path_factory.mktemp("serve-http"), workers=2)
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0


def invocation(body: str = GOOD, **headers: str) -> bytes:
    fields = {"Host": "x", "Content-Type": "text/csv", "Content-Length": str(len(body.encode())), **headers}
    return ("POST /invocations HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
            + body).encode()


def read_response(reader) -> tuple[int, dict[str, str], bytes]:
    """One response from a buffered reader that may hold the next one too (pipelining)."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, reader.read(int(headers.get("content-length", 0)))


def exchange(port: int, data: bytes, responses: int = 1, head: bool = False) -> list[tuple[int, dict, bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        if head:  # a response to HEAD has no body, whatever its Content-Length says
            status_line = reader.readline()
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.decode().partition(":") for line in iter(reader.readline, b"\r\n"))}
            return [(int(status_line.split()[1]), headers, b"")]
        return [read_response(reader) for _ in range(responses)]


def json_error(response: tuple[int, dict, bytes], status: int, code: str) -> dict:
    got, headers, body = response
    assert got == status and headers["content-type"] == "application/json", response
    error = json.loads(body)
    assert error["status"] == status and error["code"] == code, error
    return error


def test_pipelined_requests_are_answered_in_order(server):
    start = time.monotonic()
    first, second, third = exchange(server.port, invocation() + invocation(GOOD + "\n" + GOOD) + invocation(), 3)
    assert time.monotonic() - start < 5  # the old server answered the second after a 60 s idle timeout
    assert [r[0] for r in (first, second, third)] == [200, 200, 200]
    assert [len(r[2].splitlines()) for r in (first, second, third)] == [1, 2, 1]


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PUT", "DELETE", "PATCH", "FOO"])
def test_other_methods_get_405_json(server, method):
    response = exchange(server.port, f"{method} /invocations HTTP/1.1\r\nHost: x\r\n\r\n".encode())[0]
    assert method in json_error(response, 405, "method_not_allowed")["message"] or method == "FOO"


def test_head_gets_405_with_no_body(server):
    status, headers, _ = exchange(server.port, b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n", head=True)[0]
    assert status == 405 and headers["content-type"] == "application/json" and headers["allow"] == "GET"


@pytest.mark.parametrize(("head", "status", "code"), [
    ("GET /" + "a" * 100_000 + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    ("GET /ping HTTP/1.1\r\n" + "".join(f"X-{i}: v\r\n" for i in range(10_000)) + "\r\n", 431,
     "header_fields_too_large"),
    ("GET /ping HTTP/1.1\r\nX-Big: " + "v" * 1_000_000 + "\r\n\r\n", 431, "header_fields_too_large"),
    ("\x16\x03\x01garbage\r\n\r\n", 400, "bad_request"),
    ("GET\r\n\r\n", 400, "bad_request"),
])
def test_oversized_or_garbage_heads_get_4xx_json(server, head, status, code):
    json_error(exchange(server.port, head.encode())[0], status, code)


@pytest.mark.parametrize("length", ["1_0", "+13", "0x10", "-1", "13, 13", "99999999999999999999999"])
def test_malformed_content_length_is_refused(server, length):
    json_error(exchange(server.port, invocation(**{"Content-Length": length}))[0], 400, "bad_content_length")


def test_conflicting_content_lengths_are_refused(server):
    data = invocation().replace(b"\r\n\r\n", f"\r\nContent-Length: {len(GOOD) - 5}\r\n\r\n".encode(), 1)
    json_error(exchange(server.port, data)[0], 400, "bad_content_length")


def test_a_chunked_body_is_read_and_its_limit_applies(server):
    chunked = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked"
               f"\r\n\r\n{len(GOOD[:20]):x}\r\n{GOOD[:20]}\r\n{len(GOOD[20:]):x}\r\n{GOOD[20:]}\r\n0\r\n\r\n")
    status, _, body = exchange(server.port, chunked.encode())[0]
    assert status == 200 and 0 <= float(body) <= 1


def test_a_killed_worker_is_replaced_while_the_other_serves(model_dir, tmp_path):
    srv = start_server(model_dir, tmp_path, workers=2)
    wait_for(lambda: len(workers(srv)) == 2, "two workers")
    victim = sorted(workers(srv))[0]
    outcomes: list[tuple[float, bool]] = []
    stop = threading.Event()

    def client() -> None:  # keep-alive connections, reopened when one breaks
        sock = None
        while not stop.is_set():
            try:
                sock = sock or socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                sock.sendall(invocation())
                ok = read_response(sock.makefile("rb"))[0] == 200
            except (OSError, AssertionError, ValueError, IndexError):
                ok, sock = False, None
            outcomes.append((time.monotonic(), ok))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # load before the kill
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: len(workers(srv) - {victim}) == 2, "a replacement worker", deadline=10)
    replaced_in = time.monotonic() - killed_at
    time.sleep(1.0)  # load after the replacement
    stop.set()
    for t in threads:
        t.join(10)
    after = [ok for when, ok in outcomes if when > killed_at]
    failed = after.count(False)
    assert srv.proc.poll() is None, "the server stopped with its worker"
    assert replaced_in < 5, replaced_in
    assert after.count(True) > 100, (after.count(True), failed)
    assert failed <= 4, failed  # at most the request each client had in flight on the killed worker
    assert metric_values(srv)[("mlops_serve_workers",)] == 2
    assert srv.stop() == 0


def workers(srv: Server) -> set[int]:
    """Pids of workers started and not yet reported dead."""
    lines = srv.log_lines()
    started = {r["worker"] for r in lines if r["event"] == "worker_started"}
    dead = {int(m.split("pid:")[1].split(")")[0]) for r in lines if "pid:" in (m := str(r.get("message", "")))
            and ("was sent" in m or "exited" in m)}
    return started - dead


def test_idle_connections_do_not_starve_a_new_one(server):
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(300)]
    try:
        start = time.monotonic()
        assert server.invoke(GOOD)[0] == 200
        assert time.monotonic() - start < 2
        idle[0].sendall(invocation())  # and an idle one is still served
        assert read_response(idle[0].makefile("rb"))[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_capture_flush_that_fails_is_an_error_exit_with_exact_counts(model_dir, tmp_path):
    capture = tmp_path / "capture"
    capture.mkdir()
    (capture / "my-endpoint").write_text("a file where the endpoint's folder belongs")  # every write fails
    srv = start_server(model_dir, tmp_path, workers=1, MLOPS_CAPTURE_DIR=str(capture),
                       MLOPS_CAPTURE_SAMPLING_PERCENTAGE="100", MLOPS_CAPTURE_ENDPOINT_NAME="my-endpoint",
                       MLOPS_CAPTURE_ROTATE_SECONDS="0.2")
    for _ in range(5):
        assert srv.invoke(GOOD)[0] == 200  # capture never fails a request
    wait_for(lambda: metric_values(srv)[("mlops_serve_capture_records_total", ("outcome", "failed"))] == 5,
             "five failed records")
    counts = metric_values(srv)
    assert counts[("mlops_serve_capture_records_total", ("outcome", "written"))] == 0
    assert srv.stop() == 1
    stopped = srv.log_lines()[-1]
    assert stopped["event"] == "stopped" and stopped["capture_flushed"] is False
    assert [p for p in capture.rglob("*") if p.is_file()] == [capture / "my-endpoint"]


def test_a_head_after_a_large_body_in_one_read_is_not_refused(server):
    """The head limit counts a head's own bytes: the body of the request before it is not charged to it."""
    body = (GOOD + "\n") * (100_000 // (len(GOOD) + 1))
    first = invocation(body)
    head_end = first.index(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(first[:head_end])  # the first head, incomplete
        time.sleep(0.2)
        second = invocation()
        sock.sendall(first[head_end:] + second[:20])  # its end, its 100 KB body, the next head's start
        time.sleep(0.2)
        sock.sendall(second[20:])
        reader = sock.makefile("rb")
        assert [read_response(reader)[0] for _ in range(2)] == [200, 200]


def test_sigint_to_the_server_alone_drains_and_flushes_capture(model_dir, tmp_path):
    """SIGINT to the arbiter (not the whole group, as a terminal would) is gunicorn's quick shutdown: it
    sends its workers SIGQUIT, which must drain them like SIGTERM, not leave them serving until SIGKILL."""
    capture = tmp_path / "capture"
    srv = start_server(model_dir, tmp_path, workers=2, MLOPS_CAPTURE_DIR=str(capture),
                       MLOPS_CAPTURE_SAMPLING_PERCENTAGE="100")
    for _ in range(3):
        assert srv.invoke(GOOD)[0] == 200
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(10) == 0
    records = [line for p in capture.rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(records) == 3
