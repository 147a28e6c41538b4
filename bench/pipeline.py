"""Benchmark: the local training pipeline, and preprocess/train throughput on 1M synthetic rows.

    .venv/bin/python bench/pipeline.py [--rows 1000000]

1. `mlops pipeline run --local` on the bundled sample (48,842 rows), end to end in a fresh state
   folder, once with every job in the image (`--container always`, when an engine answers) and once
   in a venv of the image's requirements (`--container never`): wall times against the 60 s target,
   each step's time, and whether both gave the same metrics and model content digest.
2. The Adult census pipeline before problems were declared (``--baseline-rev``, default ``c3b9e3e``,
   the commit before issue 15, checked out in a temporary git worktree) against this checkout, with
   and without tuning (``-c tuningMaxJobs=2 -c tuningParallelJobs=2``): each in a venv of its
   image's requirements, ``--rounds`` interleaved rounds, the best wall time of each; the target is
   this checkout within 1.2x of the baseline.
3. 1M synthetic rows of the same schema: our `preprocess` and `train` steps (their command lines,
   as the pipeline runs them) against the named peer measured in the same run: the bare library
   calls underneath (pandas read + sklearn train_test_split; sklearn fit of the same estimator on
   the same rows), so the ratio is the price of validation, baselines, importance and artifacts.

Nothing here is a test; it prints figures and ratios, and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
TARGET_S = 60.0


def _timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            check=False, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def _local_run(container: str, *, command: list[str] | None = None, env: dict[str, str] | None = None,
               extra: tuple[str, ...] = ()) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as state:
        env = {**(env or {}), "MLOPS_STATE_DIR": state}
        try:
            seconds = _timed([*(command or [str(Path(PYTHON).parent / "mlops")]), "pipeline", "run", "--local",
                              "--container", container, *extra], env)
            [record] = list(Path(state).glob("runs/*/run.json"))
            return seconds, json.loads(record.read_text())
        finally:
            subprocess.run([str(Path(PYTHON).parent / "mlops"), "local", "down"], env={**os.environ, **env},
                           capture_output=True, check=False, timeout=60)


def local_pipeline() -> None:
    from mlops.local.container import find_engine

    modes = ["always", "never"] if find_engine() is not None else ["never"]
    results = {}
    for mode in modes:
        seconds, run = _local_run(mode)
        results[mode] = run
        where = {"always": "jobs in the image", "never": "jobs in a venv of the image's requirements"}[mode]
        print(f"local pipeline --container {mode} ({where}; bundled sample, {run['metrics'].get('rows', 0):.0f} "
              f"test rows): {seconds:.1f} s wall, status {run['status']}, "
              f"test {run.get('primary_metric') or 'auc'} "
              f"{run['metrics'].get(run.get('primary_metric') or 'auc', float('nan')):.4f}")
        for step in run["steps"]:
            print(f"  {step['name']:<18} {step['seconds']:6.1f} s")
        print(f"  ratio to the {TARGET_S:.0f} s target: {seconds / TARGET_S:.2f} (below 1 meets it)")
    if len(results) == 2:
        same = (results["always"]["metrics"] == results["never"]["metrics"]
                and results["always"]["lineage"]["model_sha256"] == results["never"]["lineage"]["model_sha256"])
        print(f"  image and venv runs give the same metrics and model content digest: {same}")
    else:
        print("  no container engine answers: the image run was not measured")


PEER_PREPROCESS = """
import sys, time
import pandas as pd
from sklearn.model_selection import train_test_split
t = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
train, rest = train_test_split(frame, test_size=0.3, random_state=42)
validation, test = train_test_split(rest, test_size=0.5, random_state=42)
for name, part in (("train", train), ("validation", validation), ("test", test)):
    part.to_csv(f"{sys.argv[2]}/{name}.csv", index=False)
"""

PEER_TRAIN = """
import sys
import pandas as pd
from model_code import estimators
from model_code.problem import step_problem
from model_code.schema import coerce
problem = step_problem()
schema, candidate = problem.schema, problem.candidates[0]
params = estimators.resolve_params(problem.kind(candidate), candidate.params)
frame = coerce(pd.read_csv(sys.argv[1]), schema, source="bench")
estimator = problem.build(candidate, params, 42)
estimator.fit(frame[schema.feature_names], frame[schema.label].to_numpy())
"""


def throughput(rows: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "synthetic.csv"
        _timed([PYTHON, "-m", "problems.adult.synthetic", "synthetic", "--rows", str(rows), "--seed", "7",
                "--out", str(data)])
        ours_out, peer_out = Path(work) / "ours", Path(work) / "peer"
        peer_out.mkdir()
        ours = _timed([PYTHON, "-m", "model_code", "preprocess", "--input", str(data), "--output", str(ours_out)])
        peer = _timed([PYTHON, "-c", PEER_PREPROCESS, str(data), str(peer_out)])
        print(f"preprocess, {rows:,} rows: ours {rows / ours:,.0f} rows/s ({ours:.1f} s), "
              f"peer pandas+train_test_split {rows / peer:,.0f} rows/s ({peer:.1f} s), ratio ours/peer "
              f"{(rows / ours) / (rows / peer):.2f}")

        train_dir = ours_out / "train"
        train_rows = sum(1 for _ in open(next(train_dir.glob("*.csv")))) - 1
        model_dir = Path(work) / "model"
        ours = _timed([PYTHON, "-m", "model_code", "train", "--train", str(train_dir),
                       "--validation", str(ours_out / "validation"), "--model-dir", str(model_dir),
                       "--output-data-dir", str(Path(work) / "output")])
        peer = _timed([PYTHON, "-c", PEER_TRAIN, str(next(train_dir.glob("*.csv")))])
        print(f"train, {train_rows:,} train rows: ours {train_rows / ours:,.0f} rows/s ({ours:.1f} s), "
              f"peer bare sklearn fit {train_rows / peer:,.0f} rows/s ({peer:.1f} s), ratio ours/peer "
              f"{(train_rows / ours) / (train_rows / peer):.2f}")


TUNING = ("-c", "tuningMaxJobs=2", "-c", "tuningParallelJobs=2")
WITHIN = 1.2


def against_baseline(rev: str, rounds: int) -> None:
    """This checkout's local Adult pipeline against `rev`'s, same machine, same run, interleaved."""
    with tempfile.TemporaryDirectory() as tree:
        subprocess.run(["git", "worktree", "add", "--detach", tree, rev], cwd=ROOT, check=True, capture_output=True)
        try:
            baseline = [PYTHON, "-c", "import sys; from mlops.cli import main; sys.exit(main())"]
            runs = {"baseline": (baseline, {"PYTHONPATH": tree}, ()), "ours": (None, {}, ()),
                    "ours, tuning 2 jobs": (None, {}, TUNING)}
            best: dict[str, float] = {}
            for _ in range(rounds):
                for name, (command, env, extra) in runs.items():
                    seconds, run = _local_run("never", command=command, env=env, extra=extra)
                    if run["status"] != "Succeeded":
                        raise SystemExit(f"{name}: the local run {run['status']}: {run.get('failure')}")
                    best[name] = min(best.get(name, seconds), seconds)
            print(f"local Adult pipeline (--container never), best of {rounds} interleaved rounds:")
            for name in runs:
                ratio = best[name] / best["baseline"]
                verdict = "" if name == "baseline" else \
                    f", ratio to baseline {ratio:.2f} ({'MET' if ratio <= WITHIN else 'MISSED'} <= {WITHIN})"
                print(f"  {name:<22} {best[name]:6.1f} s{verdict}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-local", action="store_true", help="only the 1M-row throughput part")
    parser.add_argument("--local-only", action="store_true", help="only the local pipeline run")
    parser.add_argument("--baseline-rev", default="c3b9e3e", help="the commit the local pipeline is compared with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-only", action="store_true", help="only the comparison with --baseline-rev")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine slows both sides)")
    if args.baseline_only:
        against_baseline(args.baseline_rev, args.rounds)
        return
    if not args.skip_local:
        local_pipeline()
        against_baseline(args.baseline_rev, args.rounds)
    if not args.local_only:
        throughput(args.rows)


if __name__ == "__main__":
    main()
