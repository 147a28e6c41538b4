"""`mlops demo` (what `make run` calls): the whole lifecycle on embedded defaults, in a few minutes.

Stages (each printed with its timing):

 1. embedded AWS + MLflow   moto server on 127.0.0.1 (S3, SageMaker registry, CloudWatch), MLflow on SQLite
 2. offline plan            the dev stack's resources under Pulumi mocks, checked by the policy pack
 3. train champion          the training pipeline, locally (`run_local`) on a random sample of the stack
                            problem's data (`--problem`, default the Adult census); the other real rows
                            are held out (traffic, retrain data, comparison)
 4. approve champion        `registry.approve`: the package becomes the stack's champion
 5. serve champion          `serve_local`: the image's `serve` entrypoint on a free port, data capture on;
                            `monitor.baseline` fetches the champion's drift baseline; a Batch Transform
                            (`mlops batch run --local`) scores 2,000 rows, line for line the endpoint's answers
 6. held-out traffic        requests of 1-20 held-out real rows, each with an inference id; one drift job
                            run (a datapoint: no drift); the requests' labels arrive in Model Monitor's
                            ground-truth format and one quality job run scores them (clears the bar)
 7. drifted traffic         the population changes (mlops/demo_data.py: the first numeric feature + 1.1
                            std, e.g. Adult's age +15 years, and a value of the first categorical feature
                            the declaration does not know on 10% of rows) and so does the label on its
                            upper half (concept drift); per window one drift job run and, once its
                            labels are in, one quality job run: the quality metric falls below the bar,
                            both alarms fire at M of N datapoints (stack settings); the first to enter
                            ALARM starts the retrain (`monitor.run` -> `run_local`) on labelled rows of
                            the new population, and the shared cooldown skips the other's
 8. challenger vs champion  the retrain's own CompareChampion step: the champion scored on the
                            challenger's test split (new population); CheckChampion registered the
                            challenger only because it reached the champion's score there
 9. promote                 approve the challenger; a copy of Pulumi.prod.yaml pins the champion (prod
                            runs v1), and `release promote` re-scores it on the challenger's split in
                            a comparison job before it pins the challenger (the diff is printed; the
                            repo's stack files are never touched); the local endpoint follows the new
                            champion; the monitor re-baselines on it
10. report                  one self-contained HTML file (mlops/report.py)
11. shut down               endpoint, embedded AWS

State and reruns: every run gets its own folder `<state>/demo/<run id>/` (its own embedded AWS,
MLflow store, runs, capture, monitor history, logs, report); `<state>/demo/latest` points at the
newest. Nothing is reused between runs, so a rerun always tells the whole story (the retrain
cooldown of one run never suppresses the next run's retrain); delete `<state>/demo/` to reclaim
space. Two demos at once work (separate folders, free ports) and are told about each other.

Interruption: Ctrl-C, SIGTERM or SIGHUP stop the run in `finally`: the endpoint (its own process
group), the step subprocess (killed by `subprocess.run`), the embedded AWS. Each run records its
owner pid in `demo.json`; a later run stops whatever a run whose owner died without cleaning up
(SIGKILL) left behind, before it starts.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops.local import aws as local_aws
from mlops.local import tracking
from mlops.local.aliases import sync_aliases
from mlops.naming import Names
from mlops.settings import REPO_ROOT, StackSettings, load_stack_file, stack_file
from model_code.serve.protocol import INFERENCE_ID_HEADER

if TYPE_CHECKING:
    from model_code.problem import Problem

DEMO_DIR = "demo"
RECORD = "demo.json"
LATEST = "latest"
FLUSH_TIMEOUT_S = 15.0
STOPPING_STEPS = ("MetricBelowThreshold", "ChampionNotBeaten")
"""The retrain's Fail steps (pipelines/training.py): its test metric missed the bar, or the champion won."""


class DemoError(RuntimeError):
    """A stage of the demo failed; the message names the stage and where to look."""


@dataclass
class Stage:
    number: int
    name: str
    started: str
    seconds: float = 0.0
    status: str = "running"
    detail: list[str] = field(default_factory=list)


@dataclass
class ModelVersion:
    role: str
    version: int
    package_arn: str
    execution_id: str
    data: str
    status: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)
    mlflow_model_version: str = ""
    seconds: float = 0.0


@dataclass
class DemoResult:
    run_id: str
    run_dir: Path
    stack: str
    started: str
    seconds: float = 0.0
    status: str = "running"
    stages: list[Stage] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    models: list[ModelVersion] = field(default_factory=list)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    datapoints: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    """One quality run per traffic window: the labels of its requests joined to its capture."""
    comparison: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] = field(default_factory=dict)
    serving_metrics: dict[str, Any] = field(default_factory=dict)
    prometheus: dict[str, Any] = field(default_factory=dict)
    """What a real Prometheus scraping the champion's endpoint answered (when the binary is installed)."""
    report_path: Path | None = None

    @property
    def mlflow_uri(self) -> str:
        return tracking.store_uri(self.run_dir)

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    def model(self, role: str) -> ModelVersion | None:
        return next((m for m in self.models if m.role == role), None)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["report_path"] = str(self.report_path) if self.report_path else ""
        data["mlflow_uri"] = self.mlflow_uri
        data["logs_dir"] = str(self.logs_dir)
        return data


# --- run folders, ownership, leftovers ---------------------------------------------------------------



def _read_record(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(run_dir: Path, **values: Any) -> None:
    data = {**_read_record(run_dir), **values}
    temporary = run_dir / f".{RECORD}.tmp"
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True))
    temporary.replace(run_dir / RECORD)


def clean_leftovers(state_dir: Path) -> list[str]:
    """Stop what demo runs whose owner process died (e.g. SIGKILL) left running. Returns lines to print."""
    from mlops.serve_local import stop_recorded

    lines = []
    for run_dir in sorted((state_dir / DEMO_DIR).glob("*/")):
        record = _read_record(run_dir)
        if record.get("status") != "running" or local_aws.pid_alive(int(record.get("pid") or 0)):
            continue
        stopped = stop_recorded(run_dir)
        aws_stopped = local_aws.stop(run_dir)
        _write_record(run_dir, status="interrupted")
        what = ", ".join(
            [*(f"endpoint pid {pid}" for pid in stopped), *(["embedded AWS"] if aws_stopped else [])]
        )
        lines.append(f"cleaned up after interrupted run {run_dir.name}" + (f" (stopped {what})" if what else ""))
    return lines


def running_demos(state_dir: Path) -> list[tuple[str, int]]:
    """(run id, pid) of the demo runs of this state folder still in progress."""
    found = []
    for run_dir in sorted((state_dir / DEMO_DIR).glob("*/")):
        record = _read_record(run_dir)
        pid = int(record.get("pid") or 0)
        if record.get("status") == "running" and pid != os.getpid() and local_aws.pid_alive(pid):
            found.append((run_dir.name, pid))
    return found


def _new_run_dir(state_dir: Path) -> tuple[str, Path]:
    run_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = state_dir / DEMO_DIR / run_id
    run_dir.mkdir(parents=True)
    latest = state_dir / DEMO_DIR / LATEST
    with contextlib.suppress(OSError):
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(run_id)
    return run_id, run_dir


# --- signals: SIGTERM / SIGHUP behave like Ctrl-C ---------------------------------------------------------


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# --- traffic -------------------------------------------------------------------------------------------


def _csv_rows(frame: pd.DataFrame, feature_names: list[str]) -> list[str]:
    text = frame[feature_names].to_csv(index=False, header=False, float_format="%.10g", lineterminator="\n")
    return text.splitlines()


def send_traffic(url: str, frame: pd.DataFrame, feature_names: list[str], *, requests: int, seed: int,
                 max_rows: int = 20, labels: list[str] | None = None, id_prefix: str = "") -> dict[str, Any]:
    """`requests` CSV requests of 1..`max_rows` rows drawn from `frame`, over one keep-alive connection.
    Returns client-side latencies (ms), status counts and rows sent. With `labels` (one text per row of
    `frame`) each request carries the InferenceId `<id_prefix>-<n>` and `ground_truth` holds one Model
    Monitor ground-truth record per answered request (what a labelling process uploads later)."""
    rng = np.random.default_rng(seed)
    lines = _csv_rows(frame, feature_names)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    rows = 0
    position = 0
    truth: list[dict[str, Any]] = []
    try:
        for number in range(requests):
            size = int(rng.integers(1, max_rows + 1))
            if position + size > len(lines):
                position = 0
            body = ("\n".join(lines[position : position + size]) + "\n").encode()
            position += size
            headers = {"Content-Type": "text/csv"}
            if labels is not None:
                headers[INFERENCE_ID_HEADER] = f"{id_prefix}-{number}"
            started = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if labels is not None and response.status == 200:
                truth.append({"groundTruthData": {"data": "\n".join(labels[position - size:position]),
                                                  "encoding": "CSV"},
                              "eventMetadata": {"eventId": headers[INFERENCE_ID_HEADER]}, "eventVersion": "0"})
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
            rows += size
    finally:
        connection.close()
    return {"requests": requests, "rows": rows, "latency_ms": [round(x, 3) for x in latencies], "status": statuses,
            "ground_truth": truth}


def _wait_for_capture(capture_root: Path, deadline_s: float = FLUSH_TIMEOUT_S) -> None:
    """Until no capture file is still open (`*.jsonl.partial`): the drift job reads closed files only."""
    deadline = time.monotonic() + deadline_s
    while any(capture_root.rglob("*.jsonl.partial")):
        if time.monotonic() > deadline:
            raise DemoError(f"capture files under {capture_root} were not closed within {deadline_s:.0f} s")
        time.sleep(0.1)


def _set_aside(capture_root: Path, target: Path) -> None:
    """Move the closed capture files out of the endpoint's capture folder.

    The demo compresses the schedule's hour into seconds: the drift job's window (the last
    `driftWindowHours`) would hold every window's traffic, where in AWS each period is an hour of its
    own. Setting each period's files aside after its run gives the next run only its own traffic.
    """
    for path in sorted(capture_root.rglob("*.jsonl")):
        destination = target / path.relative_to(capture_root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        path.replace(destination)


def label_texts(frame: pd.DataFrame, problem: Problem) -> list[str]:
    """The label of each row as a labelling process would upload it (the declared class value, or the number)."""
    from model_code.preprocess import to_csv_bytes

    written = pd.read_csv(io.BytesIO(to_csv_bytes(frame, problem.schema)), dtype=str, keep_default_na=False)
    return written[problem.schema.label].tolist()


def _quality_run(settings: StackSettings, run_dir: Path, window_id: str, truth: list[dict[str, Any]],
                 start: datetime, data: Path | None, container: str) -> Any:
    """The window's labels land under its own ground-truth folder (hour of arrival), then the quality
    schedule's tick on the window's capture (set aside by the drift run). Its alarm may retrain like the
    drift alarm: the cooldown the two share decides, so a drift retrain of the same window keeps it
    from starting a second one."""
    from mlops import monitor_quality

    arrived = datetime.now(UTC)
    folder = run_dir / "ground-truth" / window_id
    labels = folder / f"{arrived:%Y/%m/%d/%H}" / "labels.jsonl"
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("".join(json.dumps(record) + "\n" for record in truth))
    return monitor_quality.run(settings, run_dir, capture_dir=run_dir / "capture-evaluated" / window_id,
                               ground_truth_dir=folder, start=start, now=arrived, container=container, data=data)


def _window_end() -> datetime:
    """The first whole second after now, once the clock has passed it: every record captured so far
    (inferenceTime has whole seconds) lies before it, and everything sent afterwards after it."""
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    while datetime.now(UTC) < end:
        time.sleep(0.02)
    return end


def latency_summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    values = np.asarray(latencies)
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max()), "mean": float(values.mean())}


def parse_prometheus(text: str) -> dict[str, Any]:
    """The serving counters the report shows, from GET /metrics (prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {"requests": {}, "duration_sum_s": 0.0, "duration_count": 0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            invocations = labels.get("handler") == "invocations"
            if name == "mlops_serve_requests_total":
                out["requests"][f'{{handler="{labels["handler"]}",code="{labels["code"]}"}}'] = value
            elif name == "mlops_serve_request_duration_seconds_sum" and invocations:
                out["duration_sum_s"] += value
            elif name == "mlops_serve_request_duration_seconds_count" and invocations:
                out["duration_count"] += int(value)
            elif name == "mlops_serve_rows_scored_total":
                out["rows_scored"] = int(value)
            elif name == "mlops_serve_capture_records_total":
                out.setdefault("capture", {})[labels["outcome"]] = int(value)
    if out["duration_count"]:
        out["server_mean_ms"] = 1000 * out["duration_sum_s"] / out["duration_count"]
    return out


# --- the demo ------------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, result: DemoResult, out: Callable[[str], None], total: int):
        self.result, self.out, self.total = result, out, total

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        stage = Stage(len(self.result.stages) + 1, name, datetime.now(UTC).isoformat(timespec="seconds"))
        self.result.stages.append(stage)
        self.out(f"[{stage.number:>2}/{self.total}] {name}")
        started = time.monotonic()
        try:
            yield stage
        except BaseException:
            stage.status = "interrupted" if sys.exc_info()[0] is KeyboardInterrupt else "failed"
            stage.seconds = round(time.monotonic() - started, 2)
            raise
        stage.seconds = round(time.monotonic() - started, 2)
        stage.status = "ok"
        self.out(f"        done in {stage.seconds:.1f} s")

    def line(self, stage: Stage, text: str) -> None:
        stage.detail.append(text)
        self.out(f"        {text}")


STAGES = 11
SMALL: dict[str, int] = {"train_rows": 4000, "challenger_rows": 4000, "heldout_rows": 2000, "requests": 80}
"""Sizes of a reduced demo (`--small`, tests): the same stages on less data."""


def _score_a_batch(settings: StackSettings, run_dir: Path, rows: pd.DataFrame, endpoint: Any, container: str,
                   say: Callable[[str], None]) -> None:
    """Batch Transform of the champion (mlops/batch_local.py) on `rows`, checked against the endpoint's answers."""
    from mlops.batch_local import run_batch
    from mlops.serve_local import serve_local

    source = run_dir / "batch" / "input" / "rows.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    body = rows.to_csv(index=False, header=False, lineterminator="\n")
    source.write_text(body)
    batch = run_batch(settings, state_dir=run_dir, source=source, output=run_dir / "batch" / "output",
                      model="champion", container=container)
    # the endpoint's answers from a second server of the same package without capture: the demo's endpoint would
    # capture these rows into the first traffic window's drift and quality runs
    with serve_local(settings, state_dir=run_dir, model=f"{endpoint.package.version}", port=0, capture=False,
                     container=container, purpose="batch-check") as reference:
        status, online = reference.invoke(body.encode(), timeout=120)
    same = status == 200 and batch.files[0].output.read_bytes().splitlines() == online.splitlines()
    if not same:
        raise DemoError(f"the batch scores of {source} differ from the endpoint's (status {status})")
    say(f"batch transform: {batch.records:,} rows in {batch.mini_batches} mini-batch(es), {batch.seconds:.1f} s -> "
        f"{batch.files[0].output.name}, line for line the endpoint's answers; captured in {batch.capture_uri}")


def run_demo(
    *,
    state_dir: Path,
    stack: str = "dev",
    out: Callable[[str], None] = print,
    train_rows: int = 16_000,
    challenger_rows: int = 16_000,
    heldout_rows: int = 5_000,
    requests: int = 200,
    seed: int = 7,
    root: Path = REPO_ROOT,
    container: str = "auto",
    problem: Path | None = None,
) -> DemoResult:
    """The whole lifecycle in `<state_dir>/demo/<run id>/`; see the module docstring.

    `train_rows` real rows train the champion (the rest are held out and feed the first traffic
    stream), `challenger_rows` labelled rows of the new population train the challenger,
    `heldout_rows` fresh rows of the new population are the smoke requests after the promotion (the
    retrain's own test split decides between the models), and every traffic window
    sends `requests` requests. `problem` is a declaration folder instead of the stack's (`--problem`).
    Raises DemoError when a stage fails, KeyboardInterrupt when
    interrupted; either way every process it started is stopped first.
    """
    state_dir = Path(state_dir)
    (state_dir / DEMO_DIR).mkdir(parents=True, exist_ok=True)
    for line in clean_leftovers(state_dir):
        out(line)
    for other, pid in running_demos(state_dir):
        out(f"note: demo run {other} (pid {pid}) is also running; both work (separate folders, free ports) "
            "but share the CPU")
    from mlops.problems import settings_for

    settings = settings_for(load_stack_file(stack_file(stack, root)), problem)
    run_id, run_dir = _new_run_dir(state_dir)
    result = DemoResult(run_id, run_dir, settings.stack, datetime.now(UTC).isoformat(timespec="seconds"))
    _write_record(run_dir, pid=os.getpid(), status="running", started=result.started, stack=settings.stack)
    out(f"mlops demo: the lifecycle of stack {settings.stack}, problem {settings.problem_declaration().name}, "
        "on embedded defaults")
    out(f"run folder: {run_dir}")
    started = time.monotonic()
    endpoint_holder: list[Any] = []
    try:
        with _interruptible():
            _lifecycle(settings, run_dir, result, _Progress(result, out, STAGES), endpoint_holder,
                       train_rows=train_rows, challenger_rows=challenger_rows, heldout_rows=heldout_rows,
                       requests=requests, seed=seed, root=root, container=container)
        result.status = "succeeded"
    except KeyboardInterrupt:
        result.status = "interrupted"
        out("interrupted: stopping the endpoint and the embedded AWS")
        raise
    except BaseException:
        result.status = "failed"
        raise
    finally:
        for endpoint in endpoint_holder:
            endpoint.stop()
        local_aws.stop(run_dir)
        result.seconds = round(time.monotonic() - started, 1)
        with contextlib.suppress(OSError):
            (run_dir / "result.json").write_text(json.dumps(result.as_json(), indent=2, default=str))
            # Final version of the report: every stage's timing and the outcome (also of a partial run).
            from mlops.report import write_report

            result.report_path = write_report(result.as_json(), run_dir / "report.html")
        _write_record(run_dir, status=result.status, seconds=result.seconds)
    _print_summary(result, out)
    return result


def _lifecycle(settings: StackSettings, run_dir: Path, result: DemoResult, progress: _Progress,
               endpoints: list[Any], *, train_rows: int, challenger_rows: int, heldout_rows: int, requests: int,
               seed: int, root: Path, container: str) -> None:
    import functools

    import mlflow

    from mlops import monitor
    from mlops import serve_local as local_serving
    from mlops.demo_data import load_sample, partition, population_change, write_rows
    from mlops.local import pipeline as local_pipeline
    from mlops.plan import plan_stack_file
    from mlops.registry import Aws, approve
    from policies.offline import evaluate

    # Every job and endpoint of the demo runs where --container says (the image, or its requirements' venv).
    run_local = functools.partial(local_pipeline.run_local, container=container)
    serve_local = functools.partial(local_serving.serve_local, container=container)
    problem = settings.problem_declaration()
    features = problem.schema.feature_names
    primary = problem.primary_metric
    data_dir = run_dir / "data"
    stage = progress.stage
    line = progress.line

    # 1 ----------------------------------------------------------------------------------------------
    with stage("Embedded AWS and MLflow") as s:
        server = local_aws.start(run_dir, account_id=settings.account_id, region=settings.region)
        line(s, f"embedded AWS (moto) on {server.endpoint_url}, pid {server.pid}, account {settings.account_id}")
        _quiet_mlflow()
        mlflow.MlflowClient(tracking.store_uri(run_dir)).search_experiments()  # creates and migrates the store
        line(s, f"MLflow tracking store {tracking.store_uri(run_dir)} (served over HTTP to the jobs while they run)")
    aws = Aws(endpoint_url=server.endpoint_url, max_attempts=2)

    # 2 ----------------------------------------------------------------------------------------------
    with stage(f"Offline plan of stack {settings.stack} + policy pack") as s:
        plan = plan_stack_file(stack_file(settings.stack, root))
        violations = evaluate([r.as_json() for r in plan.resources])
        mandatory = [v for v in violations if v.level == "mandatory"]
        result.plan = {
            "resources": len(plan.resources), "components": plan.components,
            "violations": [{"policy": v.policy, "resource": v.resource, "level": v.level, "message": v.message}
                           for v in violations],
        }
        line(s, f"{len(plan.resources)} resources in {len(plan.components)} components "
                f"({', '.join(plan.components)})")
        verdict = "PASS" if not mandatory else "FAIL"
        line(s, f"policy verdict: {verdict}: {len(mandatory)} mandatory, "
                f"{len(violations) - len(mandatory)} advisory violation(s)")
        for v in violations[:5]:
            line(s, f"  {v.level} {v.policy} on {v.resource}: {v.message}")

    # 3 ----------------------------------------------------------------------------------------------
    with stage("Train the champion (training pipeline, locally)") as s:
        real = load_sample(problem)
        parts = partition(len(real), seed, train=train_rows, challenger=challenger_rows, comparison=heldout_rows)
        train, later, comparison, heldout_real = (real.iloc[parts[k]].reset_index(drop=True)
                                                  for k in ("train", "challenger", "comparison", "rest"))
        change = population_change(problem, train)
        train_csv = write_rows(train, problem, data_dir / "champion-train.csv")
        line(s, f"problem {problem.name} ({problem.task}, primary metric {primary}); data: {len(train):,} rows of "
                f"its sample; the other {len(real) - len(train):,} are held out (traffic, the retrain's data, the "
                "smoke requests after promotion)")
        champion = _train(settings, run_dir, train_csv, "champion",
                          f"{len(train):,} real {problem.name} rows (random sample, seed {seed})", run_local,
                          progress, s)
        result.models.append(champion)

    # 4 ----------------------------------------------------------------------------------------------
    with stage("Approve the champion") as s, local_aws.environment(server):
        approval = approve(settings, champion.package_arn, description="demo: first model", aws=aws)
        champion.status = approval.package.status
        line(s, f"{champion.package_arn}: {approval.previous_status} -> {approval.package.status}")
        aliases = sync_aliases(settings, run_dir, aws)
        group = Names.of(settings).model_package_group
        line(s, f"MLflow: models:/{group}@champion is version {aliases.get('champion')}")

    # 5 ----------------------------------------------------------------------------------------------
    with stage("Serve the champion on a local endpoint") as s:
        endpoint = serve_local(settings, state_dir=run_dir, model="champion", port=0, capture=True,
                               capture_rotate_seconds=1.0, unknown_categories="score")
        endpoints.append(endpoint)
        line(s, f"{endpoint.url} serves v{endpoint.package.version} (pid {endpoint.pid}); capture -> "
                f"{endpoint.capture_root}")
        line(s, "unseen categories are scored as missing (MLOPS_SERVE_UNKNOWN_CATEGORIES=score), so the "
                "drift job sees them")
        scraper = _start_prometheus(endpoint.url, run_dir, result, line, s)
        if scraper is not None:
            endpoints.append(scraper)
        monitored = monitor.baseline(settings, run_dir)
        line(s, f"monitor baseline: v{monitored.version} ({monitored.selected_because}); alarm rule: "
                f"{monitor.AlarmRule.of(settings).describe()}")
        _score_a_batch(settings, run_dir, train[features].head(2000), endpoint, container, lambda t: line(s, t))
    capture_root, capture_dir = endpoint.capture_root, endpoint.capture_dir
    if capture_root is None or capture_dir is None:
        raise DemoError("the local endpoint does not capture")

    def window(stage_: Stage, name: str, frame: pd.DataFrame, traffic_seed: int,
               data: Path | None) -> tuple[Any, Any]:
        """One traffic window, its drift run, then its labels' quality run; each may start the retrain."""
        t0 = time.monotonic()
        window_start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        stream = send_traffic(endpoint.url, frame, features, requests=requests, seed=traffic_seed,
                              labels=label_texts(frame, problem), id_prefix=f"w{len(result.traffic) + 1}")
        truth = stream.pop("ground_truth")
        stats = latency_summary(stream["latency_ms"])
        result.traffic.append({"name": name, "model_version": endpoint.package.version, **stream,
                               "summary": stats, "seconds": round(time.monotonic() - t0, 2)})
        line(stage_, f"{name}: {stream['requests']} requests, {stream['rows']:,} rows, status {stream['status']}, "
                     f"latency p50 {stats['p50']:.1f} ms p99 {stats['p99']:.1f} ms")
        _wait_for_capture(capture_root)
        end = _window_end()
        t1 = time.monotonic()
        outcome = monitor.run(settings, run_dir, capture_dir, now=end, data=data, container=container)
        seconds = time.monotonic() - t1
        _set_aside(capture_root, run_dir / "capture-evaluated" / outcome.datapoint.id)
        point = outcome.datapoint
        drifted = ", ".join(point.features_drifted) or "none"
        timing = f"{seconds:.1f} s" if outcome.retrain.action != monitor.STARTED else \
            f"{seconds:.1f} s including the retrain it started"
        line(stage_, f"drift job on {point.window_start} .. {point.window_end}: {point.rows:,} rows, "
                     f"drift={'yes' if point.value else 'no'} (features: {drifted}; prediction drifted: "
                     f"{point.prediction_drifted}); monitor run {timing}")
        retrain = outcome.retrain
        line(stage_, f"alarm {outcome.alarm_before} -> {outcome.alarm_after} ({outcome.breaching} of last "
                     f"{len(outcome.evaluated)} datapoints breaching; rule {outcome.rule.datapoints} of "
                     f"{outcome.rule.evaluation_periods}); retrain: {retrain.action} ({retrain.reason})")
        result.datapoints.append({**asdict(point), "name": name, "alarm_before": outcome.alarm_before,
                                  "alarm_after": outcome.alarm_after, "evaluated": outcome.evaluated,
                                  "retrain": asdict(outcome.retrain)})
        quality = _quality_run(settings, run_dir, point.id, truth, window_start, data, container)
        value = "none" if quality.value is None else f"{quality.value:.4f}"
        worse = {None: "no verdict", True: "worse than the bar", False: "clears the bar"}[quality.degraded]
        line(stage_, f"labels arrive: quality job {quality.metric} {value} on {quality.labelled_rows:,} labelled rows "
                     f"(coverage {quality.coverage or 0:.0%}; bar {quality.bar:.4f}: {worse}); quality alarm "
                     f"{quality.alarm_before} -> {quality.alarm_after}; retrain: {quality.retrain.action} "
                     f"({quality.retrain.reason})")
        result.quality.append({"name": name, **asdict(quality)})
        return outcome, quality

    # 6 ----------------------------------------------------------------------------------------------
    with stage("Traffic from held-out real data, then the drift job") as s:
        clean, _ = window(s, "held-out real rows", heldout_real, seed + 1, None)
        if clean.datapoint.value:
            line(s, "note: the drift job flagged held-out data from the training distribution (a false alarm)")

    # 7 ----------------------------------------------------------------------------------------------
    with stage("Drifted traffic, drift and quality alarms, retrain") as s:
        # The retrain's labelled data: the new population's rows, shifted; without the new
        # category, which the schema does not know (validate rejects it; serving scores it as missing).
        challenger_csv = write_rows(change.apply(later, seed + 100, new_category=False), problem,
                                    data_dir / "challenger-train.csv")
        line(s, f"the population changes: {change.describe()} (applied to held-out real rows)")
        windows = max(monitor.AlarmRule.of(settings).evaluation_periods, settings.quality_alarm_evaluation_periods)
        retrain = None
        for index in range(windows):
            drifted = change.apply(later, seed + 10 + index, new_category=True).sample(
                frac=1.0, random_state=seed + index)
            outcomes = window(s, f"drifted window {index + 1}", drifted, seed + 20 + index, challenger_csv)
            # Both alarms start one when the first retrain failed (the cooldown counts running and
            # succeeded executions only); the later one is the platform's last word.
            started = [o.retrain for o in outcomes if o.retrain.action == monitor.STARTED]
            if started:
                retrain = started[-1]
                break
        if retrain is None:
            raise DemoError(
                f"neither the drift nor the quality alarm started a retrain after {windows} "
                f"drifted windows; see {monitor.history_path(run_dir)}"
            )
        # A retrain its own conditions stopped is an outcome, not an error: nothing is registered.
        stopped = retrain.status == "Failed" and any(step in (retrain.failure or "") for step in STOPPING_STEPS)
        if not stopped and (retrain.status != "Succeeded" or not retrain.package_arn):
            raise DemoError(
                f"the retrain {retrain.execution_id or ''} did not register a model: {retrain.status} "
                f"{retrain.failure}; see {run_dir / 'runs'}"
            )
        challenger = _model_from_run(run_dir, retrain.execution_id, "challenger",
                                     f"{len(later):,} labelled rows of the new population (held-out real rows, "
                                     f"{change.numeric} {change.shift:+g})")
        result.models.append(challenger)
        test = f"test {primary} {challenger.metrics.get(primary, float('nan')):.4f}"
        if stopped:
            line(s, f"retrain {retrain.execution_id}: stopped by its own condition, nothing registered ({test}): "
                    f"{retrain.failure}")
        else:
            line(s, f"retrain {retrain.execution_id}: {retrain.status} in {challenger.seconds:.1f} s; registered "
                    f"{challenger.package_arn} (PendingManualApproval), {test}")

    result.serving_metrics["champion"] = parse_prometheus(endpoint.get("/metrics")[1].decode())
    if scraper is not None:
        _query_prometheus(scraper, result)
        scraper.stop()
        endpoints.remove(scraper)

    # 8 ----------------------------------------------------------------------------------------------
    with stage("Challenger vs champion on fresh data of the new population") as s:
        fresh = change.apply(comparison, seed + 1000, new_category=True)  # the smoke request after promotion
        verdict = _comparison_of(run_dir, retrain.execution_id)
        scores = {"challenger": verdict["challenger"]["metrics"], "champion": verdict["champion"]["metrics"] or {}}
        scores = {role: {k: v for k, v in values.items() if k != "rows"} for role, values in scores.items()}
        for model in (champion, challenger):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in scores[model.role].items())
            version = f"v{model.version}" if model.version else "(not registered)"
            line(s, f"{model.role} {version}: {shown}")
        wins = bool(verdict["passed"])
        better = wins and not stopped
        new, old = scores["challenger"][primary], scores["champion"].get(primary, float("nan"))
        result.comparison = {
            "data": f"the retrain's test split ({verdict['test_data']['rows']:,} rows of the new population, "
                    f"{change.describe()}), both models scored by its CompareChampion step; CheckChampion requires "
                    f"{verdict['required']:.4f} (promotionMinImprovement {verdict['min_improvement']:g})",
            "rows": verdict["test_data"]["rows"], "metric": primary, "direction": problem.direction,
            "scores": scores, "required": verdict["required"], "winner": "challenger" if wins else "champion",
            "registered": bool(challenger.package_arn),
        }
        line(s, f"winner on {primary} ({problem.direction} is better): {result.comparison['winner']} "
                f"({new:.4f} vs {old:.4f}, required {verdict['required']:.4f})")

    # 9 ----------------------------------------------------------------------------------------------
    with stage("Promote the challenger" if better else "Keep the champion") as s:
        if better:
            _promote(settings, run_dir, result, (champion, challenger), aws, server, progress, s, root, container)
            endpoint.stop()
            endpoints.remove(endpoint)
            follower = serve_local(settings, state_dir=run_dir, model="champion", port=0, capture=True,
                                   capture_rotate_seconds=1.0, unknown_categories="score")
            endpoints.append(follower)
            status, body = follower.invoke(("\n".join(_csv_rows(fresh.head(3), features)) + "\n").encode())
            line(s, f"local endpoint follows the latest approved package: {follower.url} serves "
                    f"v{follower.package.version}; smoke request -> {status} {body.decode().split()}")
            monitored = monitor.baseline(settings, run_dir)
            line(s, f"monitor re-baselined on v{monitored.version}")
            result.serving_metrics["follower"] = parse_prometheus(follower.get("/metrics")[1].decode())
        elif not challenger.package_arn:
            line(s, f"the challenger was not registered ({retrain.failure}); the champion keeps serving until a "
                    "retrain on more labelled rows of the new population clears the stack's bars")
            result.promotion = {"promoted": False, "reason": retrain.failure}
        else:
            line(s, f"challenger v{challenger.version} is not better on the same data: it stays "
                    "PendingManualApproval; the champion keeps serving")
            result.promotion = {"promoted": False, "reason": "not better on the same data"}

    # 10 ---------------------------------------------------------------------------------------------
    with stage("Report") as s:
        from mlops.report import write_report

        result.report_path = write_report(result.as_json(), run_dir / "report.html")
        line(s, f"{result.report_path} ({result.report_path.stat().st_size / 1024:.0f} KiB, self-contained)")

    # 11 ---------------------------------------------------------------------------------------------
    with stage("Shut down") as s:
        for running in list(endpoints):
            running.stop()
            endpoints.remove(running)
        stopped = local_aws.stop(run_dir)
        line(s, f"endpoint stopped; embedded AWS {'stopped' if stopped else 'was not running'}")


def _start_prometheus(url: str, run_dir: Path, result: DemoResult, line: Any, stage_: Stage) -> Any:
    """A real Prometheus scraping the endpoint, when one is installed; its failure is reported, not fatal."""
    from mlops.local import prometheus

    try:
        scraper = prometheus.start(url.removeprefix("http://"), run_dir / "prometheus")
    except prometheus.PrometheusError as error:
        result.prometheus = {"error": str(error)}
        line(stage_, f"Prometheus did not start: {error}")
        return None
    if scraper is None:
        line(stage_, "no prometheus binary on PATH (Debian: apt-get install prometheus): the report reads "
                     "GET /metrics itself")
        return None
    result.prometheus = {"url": scraper.url, "target": f"{url}/metrics",
                         "scrape_interval_s": prometheus.SCRAPE_INTERVAL_S}
    line(stage_, f"Prometheus {scraper.url} scrapes {url}/metrics every {prometheus.SCRAPE_INTERVAL_S} s")
    return scraper


def _query_prometheus(scraper: Any, result: DemoResult) -> None:
    from mlops.local import prometheus

    try:
        scraper.wait_for_scrape(time.time())
        result.prometheus["queries"] = dict(prometheus.QUERIES)
        result.prometheus["results"] = scraper.results()
    except (prometheus.PrometheusError, OSError) as error:
        result.prometheus["error"] = str(error)


def _quiet_mlflow() -> None:
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _train(settings: StackSettings, run_dir: Path, data: Path, role: str, description: str, run_local: Any,
           progress: _Progress, stage: Stage) -> ModelVersion:
    def finished(step: Any) -> None:
        mark = "ok" if step.status == "Succeeded" else step.status
        progress.line(stage, f"  {step.name:<14} {mark:<9} {step.seconds:6.1f} s")

    run = run_local(settings, state_dir=run_dir, data=data, on_step=finished)
    where = {"container": "in the model image", "process": "in a venv of model_code/requirements.txt"}
    progress.line(stage, f"  jobs ran {where.get(run.container, run.container)}")
    if run.status != "Succeeded" or not run.package_arn:
        folder = run_dir / "runs" / run.execution_id
        raise DemoError(f"training the {role} failed: {run.failure}; step logs under {folder}")
    model = _model_from_run(run_dir, run.execution_id, role, description)
    metric = settings.problem_declaration().primary_metric
    progress.line(stage, f"registered {model.package_arn} (PendingManualApproval), test {metric} "
                         f"{model.metrics.get(metric, float('nan')):.4f}, MLflow run "
                         f"{model.lineage.get('mlflow_run_id', '')}")
    return model


def _model_from_run(run_dir: Path, execution_id: str, role: str, description: str) -> ModelVersion:
    """A model version from its local run record (`<run>/runs/<id>/run.json` and step outputs)."""
    folder = run_dir / "runs" / execution_id
    record = json.loads((folder / "run.json").read_text())
    lineage = dict(record.get("lineage") or {})
    lineage["mlflow_run_id"] = record.get("mlflow_run_id", "")
    bundle = lineage.get("code_bundle", "").split("/")  # s3://<bucket>/code/<sha256>/model_code.tar.gz
    lineage["code_bundle_sha256"] = bundle[-2] if len(bundle) > 4 else ""
    report = next(folder.glob("steps/Validate/**/validation_report.json"), None)
    if report is not None:
        lineage["data_sha256"] = json.loads(report.read_text()).get("input", {}).get("sha256", "")  # as registered
    lineage["input_data_uri"] = record.get("input_data_uri", "")
    arn = record.get("package_arn", "")
    return ModelVersion(
        role=role, version=int(arn.rsplit("/", 1)[-1]) if arn else 0, package_arn=arn, execution_id=execution_id,
        data=description, status="PendingManualApproval" if arn else record.get("status", ""),
        metrics={k: float(v) for k, v in (record.get("metrics") or {}).items()}, lineage=lineage,
        mlflow_model_version=record.get("mlflow_model_version", ""), seconds=float(record.get("seconds") or 0),
    )


def _comparison_of(run_dir: Path, execution_id: str) -> dict[str, Any]:
    """The CompareChampion step's comparison.json of a local run (model_code/champion.py)."""
    path = (run_dir / "runs" / execution_id / "steps" / "CompareChampion" / "opt/ml/processing/output/comparison"
            / "comparison.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DemoError(f"the retrain {execution_id} left no readable champion comparison: {error}") from None


def _promote(settings: StackSettings, run_dir: Path, result: DemoResult, models: tuple[ModelVersion, ModelVersion],
             aws: Any, server: local_aws.LocalAws, progress: _Progress, stage: Stage, root: Path,
             container: str) -> None:
    from mlops.local.comparison_job import LocalJobs
    from mlops.registry import ReleaseError, approve, describe_package
    from mlops.release import promote, write_pin
    from mlops.settings import config_key
    from mlops.stack_files import write_settings

    champion, challenger = models

    line = progress.line
    with local_aws.environment(server):
        change = approve(settings, challenger.package_arn,
                         description="demo: beat the champion on the new population's test split", aws=aws)
        challenger.status = change.package.status
        sync_aliases(settings, run_dir, aws)
        line(stage, f"approved {challenger.package_arn}: the new champion (v{champion.version} "
                    "stays Approved as the previous one)")
        release_dir = run_dir / "release"
        release_dir.mkdir(exist_ok=True)
        target = release_dir / stack_file("prod", root).name
        shutil.copyfile(stack_file("prod", root), target)
        if load_stack_file(target).problem_dir.resolve() != settings.problem_dir.resolve():
            # --problem: prod serves that problem too, with its own bar (as problems.settings_for gives dev)
            write_settings(target, {config_key("problem"): settings.problem, config_key("evaluation_min_metric"): ""})
        write_pin(target, champion.package_arn, describe_package(champion.package_arn, aws=aws).image)  # prod runs v1
        line(stage, f"a copy of Pulumi.prod.yaml pins v{champion.version} (prod serves the first champion)")
        jobs = LocalJobs(server, aws.client("s3", settings.region), aws.sagemaker(settings.region),
                         run_dir / "promotions", container)
        try:
            pin = promote(settings, target, package_arn=challenger.package_arn, aws=aws, run_comparison=jobs)
        except ReleaseError as error:
            line(stage, f"`mlops release promote --to prod` refused: {error}")
            result.promotion = {"promoted": True, "pin_refused": str(error), "stack_file": str(target)}
            return
    same = pin.same_data
    assert same is not None and same.pinned is not None  # the copy pins the champion
    line(stage, f"same data ({same.test_data_uri}, comparison job {same.job}): {same.metric} candidate "
                f"{same.candidate:.4f}, prod's pin {same.pinned:.4f}, required {same.required:.4f}")
    line(stage, f"`mlops release promote --from {settings.stack} --to prod` on a copy ({target}):")
    for diff_line in pin.diff.splitlines():
        line(stage, f"    {diff_line}")
    result.promotion = {"promoted": True, "stack_file": str(target), "old_pin": pin.old_arn, "new_pin": pin.new_arn,
                        "diff": pin.diff, "metric": pin.metric, "new_metric": pin.new_metric,
                        "same_data": {"test_data_uri": same.test_data_uri, "job": same.job,
                                      "candidate": same.candidate, "pinned": same.pinned, "required": same.required}}


def _print_summary(result: DemoResult, out: Callable[[str], None]) -> None:
    out("")
    out(f"demo {result.status} in {result.seconds:.1f} s")
    for stage in result.stages:
        out(f"  {stage.number:>2}. {stage.name:<62} {stage.seconds:7.1f} s")
    if result.report_path:
        out(f"report:       {result.report_path}")
    out(f"MLflow store: {result.mlflow_uri}")
    out(f"logs:         {result.logs_dir} (endpoint, moto); steps: {result.run_dir / 'runs'}/*/steps/*/logs.txt")
    venv_mlflow = REPO_ROOT / ".venv" / "bin" / "mlflow"
    out(f"MLflow UI:    {venv_mlflow if venv_mlflow.exists() else 'mlflow'} ui --backend-store-uri {result.mlflow_uri}")


def main(argv: list[str] | None = None) -> int:
    """`python -m mlops.demo [--state-dir DIR] [--stack dev] [--small]` (the CLI wires `mlops demo`)."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m mlops.demo", description="the lifecycle demo (mlops demo)")
    from mlops.local.pipeline import state_dir

    default_state = state_dir()
    parser.add_argument("--state-dir", type=Path, default=default_state)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--small", action="store_true", help="small data and traffic (tests)")
    parser.add_argument("--container", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--problem", type=Path, help="problem declaration folder (default: the stack's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = SMALL if args.small else {}
    try:
        run_demo(state_dir=args.state_dir, stack=args.stack, out=lambda text: print(text, flush=True),
                 train_rows=sizes.get("train_rows", 16_000), challenger_rows=sizes.get("challenger_rows", 16_000),
                 heldout_rows=sizes.get("heldout_rows", 5_000), requests=sizes.get("requests", 200),
                 container=args.container, problem=args.problem)
    except KeyboardInterrupt:
        print("demo interrupted; every process it started is stopped. Run it again to start over.", flush=True)
        return 130
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
