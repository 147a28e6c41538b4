"""`mlops problem init|check`: the data scientist's commands for a problem declaration (mlops/problems.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT = 0, 1, 2


def cmd_problem_init(args: argparse.Namespace) -> int:
    from mlops.problems import ProblemInitError, draft_problem, write_draft

    try:
        draft = draft_problem(args.data, args.label, args.task, args.out, name=args.name)
        path = write_draft(draft, args.data, force=args.force)
    except ProblemInitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    doc = draft.document
    print(f"wrote {path} (task {doc['task']}, {len(doc['features'])} features, label {doc['label']['name']}), "
          f"{args.out / doc['data']['sample']} and {args.out / 'DATASET.md'}")
    print("inferred:")
    for line in draft.inferred:
        print(f"  {line}")
    print("a person must check:")
    for line in draft.to_check:
        print(f"  - {line}")
    print(f"then: mlops problem check {args.out}")
    return EXIT_OK


def cmd_problem_check(args: argparse.Namespace) -> int:
    from mlops.problems import check_problem
    from model_code.problem import ProblemError
    from model_code.schema import DataError

    try:
        result = check_problem(args.folder)
    except (ProblemError, DataError) as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_VIOLATIONS
    problem = result.problem
    for line in result.warnings:
        print(f"warning: {line}")
    for line in result.violations:
        print(f"violation: {line}", file=sys.stderr)
    verdict = "fails" if result.violations else "passes"
    print(f"problem {problem.name} ({problem.task}, {len(problem.schema.features)} features, primary metric "
          f"{problem.primary_metric} {'>=' if problem.direction == 'higher' else '<='} {problem.metric_threshold}, "
          f"candidates {', '.join(c.name for c in problem.candidates)}): its sample ({result.rows} rows) {verdict} "
          f"the declaration")
    return EXIT_VIOLATIONS if result.violations else EXIT_OK


def add_problem_commands(commands: Any) -> None:
    from mlops.problems import TASK_CHOICES

    problem = commands.add_parser("problem", help="a problem declaration: draft one from a CSV, check one")
    actions = problem.add_subparsers(dest="action", required=True)
    init = actions.add_parser(
        "init", help="draft a declaration from a CSV",
        description="Infer problem.yaml from a CSV (types, ranges with margins, categories, missing shares, the "
        "task from the label), copy the data beside it with a dataset card to complete, and print what was "
        "inferred and what a person must check. Exit 0 written, 2 bad input.")
    init.add_argument("--data", type=Path, required=True, help="CSV file (or folder of CSV files with one header)")
    init.add_argument("--label", required=True, help="the column to predict")
    init.add_argument("--task", default="auto", choices=TASK_CHOICES, help="default auto: from the label's values")
    init.add_argument("--out", type=Path, required=True, help="folder to write the declaration into")
    init.add_argument("--name", help="problem name (default: the folder's name)")
    init.add_argument("--force", action="store_true", help="overwrite an existing problem.yaml")
    init.set_defaults(func=cmd_problem_init)
    check = actions.add_parser(
        "check", help="validate a declaration against its sample data",
        description="Load DIR/problem.yaml (each error names the field) and run the pipeline's Validate checks on "
        "its sample data. A problem with its own module (module: FILE.py) also gets it run: its derived features "
        "on the sample, and each of its estimators fitted on the first rows. Exit 0 passes, 1 errors or "
        "violations.")
    check.add_argument("folder", type=Path, metavar="DIR")
    check.set_defaults(func=cmd_problem_check)
