"""A real Prometheus server for local mode: it scrapes the local endpoint's GET /metrics, as a Prometheus
would scrape a serving fleet, and answers PromQL queries over its HTTP API.

The demo starts it when a `prometheus` binary is on PATH (Debian's `prometheus` package; .ci/run installs
it); without one it says so and carries on. Its data lives in the run folder; it stops with the demo
(Ctrl-C included: the demo stops every process it started).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlops.local.aws import free_port

SCRAPE_INTERVAL_S = 1
JOB = "mlops-local-endpoint"
# What the demo's report shows: the endpoint's own counters and latency, as Prometheus computes them.
QUERIES = {
    "requests by handler and code": f'sum by (handler, code) (mlops_serve_requests_total{{job="{JOB}"}})',
    "rows scored": f'sum(mlops_serve_rows_scored_total{{job="{JOB}"}})',
    "invocations p99 latency (s), last 5 min": (
        "histogram_quantile(0.99, sum by (le) (rate(mlops_serve_request_duration_seconds_bucket"
        f'{{job="{JOB}",handler="invocations"}}[5m])))'),
    "scrapes up": f'up{{job="{JOB}"}}',
}


class PrometheusError(RuntimeError):
    pass


@dataclass
class LocalPrometheus:
    url: str
    process: subprocess.Popen
    config: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _get(self, path: str, timeout: float = 5.0) -> dict:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310 (loopback)
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # Prometheus answers a bad query with 400 and a JSON error
            try:
                return json.loads(error.read())
            except ValueError:
                raise PrometheusError(f"{path}: HTTP {error.code}") from None

    def query(self, expression: str) -> list[dict]:
        """An instant PromQL query: [{"labels": {...}, "value": float}, ...]."""
        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        if answer.get("status") != "success":
            raise PrometheusError(f"query {expression!r}: {answer.get('error', answer)}")
        return [{"labels": item["metric"], "value": float(item["value"][1])} for item in answer["data"]["result"]]

    def wait_for_scrape(self, after: float, timeout: float = 30.0) -> None:
        """Until the endpoint has been scraped successfully after `after` (time.time())."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self._get("/api/v1/targets")["data"]["activeTargets"]
            scraped = [t for t in targets if t["health"] == "up" and _epoch(t.get("lastScrape", "")) > after]
            if scraped:
                return
            time.sleep(0.5)
        raise PrometheusError(f"Prometheus did not scrape the endpoint within {timeout:.0f} s; see {self.log}")

    def results(self) -> dict[str, list[dict]]:
        """Every query of QUERIES, by its description."""
        return {name: self.query(expression) for name, expression in QUERIES.items()}


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def start(target: str, directory: Path, binary: str | None = None, timeout: float = 30.0) -> LocalPrometheus | None:
    """Prometheus scraping `target` (host:port of GET /metrics) every second, data under `directory`; None
    when no `prometheus` binary is installed."""
    executable = binary or shutil.which("prometheus")
    if executable is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}],
    }, sort_keys=False))
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [executable, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = LocalPrometheus(f"http://127.0.0.1:{port}", process, config, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(server.url + "/-/ready", timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    server.stop()
    raise PrometheusError(f"prometheus did not become ready within {timeout:.0f} s; see {log}")
