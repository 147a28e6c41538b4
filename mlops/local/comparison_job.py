"""`release promote`'s comparison job in local mode: the same request, run by the local executor.

In AWS, `mlops.comparison.SageMakerJobs` creates the processing job in the source stack; here the
request runs in the image (or the image's venv) against the embedded AWS, which holds the packages,
their model data and the candidate's test split, and its report is read from the job's folder.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.comparison import REPORT_FORMAT, REPORT_NAME
from mlops.local.aws import LocalAws
from mlops.local.drift_job import DriftJobError, run_processing_job
from mlops.registry import ReleaseError
from pipelines.monitoring import COMPARISON_OUTPUT_PATH

STEP = "ComparisonJob"


@dataclass
class LocalJobs:
    """A `mlops.comparison.Runner` for the embedded AWS `server`; job folders under `work_dir/<id>/`."""

    server: LocalAws
    s3: Any
    sagemaker: Any
    work_dir: Path
    container: str = "auto"

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:12]
        try:
            report, _, _, _ = run_processing_job(
                self.server, self.s3, self.sagemaker, request, STEP, "comparison job", COMPARISON_OUTPUT_PATH,
                REPORT_FORMAT, REPORT_NAME, execution_id=job_id, work_dir=self.work_dir / job_id,
                container=self.container, owner=self.work_dir)
        except DriftJobError as error:
            raise ReleaseError(str(error)) from None
        return report
