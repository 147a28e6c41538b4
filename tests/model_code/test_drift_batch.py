"""The drift job's --batch-capture: a transform job's manifests read as the endpoint's capture is."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from model_code import drift as dr
from model_code.drift.batch import read_batch_capture
from problems.adult.synthetic import ADULT, synthesize
from tests.model_code.test_drift import WHEN, WINDOW, csv_rows, score, write_capture


def write_batch(root: Path, files: dict[str, list[str]], outputs: dict[str, list[str]], when: datetime = WHEN) -> Path:
    """A transform job's data, output and capture manifests as SageMaker lays them out."""
    capture = root / "capture"
    for side, objects, prefix in (("input", files, root / "in"), ("output", outputs, root / "out")):
        for name, lines in objects.items():
            (prefix / name).parent.mkdir(parents=True, exist_ok=True)
            (prefix / name).write_text("\n".join(lines) + "\n")
        folder = capture / side / f"{when:%Y/%m/%d/%H}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "0b1c.json").write_text(json.dumps([{"prefix": f"{prefix}/"}, *objects]))
    return capture


def test_batch_rows_count_as_the_endpoints_would(tmp_path: Path) -> None:
    frame = synthesize(600, seed=3)
    rows, scores = csv_rows(frame), score(frame)
    batch = write_batch(tmp_path, {"a.csv": rows[:400], "day/b.csv": rows[400:]},
                        {"a.csv.out": [str(s) for s in scores[:400]], "day/b.csv.out": [str(s) for s in scores[400:]]})
    endpoint = dr.read_capture(write_capture(tmp_path / "ep", frame, per_record=50), ADULT, WINDOW)
    read = read_batch_capture(str(batch), ADULT, WINDOW)
    assert (read.rows, read.files, read.predictions) == (600, 2, 600)
    for name in ADULT.feature_names:
        if name in read.numeric:
            np.testing.assert_array_equal(read.values(name), endpoint.values(name))
        else:
            assert read.counts[name] == endpoint.counts[name]
        assert read.missing[name] == endpoint.missing[name]
    np.testing.assert_array_equal(np.sort(read.score_values()), np.sort(endpoint.score_values()))


def test_json_lines_inputs_and_outputs(tmp_path: Path) -> None:
    frame = synthesize(50, seed=4)[ADULT.feature_names]
    rows = [json.dumps(r) for r in frame.astype(object).where(frame.notna(), None).to_dict("records")]
    predictions = [json.dumps({"score": s, "label": ">50K"}) for s in score(frame)]
    read = read_batch_capture(str(write_batch(tmp_path, {"r.jsonl": rows}, {"r.jsonl.out": predictions})), ADULT,
                              WINDOW)
    assert (read.rows, read.predictions) == (50, 50)
    np.testing.assert_allclose(read.score_values(), score(frame))


def test_only_the_windows_jobs_and_inputs_without_output_have_rows_only(tmp_path: Path) -> None:
    rows = csv_rows(synthesize(30, seed=5))
    later = write_batch(tmp_path / "later", {"x.csv": rows}, {}, when=WHEN.replace(hour=15))
    assert read_batch_capture(str(later), ADULT, WINDOW).rows == 0
    unscored = read_batch_capture(str(write_batch(tmp_path / "failed", {"x.csv": rows}, {})), ADULT, WINDOW)
    assert (unscored.rows, unscored.predictions) == (30, 0)


def test_an_output_that_does_not_match_its_input_names_both(tmp_path: Path) -> None:
    rows = csv_rows(synthesize(10, seed=6))
    capture = write_batch(tmp_path, {"x.csv": rows}, {"x.csv.out": ["0.5"] * 9})
    with pytest.raises(dr.CaptureError, match=r"x\.csv: 10 records but 9 lines in .*x\.csv\.out"):
        read_batch_capture(str(capture), ADULT, WINDOW)


def test_a_file_that_is_not_a_manifest_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "input" / f"{WHEN:%Y/%m/%d/%H}"
    folder.mkdir(parents=True)
    (folder / "m.json").write_text('{"prefix": "s3://b/"}')
    with pytest.raises(dr.CaptureError, match="m.json: not a batch capture manifest"):
        read_batch_capture(str(tmp_path), ADULT, WINDOW)
