"""The embedded AWS: moto's server, with pipeline executions that end as the local runs do.

Moto marks a started pipeline execution Succeeded at once and has no call that ends one. The
CooldownGuard step of a local run asks the embedded AWS about the pipeline's earlier executions,
as it asks SageMaker in AWS, and must see a failed run as Failed: reported Succeeded, it would block
automatic retrains for a whole cooldown window, where in AWS it blocks none. So here an execution's
status is its local run's real outcome: the `status` in `<state>/runs/<execution id>/run.json`
(`run_local` writes it when the run ends), and Executing until that file exists.

    python -m mlops.local.moto_server --state-dir DIR -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from moto.sagemaker.models import FakePipelineExecution
from moto.server import main as moto_main

from model_code.guard import EXECUTING


def run_status(state_dir: Path, execution_arn: str) -> str:
    """The status of the local run of this execution: its run.json's, else Executing."""
    record = state_dir / "runs" / execution_arn.rsplit("/", 1)[-1] / "run.json"
    try:
        return json.loads(record.read_text())["status"]
    except FileNotFoundError:
        return EXECUTING


def patch(state_dir: Path) -> None:
    """Make every pipeline execution's status that of its local run under `state_dir`."""

    def status(execution: FakePipelineExecution) -> str:
        return run_status(state_dir, execution.arn)

    def ignore(execution: FakePipelineExecution, value: str) -> None:
        """Moto's constructor assigns Succeeded; the run's record decides instead."""

    # An instance attribute in moto (set in __init__ only): a property on the class takes it over.
    FakePipelineExecution.pipeline_execution_status = property(status, ignore)  # pyright: ignore[reportAttributeAccessIssue]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlops.local.moto_server", description="moto.server, executions ending as the local runs do",
        epilog="Other arguments (-H HOST, -p PORT) go to moto.server.",
    )
    parser.add_argument("--state-dir", type=Path, required=True, help="the local-mode state folder (runs/ inside)")
    args, moto_args = parser.parse_known_args(argv)
    patch(args.state_dir.resolve())
    moto_main(moto_args)


if __name__ == "__main__":
    main()
