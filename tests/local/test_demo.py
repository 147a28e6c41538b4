"""`mlops demo`: the lifecycle end to end (a reduced run: the same eleven stages on less data), the
report it writes, and the interruption promise (Ctrl-C midway leaves no process; the next run works).

The module runs the demo twice in one state folder: first as `python -m mlops.demo --small`,
interrupted with SIGINT while the champion trains; then in-process to the end. The report is also
rendered from a hand-made result (fast, no demo needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops.demo import SMALL, STAGES, DemoResult, run_demo
from mlops.report import SECTIONS, render_report
from mlops.settings import REPO_ROOT
from tests.local.helpers import alive

NETWORK = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|<script|@import""", re.IGNORECASE)


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention `text` (the state folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command and alive(int(entry.name)):
            found.append(f"{entry.name}: {command[:200]}")
    return found


@dataclass
class Runs:
    state: Path
    interrupted_output: str
    interrupted_code: int
    interrupted_dir: Path
    pids: list[int]
    """Every pid the interrupted run printed (embedded AWS, endpoint)."""
    result: DemoResult
    output: list[str]
    prod_before: bytes


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    state = tmp_path_factory.mktemp("demo-state")
    prod_before = (REPO_ROOT / "Pulumi.prod.yaml").read_bytes()

    # 1. `mlops demo` (the installed entry point, what `make run` runs), interrupted while the champion
    #    trains (a step subprocess is running).
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlops")), "demo", "--small"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "MLOPS_STATE_DIR": str(state)},
    )
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line)
        if "Preprocess" in line and "ok" in line:  # the Train step subprocess has just started
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    rest, _ = process.communicate(timeout=60)
    output = "".join(lines) + rest
    pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
    match = re.search(r"run folder: (\S+)", output)
    assert match, output

    # 2. The next run, in the same state folder, to the end.
    printed: list[str] = []
    result = run_demo(state_dir=state, out=printed.append, **SMALL)
    yield Runs(state, output, process.returncode, Path(match[1]), pids, result, printed, prod_before)


def test_interrupting_the_demo_midway_leaves_no_process(runs: Runs) -> None:
    assert runs.interrupted_code == 130, runs.interrupted_output
    assert "[ 3/11] Train the champion" in runs.interrupted_output
    assert "interrupted: stopping the endpoint and the embedded AWS" in runs.interrupted_output
    assert runs.pids, runs.interrupted_output  # the embedded AWS announced its pid
    assert not [pid for pid in runs.pids if alive(pid)]
    record = json.loads((runs.interrupted_dir / "demo.json").read_text())
    assert record["status"] == "interrupted"
    assert not (runs.interrupted_dir / "aws.json").exists()
    partial = (runs.interrupted_dir / "report.html").read_text()  # a report of what ran, even so
    assert '<span class="bad">interrupted</span>' in partial and "Train the champion" in partial


def test_the_next_run_completes_every_stage(runs: Runs) -> None:
    result = runs.result
    assert result.status == "succeeded"
    assert result.run_dir != runs.interrupted_dir and result.run_dir.parent == runs.state / "demo"
    assert (runs.state / "demo" / "latest").resolve() == result.run_dir.resolve()
    assert [s.number for s in result.stages] == list(range(1, STAGES + 1))
    assert all(s.status == "ok" and s.seconds >= 0 for s in result.stages)
    printed = "\n".join(runs.output)
    for stage in result.stages:
        assert f"[{stage.number:>2}/{STAGES}] {stage.name}" in printed
        assert re.search(rf"{stage.number:>2}\. {re.escape(stage.name)}\s+\d+\.\d s", printed)
    assert "policy verdict: PASS: 0 mandatory" in printed
    assert f"report:       {result.report_path}" in printed
    assert f"MLflow UI:    {REPO_ROOT / '.venv' / 'bin' / 'mlflow'} ui --backend-store-uri sqlite:///" in printed


def test_the_drift_alarm_fires_after_m_drifted_windows_and_retrains(runs: Runs) -> None:
    points = runs.result.datapoints
    assert [p["value"] for p in points] == [0, 1, 1]  # held-out data: no drift; then dev's 2 of 3
    assert set(points[1]["features_drifted"]) == {"age", "workclass"}
    assert [p["alarm_after"] for p in points] == ["OK", "OK", "ALARM"]
    assert points[-1]["retrain"]["action"] == "started" and points[-1]["retrain"]["status"] == "Succeeded"
    champion, challenger = runs.result.models
    assert (champion.role, champion.version, challenger.role, challenger.version) == ("champion", 1, "challenger", 2)
    assert challenger.package_arn == points[-1]["retrain"]["package_arn"]


def test_labels_of_the_served_requests_are_joined_and_scored_per_window(runs: Runs) -> None:
    """Each window's requests carry inference ids; their labels, joined by the quality job, give the window's AUC."""
    quality = runs.result.quality
    assert [q["name"] for q in quality] == [p["name"] for p in runs.result.datapoints]
    clean, *drifted = quality
    sent = {t["name"]: t for t in runs.result.traffic}
    for q in quality:
        assert q["labelled_rows"] == q["captured_rows"] == sent[q["name"]]["rows"] and q["coverage"] == 1.0
        assert q["counts"]["matched"] == sent[q["name"]]["requests"] and q["counts"]["unknown_id"] == 0
    assert clean["degraded"] is False and clean["value"] >= clean["bar"]
    # The label swaps on the new population's upper half: the served champion's AUC falls under the bar
    # in every drifted window, and the quality alarm enters ALARM with the drift alarm (2 of 3)
    assert all(q["degraded"] is True and q["value"] < q["bar"] < clean["value"] for q in drifted)
    assert [q["alarm_after"] for q in quality] == ["OK", "OK", "ALARM"]
    # The drift alarm's retrain ran first: the shared cooldown keeps the quality alarm from a second one
    last = quality[-1]["retrain"]
    assert last["action"] == "skipped" and last["reason"].startswith("cooldown: ")
    assert runs.result.datapoints[-1]["retrain"]["execution_id"] in last["reason"]
    html = runs.result.report_path.read_text()  # type: ignore[union-attr]
    assert '<section id="quality">' in html and "clears the bar" in html and "below the bar" in html


def test_the_challenger_is_promoted_exactly_when_it_wins(runs: Runs) -> None:
    """Both decisions come from the platform: the retrain's CompareChampion step, then release promote's job."""
    result = runs.result
    scores = result.comparison["scores"]
    better = scores["challenger"]["auc"] >= result.comparison["required"] == scores["champion"]["auc"]
    assert result.comparison["winner"] == ("challenger" if better else "champion")
    assert result.promotion["promoted"] is better
    if better:
        same = result.promotion["same_data"]  # prod's copy pinned the champion: promote re-scored it
        assert same["pinned"] == scores["champion"]["auc"] and same["candidate"] == scores["challenger"]["auc"]
        assert same["test_data_uri"].endswith(f"/{result.model('challenger').execution_id}/Preprocess/test")  # type: ignore[union-attr]
        assert result.model("challenger").status == "Approved"  # type: ignore[union-attr]
        assert f'+  mlops-stack:approvedModelPackageArn: "{result.promotion["new_pin"]}"' in result.promotion["diff"]
        copy = Path(result.promotion["stack_file"])
        assert copy.parent == result.run_dir / "release"
        assert result.promotion["new_pin"] in copy.read_text()
    assert (REPO_ROOT / "Pulumi.prod.yaml").read_bytes() == runs.prod_before  # the repo's stack file is untouched


def test_a_real_prometheus_scraped_the_champion_and_the_report_shows_its_answers(runs: Runs) -> None:
    """With Debian's prometheus installed (.ci/run installs it and sets MLOPS_REQUIRE_PROMETHEUS), the demo's
    Prometheus counted exactly the invocations the endpoint's own /metrics reports; without it, the report
    says so."""
    scraped, html = runs.result.prometheus, runs.result.report_path.read_text()  # type: ignore[union-attr]
    if shutil.which("prometheus") is None:
        assert os.environ.get("MLOPS_REQUIRE_PROMETHEUS") != "1", "prometheus is required here but not installed"
        assert scraped == {} and "No Prometheus server ran" in html
        return
    assert "error" not in scraped, scraped.get("error")
    counted = {a["labels"]["code"]: a["value"] for a in scraped["results"]["requests by handler and code"]
               if a["labels"]["handler"] == "invocations"}
    own = {key.split('code="')[1].rstrip('"}'): value
           for key, value in runs.result.serving_metrics["champion"]["requests"].items() if "invocations" in key}
    assert counted == own and sum(counted.values()) > 0
    assert [a["value"] for a in scraped["results"]["scrapes up"]] == [1.0]
    [p99] = scraped["results"]["invocations p99 latency (s), last 5 min"]
    assert 0 < p99["value"] < 5
    assert f"Prometheus ({scraped['url']}, scraping {scraped['target']} every 1 s) answered:" in html


def test_the_finished_run_leaves_no_process(runs: Runs) -> None:
    assert not _processes_mentioning(str(runs.state))
    assert not (runs.result.run_dir / "aws.json").exists()
    assert not list((runs.result.run_dir / "endpoints").glob("*.json"))
    assert json.loads((runs.result.run_dir / "demo.json").read_text())["status"] == "succeeded"


def test_lineage_of_each_model_version(runs: Runs) -> None:
    for model in runs.result.models:
        lineage = model.lineage
        assert re.fullmatch(r"[0-9a-f]{7,40}|local", lineage["git_sha"])
        assert re.fullmatch(r"[0-9a-f]{64}", lineage["data_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", lineage["code_bundle_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", lineage["model_sha256"])
        assert re.fullmatch(r"[0-9a-f]{32}", lineage["mlflow_run_id"])
        assert model.package_arn.endswith(f"/mlops-stack-dev/{model.version}")
    champion, challenger = runs.result.models
    assert champion.lineage["data_sha256"] != challenger.lineage["data_sha256"]


def test_the_demo_report_is_self_contained_with_its_plots(runs: Runs) -> None:
    assert runs.result.report_path is not None
    html = runs.result.report_path.read_text()
    assert not NETWORK.findall(html)
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert html.count("data:image/png;base64,") >= 6  # roc, confusion matrix, importance of both models
    assert html.count("<svg") >= 8  # timeline, PSI per window, drifted features, latency, comparison
    for model in runs.result.models:
        assert model.lineage["model_sha256"] in html and model.package_arn in html
    assert "approvedModelPackageArn" in html or runs.result.promotion.get("promoted") is False


def _result(tmp_path: Path) -> dict:
    """A hand-made demo result: one model with an evaluation plot, one drift datapoint, one traffic stream."""
    png = tmp_path / "runs" / "r1" / "steps" / "Evaluate" / "opt" / "evaluation" / "roc.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    report = tmp_path / "monitor" / "reports" / "p1" / "drift_report.json"
    report.parent.mkdir(parents=True)
    feature = {"psi": 0.9, "drifted": True, "distribution": {"labels": ["a", "b"], "baseline": [0.5, 0.5],
                                                             "current": [0.1, 0.9]}}
    report.write_text(json.dumps({"status": "ok", "thresholds": {"psi": 0.2}, "prediction": None,
                                  "features": {"age": feature, "sex": {**feature, "psi": 0.01, "drifted": False}}}))
    report.with_suffix(".html").write_text("<!DOCTYPE html><p>drift job report</p>")
    return {
        "run_id": "r", "run_dir": str(tmp_path), "stack": "dev", "status": "succeeded", "seconds": 12.5,
        "stages": [{"number": 1, "name": "Embedded AWS and MLflow", "seconds": 2.0, "status": "ok", "detail": ["x"]},
                   {"number": 2, "name": "Train", "seconds": 10.5, "status": "ok", "detail": []}],
        "plan": {"resources": 45, "components": ["storage"], "violations": []},
        "models": [{"role": "champion", "version": 1, "package_arn": "arn:aws:sagemaker:eu-west-1:1:model-package/g/1",
                    "execution_id": "r1", "data": "rows", "status": "Approved", "metrics": {"auc": 0.9, "rows": 10},
                    "lineage": {"git_sha": "abc", "model_sha256": "f" * 64}, "seconds": 10.0}],
        "datapoints": [{"name": "w1", "window_start": "t0", "window_end": "t1", "rows": 5, "value": 1,
                        "features_drifted": ["age"], "report": str(report), "report_html": str(report.with_suffix(".html")),
                        "alarm_before": "OK", "alarm_after": "ALARM", "retrain": {"action": "started", "reason": "r"}}],
        "traffic": [{"name": "held-out", "requests": 3, "rows": 9, "latency_ms": [1.0, 2.0, 3.5], "status": {"200": 3}}],
        "serving_metrics": {"champion": {"requests": {'{handler="invocations",code="200"}': 3}, "rows_scored": 9,
                                         "server_mean_ms": 1.2}},
        "comparison": {}, "promotion": {},
    }


def test_report_renders_every_section_from_a_result(tmp_path: Path) -> None:
    html = render_report(_result(tmp_path))
    assert not NETWORK.findall(html)
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert "data:image/png;base64,iVBORw0KGgo" in html  # the evaluation PNG, inlined
    assert 'aria-label="PSI per feature: w1"' in html and 'aria-label="age: share of values"' in html
    assert 'srcdoc="&lt;!DOCTYPE html&gt;&lt;p&gt;drift job report' in html
    assert 'aria-label="timeline"' in html and "client latency (ms): held-out" in html
    assert "f" * 64 in html and "no comparison ran" in html


def test_report_of_a_run_that_stopped_early_still_renders(tmp_path: Path) -> None:
    html = render_report({"run_id": "x", "run_dir": str(tmp_path), "status": "interrupted", "stages": []})
    assert "interrupted" in html and "no stage ran" in html and "the drift job did not run" in html
