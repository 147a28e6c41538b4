"""Serving benchmark: ``python -m model_code serve`` against MLflow's scoring server, same model.

    .venv/bin/python bench/serving.py [--workers 2] [--single 300] [--batches 40] [--threads 4]

Trains one small model with the train step's own function, saves the same fitted sklearn
Pipeline as an MLflow model (``pyfunc_predict_fn="predict_proba"``, so both servers compute the
same probabilities), starts both servers on 127.0.0.1 with the same worker count and
``OMP_NUM_THREADS=1``, checks they return the same scores, then sends the same load to each:

* sequential: ``--single`` one-row requests, then ``--batches`` requests of 100 rows, one
  keep-alive connection;
* concurrent: ``--threads`` client threads, each ``--single // 2`` one-row requests on its own
  keep-alive connection.

Every request is CSV with a header row (both servers accept it). Prints p50/p99 latency and
throughput per phase and server, and the ratios ours/mlflow (latency: < 1 is faster; throughput:
> 1 is faster). Both servers are stopped (SIGTERM to their process groups, then SIGKILL) and the
whole run is bounded by ``--deadline`` seconds. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_code.data import synthesize, write_csv  # noqa: E402
from model_code.model import load_model  # noqa: E402
from model_code.train import TrainPaths, resolve_hyperparameters, train  # noqa: E402

BATCH_ROWS = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self, grace: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the group this script created for it
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        return self.proc.returncode


def start(name: str, cmd: list[str], port: int, env: dict[str, str], workdir: Path) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Proc(name, proc, port, log)


def wait_ready(p: Proc, deadline: float) -> None:
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{p.name} not ready in time:\n{p.log.read_text()[-3000:]}")


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, body: bytes) -> tuple[float, bytes]:
        started = time.perf_counter()
        self.conn.request("POST", "/invocations", body=body,
                          headers={"Content-Type": "text/csv", "Accept": "application/json"})
        resp = self.conn.getresponse()
        out = resp.read()
        elapsed = time.perf_counter() - started
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {out[:300]!r}")
        return elapsed, out

    def close(self) -> None:
        self.conn.close()


def csv_body(frame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


@dataclass
class Result:
    latencies: list[float]
    seconds: float
    rows: int

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def sequential(port: int, bodies: list[bytes], rows_each: int) -> Result:
    client = Client(port)
    try:
        started = time.perf_counter()
        latencies = [client.post(b)[0] for b in bodies]
        return Result(latencies, time.perf_counter() - started, rows_each * len(bodies))
    finally:
        client.close()


def concurrent(port: int, bodies: list[bytes], threads: int) -> Result:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = Client(port)
        try:
            latencies[i] = [client.post(b)[0] for b in bodies]
        except (OSError, RuntimeError) as exc:
            errors.append(exc)
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"concurrent phase failed: {errors[0]}")
    flat = [x for lat in latencies for x in lat]
    return Result(flat, seconds, len(flat))


def scores(server: str, out: bytes) -> np.ndarray:
    preds = json.loads(out)["predictions"]
    if server == "ours":
        return np.array([p["score"] for p in preds])
    return np.array([p[1] if isinstance(p, list) else p["1"] for p in preds])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/serving.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--single", type=int, default=300, help="sequential one-row requests")
    ap.add_argument("--batches", type=int, default=40, help=f"sequential {BATCH_ROWS}-row requests")
    ap.add_argument("--threads", type=int, default=4, help="client threads in the concurrent phase")
    ap.add_argument("--deadline", type=float, default=110.0, help="seconds for the whole run")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    deadline = t0 + args.deadline
    print(f"# {' '.join(sys.argv)}")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    write_csv(synthesize(8000, seed=1), work / "train" / "train.csv")
    write_csv(synthesize(2000, seed=2), work / "validation" / "validation.csv")
    hp = resolve_hyperparameters({"max_iter": "100", "permutation_repeats": "1"})
    train(TrainPaths(work / "train", work / "validation", work / "model", work / "out", work / "hp.json"), hp,
          environ={})
    model = load_model(work / "model")
    print(f"# model trained in {time.monotonic() - t0:.1f}s")

    import mlflow.sklearn  # the peer's model format (full mlflow is in the dev venv, not the image)

    mlflow.sklearn.save_model(model.estimator, str(work / "mlflow-model"), pyfunc_predict_fn="predict_proba",
                              serialization_format="cloudpickle")  # as train logs it

    venv_bin = str(Path(sys.executable).parent)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "MLOPS_", "SAGEMAKER_"))}
    base.update({"PATH": venv_bin + os.pathsep + base.get("PATH", ""), "OMP_NUM_THREADS": "1",
                 "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO)})
    ours_port, mlflow_port = free_port(), free_port()
    servers = {
        "ours": start("ours", [sys.executable, "-m", "model_code", "serve", "--model", str(work / "model"),
                               "--host", "127.0.0.1", "--port", str(ours_port), "--workers", str(args.workers)],
                      ours_port, base, work),
        "mlflow": start("mlflow", [str(Path(venv_bin) / "mlflow"), "models", "serve", "-m", str(work / "mlflow-model"),
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mlflow_port),
                                   "-w", str(args.workers)],
                        mlflow_port, base, work),
    }
    try:
        for p in servers.values():
            wait_ready(p, min(deadline, time.monotonic() + 60))
        print(f"# both servers ready after {time.monotonic() - t0:.1f}s; workers={args.workers}, "
              f"OMP_NUM_THREADS=1, {os.cpu_count()} CPUs, model {model.estimator.named_steps['model'].n_iter_} trees")

        # complete rows only: MLflow's server reads CSV with pandas type inference, so a single row
        # with a missing categorical becomes a float column and its encoder fails (HTTP 400)
        rows = synthesize(6000, seed=7)[model.schema.feature_names].dropna().reset_index(drop=True)
        singles = [csv_body(rows.iloc[i:i + 1]) for i in range(args.single)]
        batches = [csv_body(rows.iloc[(i * BATCH_ROWS) % 4900:][:BATCH_ROWS]) for i in range(args.batches)]
        per_thread = max(1, args.single // 2)
        conc = [csv_body(rows.iloc[i:i + 1]) for i in range(per_thread)]

        # same answers first (and warm-up)
        check = {name: scores(name, Client(p.port).post(batches[0])[1]) for name, p in servers.items()}
        diff = float(np.max(np.abs(check["ours"] - check["mlflow"])))
        print(f"# max |score difference| ours vs mlflow on {BATCH_ROWS} rows: {diff:.2e}")
        for p in servers.values():
            sequential(p.port, singles[:30], 1)

        phases: list[tuple[str, Callable[[int], Result], str]] = [
            (f"single-row x{args.single}", lambda port: sequential(port, singles, 1), "req/s"),
            (f"batch {BATCH_ROWS} rows x{args.batches}", lambda port: sequential(port, batches, BATCH_ROWS), "rows/s"),
            (f"concurrent {args.threads} threads x{per_thread} single-row",
             lambda port: concurrent(port, conc, args.threads), "req/s"),
        ]
        header = f"{'phase':<42} {'server':<7} {'p50 ms':>8} {'p99 ms':>8} {'throughput':>12}"
        print(header)
        print("-" * len(header))
        ratios = []
        for title, run, unit in phases:
            results = {}
            for name, p in servers.items():
                if time.monotonic() > deadline - 10:
                    raise RuntimeError("deadline reached; lower --single/--batches")
                results[name] = r = run(p.port)
                tput = r.rows_per_s if unit == "rows/s" else r.rps
                print(f"{title:<42} {name:<7} {r.p(50):8.2f} {r.p(99):8.2f} {tput:9.0f} {unit}")
            o, m = results["ours"], results["mlflow"]
            tput_ratio = (o.rows_per_s / m.rows_per_s) if unit == "rows/s" else (o.rps / m.rps)
            ratios.append((title, o.p(50) / m.p(50), o.p(99) / m.p(99), tput_ratio))
        print()
        print(f"{'ratio ours/mlflow':<42} {'p50':>8} {'p99':>8} {'throughput':>12}")
        for title, r50, r99, rt in ratios:
            print(f"{title:<42} {r50:8.2f} {r99:8.2f} {rt:11.2f}x")
        print(f"# total run {time.monotonic() - t0:.1f}s")
    finally:
        codes = {name: p.stop() for name, p in servers.items()}
        print(f"# servers stopped: exit codes {codes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
