"""Image entrypoint: ``python -m model_code <step> [step options]``.

SageMaker starts training containers as ``<entrypoint> train`` and serving containers as
``<entrypoint> serve``; processing jobs pass the step name as the first container argument.
``python -m model_code env`` prints every environment variable the code reads.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# step name -> module exposing main(argv) -> int
STEPS: dict[str, str] = {
    "validate": "model_code.validate",
    "preprocess": "model_code.preprocess",
    "train": "model_code.train",
    "evaluate": "model_code.evaluate",
    "champion": "model_code.champion",
    "drift": "model_code.drift",
    "quality": "model_code.quality.job",
    "guard": "model_code.guard",
    "serve": "model_code.serve",
}


def usage() -> str:
    return "usage: python -m model_code {" + ",".join([*STEPS, "env"]) + "} [options]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(usage())
        return 0 if args else 2
    step, rest = args[0], args[1:]
    if step == "env":
        from model_code.env import describe

        print(describe())
        return 0
    if step not in STEPS:
        print(f"unknown step {step!r}; {usage()}", file=sys.stderr)
        return 2
    if step == "train":  # a tuning job's training job: the pipeline's code bundle, when the job has one
        from model_code.launcher import bundle_handover, exec_bundle

        command = bundle_handover(rest)
        if command is not None:
            exec_bundle(command)
    module = importlib.import_module(STEPS[step])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
