"""Prometheus metrics shared by the worker processes."""

from __future__ import annotations

import multiprocessing

# --- metrics shared by the worker processes -----------------------------------------------------
HANDLERS = ("invocations", "ping", "metrics", "other")
CODES = ("200", "400", "404", "405", "406", "411", "413", "415", "500", "503", "other")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SCALARS = ("rows_scored", "capture_written", "capture_dropped", "capture_failed", "workers_ready")


class Metrics:
    """Counters in shared memory (created before the workers fork), guarded by one lock."""

    _per_series = 2 + len(BUCKETS)  # count, sum, one slot per finite bucket

    def __init__(self) -> None:
        self._lock = multiprocessing.Lock()
        size = len(HANDLERS) * len(CODES) * self._per_series + len(_SCALARS)
        self._values = multiprocessing.RawArray("d", size)
        self.info: dict[str, str] = {}
        self.workers = 1

    def _base(self, handler: str, code: int) -> int:
        h = HANDLERS.index(handler) if handler in HANDLERS else len(HANDLERS) - 1
        c = CODES.index(str(code)) if str(code) in CODES else len(CODES) - 1
        return (h * len(CODES) + c) * self._per_series

    def _scalar(self, name: str) -> int:
        return len(HANDLERS) * len(CODES) * self._per_series + _SCALARS.index(name)

    def observe(self, handler: str, code: int, seconds: float) -> None:
        base = self._base(handler, code)
        bucket = next((i for i, b in enumerate(BUCKETS) if seconds <= b), None)
        with self._lock:
            self._values[base] += 1
            self._values[base + 1] += seconds
            if bucket is not None:
                self._values[base + 2 + bucket] += 1

    def add(self, name: str, amount: float) -> None:
        with self._lock:
            self._values[self._scalar(name)] += amount

    def value(self, name: str) -> float:
        return self._values[self._scalar(name)]

    def render(self) -> str:
        with self._lock:
            values = list(self._values)
        out = [
            "# HELP mlops_serve_requests_total HTTP requests by handler and status code.",
            "# TYPE mlops_serve_requests_total counter",
        ]
        series = []
        for handler in HANDLERS:
            for code in CODES:
                base = self._base(handler, int(code) if code.isdigit() else 0)
                if values[base]:
                    series.append((handler, code, base))
                    out.append(f'mlops_serve_requests_total{{handler="{handler}",code="{code}"}} {values[base]:.0f}')
        out += [
            "# HELP mlops_serve_request_duration_seconds Request latency (headers parsed to response ready).",
            "# TYPE mlops_serve_request_duration_seconds histogram",
        ]
        for handler, code, base in series:
            labels = f'handler="{handler}",code="{code}"'
            cumulative = 0.0
            for i, b in enumerate(BUCKETS):
                cumulative += values[base + 2 + i]
                out.append(f'mlops_serve_request_duration_seconds_bucket{{{labels},le="{b}"}} {cumulative:.0f}')
            out.append(f'mlops_serve_request_duration_seconds_bucket{{{labels},le="+Inf"}} {values[base]:.0f}')
            out.append(f"mlops_serve_request_duration_seconds_sum{{{labels}}} {values[base + 1]!r}")
            out.append(f"mlops_serve_request_duration_seconds_count{{{labels}}} {values[base]:.0f}")
        rows = values[self._scalar("rows_scored")]
        out += [
            "# HELP mlops_serve_rows_scored_total Rows scored by /invocations.",
            "# TYPE mlops_serve_rows_scored_total counter",
            f"mlops_serve_rows_scored_total {rows:.0f}",
            "# HELP mlops_serve_capture_records_total Data-capture records by outcome.",
            "# TYPE mlops_serve_capture_records_total counter",
        ]
        for outcome in ("written", "dropped", "failed"):
            v = values[self._scalar(f"capture_{outcome}")]
            out.append(f'mlops_serve_capture_records_total{{outcome="{outcome}"}} {v:.0f}')
        out += [
            "# HELP mlops_serve_workers Worker processes.",
            "# TYPE mlops_serve_workers gauge",
            f"mlops_serve_workers {self.workers}",
            "# HELP mlops_serve_workers_ready Worker processes that have loaded the model.",
            "# TYPE mlops_serve_workers_ready gauge",
            f"mlops_serve_workers_ready {values[self._scalar('workers_ready')]:.0f}",
        ]
        if self.info:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(self.info.items()))
            out += [
                "# HELP mlops_serve_model_info The model this worker serves.",
                "# TYPE mlops_serve_model_info gauge",
                f"mlops_serve_model_info{{{labels}}} 1",
            ]
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
