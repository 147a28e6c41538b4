"""The `mlops` command: thin. It parses arguments, calls the domain modules, prints, and exits
with a code CI can act on (0 ok, 1 policy violations, 2 bad input)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.settings import REPO_ROOT, SettingsError, load_stack_file, stack_file, stack_names

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT = 0, 1, 2


def _print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def cmd_infra_plan(args: argparse.Namespace) -> int:
    from mlops.plan import key_settings, plan_stack_file
    from policies.offline import evaluate

    if args.all:
        files = [stack_file(name, args.root) for name in stack_names(args.root)]
        if not files:
            print(f"error: no Pulumi.<stack>.yaml in {args.root}", file=sys.stderr)
            return EXIT_BAD_INPUT
    else:
        files = [stack_file(args.stack, args.root)]

    # Validate every stack file before planning any, so a bad one stops the run before anything prints.
    problems: list[str] = []
    for path in files:
        try:
            load_stack_file(path)
        except SettingsError as error:
            problems.extend(str(error).splitlines())
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT

    results = []
    exit_code = EXIT_OK
    for path in files:
        plan = plan_stack_file(path)
        violations = evaluate([r.as_json() for r in plan.resources])
        if any(v.level == "mandatory" for v in violations):
            exit_code = EXIT_VIOLATIONS
        results.append((plan, violations))

    if args.json:
        documents = [
            {
                **plan.as_json(),
                "violations": [
                    {"policy": v.policy, "resource": v.resource, "message": v.message, "level": v.level}
                    for v in violations
                ],
            }
            for plan, violations in results
        ]
        json.dump(documents if args.all else documents[0], sys.stdout, indent=2, sort_keys=True)
        print()
        return exit_code

    for plan, violations in results:
        print(
            f"Stack {plan.stack}: {len(plan.resources)} resources in {len(plan.components)} components "
            f"({', '.join(plan.components)})"
        )
        _print_table([(r.type, r.name, key_settings(r)) for r in plan.resources], ("TYPE", "NAME", "KEY SETTINGS"))
        print()
        print("Outputs:")
        _print_table(
            [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in plan.outputs.items()], ("OUTPUT", "VALUE")
        )
        print()
        if violations:
            print(f"Policy violations ({len(violations)}):")
            _print_table(
                [(v.level, v.policy, v.resource, v.message) for v in violations],
                ("LEVEL", "POLICY", "RESOURCE", "MESSAGE"),
            )
        else:
            print("Policies: no violations.")
        print()
    return exit_code


def cmd_policy_list(args: argparse.Namespace) -> int:
    from policies.offline import describe

    rules = describe()
    _print_table([(name, level, description) for name, level, description in rules], ("POLICY", "LEVEL", "DESCRIPTION"))
    print(f"\n{len(rules)} policies")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops", description="Control plane of mlops-stack: plan, run, release, monitor."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    infra = commands.add_parser("infra", help="the Pulumi platform, offline").add_subparsers(
        dest="action", required=True
    )
    plan = infra.add_parser(
        "plan",
        help="offline plan of a stack under Pulumi mocks, checked by the policy pack",
        description="Run the Pulumi program under mocks with a stack file's settings: no engine, "
        "no credentials. Exit 0 clean, 1 mandatory policy violations, 2 bad settings.",
    )
    target = plan.add_mutually_exclusive_group(required=True)
    target.add_argument("--stack", help="stack name: plans Pulumi.<stack>.yaml")
    target.add_argument("--all", action="store_true", help="plan every Pulumi.<stack>.yaml in the project")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON (a list with --all)")
    plan.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    plan.set_defaults(func=cmd_infra_plan)

    policy = commands.add_parser("policy", help="the policy pack").add_subparsers(dest="action", required=True)
    policy.add_parser("list", help="print every policy with its level and description").set_defaults(
        func=cmd_policy_list
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
