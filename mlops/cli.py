"""The `mlops` command: thin. It parses arguments, calls the domain modules, prints, and exits
with a code CI can act on (0 ok, 1 policy violations or a failed run, 2 bad input, 130 interrupted)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.cli_problem import add_problem_commands
from mlops.settings import PROJECT, REPO_ROOT, SettingsError, StackSettings, load_stack_file, stack_file, stack_names

if TYPE_CHECKING:
    from mlops.data_versions import DataRevision

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _config_overrides(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs as `pulumi -c` takes them; a bare key is in the project's namespace."""
    return {key if ":" in key else f"{PROJECT}:{key}": value for key, value in _pairs(pairs, "--config")}


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
                "" if p.primary_metric is None else f"{p.primary_metric_name} {p.primary_metric:.4f}",
                p.arn,
            )
            for p in packages
        ],
        ("VERSION", "STATUS", "CREATED", "PRIMARY METRIC", "ARN"),
    )
    return EXIT_OK


def cmd_model_latest(args: argparse.Namespace) -> int:
    from mlops.registry import NotFound, latest_approved

    try:
        print(latest_approved(_stack_settings(args)).arn)
    except NotFound as error:
        # Only "there is none" (no group yet, or nothing approved) is empty: a denied, throttled or failed
        # call fails the job, so a deploy never takes an outage of the registry for "unpin the model".
        if not args.or_empty:
            raise
        print(f"mlops: {error}: printing an empty ARN (--or-empty)", file=sys.stderr)
        print("")
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
    _sync_local_aliases(settings)
    return EXIT_OK


def _sync_local_aliases(settings) -> None:
    """In local mode (AWS_ENDPOINT_URL is the state folder's embedded AWS), MLflow's champion and
    challenger aliases follow the approval just made."""
    from mlops.local import aws as local_aws
    from mlops.local.aliases import sync_aliases
    from mlops.registry import Aws

    server = local_aws.running(_state_dir())
    if server is None or os.environ.get("AWS_ENDPOINT_URL") != server.endpoint_url:
        return
    aliases = sync_aliases(settings, _state_dir(), Aws(endpoint_url=server.endpoint_url))
    if aliases:
        pairs = sorted(aliases.items())
        print("MLflow aliases: " + ", ".join(f"{name} -> version {version}" for name, version in pairs))


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


def _local_comparison_jobs(settings: StackSettings, container: str):
    """In local mode (AWS_ENDPOINT_URL is the state folder's embedded AWS) the comparison job runs on this
    machine, in the image; otherwise None (a SageMaker processing job in the source stack)."""
    import boto3

    from mlops.local import aws as local_aws
    from mlops.local.comparison_job import LocalJobs

    server = local_aws.running(_state_dir())
    if server is None or os.environ.get("AWS_ENDPOINT_URL") != server.endpoint_url:
        return None
    clients = {"region_name": settings.region, "endpoint_url": server.endpoint_url}
    return LocalJobs(server, boto3.client("s3", **clients), boto3.client("sagemaker", **clients),
                     _state_dir() / "promotions", container)


def cmd_release_promote(args: argparse.Namespace) -> int:
    from mlops.release import promote

    source = _stack_settings(args, "source")
    change = promote(source, stack_file(args.target, args.root), package_arn=args.package, force=args.force,
                     run_comparison=_local_comparison_jobs(source, args.container))
    same = change.same_data
    if same is not None:
        print(f"same data ({same.test_data_uri}, comparison job {same.job}): {same.metric} candidate "
              f"{same.candidate:.4f}, pinned {same.pinned:.4f}, required {same.required:.4f}")
    _print_pin_change(change)
    return EXIT_OK


def cmd_release_rollback(args: argparse.Namespace) -> int:
    from mlops.release import rollback

    _print_pin_change(rollback(stack_file(args.stack, args.root), force=args.force))
    return EXIT_OK


def smoke_payload(settings: StackSettings) -> str:
    """One CSV row of the features of the stack problem's sample: what a client would send."""
    from model_code.data import read_csv_input

    problem = settings.problem_declaration()
    if problem.sample_path is None:
        raise SettingsError(problem.name, ["data.sample: the smoke request needs the problem's sample data"])
    row = read_csv_input(problem.sample_path).frame[problem.schema.feature_names].head(1)
    return row.to_csv(header=False, index=False)


def cmd_release_verify(args: argparse.Namespace) -> int:
    from mlops.registry import NotFound
    from mlops.release import expected_package, verify

    settings = _stack_settings(args)
    try:
        expected = expected_package(settings, args.package)
    except NotFound as error:
        # A stack declares its endpoint only once it has a model: with no pin and nothing approved there is
        # nothing deployed to verify, the state of every new project. Any other failure still fails.
        if not args.if_model:
            raise
        print(f"nothing to verify: stack {settings.stack} pins no model package and {error}; no endpoint is deployed")
        return EXIT_OK
    report = verify(settings, expected, payload=smoke_payload(settings), expected_endpoint_config=args.endpoint_config)
    print(f"endpoint {report.endpoint}: {report.status}, config {report.endpoint_config}, package {report.package_arn}")
    print(f"smoke request answered by variant {report.invoked_variant}: {report.smoke_response!r}")
    return EXIT_OK


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from mlops.bootstrap import bootstrap, check

    path = stack_file(args.stack, args.root)
    if args.check:
        check(load_stack_file(path), path)
        print(f"{path.name}: bootstrapped (awskms secrets provider, state bucket)")
        return EXIT_OK
    result = bootstrap(load_stack_file(path), path, pulumi=args.pulumi)
    print(f"secrets key   {result.key_arn}")
    print(f"state bucket  {result.bucket}")
    print(f"backend       {result.backend_url}")
    print(f"provider      {result.secrets_provider}")
    print(f"created       {', '.join(result.created) or 'nothing (all there already)'}")
    if result.stack_file_changed:
        print(f"{path.name} changed: review and commit it (git add {path.name} && git commit)")
    else:
        print(f"{path.name} already says all of this")
    return EXIT_OK


def _state_dir() -> Path:
    from mlops.local.pipeline import state_dir

    return state_dir()


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    from mlops.local.pipeline import run_local
    from mlops.problems import settings_for

    settings = settings_for(load_stack_file(stack_file(args.stack, args.root), _config_overrides(args.config)),
                            args.problem)
    problem = settings.problem_declaration()
    print(f"Pipeline of stack {settings.stack}, problem {problem.name} ({problem.task}), locally "
          f"(state in {_state_dir()})")

    def started(name: str) -> None:
        print(f"  {name:<18} running...", end="\r", flush=True)

    def finished(step) -> None:
        mark = "ok" if step.status == "Succeeded" else "FAILED"
        detail = f"  {step.message.splitlines()[0]}" if step.message else ""
        print(f"\r  {step.name:<18} {mark:<6} {step.seconds:6.1f} s{detail}")

    try:
        revision = _data_revision(args, settings)
        run = run_local(settings, state_dir=_state_dir(), data=args.data, container=args.container,
                        on_step=finished, on_start=started, data_revision=revision)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted: the run stopped (recorded as Stopped), its jobs and servers are gone; "
              "nothing was registered", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"run {run.execution_id}: {run.status} in {run.seconds:.1f} s (jobs ran in {_where(run.container)})")
    if run.metrics:
        print("test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(run.metrics.items()) if k != "rows"))
    if run.package_arn:
        print(
            f"registered: {run.package_arn} (PendingManualApproval), MLflow model version "
            f"{run.mlflow_model_version} (run {run.mlflow_run_id})"
        )
    if run.status != "Succeeded":
        print(f"error: {run.failure}", file=sys.stderr)
        print(
            f"nothing was registered; step folders and logs: {_state_dir() / 'runs' / run.execution_id}",
            file=sys.stderr,
        )
        return EXIT_VIOLATIONS
    return EXIT_OK


def _data_revision(args: argparse.Namespace, settings: StackSettings) -> DataRevision | None:
    """`--data-rev REV` of `pipeline run|start`: the stack's dataset at that DVC revision (mlops/data_versions.py)."""
    from mlops.data_versions import resolve

    if not args.data_rev:
        return None
    if getattr(args, "data", None) is not None:
        raise SettingsError("--data-rev", ["give --data or --data-rev, not both"])
    return resolve(args.dvc_repo, args.data_rev, settings.problem_declaration().name, settings.stack)


def _data_version_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-rev", metavar="REV",
                        help="train on the stack's dataset (datasets/<problem>/, tracked by DVC) at this git revision: "
                        "its S3 object versions, recorded on the model package as dvc_rev")
    _dvc_repo_option(parser)


def _dvc_repo_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dvc-repo", type=Path, default=REPO_ROOT, metavar="DIR",
                        help="the DVC project (a git repository) holding datasets/ (default: this checkout)")


def cmd_data_checkout(args: argparse.Namespace) -> int:
    from mlops.data_versions import checkout_package
    from mlops.naming import Names
    from mlops.registry import Aws, get_package

    settings = _stack_settings(args)
    package = get_package(settings, args.package)
    done = checkout_package(package, args.dvc_repo, args.output, Aws.from_env().client("s3", settings.region),
                            Names.of(settings).bucket("data"))
    if done.sha256 != done.expected:
        print(f"error: {done.folder}: data sha256 {done.sha256} differs from the package's data_sha256 "
              f"{done.expected or '(none)'}", file=sys.stderr)
        return EXIT_VIOLATIONS
    print(f"{done.folder}: the data of {package.arn} (DVC revision {done.revision}, from {done.source}), "
          f"sha256 {done.sha256} as recorded by its Validate step")
    return EXIT_OK


def _where(mode: str) -> str:
    return {"container": "the image", "process": "a venv of model_code/requirements.txt"}.get(mode, mode)


def cmd_pipeline_runs(args: argparse.Namespace) -> int:
    from mlops.local.pipeline import list_runs

    runs = list_runs(_state_dir())
    _print_table(
        [
            (
                r.execution_id,
                r.stack,
                r.status,
                f"{r.seconds:.1f}",
                r.problem,
                f"{r.primary_metric} {r.metrics[r.primary_metric]:.4f}" if r.primary_metric in r.metrics else "",
                r.package_arn or "-",
            )
            for r in runs
        ],
        ("RUN", "STACK", "STATUS", "SECONDS", "PROBLEM", "PRIMARY METRIC", "REGISTERED"),
    )
    return EXIT_OK


def cmd_pipeline_definition(args: argparse.Namespace) -> int:
    from mlops.pipeline import stack_definition

    settings = _stack_settings(args)
    print(stack_definition(settings, args.image_tag or settings.image_tag or "unset"))
    return EXIT_OK


def cmd_pipeline_start(args: argparse.Namespace) -> int:
    from mlops.pipeline import start, upsert

    settings = _stack_settings(args)
    if args.image_tag:
        print(f"pipeline {upsert(settings, args.image_tag)} updated for image tag {args.image_tag}")
    parameters = dict(_pairs(args.parameter, "--parameter"))
    from pipelines.training import DATA_REVISION_PARAMETER

    if DATA_REVISION_PARAMETER in parameters:  # the lineage the package records: only what --data-rev staged
        raise SettingsError("--parameter", [f"{DATA_REVISION_PARAMETER} is set by --data-rev, which stages that "
                                            f"revision's data"])
    revision = _data_revision(args, settings)
    if revision is not None:
        if "InputDataUri" in parameters:
            raise SettingsError("--data-rev", ["give --data-rev or --parameter InputDataUri, not both"])
        from mlops.data_versions import stage
        from mlops.naming import Names
        from mlops.registry import Aws

        uri = stage(Aws.from_env().client("s3", settings.region), Names.of(settings).bucket("data"), revision)
        parameters |= {"InputDataUri": uri, DATA_REVISION_PARAMETER: revision.commit}
        print(f"data: {uri} (DVC revision {revision.commit}, {len(revision.files)} file(s))")
    execution = start(
        settings, parameters=parameters, wait=args.wait, on_poll=lambda e: print(f"  {e.status}", flush=True)
    )
    print(f"execution {execution.arn}: {execution.status}{f' ({execution.failure})' if execution.failure else ''}")
    return EXIT_OK if execution.status in ("Executing", "Succeeded") else EXIT_VIOLATIONS


def cmd_local(args: argparse.Namespace) -> int:
    from mlops.local import aws as local_aws

    state = _state_dir()
    if args.action == "up":
        settings = _stack_settings(args)
        server = local_aws.start(state, account_id=settings.account_id, region=settings.region)
        from mlops.local.pipeline import bootstrap_embedded

        bootstrap_embedded(settings, server)
        print(f"embedded AWS on {server.endpoint_url} (pid {server.pid}), with stack {settings.stack}'s buckets and "
              f"model package group; use it with:")
        print(f"  export AWS_ENDPOINT_URL={server.endpoint_url} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local")
    elif args.action == "down":
        print("embedded AWS stopped" if local_aws.stop(state) else "embedded AWS was not running")
    else:
        server = local_aws.running(state)
        print(f"embedded AWS on {server.endpoint_url} (pid {server.pid})" if server else "embedded AWS is not running")
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    from mlops import monitor

    settings = _stack_settings(args)
    state = _state_dir()
    if args.action == "baseline":
        result = monitor.baseline(settings, state)
        if not args.json:
            print(f"monitoring {result.package_arn} ({result.approval_status}, {result.selected_because})")
            print(f"baseline {result.baseline_path}")
    elif args.action == "run":
        result = monitor.run(settings, state, args.capture, retrain=not args.no_retrain, data=args.data,
                             container=args.container)
        if not args.json:
            point = result.datapoint
            value = {1: "DRIFT", 0: "no drift", None: "no data (missing datapoint)"}[point.value]
            print(
                f"window {point.window_start} .. {point.window_end}: {point.rows} rows, {value}"
                f"{f' ({point.features_drifted} features)' if point.value else ''}"
            )
            print(
                f"alarm {result.alarm_before} -> {result.alarm_after} ({result.breaching} of the last "
                f"{len(result.evaluated)} breaching; {result.rule.describe()})"
            )
            print(f"retrain: {result.retrain.action}: {result.retrain.reason}")
            if point.report:
                print(f"report {point.report_html or point.report}")
    elif args.action == "quality":
        from mlops import monitor_quality
        from model_code.quality.join import CATEGORIES

        start = monitor.parse_iso(args.start, "--start") if args.start else None
        if args.data is not None and not args.data.exists():
            raise monitor.MonitorError(f"retrain data {args.data}: no such file or folder")
        result = monitor_quality.run(settings, state, capture_dir=args.capture, ground_truth_dir=args.ground_truth,
                                     start=start, container=args.container, retrain=not args.no_retrain,
                                     data=args.data)
        if not args.json:
            value = "undefined" if result.value is None else f"{result.value:.4f}"
            verdict = {None: "", True: f", WORSE than the bar {result.bar}", False: f", clears the bar {result.bar}"}
            coverage = "-" if result.coverage is None else f"{result.coverage:.1%}"
            print(f"window {result.window_start} .. {result.window_end}: {result.metric} {value}"
                  f"{verdict[result.degraded]} on {result.labelled_rows} labelled of {result.captured_rows} captured "
                  f"rows (coverage {coverage})")
            print("labels: " + ", ".join(f"{k} {result.counts[k]}" for k in CATEGORIES if k in result.counts))
            print(f"quality alarm {result.alarm_before} -> {result.alarm_after} ({result.breaching} of the last "
                  f"{len(result.evaluated)} worse than the bar; {monitor_quality.alarm_rule(settings).describe()})")
            print(f"retrain: {result.retrain.action}: {result.retrain.reason}")
            print(f"report {result.report_html}")
    else:
        result = monitor.status(settings, state)
        if not args.json:
            since = f" since {result.alarm_since}" if result.alarm_since else ""
            monitored = result.monitored.package_arn if result.monitored else "(none: run `mlops monitor baseline`)"
            print(f"stack {result.stack}: alarm {result.alarm}{since}")
            print(f"monitored: {monitored}")
            print(
                "last datapoints: "
                + (", ".join({1: "drift", 0: "ok", None: "missing"}[p.value] for p in result.datapoints) or "none")
            )
            print(f"rule: {result.rule.describe()}; cooldown remaining {result.cooldown_remaining}")
            values = ", ".join("no labels" if v is None else f"{v:.4f}" for v in result.quality_values) or "none"
            print(f"quality alarm {result.quality_alarm}; last quality runs: {values}")
    if args.json:
        json.dump(monitor.as_dict(result), sys.stdout, indent=2)
        print()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from mlops.demo import main as demo_main

    return demo_main(["--state-dir", str(_state_dir()), "--stack", args.stack, "--container", args.container,
                      *(["--small"] if args.small else []),
                      *(["--problem", str(args.problem)] if args.problem else [])])


class _Terminated(Exception):
    """SIGTERM to the command: stop what it started, as Ctrl-C does."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def cmd_serve(args: argparse.Namespace) -> int:
    from mlops.serve_local import serve_local

    settings = _stack_settings(args)
    # SIGTERM (a supervisor, `kill`) stops the model server too, instead of orphaning it.
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with serve_local(
            settings, state_dir=_state_dir(), model=args.model, port=args.port, workers=args.workers,
            container=args.container, runtime=args.runtime,
        ) as endpoint:
            print(f"serving {endpoint.package_arn} on {endpoint.url} in {_where(endpoint.mode)} (Ctrl-C stops it)")
            print(f"  curl -s {endpoint.url}/ping; capture in {endpoint.capture_root}", flush=True)
            code = endpoint.wait()
            print(f"error: the model server exited by itself with code {code}; log {endpoint.log_path}",
                  file=sys.stderr)
            return EXIT_VIOLATIONS
    except (KeyboardInterrupt, _Terminated):
        print("stopped")
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def cmd_infra_cost(args: argparse.Namespace) -> int:
    from mlops.cost import Assumptions, CostError, estimate, render
    from mlops.plan import plan_stack_file

    overrides = _config_overrides(args.config)
    path = stack_file(args.stack, args.root)
    try:
        settings = load_stack_file(path, overrides)
        assumptions = Assumptions().with_overrides(_pairs(args.assume, "--assume"))
        result = estimate(plan_stack_file(path, overrides), settings.region, assumptions)
    except CostError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result.as_json(), indent=2) if args.json else render(result))
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from mlops.batch_local import run_batch

    settings = _stack_settings(args)
    signal.signal(signal.SIGTERM, _raise_terminated)  # stop the model server too, as Ctrl-C does
    try:
        result = run_batch(settings, state_dir=_state_dir(), source=args.input, output=args.output, model=args.model,
                           content_type=args.content_type, accept=args.accept, max_payload_mb=args.max_payload_mb,
                           container=args.container)
    except _Terminated:
        print("stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"scored {result.records} records of {len(result.files)} file(s) in {result.mini_batches} mini-batch(es), "
          f"{result.seconds:.1f} s, with {result.model_package_arn} in {_where(result.mode)}")
    for done in result.files:
        print(f"  {done.output}  ({done.records} lines)")
    print(f"captured in {result.capture_uri} (the embedded AWS)")
    return EXIT_OK


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SettingsError(option, [f"{item!r} is not NAME=VALUE"])
        pairs.append((key, value))
    return pairs


def _container_option(parser: argparse.ArgumentParser) -> None:
    from mlops.local.runners import CONTAINER_MODES

    parser.add_argument(
        "--container", choices=CONTAINER_MODES, default="auto",
        help="run SageMaker's jobs in the model image (always), in a venv of exactly model_code/requirements.txt "
        "(never), or in the image when docker or podman answers (auto, the default)",
    )


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
    plan.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, as `pulumi up -c` (e.g. imageTag=$CI_COMMIT_SHA); repeatable",
    )
    plan.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    plan.set_defaults(func=cmd_infra_plan)
    cost = infra.add_parser(
        "cost", help="estimate a stack's monthly cost from its offline plan",
        description="The stack's offline plan priced with the bundled on-demand price table (mlops/prices.json, "
        "dated): the endpoint at its minimum capacity around the clock, each schedule's jobs (runs a month from its "
        "cron x a typical duration), the pipeline's runs, the MLflow server, interface endpoints, keys, alarms, "
        "storage. Every assumption is printed with what it costs; --assume changes it.",
    )
    cost.add_argument("--stack", required=True, help="stack name: prices Pulumi.<stack>.yaml")
    cost.add_argument("--json", action="store_true", help="print the estimate as JSON")
    cost.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value, as for `infra plan` (e.g. approvedModelPackageArn=...)")
    cost.add_argument("--assume", action="append", default=[], metavar="NAME=VALUE",
                      help="change an assumption (e.g. pipeline_runs_per_month=8); repeatable")
    cost.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    cost.set_defaults(func=cmd_infra_cost)

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
    latest = model_actions.add_parser("latest", help="print the ARN of the stack's latest approved package")
    latest.add_argument("--stack", required=True)
    latest.add_argument(
        "--or-empty",
        action="store_true",
        help="print an empty line instead of failing when nothing is approved or the group does not exist yet "
        "(CI's dev deploy); any other AWS error still fails",
    )
    latest.set_defaults(func=cmd_model_latest)
    status_commands = [latest]
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
    promote.add_argument("--force", action="store_true",
                         help="promote without comparing with the target's pinned model")
    _container_option(promote)  # local mode: where the same-data comparison job runs
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
    verify.add_argument(
        "--if-model", action="store_true",
        help="exit 0 with a message when the stack has no model yet (no pin, nothing approved): CI's verify jobs",
    )
    verify.set_defaults(func=cmd_release_verify)

    add_problem_commands(commands)
    pipeline = commands.add_parser("pipeline", help="the training pipeline: local runs, definition, executions")
    pipeline_actions = pipeline.add_subparsers(dest="action", required=True)
    run = pipeline_actions.add_parser(
        "run",
        help="run the pipeline on this machine (--local)",
        description="Run the stack's pipeline definition locally: each job in the model image (or a venv of "
        "exactly its requirements; --container), the embedded AWS (moto) as S3 and model registry, MLflow on "
        "SQLite served to the jobs over HTTP. Exit 0 registered, 1 a step failed or below the bar, 2 bad input.",
    )
    run.add_argument("--local", action="store_true", required=True, help="run locally (the only mode of `run`)")
    run.add_argument("--stack", default="dev", help="stack whose settings to use (default dev)")
    run.add_argument("--data", type=Path, help="CSV file or folder to train on (default: the problem's sample)")
    run.add_argument("--problem", type=Path, metavar="DIR",
                     help="problem declaration folder (default: the stack's mlops-stack:problem)")
    run.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                     help="override a stack setting for this run, e.g. tuningMaxJobs=8; repeatable")
    _data_version_options(run)
    _container_option(run)
    run.set_defaults(func=cmd_pipeline_run)
    runs = pipeline_actions.add_parser("runs", help="past local runs, newest first")
    runs.set_defaults(func=cmd_pipeline_runs)
    definition = pipeline_actions.add_parser("definition", help="print the stack's pipeline definition JSON")
    definition.add_argument("--stack", required=True)
    definition.add_argument("--image-tag", help="image tag (default: the stack's imageTag)")
    definition.set_defaults(func=cmd_pipeline_definition)
    start = pipeline_actions.add_parser("start", help="start the stack's pipeline in its account")
    start.add_argument("--stack", required=True)
    start.add_argument("--image-tag", help="upsert the definition for this image tag first")
    start.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, e.g. InputDataUri=s3://...; repeatable",
    )
    start.add_argument("--wait", action="store_true", help="wait until the execution ends")
    _data_version_options(start)
    start.set_defaults(func=cmd_pipeline_start)

    data = commands.add_parser("data", help="data versions (DVC): a model version's training data").add_subparsers(
        dest="action", required=True)
    data_checkout = data.add_parser(
        "checkout", help="check out the data a model package was trained on, by its DVC revision",
        description="`dvc get` of the dataset at the package's dvc_rev into --output, then its sha256 against the "
        "package's data_sha256 (what Validate read). Exit 0 the same, 1 different, 2 bad input. The embedded AWS "
        "when AWS_ENDPOINT_URL points at it (`mlops local up`).")
    data_checkout.add_argument("--stack", required=True)
    data_checkout.add_argument("--package", required=True, metavar="ARN", help="model package ARN (mlops model list)")
    data_checkout.add_argument("--output", type=Path, required=True, metavar="DIR", help="a new folder")
    _dvc_repo_option(data_checkout)
    data_checkout.set_defaults(func=cmd_data_checkout)

    demo = commands.add_parser(
        "demo",
        help="the whole lifecycle on embedded defaults (what `make run` runs)",
        description="Embedded AWS and MLflow, offline plan and policies, local training, approval, a local endpoint, "
        "held-out then drifted traffic, drift job and alarm, retrain, challenger vs champion, "
        "promotion, report. Each run has its own folder under <state>/demo/. Exit 130 on Ctrl-C.",
    )
    demo.add_argument("--stack", default="dev", help="stack whose settings to use (default dev)")
    demo.add_argument("--small", action="store_true", help="small data and traffic (a quicker run)")
    demo.add_argument("--problem", type=Path, metavar="DIR",
                      help="problem declaration folder (default: the stack's mlops-stack:problem, the Adult census)")
    _container_option(demo)
    demo.set_defaults(func=cmd_demo)

    serve = commands.add_parser("serve", help="serve a registered model on a local endpoint")
    serve.add_argument("--local", action="store_true", required=True, help="locally (the only mode of `serve`)")
    serve.add_argument("--stack", default="dev", help="stack whose registry to use (default dev)")
    serve.add_argument(
        "--model", default="champion", help="champion (latest approved), latest, a version number or a package ARN"
    )
    serve.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free port)")
    serve.add_argument(
        "--workers", type=int, default=None,
        help="server worker processes (default: $SAGEMAKER_MODEL_SERVER_WORKERS, 0 = one per CPU; else 1)",
    )
    serve.add_argument(
        "--runtime", choices=("sklearn", "onnx"), default=None,
        help="what scores: the scikit-learn pipeline (default) or onnxruntime on the model's ONNX export "
        "(MLOPS_SERVE_RUNTIME)",
    )
    _container_option(serve)
    serve.set_defaults(func=cmd_serve)

    batch = commands.add_parser("batch", help="Batch Transform of a registered model").add_subparsers(
        dest="action", required=True)
    batch_run = batch.add_parser(
        "run", help="score files as the stack's Batch Transform job does, locally",
        description="A Batch Transform job on this machine: the image's serve with SAGEMAKER_BATCH=true, every file of "
        "--input split by line into mini-batches of at most MaxPayloadInMB, one <input>.out per file under --output "
        "with one line per record, written only when the whole file is scored. Needs the embedded AWS (the model "
        "comes from the stack's registry).",
    )
    batch_run.add_argument("--local", action="store_true", required=True, help="locally (the only mode of `batch`)")
    batch_run.add_argument("--input", type=Path, required=True, metavar="FILE|DIR",
                           help="a file, or a folder whose every file is scored (no CSV header: one record per line)")
    batch_run.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder of the .out files")
    batch_run.add_argument("--stack", default="dev",
                           help="stack whose registry and batch settings to use (default dev)")
    batch_run.add_argument(
        "--model", default="champion", help="champion (latest approved), latest, a version number or a package ARN"
    )
    batch_run.add_argument("--content-type", choices=("text/csv", "application/jsonlines"),
                           help="format of the records (default: the stack's batchTransformContentType)")
    batch_run.add_argument("--accept", choices=("text/csv", "application/jsonlines"),
                           help="format of the output lines (default: the content type)")
    batch_run.add_argument("--max-payload-mb", type=int,
                           help="MaxPayloadInMB, 1-100 (default: the stack's batchTransformMaxPayloadMb)")
    _container_option(batch_run)
    batch_run.set_defaults(func=cmd_batch)

    monitor = commands.add_parser("monitor", help="drift and quality monitoring of the local endpoint (local mode)")
    monitor_actions = monitor.add_subparsers(dest="action", required=True)
    monitor_baseline = monitor_actions.add_parser(
        "baseline", help="fetch the baseline of the model to monitor (pinned, else latest approved, else latest)"
    )
    monitor_run = monitor_actions.add_parser(
        "run",
        help="one tick of the drift schedule: the drift job, the alarm, a retrain if it fires",
        description="One evaluation period: the stack's scheduled drift job (its request, run in the image) over "
        "the last driftWindowHours of captured traffic, a datapoint, the M-of-N alarm with the stack's settings, "
        "and a local retrain when the alarm enters ALARM and the cooldown has passed. Needs the embedded AWS "
        "and `mlops monitor baseline` (which points the stack's endpoint at the monitored package).",
    )
    monitor_run.add_argument("--capture", type=Path, help="capture folder (default <state>/capture)")
    monitor_run.add_argument("--data", type=Path, help="data a triggered retrain uses (default the bundled sample)")
    monitor_run.add_argument("--no-retrain", action="store_true", help="evaluate the alarm but never retrain")
    _container_option(monitor_run)
    monitor_quality = monitor_actions.add_parser(
        "quality",
        help="one tick of the quality schedule: ground truth joined to the capture, the alarm, a retrain if it fires",
        description="The stack's scheduled quality job (its request, run in the image): the label files under "
        "the ground-truth folder (Model Monitor's format, under yyyy/mm/dd/hh/ of their arrival) joined by "
        "inference id to the local endpoint's capture, scored by the model the stack's endpoint serves, metrics "
        "published to the embedded CloudWatch. Every label is counted (matched, missing, late, duplicate, ...). "
        "Then the quality alarm (M of N runs worse than the stack's quality bar) and a local retrain when it "
        "enters ALARM and the cooldown has passed. Needs the embedded AWS and `mlops monitor baseline`.",
    )
    monitor_quality.add_argument("--capture", type=Path, help="capture folder (default <state>/capture)")
    monitor_quality.add_argument("--ground-truth", type=Path, help="label folder (default <state>/ground-truth)")
    monitor_quality.add_argument(
        "--start", help="window start, ISO 8601 (default the schedule's: the window whose labels are due now)"
    )
    monitor_quality.add_argument("--data", type=Path, help="data a triggered retrain uses (default the bundled sample)")
    monitor_quality.add_argument("--no-retrain", action="store_true", help="evaluate the alarm but never retrain")
    _container_option(monitor_quality)
    monitor_status = monitor_actions.add_parser("status", help="alarm state, last datapoints, cooldown")
    for sub in (monitor_baseline, monitor_run, monitor_quality, monitor_status):
        sub.add_argument("--stack", default="dev", help="stack whose settings to use (default dev)")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(func=cmd_monitor)

    bootstrap = commands.add_parser(
        "bootstrap",
        help="once per account, before the first `pulumi up`: state bucket, secrets key, Pulumi stack",
        description="With the stack account's credentials and the Pulumi CLI: the Pulumi secrets key (KMS) and the "
        "state bucket (versioned, SSE-KMS, TLS only, no public access), the Pulumi stack with the awskms secrets "
        "provider, and their names plus secretsprovider/encryptedkey written into Pulumi.<stack>.yaml for a commit. "
        "Idempotent.",
    )
    bootstrap.add_argument("--stack", required=True, help="stack whose Pulumi.<stack>.yaml to bootstrap")
    bootstrap.add_argument("--pulumi", default="pulumi", help="the Pulumi CLI to run (default: pulumi on PATH)")
    bootstrap.add_argument(
        "--check", action="store_true",
        help="offline: fail unless the stack file is bootstrapped (CI runs it before `pulumi`)",
    )
    bootstrap.set_defaults(func=cmd_bootstrap)

    local = commands.add_parser("local", help="the embedded AWS of local mode").add_subparsers(
        dest="action", required=True
    )
    local_up = local.add_parser("up", help="start the embedded AWS (moto server) in the background")
    local_up.add_argument("--stack", default="dev", help="account and region come from this stack (default dev)")
    local.add_parser("down", help="stop it (its state is in memory: the registry is forgotten)")
    local.add_parser("status", help="is it running, and where")
    for sub in local.choices.values():
        sub.set_defaults(func=cmd_local)

    for sub in (
        bootstrap,
        serve,
        batch_run,
        listing,
        promote,
        rollback,
        verify,
        *status_commands,
        run,
        definition,
        start,
        data_checkout,
        local_up,
        monitor_baseline,
        monitor_run,
        monitor_quality,
        monitor_status,
    ):
        sub.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mlops.batch_local import BatchError
    from mlops.bootstrap import BootstrapError
    from mlops.data_versions import DataVersionError
    from mlops.local.aws import LocalAwsError
    from mlops.local.container import ContainerError
    from mlops.local.tracking import TrackingServerError
    from mlops.monitor import MonitorError
    from mlops.registry import ReleaseError
    from mlops.serve_local import ServeLocalError

    # Configure logging first: the SageMaker SDK calls logging.basicConfig(INFO) on import.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SettingsError, ReleaseError, LocalAwsError, MonitorError, ServeLocalError, ContainerError,
            TrackingServerError, BootstrapError, BatchError, DataVersionError) as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        # What a command started stops with it (context managers); the user gets one line, no traceback.
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mlops ... | head`: the reader went away. Quietly, as a Unix tool; stdout's last flush must not fail again
        # (Python's documented way: point stdout at devnull). SIGPIPE stays ignored: a socket write fails in Python.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
