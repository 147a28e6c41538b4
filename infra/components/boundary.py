"""The workload permissions boundary: the most any role of the stack but the deploy role may ever do.

Why: the CI deploy role creates and writes the stack's roles and starts code under them (pipelines, jobs,
schedules). Without a ceiling it could write a role any policy and run its own code with it. Every role it
may create or write must carry this boundary (its policy says so with `iam:PermissionsBoundary`), and it
may not change the boundary: a role's effective rights are its policy intersected with this document,
whatever policy the deploy role writes.

The ceiling is derived from the workload roles' own policy functions (execution, MLflow, schedules,
retrain trigger and forwarder) with name-derived ARNs, merged per service, condition and scope so it fits
IAM's 6,144-character limit for a managed policy. A test proves that each role's policy lies under it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import defaultdict

from infra.components.access_policies import (
    execution_policy,
    forwarder_policy,
    mlflow_policy,
    scheduler_policy,
    trigger_policy,
)
from infra.components.policy_documents import document, statement
from mlops.naming import Arns

# IAM's size limits, without whitespace (IAM does not count it).
MANAGED_POLICY_MAX_CHARS = 6144
INLINE_POLICIES_MAX_CHARS = 10240  # all inline policies of one role together


def policy_size(doc: dict) -> int:
    return len("".join(json.dumps(doc).split()))


def _covers(pattern: str, resource: str) -> bool:
    """`pattern` matches every ARN `resource` matches (a `*`-only pattern: `*` matches any text, `*` included)."""
    return "*" in pattern and "?" not in pattern and fnmatch.fnmatchcase(resource, pattern)


_TYPED_ARN = re.compile(r"^(arn:aws:[a-z0-9-]+:[a-z0-9-]*:[0-9]*:)([a-z-]+)/(.+)$")


def _one_pattern_per_name(resources: list[str], prefix: str) -> list[str]:
    """`<type>/<name>` ARNs of several resource types with one name of the stack's as `*/<name>`: an action only
    ever matches ARNs of the types it takes, so this admits the stack's resources of those types it had and
    the stack's like-named ones of other types; names that are not the stack's are never widened."""
    types: dict[tuple[str, str], list[str]] = defaultdict(list)
    for resource in resources:
        if (match := _TYPED_ARN.match(resource)) and match.group(3).startswith(prefix):
            types[(match.group(1), match.group(3))].append(resource)
    merged = {r for group in types.values() if len(group) > 1 for r in group}
    out = [r for r in resources if r not in merged]
    return out + [f"{head}*/{name}" for (head, name), group in types.items() if len(group) > 1]


def merge_per_service(*documents: dict, prefix: str) -> dict:
    """One Allow statement per (service, condition, unscoped or scoped): the union of their actions on the union
    of their resources, the stack's (`prefix`) names one pattern each. Only for a ceiling: it may pair an action
    with a resource of the stack's no single statement paired it with."""
    groups: dict[tuple[str, str, bool], tuple[set[str], list[str]]] = defaultdict(lambda: (set(), []))
    for doc in documents:
        for item in doc["Statement"]:
            if item["Effect"] != "Allow":
                raise ValueError(f"statement {item.get('Sid')} is a Deny: a boundary of Allows cannot hold it")
            resources = item["Resource"] if isinstance(item["Resource"], list) else [item["Resource"]]
            for service in sorted({action.split(":", 1)[0] for action in item["Action"]}):
                key = (service, json.dumps(item.get("Condition", {}), sort_keys=True), resources == ["*"])
                actions, merged = groups[key]
                actions.update(a for a in item["Action"] if a.split(":", 1)[0] == service)
                merged.extend(r for r in resources if r not in merged)
    statements = []
    for index, ((service, condition, _unscoped), (actions, every)) in enumerate(sorted(groups.items())):
        covered = [r for r in every if not any(_covers(other, r) for other in every if other != r)]
        resources = _one_pattern_per_name(covered, prefix)
        sid = "".join(part.capitalize() for part in service.replace("-", " ").split()) + str(index)
        statements.append(statement(sid, sorted(actions), resources if resources != ["*"] else "*",
                                    json.loads(condition) or None))
    return document(*statements)


def workload_boundary(
    arns: Arns, key_arn: str, metrics_namespace: str, source_reads: tuple[dict, ...] = (), retrain_bus_arn: str = ""
) -> dict:
    names = arns.names
    pipeline = [f"arn:aws:sagemaker:{names.region}:{names.account_id}:pipeline/{names.pipeline}"]
    documents = [
        execution_policy(arns, key_arn, metrics_namespace, source_reads),
        mlflow_policy(arns, key_arn),
        scheduler_policy([arns.drift_jobs, arns.quality_jobs], names.execution_role_arn, key_arn),
        trigger_policy(pipeline),
    ]
    if retrain_bus_arn:
        documents.append(forwarder_policy(retrain_bus_arn))
    ceiling = merge_per_service(*documents, prefix=names.prefix)
    if (size := policy_size(ceiling)) > MANAGED_POLICY_MAX_CHARS:
        raise ValueError(f"the workload boundary is {size} characters; IAM takes {MANAGED_POLICY_MAX_CHARS}")
    return ceiling
