"""A pipeline's Tuning step on this machine: what SageMaker's hyperparameter tuning job does with the
same CreateHyperParameterTuningJob request, with processes for its training jobs.

- the Random strategy: every ranged hyperparameter drawn independently (categorical uniformly,
  continuous and integer uniformly or log-uniformly by ScalingType), seeded by RandomSeed;
- MaxNumberOfTrainingJobs jobs, MaxParallelTrainingJobs at once, each with the static and drawn
  hyperparameters in its hyperparameters.json (strings, plus `_tuning_objective_metric`) and its
  share of this machine's cores (`OMP_NUM_THREADS`: SageMaker gives each job an instance);
- the objective read from each job's log with the metric definition's regex (the last match);
- TrainingJobSummaries best first by the objective's Type; a job that failed or reported no
  objective is not a candidate, and the step fails only when no job succeeded.
"""

from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlops.local.executor import LocalExecutor


def draw(ranges: dict[str, list[dict[str, Any]]], jobs: int, seed: int) -> list[dict[str, str]]:
    """`jobs` draws of every range (values as the text SageMaker passes)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(jobs):
        values: dict[str, str] = {}
        for r in ranges.get("CategoricalParameterRanges", []):
            values[r["Name"]] = str(r["Values"][int(rng.integers(len(r["Values"])))])
        for kind in ("ContinuousParameterRanges", "IntegerParameterRanges"):
            for r in ranges.get(kind, []):
                low, high = float(r["MinValue"]), float(r["MaxValue"])
                log = r.get("ScalingType") in ("Logarithmic", "ReverseLogarithmic") and low > 0
                x = math.exp(rng.uniform(math.log(low), math.log(high))) if log else rng.uniform(low, high)
                values[r["Name"]] = str(int(round(x))) if kind == "IntegerParameterRanges" else repr(float(x))
        out.append(values)
    return out


def objective(log: str, regex: str) -> float | None:
    matches = re.findall(regex, log)
    if not matches:
        return None
    value = float(matches[-1] if isinstance(matches[-1], str) else matches[-1][0])
    return None if math.isnan(value) else value


def run_tuning(executor: LocalExecutor, step: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the tuning job's training jobs; their summaries, best first (PipelineFailed when none succeeded)."""
    from mlops.local.executor import PipelineFailed

    config, definition = arguments["HyperParameterTuningJobConfig"], arguments["TrainingJobDefinition"]
    limits = config["ResourceLimits"]
    target = config["HyperParameterTuningJobObjective"]
    maximize = target["Type"] == "Maximize"
    regex = next(d["Regex"] for d in definition["AlgorithmSpecification"].get("MetricDefinitions", [])
                 if d["Name"] == target["MetricName"])
    static = {**definition.get("StaticHyperParameters", {}), "_tuning_objective_metric": target["MetricName"]}
    draws = draw(config.get("ParameterRanges", {}), int(limits["MaxNumberOfTrainingJobs"]),
                 int(config.get("RandomSeed", 0)))
    parallel = int(limits["MaxParallelTrainingJobs"])
    # SageMaker gives each training job an instance of its own; here the jobs at once share the machine,
    # so each gets its share of the cores (OpenMP threads beyond them spin-wait and slow every job down)
    machine = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}

    def train(index: int) -> dict[str, Any]:
        name = f"pipelines-{executor.execution_id}-{step}-{index + 1:03d}"
        job = f"{step}/jobs/{name}"
        summary: dict[str, Any] = {"TrainingJobName": name, "TunedHyperParameters": draws[index]}
        try:
            executor._training_job(step, job, name, definition, {**static, **draws[index]}, machine)
        except PipelineFailed as failure:
            return summary | {"TrainingJobStatus": "Failed", "FailureReason": str(failure)}
        log = (executor._job_dir(job) / "logs.txt").read_text(errors="replace")
        value = objective(log, regex)
        if value is None:
            return summary | {"TrainingJobStatus": "Failed", "FailureReason": f"no {target['MetricName']} in the log"}
        return summary | {"TrainingJobStatus": "Completed",
                          "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": target["MetricName"],
                                                                          "Value": value}}

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        summaries = list(pool.map(train, range(len(draws))))
    except BaseException:  # Ctrl-C: the running jobs got the same SIGINT; the queued ones must not start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    done = [s for s in summaries if s["TrainingJobStatus"] == "Completed"]
    if not done:
        reasons = "; ".join(s["FailureReason"].splitlines()[0] for s in summaries[:3])
        raise PipelineFailed(step, f"no training job of the tuning job succeeded ({len(summaries)} failed): {reasons}")
    done.sort(key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], reverse=maximize)
    return done + [s for s in summaries if s["TrainingJobStatus"] != "Completed"]
