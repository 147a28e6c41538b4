"""Drift job: compare captured endpoint traffic with the training baseline.

Reads SageMaker data-capture JSONL for a time window (a local folder or ``s3://bucket/prefix``),
compares every feature and the model's score with the drift baseline written by preprocess
(``baseline.py``) and the model's ``prediction_baseline``, and writes a JSON report, a
self-contained HTML report and, when a namespace is given, CloudWatch metrics.

Command line (a SageMaker processing job, or locally)::

    python -m model_code drift --input DIR|s3://bucket/prefix --baseline baseline.json
        [--batch-capture DIR|s3://bucket/prefix]           # a Batch Transform job's capture (drift/batch.py)
        [--model model.tar.gz|model.joblib|DIR] [--prediction-baseline prediction_baseline.json]
        [--start 2024-05-01T12:00:00Z] [--end 2024-05-01T13:00:00Z] [--hours N]
        [--output /opt/ml/processing/output/drift]
        [--namespace mlops-stack/dev --endpoint NAME]     # CloudWatch metrics (or env, see below)
        [--psi 0.2] [--p-value 0.01] [--min-effect 0.1] [--missing-delta 0.05]
        [--workers N] [--fail-on-drift]

Exit codes: 0 the job ran (drift or not; an empty window is not an error), 1 bad input (capture
records that do not fit the schema, unreadable files, a bad baseline), 2 bad arguments,
3 drift detected and ``--fail-on-drift`` was given.

Window: ``--start`` (inclusive) and ``--end`` (exclusive) are ISO 8601 times (UTC unless an offset
is given); ``--hours N`` alone means the N full hours before the current hour. No window: all the
capture under ``--input``. Files are listed only under the ``yyyy/mm/dd/hh`` folders that intersect
the window (SageMaker's layout ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``; the prefix
may point at any level above the hour folders); every record is then filtered by its
``eventMetadata.inferenceTime``. Local files not in that layout are read whole and filtered the
same way. ``*.jsonl.partial`` files (being written) are ignored.

Capture records: ``captureData.endpointInput`` / ``endpointOutput`` with ``encoding`` CSV, JSON or
BASE64 (the content type then says CSV or JSON). Inputs: CSV rows in the schema's feature order,
with or without a header line (a header may order the columns differently; it must name exactly
the features), or JSON ``{"instances": [...]}`` of objects keyed by feature name (a missing key is a
missing value, an unknown key is an error) or arrays in feature order. Outputs: CSV, one score per
line (first field), or JSON ``{"predictions": [{"score": ..}, ..]}`` (or a list of numbers); the
number of predictions must match the number of input rows of the record. Anything else fails the
job naming the file, line, event id and what was expected.

Statistics (per feature; numeric on the baseline's decile bins, categorical on the baseline's
categories plus one "unseen" bucket):

- PSI = sum((c - b) * ln(c / b)) over bins, shares floored at ``PSI_EPSILON`` = 1e-4 (so a bin or
  category absent on one side contributes a finite amount; an unseen category at 1% adds ~0.046).
- Numeric test: two-sample Kolmogorov-Smirnov statistic evaluated at the baseline's cut points
  (the baseline stores exact cumulative shares there, so no distribution is reconstructed; the
  statistic is a lower bound of the full-resolution KS statistic), p-value from the asymptotic
  Kolmogorov distribution with n_eff = n_baseline * n_current / (n_baseline + n_current).
  Effect size: the Wasserstein distance between the baseline's and the current distribution
  (the mean absolute difference of their quantile functions at the 100 percentile midpoints the
  baseline stores), divided by the baseline's standard deviation (floored at 0.001): Evidently's
  "normed Wasserstein". It measures how far values moved in units of the feature's spread, which
  a shift within a decile bin or of the tails does not hide. Baselines written before percentiles
  were stored fall back to the KS statistic D.
- Categorical test: chi-square test of homogeneity on the 2 x K table (baseline counts =
  frequencies x baseline count, current counts; empty columns dropped, columns with an expected
  count below 5 pooled into one, as the approximation requires). Effect size: total
  variation distance (half the L1 distance of the shares, unseen bucket included).
- Missing share: two-proportion z-test of the missing share against the baseline's.

Verdict (``Thresholds``; every threshold is a command-line option):

- p-values are compared with ``p_value`` (0.01) divided by the number of tests of the window
  (features + the score: Bonferroni), so a window where nothing changed raises a false alarm
  with probability <= 1%, not ~13% (14 independent tests at 0.01).
- distribution drift: p < corrected ``p_value`` AND (PSI >= ``psi`` (0.2) OR effect >=
  ``min_effect`` (0.1)). Requiring both significance and size means a small window's noise (PSI
  of 50 rows is ~0.2 by chance) and a huge window's trivial differences (1M rows make p ~ 0 for
  a 0.5% shift) are not flagged.
- missing drift: p < corrected ``p_value`` AND |missing share - baseline| >= ``missing_delta``
  (0.05).
- a feature drifts if either holds; the score (prediction) is judged like a numeric feature;
  ``drift_detected`` = any feature or the prediction drifted. Unseen categories are reported
  (share and the most frequent values) and count towards the categorical statistics; they are
  not an error.

Report ``<output>/drift_report.json`` (format ``mlops-stack/drift-report`` v1)::

    {"format": "mlops-stack/drift-report", "format_version": 1,
     "status": "ok" | "no_data", "drift_detected": bool,
     "window": {"start": iso | null, "end": iso | null},
     "input": {"uri", "files", "records", "records_outside_window", "rows", "predictions"},
     "baseline": {"path", "schema", "rows", "sha256", "package_arn" | null},
     "prediction_baseline": {"source": "file" | "model" | "baseline", "path"} | null,
     "thresholds": {"psi", "p_value", "min_effect", "missing_delta", "psi_epsilon",
                    "tests", "p_value_per_test"},   # the last two when there was data
     "summary": {"features": 13, "features_drifted": 2, "drifted": [names],
                 "prediction_drifted": bool | null},
     "features": {name: FEATURE},
     "prediction": FEATURE (numeric, plus "positive_rate", "baseline_positive_rate") | null,
     "violations": [{"feature", "check": "distribution" | "missing", "description"}],
     "warnings": [str],
     "metrics": {"namespace", "endpoint", "published"} | null}

    FEATURE = {"kind": "numeric" | "categorical", "drifted": bool, "reasons": [str],
               "rows", "count" (non-missing), "psi", "test": {"name": "ks" | "chi2", "statistic",
               "p_value", "dof"?}, "effect": {"name": "wasserstein" | "ks_d" | "tvd", "value"},
               "missing": {"share", "baseline_share", "delta", "p_value", "drifted"},
               "distribution": {"labels": [..], "baseline": [shares], "current": [shares]},
               numeric: "current": {"mean", "std", "min", "max", "quantiles"},
                        "baseline": {"mean", "std", "min", "max"}
               categorical: "unseen_share", "unseen": [{"value", "count"}] (top 10)}

``<output>/drift_report.html``: one page, inline SVG charts (baseline vs current shares per
feature), no external assets.

CloudWatch (``--namespace`` or ``MLOPS_DRIFT_METRICS_NAMESPACE``, e.g. ``mlops-stack/dev``;
``--endpoint`` or ``MLOPS_DRIFT_ENDPOINT_NAME``; nothing is published without a namespace), one
``PutMetricData`` call per 1000 metrics, timestamp = window end (or now):

- dimensions ``Endpoint``: ``DriftDetected`` (0/1), ``FeaturesDrifted`` (count),
  ``CapturedRows`` (count), ``PredictionDriftScore`` (PSI) and ``PredictionDrifted`` (0/1) when
  scores and a prediction baseline exist;
- dimensions ``Endpoint``, ``Feature``: ``FeatureDriftScore`` (PSI), ``FeatureDrifted`` (0/1).

An empty window publishes only ``CapturedRows`` = 0: drift is unknown, not absent, so alarms on
``DriftDetected`` should treat missing data as not breaching, and a separate alarm on
``CapturedRows`` catches a silent endpoint. boto3 is imported only for s3:// inputs and metrics;
``AWS_ENDPOINT_URL`` (moto, local mode) and ``AWS_DEFAULT_REGION`` are honoured.

Python API: ``run_drift(DriftConfig(...)) -> DriftResult`` (``.report`` dict, ``.html`` str),
``read_capture(source, schema, window)``, ``compare(capture, baseline, schema, ...)``,
``publish_metrics(report, namespace, endpoint, client=None)``.
"""

from model_code.drift.capture import read_chunks
from model_code.drift.compare import compare, compare_categorical, compare_numeric
from model_code.drift.core import (
    REPORT_FORMAT,
    REPORT_FORMAT_VERSION,
    REPORT_HTML,
    REPORT_JSON,
    CaptureData,
    CaptureError,
    Thresholds,
    UsageError,
    Window,
)
from model_code.drift.job import DriftConfig, DriftResult, build_parser, main, run_drift, window_from_args
from model_code.drift.metrics import metric_data, publish_metrics
from model_code.drift.sources import list_local, list_s3, read_capture
from model_code.drift.stats import chi2_homogeneity, chi2_sf, ks_pvalue, psi, two_proportion_pvalue

__all__ = [
    "REPORT_FORMAT", "REPORT_FORMAT_VERSION", "REPORT_HTML", "REPORT_JSON", "CaptureData", "CaptureError",
    "DriftConfig", "DriftResult", "Thresholds", "UsageError", "Window", "build_parser", "chi2_homogeneity",
    "chi2_sf", "compare", "compare_categorical", "compare_numeric", "ks_pvalue", "list_local", "list_s3", "main",
    "metric_data", "psi", "publish_metrics", "read_capture", "read_chunks", "run_drift", "two_proportion_pvalue",
    "window_from_args",
]
