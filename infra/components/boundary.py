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
from mlops.naming import Arns, Names
from mlops.settings import PROJECT

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


def merge_per_service(*documents: dict, prefix: str, account_id: str) -> dict:
    """One Allow statement per (service, condition, unscoped, in another account): the union of their actions on
    the union of their resources, the stack's (`prefix`) names one pattern each. Only for a ceiling: it may pair
    an action with a resource of the stack's no single statement paired it with; resources of other accounts
    are merged only among themselves, so no write of the stack's reaches them."""
    groups: dict[tuple[str, str, bool, bool], tuple[set[str], list[str]]] = defaultdict(lambda: (set(), []))
    for doc in documents:
        for item in doc["Statement"]:
            if item["Effect"] != "Allow":
                raise ValueError(f"statement {item.get('Sid')} is a Deny: a boundary of Allows cannot hold it")
            resources = item["Resource"] if isinstance(item["Resource"], list) else [item["Resource"]]
            for service in sorted({action.split(":", 1)[0] for action in item["Action"]}):
                foreign = resources != ["*"] and not all(account_id in r for r in resources)
                key = (service, json.dumps(item.get("Condition", {}), sort_keys=True), resources == ["*"], foreign)
                actions, merged = groups[key]
                actions.update(a for a in item["Action"] if a.split(":", 1)[0] == service)
                merged.extend(r for r in resources if r not in merged)
    statements = []
    for index, ((service, condition, _unscoped, _foreign), (actions, every)) in enumerate(sorted(groups.items())):
        # a resource another one covers goes (of two that cover each other, the first stays)
        covered = [r for i, r in enumerate(every)
                   if not any(_covers(o, r) and (not _covers(r, o) or j < i) for j, o in enumerate(every) if j != i)]
        resources = _one_pattern_per_name(covered, prefix)
        sid = "".join(part.capitalize() for part in service.replace("-", " ").split()) + str(index)
        statements.append(statement(sid, sorted(actions), resources if resources != ["*"] else "*",
                                    json.loads(condition) or None))
    return document(*statements)


def source_account_ceiling(names: Names, source_account_id: str) -> dict:
    """The most the roles may do in the account whose packages this stack serves (modelSourceAccountId): read any
    of its stacks' packages, artifacts, images and keys, and put alarms on its retrain buses for this account.

    From the setting, never from the pin: the pin changes with every promotion and rollback, and CI's deploy role
    may not rewrite the boundary, so a boundary naming the pin would fail every prod deploy after a promotion."""
    region, source = names.region, f"{names.region}:{source_account_id}"
    return document(
        statement("DescribeSourceModels", ["sagemaker:DescribeModelPackage"],
                  [f"arn:aws:sagemaker:{source}:model-package/{PROJECT}-*/*"]),
        statement("ReadSourceModelArtifacts", ["s3:GetObject"],
                  [f"arn:aws:s3:::{PROJECT}-*-artifacts-{source_account_id}-{region}/pipelines/*"]),
        statement("PullSourceModelImages",
                  ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                  [f"arn:aws:ecr:{source}:repository/{PROJECT}/*/model"]),
        statement(
            "DecryptSourceModels",
            ["kms:Decrypt", "kms:DescribeKey"],
            [f"arn:aws:kms:{source}:key/*"],
            {
                "StringEquals": {"kms:ViaService": [f"s3.{region}.amazonaws.com", f"ecr.{region}.amazonaws.com"]},
                "ForAnyValue:StringLike": {"kms:ResourceAliases": [f"alias/{PROJECT}-*"]},
            },
        ),
        *forwarder_policy(f"arn:aws:events:{source}:event-bus/{PROJECT}-*-retrain-from-{names.account_id}")[
            "Statement"],
    )


def workload_boundary(arns: Arns, key_arn: str, metrics_namespace: str, source_account_id: str = "",
                      in_vpc: bool = False) -> dict:
    """The ceiling from settings and names only: the same document whatever the stack serves or its image."""
    names = arns.names
    pipeline = [f"arn:aws:sagemaker:{names.region}:{names.account_id}:pipeline/{names.pipeline}"]
    documents = [
        execution_policy(arns, key_arn, metrics_namespace, in_vpc=in_vpc),
        mlflow_policy(arns, key_arn),
        # The ceiling names the batch jobs; the scheduler's own policy pins their keys (the boundary's room is IAM's
        # 6,144 characters, and the buckets' default encryption is the stack key either way).
        scheduler_policy([arns.drift_jobs, arns.quality_jobs], names.execution_role_arn, key_arn,
                         transform_jobs=[arns.batch_jobs], pin_transform_keys=False),
        trigger_policy(pipeline),
    ]
    if source_account_id and source_account_id != names.account_id:
        documents.append(source_account_ceiling(names, source_account_id))
    ceiling = merge_per_service(*documents, prefix=names.prefix, account_id=names.account_id)
    if (size := policy_size(ceiling)) > MANAGED_POLICY_MAX_CHARS:
        raise ValueError(f"the workload boundary is {size} characters; IAM takes {MANAGED_POLICY_MAX_CHARS}")
    return ceiling
