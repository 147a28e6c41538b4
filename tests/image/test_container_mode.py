"""Local mode's two runners give the same result: jobs in the image, and in a venv of its requirements."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from mlops import monitor
from mlops.local import aws as local_aws
from mlops.local import drift_job
from mlops.local.pipeline import run_local
from mlops.local.runners import open_runner
from mlops.naming import Names
from mlops.registry import Aws
from mlops.settings import load_stack
from model_code.capture import make_record
from model_code.preprocess import to_csv_bytes
from problems.adult.synthetic import ADULT


def test_the_pipeline_in_the_image_matches_the_pipeline_in_the_requirements_venv(
        image: str, sample: Path, tmp_path: Path):
    settings = load_stack("dev")
    runs = {}
    for mode in ("always", "never"):
        state = tmp_path / mode
        try:
            runs[mode] = run_local(settings, state_dir=state, data=sample, container=mode)
        finally:
            local_aws.stop(state)
    image_run, venv_run = runs["always"], runs["never"]
    assert (image_run.container, venv_run.container) == ("container", "process")
    assert image_run.status == venv_run.status == "Succeeded", (image_run.failure, venv_run.failure)
    assert image_run.package_arn and venv_run.package_arn
    assert image_run.metrics == venv_run.metrics
    assert image_run.lineage["model_sha256"] == venv_run.lineage["model_sha256"] != ""


def test_the_scheduled_drift_job_in_the_image_matches_the_one_in_the_requirements_venv(
        image: str, sample: Path, tmp_path: Path):
    """The schedule's request as `mlops monitor run` runs it: capture from S3, the endpoint's package, metrics."""
    settings = load_stack("dev")
    names = Names.of(settings)
    state = tmp_path / "state"
    try:
        assert run_local(settings, state_dir=state, data=sample, container="never").status == "Succeeded"
        monitored = monitor.baseline(settings, state)
        now = datetime.now(UTC).replace(microsecond=0)
        frame = pd.read_csv(sample, nrows=400)[ADULT.feature_names]
        folder = state / "capture" / names.endpoint / "AllTraffic" / f"{now - timedelta(minutes=10):%Y/%m/%d/%H}"
        folder.mkdir(parents=True)
        body = to_csv_bytes(frame, ADULT).split(b"\n", 1)[1]  # the rows, without the header
        record = make_record("text/csv", body, "text/csv", "\n".join(["0.25"] * len(frame)).encode(),
                             now - timedelta(minutes=10))
        (folder / "capture.jsonl").write_text(json.dumps(record) + "\n")
        server = local_aws.running(state)
        assert server is not None
        jobs = {}
        with local_aws.environment(server):
            aws = Aws(endpoint_url=server.endpoint_url, max_attempts=1)
            for mode in ("always", "never"):
                jobs[mode] = drift_job.run(
                    settings, server, aws.client("s3", settings.region), aws.sagemaker(settings.region),
                    capture=state / "capture" / names.endpoint, end=now, execution_id=f"job-{mode}",
                    work_dir=tmp_path / mode, container=mode, owner=state,
                )
    finally:
        local_aws.stop(state)
    image_job, venv_job = jobs["always"], jobs["never"]
    assert (image_job.runner, venv_job.runner) == ("container", "process")
    for job in (image_job, venv_job):
        assert job.report["input"]["rows"] == len(frame) and job.report["baseline"]["package_arn"] == monitored.package_arn
        assert job.report["metrics"]["published"] > 0
    verdicts = {mode: {name: (f["drifted"], f.get("psi")) for name, f in job.report["features"].items()}
                for mode, job in jobs.items()}
    assert verdicts["always"] == verdicts["never"] and verdicts["always"]
    assert image_job.report["summary"] == venv_job.report["summary"]


def _probe_in_a_job(tmp_path: Path, probe: str, *, isolated: bool = False) -> tuple[int | None, str]:
    """Run `probe` (Python, `{port}`: a service's port on this machine) as a job in the image; (exit code, output)."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    log = tmp_path / f"log-{isolated}.txt"
    try:
        with open_runner("always", ports=[port], mounts=[], owner=tmp_path) as runner:
            assert runner.mode == "container"
            code = runner.run(tmp_path / "job", ["python", "-c", probe.format(port=port)], [], {}, log,
                              isolated=isolated)
    finally:
        server.shutdown()
    return code, log.read_text()


def test_a_job_reaches_the_embedded_services_and_nothing_else(engine, image: str, tmp_path: Path):
    """The job network: 127.0.0.1:<port> of a service on this machine answers; no other route exists."""
    code, output = _probe_in_a_job(tmp_path, (
        "import socket, urllib.request, sys\n"
        "print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5).status)\n"
        "try:\n"
        "    socket.create_connection(('10.0.2.2', 80), timeout=2)\n"
        "except OSError as error:\n"
        "    print('no route:', type(error).__name__)\n"
    ))
    assert code == 0, output
    assert output.splitlines()[0] == "200"
    assert "no route: OSError" in output


def test_a_job_declared_network_isolated_reaches_nothing(engine, image: str, tmp_path: Path):
    """EnableNetworkIsolation (Validate, Preprocess): the container has no network, not even the embedded services."""
    code, output = _probe_in_a_job(tmp_path, (
        "import socket, urllib.request\n"
        "try:\n"
        "    urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5)\n"
        "    print('reached')\n"
        "except OSError as error:\n"
        "    print('cut off:', type(error).__name__)\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
    ), isolated=True)
    assert code == 0, output
    assert output.splitlines() == ["cut off: URLError", "['lo']"]


def test_a_job_sees_the_images_environment_in_either_mode(engine, image: str, tmp_path: Path):
    """IMAGE_ENVIRONMENT is what model_code/Dockerfile's ENV sets; process mode sets the same, and both modes
    add the local machine's (OpenMP threads that spin briefly: the jobs share this machine's cores)."""
    from mlops.local.runners import IMAGE_ENVIRONMENT, LOCAL_MACHINE_ENVIRONMENT

    seen = {}
    for mode in ("always", "never"):
        log = tmp_path / f"env-{mode}.txt"
        (tmp_path / mode).mkdir()
        with open_runner(mode, ports=[], mounts=[], owner=tmp_path) as runner:
            code = runner.run(tmp_path / mode, ["python", "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                              [], {"STEP": mode}, log)
        assert code == 0, log.read_text()
        seen[mode] = json.loads(log.read_text().splitlines()[-1])
    for mode, environment in seen.items():
        assert {**IMAGE_ENVIRONMENT, **LOCAL_MACHINE_ENVIRONMENT, "STEP": mode}.items() <= environment.items()
