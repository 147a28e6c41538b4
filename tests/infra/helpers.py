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


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def image_of(package_arn: str, tag: str = "0123abc") -> str:
    """The image a package of another stack records (the pipeline registers `<its ECR URL>:<imageTag>`), as
    `mlops release promote` writes it beside the pin (approvedModelImageUri)."""
    source = source_of(package_arn)
    assert source is not None, package_arn
    return f"{source.ecr_url}:{tag}"
