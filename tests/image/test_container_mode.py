"""Local mode's two runners give the same result: jobs in the image, and in a venv of its requirements."""

from __future__ import annotations

from pathlib import Path

from mlops.local import aws as local_aws
from mlops.local.pipeline import run_local
from mlops.local.runners import open_runner
from mlops.settings import load_stack


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


def test_a_job_reaches_the_embedded_services_and_nothing_else(engine, image: str, tmp_path: Path):
    """The job network: 127.0.0.1:<port> of a service on this machine answers; no other route exists."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    probe = (
        "import socket, urllib.request, sys\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5).status)\n"
        "try:\n"
        "    socket.create_connection(('10.0.2.2', 80), timeout=2)\n"
        "except OSError as error:\n"
        "    print('no route:', type(error).__name__)\n"
    )
    try:
        with open_runner("always", ports=[port], mounts=[], owner=tmp_path) as runner:
            assert runner.mode == "container"
            log = tmp_path / "log.txt"
            code = runner.run(tmp_path / "job", ["python", "-c", probe], [], {}, log)
    finally:
        server.shutdown()
    output = log.read_text()
    assert code == 0, output
    assert output.splitlines()[0] == "200"
    assert "no route: OSError" in output
