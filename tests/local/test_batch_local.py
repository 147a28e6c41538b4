"""`mlops batch run --local`: Batch Transform's contract against the image's serve, through the installed entry
point; its scores are the endpoint's, row for row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.batch_local import MIB, BatchError, mini_batches
from mlops.local import aws as local_aws
from mlops.naming import Names
from mlops.serve_local import serve_local
from model_code.drift.batch import read_batch_capture
from problems.adult.synthetic import ADULT, synthesize
from tests.local.test_serve_local import registry, settings  # noqa: F401 -- the module's registered packages

MLOPS = str(Path(sys.executable).with_name("mlops"))


def run(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    environment["MLOPS_STATE_DIR"] = str(state)
    return subprocess.run([MLOPS, "batch", "run", "--local", *args], env=environment, capture_output=True, text=True,
                          timeout=600, check=False, stdin=subprocess.DEVNULL)


def features(rows: int, seed: int) -> pd.DataFrame:
    return synthesize(rows, seed=seed)[ADULT.feature_names]


def csv_text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, header=False, lineterminator="\n")


def test_a_batch_of_2500_rows_scores_as_the_endpoint_row_for_row(registry, settings, tmp_path: Path):  # noqa: F811
    inputs = tmp_path / "in"
    (inputs / "day=2").mkdir(parents=True)
    first, second = features(1000, 41), features(1500, 42)
    (inputs / "part-1.csv").write_text(csv_text(first))
    (inputs / "day=2" / "part-2.csv").write_text(csv_text(second).replace("\n", "\n\n", 3))  # blank lines: no records
    done = run("--input", str(inputs), "--output", str(tmp_path / "out"), state=registry.state)
    assert done.returncode == 0, done.stderr
    assert "scored 2500 records of 2 file(s)" in done.stdout and registry.first in done.stdout, done.stdout
    batch = [np.loadtxt(tmp_path / "out" / name, ndmin=1) for name in ("part-1.csv.out", "day=2/part-2.csv.out")]
    with serve_local(settings, state_dir=registry.state, model="champion", port=0, capture=False) as endpoint:
        online = [np.loadtxt(endpoint.invoke(csv_text(frame).encode())[1].decode().splitlines(), ndmin=1)
                  for frame in (first, second)]
    for offline, served in zip(batch, online, strict=True):
        assert offline.shape == served.shape
        np.testing.assert_array_equal(offline, served)
    # captured as the transform job's DataCaptureConfig does: what the drift job reads beside the endpoint's capture
    capture_uri = done.stdout.rsplit("captured in ", 1)[1].split()[0]
    assert capture_uri == f"s3://{Names.of(settings).bucket('capture')}/{Names.of(settings).batch_capture_prefix}"
    with local_aws.environment(registry.server):
        captured = read_batch_capture(capture_uri, settings.problem_declaration().schema)
    assert (captured.rows, captured.files, captured.predictions) == (2500, 2, 2500)
    np.testing.assert_array_equal(np.sort(captured.score_values()), np.sort(np.concatenate(online)))


def test_json_lines_in_and_out(registry, tmp_path: Path):  # noqa: F811
    frame = features(300, 43)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "rows.csv").write_text(csv_text(frame))
    as_json = run("--input", str(tmp_path / "rows.jsonl"), "--output", str(tmp_path / "out"),
                  "--content-type", "application/jsonlines", state=registry.state)
    as_csv = run("--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out"), state=registry.state)
    assert as_json.returncode == 0 and as_csv.returncode == 0, as_json.stderr + as_csv.stderr
    lines = (tmp_path / "out" / "rows.jsonl.out").read_text().splitlines()
    scores = [json.loads(line)["score"] for line in lines]
    np.testing.assert_array_equal(scores, np.loadtxt(tmp_path / "out" / "rows.csv.out"))


def test_a_bad_row_fails_the_job_naming_the_file_and_line_and_writes_no_output(registry, tmp_path: Path):  # noqa: F811
    lines = csv_text(features(20, 44)).splitlines()
    lines[6] = lines[6].replace(lines[6].split(",")[0], "-5", 1)  # age below the schema's range, at line 7
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    failed = run("--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "out"), state=registry.state)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "bad.csv lines 1-20: the model answered 400" in failed.stderr and "file lines [7]" in failed.stderr
    assert "'age'" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_csv_header_is_refused_with_the_reason(registry, tmp_path: Path):  # noqa: F811
    (tmp_path / "header.csv").write_text(features(5, 45).to_csv(index=False, lineterminator="\n"))
    failed = run("--input", str(tmp_path / "header.csv"), "--output", str(tmp_path / "out"), state=registry.state)
    assert failed.returncode == 2 and "6 records but 5 answer lines (a CSV header?" in failed.stderr, failed.stderr


def test_bad_arguments_are_one_line_each(registry, tmp_path: Path):  # noqa: F811
    missing = run("--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out"), state=registry.state)
    assert missing.returncode == 2 and "--input" in missing.stderr and "no such file or folder" in missing.stderr
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1\n")
    inside = run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "in" / "out"), state=registry.state)
    assert inside.returncode == 2 and "inside --input" in inside.stderr
    payload = run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--max-payload-mb", "101",
                  state=registry.state)
    assert payload.returncode == 2 and "MaxPayloadInMB is 1 to 100" in payload.stderr


def test_mini_batches_hold_as_many_records_as_fit_in_order():
    records = [(i + 1, b"x" * 99) for i in range(25)]  # 100 bytes each with the newline
    batches = list(mini_batches(records, 1000, Path("f.csv")))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [n for b in batches for n, _ in b] == list(range(1, 26))
    with pytest.raises(BatchError, match="f.csv line 3: one record of 2000000 bytes exceeds MaxPayloadInMB"):
        list(mini_batches([(3, b"y" * 2_000_000)], MIB, Path("f.csv")))


def test_a_bad_record_in_a_later_mini_batch_is_named_by_its_file_line(registry, tmp_path: Path):  # noqa: F811
    lines = csv_text(features(12000, 46)).splitlines()  # about 1.2 MB: two mini-batches of at most 1 MB
    lines[11000] = lines[11000].replace(lines[11000].split(",")[0], "-5", 1)
    body = lines[:100] + ["", ""] + lines[100:]  # blank lines are no records, yet they count as file lines
    (tmp_path / "big.csv").write_text("\n".join(body) + "\n")
    (tmp_path / "bad.jsonl").write_text('[1, 2]\n\n{"age": \n')
    failed = run("--input", str(tmp_path / "big.csv"), "--output", str(tmp_path / "out"), "--max-payload-mb", "1",
                 state=registry.state)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    first = failed.stderr.split("big.csv lines ", 1)[1].split(":", 1)[0]
    assert int(first.split("-")[0]) > 1 and "file lines [11003]" in failed.stderr, failed.stderr
    jsonl = run("--input", str(tmp_path / "bad.jsonl"), "--output", str(tmp_path / "out"),
                "--content-type", "application/jsonlines", state=registry.state)
    assert jsonl.returncode == 2 and "file lines [3]" in jsonl.stderr, jsonl.stderr
