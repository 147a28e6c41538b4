"""The local Prometheus server: it scrapes a real /metrics endpoint over a socket and answers PromQL."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from mlops.local import prometheus


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    requests = Counter("mlops_serve_requests", "requests", ["handler", "code"], registry=registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_it_scrapes_the_endpoint_and_answers_promql(metrics_server, tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        assert os.environ.get("MLOPS_REQUIRE_PROMETHEUS") != "1", "prometheus is required here but not installed"
        assert prometheus.start(metrics_server[0], tmp_path) is None  # the demo then says so and carries on
        return
    target, requests = metrics_server
    requests.labels("invocations", "200").inc(7)
    requests.labels("invocations", "400").inc(2)
    server = prometheus.start(target, tmp_path / "prometheus")
    assert server is not None
    try:
        server.wait_for_scrape(time.time())
        answers = server.results()["requests by handler and code"]
        assert sorted((a["labels"]["code"], a["value"]) for a in answers) == [("200", 7.0), ("400", 2.0)]
        assert [a["value"] for a in server.results()["scrapes up"]] == [1.0]
        with pytest.raises(prometheus.PrometheusError, match="parse error"):
            server.query("sum(")
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert (tmp_path / "prometheus" / "data").is_dir()  # its data stays in the run folder


def test_without_a_binary_there_is_no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert prometheus.start("127.0.0.1:1", tmp_path) is None
