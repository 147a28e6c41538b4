"""Benchmark (not a test): the drift job vs Evidently's DataDriftPreset on 1M captured rows.

    .venv/bin/python bench/drift.py [--rows 1000000] [--reference-rows 100000]
                                    [--evidently-python .venv-evidently/bin/python]

1. Synthesizes a reference sample (the "training" data: drift baseline and prediction baseline
   are computed on it) and ``--rows`` current rows with four shifted features (age mean +6,
   hours_per_week spread x1.6, workclass gains a new category on 12% of rows, occupation loses
   25% of its values to missing), scores both with a fixed logistic function (the "model").
2. Writes the current rows as SageMaker data-capture JSONL in 24 hourly folders
   (``<dir>/bench-endpoint/AllTraffic/yyyy/mm/dd/hh/*.jsonl``): 95% of the rows as one-row CSV
   invocations, 5% as JSON invocations of 10 instances (``{"instances": [...]}`` /
   ``{"predictions": [{"score", "label"}]}``).
3. Runs each contender in its own subprocess, measuring wall time and peak RSS (ru_maxrss of the
   child; with --workers > 1 it is the largest process, so the single-worker run is also shown):
   - ``python -m model_code drift`` on the capture files (parsing the JSONL included);
   - Evidently's DataDriftPreset (Report.run + save_html) on the same rows as DataFrames, the
     score included as a column (loading the frames from Parquet is excluded from its time).
     Evidently drops missing values before it tests a column, so a surge of missing values is
     invisible to it; the drift job counts missing values as a check of their own. To compare
     verdicts on the same information, a missing categorical value is given to Evidently as the
     category "(missing)" (the usual way to make it watch missingness); ``--evidently-drops-missing``
     gives it the NaNs as they are.
4. Prints times, peak memory, ratios and the per-feature verdicts of both, with the truth: the
   four shifted features, and the score, which is a function of three of them.

Evidently does not install next to this repo's pandas 3 (it imports
``pandas.core.dtypes.common.infer_dtype_from_object``, removed in pandas 3), so it runs from its
own venv with pandas 2::

    python3.11 -m venv .venv-evidently && .venv-evidently/bin/pip install evidently==0.7.23 "pandas<3"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_code import baseline as bl  # noqa: E402
from model_code.data import Drift  # noqa: E402
from model_code.preprocess import to_csv_bytes  # noqa: E402
from problems.adult.synthetic import ADULT, synthesize  # noqa: E402

DRIFT = Drift(mean_shift={"age": 6.0}, variance_scale={"hours_per_week": 1.6},
              new_category={"workclass": ("Gig-economy", 0.12)}, missing_surge={"occupation": 0.25})
SHIFTED = {"age", "hours_per_week", "workclass", "occupation", "score"}   # score(): of age, hours, workclass
MISSING = "(missing)"
START = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
HOURS = 24

EVIDENTLY_SCRIPT = r"""
import json, sys, time, resource
import pandas as pd
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
num, cat = json.loads(sys.argv[3]), json.loads(sys.argv[4])
t0 = time.perf_counter()
import evidently
from evidently import Report, Dataset, DataDefinition
from evidently.presets import DataDriftPreset
dd = DataDefinition(numerical_columns=num, categorical_columns=cat)
snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=dd),
                                        Dataset.from_pandas(ref, data_definition=dd))
t1 = time.perf_counter()
snap.save_html(sys.argv[5])
t2 = time.perf_counter()
verdicts = {}
for m in snap.dict()["metrics"]:
    cfg = m["config"]
    if cfg.get("type", "").endswith("ValueDrift"):
        method, thr, v = cfg["method"], cfg["threshold"], m["value"]
        drifted = v < thr if "p_value" in method else v >= thr
        verdicts[cfg["column"]] = {"method": method, "threshold": thr, "value": v, "drifted": bool(drifted)}
print(json.dumps({"version": evidently.__version__, "pandas": pd.__version__, "run_s": t1 - t0,
                  "html_s": t2 - t1, "verdicts": verdicts}))
"""


def score(frame: pd.DataFrame) -> np.ndarray:
    """A fixed 'model': logistic in a few features (missing -> neutral)."""
    z = (-1.2 + 0.04 * (frame["age"].fillna(38) - 38) + 0.3 * (frame["education_num"].fillna(10) - 10)
         + 0.03 * (frame["hours_per_week"].fillna(40) - 40) + 0.8 * (frame["workclass"] == "Self-emp-inc"))
    return (1.0 / (1.0 + np.exp(-z.to_numpy(dtype=float)))).round(6)


def write_capture(current: pd.DataFrame, scores: np.ndarray, root: Path) -> int:
    """SageMaker capture JSONL, 24 hourly folders; returns the number of records."""
    lines = to_csv_bytes(current[ADULT.feature_names], ADULT).decode().split("\n")[1:len(current) + 1]
    n = len(lines)
    json_rows = np.zeros(n, dtype=bool)
    json_rows[: n // 20] = True          # 5% in JSON batches of 10 (in the first records of each hour)
    rng = np.random.default_rng(7)
    json_rows = json_rows[rng.permutation(n)]
    per_hour = int(np.ceil(n / HOURS))
    csv_tpl = ('{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
               '"data":"%s","encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv",'
               '"mode":"OUTPUT","data":"%s","encoding":"CSV"}},"eventMetadata":{"eventId":"e%d",'
               '"inferenceTime":"%s"},"eventVersion":"0"}\n')
    records = 0
    feats = current[ADULT.feature_names]
    for h in range(HOURS):
        hour = START + timedelta(hours=h)
        folder = root / "bench-endpoint" / "AllTraffic" / f"{hour:%Y/%m/%d/%H}"
        folder.mkdir(parents=True, exist_ok=True)
        lo, hi = h * per_hour, min(n, (h + 1) * per_hour)
        when = (hour + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out = []
        idx = np.arange(lo, hi)
        for i in idx[~json_rows[lo:hi]]:
            out.append(csv_tpl % (lines[i], scores[i], i, when))
        js = idx[json_rows[lo:hi]]
        for k in range(0, len(js), 10):
            part = js[k:k + 10]
            inst = feats.iloc[part].astype(object).where(feats.iloc[part].notna(), None).to_dict("records")
            body = json.dumps({"instances": inst})
            pred = json.dumps({"predictions": [{"score": float(scores[i]), "label": int(scores[i] >= 0.5)}
                                               for i in part]})
            out.append(json.dumps({"captureData": {
                "endpointInput": {"observedContentType": "application/json", "mode": "INPUT", "data": body,
                                  "encoding": "JSON"},
                "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT", "data": pred,
                                   "encoding": "JSON"}},
                "eventMetadata": {"eventId": f"j{part[0]}", "inferenceTime": when}, "eventVersion": "0"},
                separators=(",", ":")) + "\n")
        (folder / f"30-00-000-bench-{h:02d}.jsonl").write_text("".join(out))
        records += len(out)
    return records


def measured(cmd: list[str], env: dict[str, str] | None = None,
             ) -> tuple[float, float, float, subprocess.CompletedProcess]:
    """Run ``cmd`` under a fresh wrapper process: (wall s, CPU s, peak RSS MB of the command, result).

    CPU time (user + system of the command and its children) is reported next to wall time
    because wall time on a shared machine includes waiting for the CPU."""
    wrapper = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "w = time.perf_counter() - t; "
               "print(json.dumps({'rc': r.returncode, 'wall': w, "
               "'maxrss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "'cpu': resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime "
               "+ resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime, "
               "'out': r.stdout, 'err': r.stderr}))")
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    d = json.loads(r.stdout)
    res = subprocess.CompletedProcess(cmd, d["rc"], d["out"], d["err"])
    if d["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({d['rc']}):\n{d['err'][-3000:]}")
    return d["wall"], d["cpu"], d["maxrss"] / 1024, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reference-rows", type=int, default=100_000)
    ap.add_argument("--evidently-python", default=str(REPO / ".venv-evidently" / "bin" / "python"))
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--evidently-drops-missing", action="store_true",
                    help=f"give Evidently missing categorical values as NaN, not as the category {MISSING!r}")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    t0 = time.perf_counter()
    reference = synthesize(args.reference_rows, seed=1)
    current = synthesize(args.rows, seed=2, drift=DRIFT)
    ref_scores, cur_scores = score(reference), score(current)
    base = bl.compute_baseline(reference, ADULT, {"split": "train", "rows": len(reference), "seed": 1})
    (tmp / "baseline.json").write_text(bl.dumps(base))
    (tmp / "prediction_baseline.json").write_text(json.dumps(bl.prediction_stats(ref_scores, "binary", 0.5)))
    records = write_capture(current, cur_scores, tmp / "capture")
    size = sum(p.stat().st_size for p in (tmp / "capture").rglob("*.jsonl"))
    ev_ref = reference[ADULT.feature_names].assign(score=ref_scores)
    ev_cur = current[ADULT.feature_names].assign(score=cur_scores)
    if not args.evidently_drops_missing:
        for f in ADULT.categorical:
            ev_ref[f.name] = ev_ref[f.name].astype(object).fillna(MISSING)
            ev_cur[f.name] = ev_cur[f.name].astype(object).fillna(MISSING)
    ev_ref.to_parquet(tmp / "ref.parquet")
    ev_cur.to_parquet(tmp / "cur.parquet")
    print(f"data: {args.rows} current rows in {records} capture records ({size / 1e6:.0f} MB JSONL, "
          f"{HOURS} hourly files), reference {args.reference_rows} rows; shifted: {sorted(SHIFTED)}; "
          f"Evidently sees missing categoricals as {'NaN' if args.evidently_drops_missing else repr(MISSING)}; "
          f"generated in {time.perf_counter() - t0:.1f} s; cpus={len(os.sched_getaffinity(0))}")

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    job = [sys.executable, "-m", "model_code", "drift", "--input", str(tmp / "capture"),
           "--baseline", str(tmp / "baseline.json"), "--prediction-baseline", str(tmp / "prediction_baseline.json"),
           "--start", START.isoformat(), "--hours", str(HOURS)]
    runs = {}
    for workers in (1, 0):
        label = "drift job (1 process)" if workers == 1 else "drift job (1 process per CPU)"
        wall, cpu, rss, _ = measured([*job, "--workers", str(workers), "--output", str(tmp / f"out{workers}")],
                                     env)
        runs[label] = (wall, cpu, rss)
    ours = json.loads((tmp / "out0" / "drift_report.json").read_text())

    ev_status = None
    if not Path(args.evidently_python).exists():
        ev_status = (f"Evidently skipped: {args.evidently_python} does not exist (see this file's docstring "
                     "for the venv it needs)")
    else:
        cmd = [args.evidently_python, "-c", EVIDENTLY_SCRIPT, str(tmp / "ref.parquet"), str(tmp / "cur.parquet"),
               json.dumps([*[f.name for f in ADULT.numeric], "score"]),
               json.dumps([f.name for f in ADULT.categorical]), str(tmp / "evidently.html")]
        wall, cpu, rss, res = measured(cmd, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        ev = json.loads(res.stdout.strip().splitlines()[-1])
        runs[f"Evidently {ev['version']} (pandas {ev['pandas']}) run+html"] = (
            ev["run_s"] + ev["html_s"], float("nan"), rss)
        runs["  of which Report.run"] = (ev["run_s"], float("nan"), float("nan"))
        runs["  Evidently process incl. parquet load"] = (wall, cpu, rss)

    print(f"\n{'contender':48s} {'wall s':>8s} {'CPU s':>8s} {'peak RSS MB':>12s}")
    for label, (wall, cpu, rss) in runs.items():
        print(f"{label:48s} {wall:8.2f} {cpu:8.2f} {rss:12.0f}")
    if ev_status:
        print(ev_status)
        return 0
    ev_label = next(k for k in runs if k.startswith("Evidently"))
    ev_time, _, ev_rss = runs[ev_label]
    ev_wall, ev_cpu, _ = runs["  Evidently process incl. parquet load"]
    for label in ("drift job (1 process)", "drift job (1 process per CPU)"):
        t, c, r = runs[label]
        print(f"vs Evidently ({label}): {ev_time / t:.1f}x faster (wall; Evidently run+html vs our whole job), "
              f"{ev_cpu / c:.1f}x less CPU (whole processes), {ev_rss / r:.1f}x less peak memory")

    print(f"\n{'feature':16s} {'ours':>6s} {'PSI':>7s} {'p':>9s} {'effect':>7s} {'missing':>8s}   "
          f"{'Evidently':>9s} {'method':28s} {'value':>7s}  truth  agree")
    agree = 0
    rows = [*ADULT.feature_names, "score"]
    for name in rows:
        o = ours["prediction"] if name == "score" else ours["features"][name]
        e = ev["verdicts"][name]
        truth = name in SHIFTED
        same = o["drifted"] == e["drifted"]
        agree += same
        print(f"{name:16s} {('DRIFT' if o['drifted'] else 'ok'):>6s} {o['psi']:7.3f} {o['test']['p_value']:9.2g} "
              f"{o['effect']['value']:7.3f} {o['missing']['share']:8.1%}   {('DRIFT' if e['drifted'] else 'ok'):>9s} "
              f"{e['method']:28s} {e['value']:7.3f}  {('shift' if truth else '-'):5s}  {'yes' if same else 'NO'}")
    print(f"verdicts agree on {agree}/{len(rows)} columns")
    for who, verdict in (("drift job", lambda n: (ours["prediction"] if n == "score" else ours["features"][n])),
                         ("Evidently", lambda n: ev["verdicts"][n])):
        wrong = [n for n in rows if verdict(n)["drifted"] != (n in SHIFTED)]
        print(f"{who} flags exactly the shifted columns: {not wrong}" + (f" (wrong: {wrong})" if wrong else ""))
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
