"""Prometheus metrics of the server, through ``prometheus_client``: in multiprocess mode when the server
runs worker processes (``PROMETHEUS_MULTIPROC_DIR``, set by ``server.main`` before this module is
imported), else in one process's memory."""

from __future__ import annotations

from model_code import env

# prometheus_client chooses multiprocess mode once, when it is first imported, from
# PROMETHEUS_MULTIPROC_DIR: it is imported in the functions below, which run after server.serve set it.

MODEL_INFO_LABELS = ("model_sha256", "content_sha256", "mlflow_run_id", "git_sha", "format_version", "sklearn")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    folder = env.PROMETHEUS_MULTIPROC_DIR.get()
    return None if folder is None else str(folder)


class Metrics:
    """The server's metrics in a registry of their own (a test may build several)."""

    def __init__(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

        self.content_type = CONTENT_TYPE_LATEST  # the text format generate_latest writes
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mlops_serve_requests", "HTTP requests by handler and status code.",
                                ["handler", "code"], registry=r)
        self.duration = Histogram("mlops_serve_request_duration_seconds",
                                  "Request latency (request head parsed to response ready).",
                                  ["handler", "code"], buckets=BUCKETS, registry=r)
        self.rows_scored = Counter("mlops_serve_rows_scored", "Rows scored by /invocations.", registry=r)
        self.capture = Counter("mlops_serve_capture_records", "Data-capture records by outcome.", ["outcome"],
                               registry=r)
        for outcome in ("written", "dropped", "failed"):
            self.capture.labels(outcome)
        # livesum: a worker that dies is dropped from the sum (server.child_exit marks it dead)
        self.workers = Gauge("mlops_serve_workers", "Worker processes serving.", multiprocess_mode="livesum",
                             registry=r)
        self.model_info = Gauge("mlops_serve_model_info", "The model the server serves.",
                                MODEL_INFO_LABELS, multiprocess_mode="max", registry=r)

    def observe(self, handler: str, code: int, seconds: float) -> None:
        self.requests.labels(handler, str(code)).inc()
        self.duration.labels(handler, str(code)).observe(seconds)

    def render(self) -> bytes:
        """Every process's samples when in multiprocess mode, else this registry's."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay: they were served)."""
    from prometheus_client import multiprocess

    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)
