"""The `mlops` command: thin. It parses arguments, calls the domain modules, prints, and exits
with a code CI can act on (0 ok, 1 policy violations, 2 bad input)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.settings import PROJECT, REPO_ROOT, SettingsError, load_stack_file, stack_file, stack_names

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT = 0, 1, 2


def _print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _config_overrides(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs as `pulumi -c` takes them; a bare key is in the project's namespace."""
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SettingsError("--config", [f"{pair!r} is not KEY=VALUE"])
        overrides[key if ":" in key else f"{PROJECT}:{key}"] = value
    return overrides


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

    overrides = _config_overrides(args.config)
    # Validate every stack file before planning any, so a bad one stops the run before anything prints.
    problems: list[str] = []
    for path in files:
        try:
            load_stack_file(path, overrides)
        except SettingsError as error:
            problems.extend(str(error).splitlines())
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT

    results = []
    exit_code = EXIT_OK
    for path in files:
        plan = plan_stack_file(path, overrides)
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


def _stack_settings(args: argparse.Namespace, attribute: str = "stack"):
    return load_stack_file(stack_file(getattr(args, attribute), args.root))


def cmd_model_list(args: argparse.Namespace) -> int:
    from mlops.registry import list_packages

    packages = list_packages(_stack_settings(args), status=args.status, limit=args.limit)
    if args.json:
        json.dump(
            [
                {
                    "arn": p.arn,
                    "version": p.version,
                    "status": p.status,
                    "created": p.created.isoformat(),
                    "metrics": p.metrics,
                    "lineage": p.lineage,
                }
                for p in packages
            ],
            sys.stdout,
            indent=2,
        )
        print()
        return EXIT_OK
    _print_table(
        [
            (
                p.version,
                p.status,
                p.created.strftime("%Y-%m-%d %H:%M"),
                "" if p.primary_metric is None else f"{p.primary_metric:.4f}",
                p.arn,
            )
            for p in packages
        ],
        ("VERSION", "STATUS", "CREATED", "AUC", "ARN"),
    )
    return EXIT_OK


def cmd_model_status(args: argparse.Namespace) -> int:
    from mlops.registry import approve, reject

    settings = _stack_settings(args)
    if args.action == "approve":
        change = approve(settings, args.arn, description=args.description or "")
    else:
        change = reject(settings, args.arn, description=args.description or "")
    verb = "unchanged" if not change.changed else f"{change.previous_status} -> {change.package.status}"
    print(f"{change.package.arn}: {verb}")
    return EXIT_OK


def _print_pin_change(change) -> None:
    if not change.changed:
        print(f"stack {change.stack} already pins {change.new_arn}: nothing to do")
        return
    print(change.diff, end="" if change.diff.endswith("\n") else "\n")
    before = "" if change.old_metric is None else f" ({change.metric} {change.old_metric:.4f})"
    after = "" if change.new_metric is None else f" ({change.metric} {change.new_metric:.4f})"
    print(
        f"stack {change.stack}: {change.old_arn or '(latest approved)'}{before} -> {change.new_arn}{after}"
        f"{' [forced]' if change.forced else ''}"
    )
    print(f"commit {change.stack_file.name} and deploy it: pulumi up -s {change.stack}")


def cmd_release_promote(args: argparse.Namespace) -> int:
    from mlops.release import promote

    change = promote(
        _stack_settings(args, "source"), stack_file(args.target, args.root), package_arn=args.package, force=args.force
    )
    _print_pin_change(change)
    return EXIT_OK


def cmd_release_rollback(args: argparse.Namespace) -> int:
    from mlops.release import rollback

    _print_pin_change(rollback(stack_file(args.stack, args.root), force=args.force))
    return EXIT_OK


def smoke_payload() -> str:
    """One CSV row of the bundled dataset's features: what a client would send."""
    from model_code.data import load_adult
    from model_code.schema import ADULT

    row = load_adult()[list(ADULT.feature_names)].head(1)
    return row.to_csv(header=False, index=False)


def cmd_release_verify(args: argparse.Namespace) -> int:
    from mlops.release import verify

    report = verify(
        _stack_settings(args), args.package, payload=smoke_payload(), expected_endpoint_config=args.endpoint_config
    )
    print(f"endpoint {report.endpoint}: {report.status}, config {report.endpoint_config}, package {report.package_arn}")
    print(f"smoke request answered by variant {report.invoked_variant}: {report.smoke_response!r}")
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
    plan.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value, as `pulumi up -c` (e.g. imageTag=$CI_COMMIT_SHA); repeatable")
    plan.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    plan.set_defaults(func=cmd_infra_plan)

    policy = commands.add_parser("policy", help="the policy pack").add_subparsers(dest="action", required=True)
    policy.add_parser("list", help="print every policy with its level and description").set_defaults(
        func=cmd_policy_list
    )

    model = commands.add_parser("model", help="the stack's model registry (SageMaker model packages)")
    model_actions = model.add_subparsers(dest="action", required=True)
    listing = model_actions.add_parser("list", help="model packages of the stack's group, newest first")
    listing.add_argument("--stack", required=True)
    listing.add_argument("--status", choices=["Approved", "Rejected", "PendingManualApproval"])
    listing.add_argument("--limit", type=int)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_model_list)
    status_commands = []
    for action, text in (
        ("approve", "approve a package (the dev endpoint follows it)"),
        ("reject", "reject a package, with a reason"),
    ):
        status = model_actions.add_parser(action, help=text)
        status.add_argument("arn", help="model package ARN (see `mlops model list`)")
        status.add_argument("--stack", required=True)
        status.add_argument("--description", required=action == "reject", help="why (kept on the package)")
        status.set_defaults(func=cmd_model_status)
        status_commands.append(status)

    release = commands.add_parser("release", help="promotion, rollback and post-deploy checks")
    release_actions = release.add_subparsers(dest="action", required=True)
    promote = release_actions.add_parser(
        "promote",
        help="pin the source stack's approved package in the target stack file",
        description="Resolve the latest approved package of --from, check it beats the package --to runs, and "
        "write its ARN into Pulumi.<to>.yaml (comments and formatting kept). Deploy by merging.",
    )
    promote.add_argument("--from", dest="source", required=True, help="stack whose registry holds the package")
    promote.add_argument("--to", dest="target", required=True, help="stack whose file gets the pin")
    promote.add_argument("--package", help="a specific approved package instead of the latest")
    promote.add_argument("--force", action="store_true", help="promote even if not strictly better")
    promote.set_defaults(func=cmd_release_promote)
    rollback = release_actions.add_parser("rollback", help="pin the package the stack ran before")
    rollback.add_argument("--stack", required=True)
    rollback.add_argument("--force", action="store_true", help="roll back even to a since-rejected package")
    rollback.set_defaults(func=cmd_release_rollback)
    verify = release_actions.add_parser(
        "verify", help="check the endpoint runs the expected package and config, then send a smoke request"
    )
    verify.add_argument("--stack", required=True)
    verify.add_argument("--package", help="expected package (default: the pin, else the latest approved)")
    verify.add_argument("--endpoint-config", help="expected endpoint config name (e.g. from a stack output)")
    verify.set_defaults(func=cmd_release_verify)

    for sub in (listing, promote, rollback, verify, *status_commands):
        sub.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mlops.registry import ReleaseError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SettingsError, ReleaseError) as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
