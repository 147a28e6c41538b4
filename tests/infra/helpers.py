"""Small readers over a recorded plan, shared by the infra tests."""

from __future__ import annotations

import json
from typing import Any

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
