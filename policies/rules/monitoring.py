"""Monitoring rules: every endpoint is watched for drift, and a retrain bus admits exactly one account.

An endpoint is monitored when the stack schedules the drift job on it (an EventBridge Scheduler schedule whose
target is SageMaker's CreateProcessingJob running `model_code drift` with `--endpoint <name>`) and alarms on its
result (a MetricAlarm on `DriftDetected` with dimension Endpoint=<name>): the way infra/components/monitoring.py
declares it in every serving stack, prod included. A retrain bus (EventBusPolicy) lets another account's alarms
start a pipeline: its policy names one account, never `*`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import (
    InvalidDocument,
    allow_statements,
    as_list,
    dig,
    inputs,
    is_unknown,
    parse_document,
    plain,
    principal_is_public,
)
from .operations import METRIC_ALARM
from .sagemaker import ENDPOINT

SCHEDULE = frozenset({"aws:scheduler/schedule:Schedule"})
EVENT_BUS_POLICY = frozenset({"aws:cloudwatch/eventBusPolicy:EventBusPolicy"})
CREATE_PROCESSING_JOB = "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"
DRIFT_METRIC = "DriftDetected"
_ACCOUNT_IN_PRINCIPAL = re.compile(r"^(?:arn:aws[a-z-]*:iam::)?([0-9]{12})(?::|$)")


def _drift_job_endpoint(schedule: dict[str, Any]) -> str | None:
    """The endpoint a schedule's drift job watches, None when it runs no drift job; raises LookupError when
    the schedule's request is unknown (preview)."""
    target = schedule.get("target")
    if is_unknown(target) or is_unknown(dig(target, "input")):
        raise LookupError
    if dig(target, "arn") != CREATE_PROCESSING_JOB or not isinstance(dig(target, "input"), str):
        return None
    try:
        request = json.loads(dig(target, "input"))
    except json.JSONDecodeError:
        return None
    app = request.get("AppSpecification", {}) if isinstance(request, dict) else {}
    entrypoint, arguments = as_list(app.get("ContainerEntrypoint")), as_list(app.get("ContainerArguments"))
    if entrypoint[-2:] != ["model_code", "drift"] or "--endpoint" not in arguments[:-1]:
        return None
    return arguments[arguments.index("--endpoint") + 1]


def endpoint_is_monitored(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    schedules = [plain(r.props) for r in args.resources if r.resource_type in SCHEDULE]
    alarms = [plain(r.props) for r in args.resources if r.resource_type in METRIC_ALARM]
    try:
        scheduled = {_drift_job_endpoint(s) for s in schedules}
    except LookupError:
        return
    if any(is_unknown(a.get("metricName")) or is_unknown(dig(a, "dimensions", "Endpoint")) for a in alarms):
        return
    alarmed = {dig(a, "dimensions", "Endpoint") for a in alarms if a.get("metricName") == DRIFT_METRIC}
    for resource in args.resources:
        endpoint = plain(resource.props).get("name") if resource.resource_type in ENDPOINT else None
        if not isinstance(endpoint, str) or not endpoint:
            continue
        if endpoint not in scheduled:
            report_violation(f'endpoint "{endpoint}" has no drift job: no aws:scheduler Schedule runs '
                             f'`model_code drift --endpoint {endpoint}` through CreateProcessingJob', resource.urn)
        if endpoint not in alarmed:
            report_violation(f'endpoint "{endpoint}" has no drift alarm: no MetricAlarm on {DRIFT_METRIC} with '
                             f'dimension Endpoint="{endpoint}"', resource.urn)


def _accounts(principal: Any) -> set[str] | None:
    """The accounts an AWS principal names; None for anything that is not an account's principal."""
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        return None
    accounts = set()
    for value in as_list(principal["AWS"]):
        match = _ACCOUNT_IN_PRINCIPAL.match(value) if isinstance(value, str) else None
        if match is None:
            return None
        accounts.add(match[1])
    return accounts


def event_bus_policy_one_account(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = inputs(args, EVENT_BUS_POLICY)
    if props is None:
        return
    try:
        doc = parse_document(props.get("policy"))
    except InvalidDocument as error:
        report_violation(f"policy {error}", None)
        return
    if is_unknown(doc):
        return
    named: set[str] = set()
    for _, label, stmt in allow_statements(doc):
        principal = stmt.get("Principal")
        if is_unknown(principal):
            return
        if principal_is_public(principal):
            report_violation(f"statement {label} admits every principal (\"*\"); a bus admits one account", None)
            continue
        accounts = _accounts(principal)
        if accounts is None:
            report_violation(f"statement {label} names a principal that is not an account's "
                             f"({json.dumps(principal, sort_keys=True)}); a bus admits one account", None)
            continue
        named |= accounts
    if len(named) > 1:
        report_violation(f"the policy names {len(named)} accounts ({', '.join(sorted(named))}); a bus admits "
                         "exactly one (one bus per account)", None)
    elif not named and not any(True for _ in allow_statements(doc)):
        report_violation("the policy admits no account; a retrain bus admits exactly one", None)


POLICIES = [
    StackValidationPolicy(
        name="endpoint-is-monitored",
        description="Every SageMaker endpoint has a scheduled drift job on its capture and a drift alarm.",
        validate=endpoint_is_monitored,
    ),
    ResourceValidationPolicy(
        name="event-bus-policy-one-account",
        description="An EventBridge bus policy admits the principals of exactly one account, never `*`.",
        validate=event_bus_policy_one_account,
    ),
]
