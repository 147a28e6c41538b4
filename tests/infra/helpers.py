"""Small readers over a recorded plan, shared by the infra tests."""

from __future__ import annotations

import json
from typing import Any

from mlops.naming import source_of
from mlops.plan import Plan, PlannedResource


def by_bucket(plan: Plan, type_token: str) -> dict[str, PlannedResource]:
    """Bucket-scoped child resources keyed by the bucket name they apply to."""
    return {r.inputs["bucket"]: r for r in plan.of_type(type_token)}


def document(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else value


def statements(policy: Any) -> list[dict]:
    found = document(policy)["Statement"]
    return found if isinstance(found, list) else [found]


def _managed_policies(plan: Plan) -> dict[str, dict]:
    """Managed policy name -> its document."""
    return {r.inputs["name"]: document(r.inputs["policy"]) for r in plan.of_type("aws:iam/policy:Policy")}


def role_policies(plan: Plan) -> dict[str, dict]:
    """Role name -> one document of every statement its inline and attached managed policies hold."""
    managed = _managed_policies(plan)
    found: dict[str, list[dict]] = {}
    for r in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        found.setdefault(r.inputs["role"], []).extend(statements(r.inputs["policy"]))
    for r in plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        found.setdefault(r.inputs["role"], []).extend(statements(managed[r.inputs["policyArn"].rsplit("/", 1)[1]]))
    return {role: {"Version": "2012-10-17", "Statement": items} for role, items in found.items()}


def role_boundaries(plan: Plan) -> dict[str, dict | None]:
    """Role name -> the document of its permissions boundary (None: the role has none)."""
    managed = _managed_policies(plan)
    return {r.inputs["name"]: managed[r.inputs["permissionsBoundary"].rsplit("/", 1)[1]] if r.inputs.get("permissionsBoundary")
            else None for r in plan.of_type("aws:iam/role:Role")}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def image_of(package_arn: str, tag: str = "0123abc") -> str:
    """The image a package of another stack records (the pipeline registers `<its ECR URL>:<imageTag>`), as
    `mlops release promote` writes it beside the pin (approvedModelImageUri)."""
    source = source_of(package_arn)
    assert source is not None, package_arn
    return f"{source.ecr_url}:{tag}"
