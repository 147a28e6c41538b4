"""Run every policy of the pack without the Pulumi engine (used by ``mlops infra plan``).

Each resource is a mapping in the form the Pulumi mocks record::

    {"type": "aws:s3/bucket:Bucket", "name": "<logical name>", "urn": "urn:pulumi:...",
     "inputs": {<camelCase inputs>}}

``urn`` is optional (one is made up from stack-less parts when absent). The evaluator builds the
same ``pulumi_policy`` argument objects the analyzer builds (inputs wrapped in the SDK's
unknown-checking proxy), calls each policy's ``validate`` and collects what it reports. Resource
violations name the resource validated; stack violations name the resource whose URN the rule
reported ("<stack>" when it reported none).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policies.rules import ALL_POLICIES, PACK_ENFORCEMENT_LEVEL

STACK = "<stack>"
"""The resource name of a stack violation reported without a URN."""


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    message: str
    level: str  # "mandatory" | "advisory"


def level_of(policy: Policy) -> EnforcementLevel:
    return policy.enforcement_level or PACK_ENFORCEMENT_LEVEL


def describe(policies: Sequence[Policy] = ALL_POLICIES) -> list[tuple[str, str, str]]:
    """(name, level, description) of every policy, sorted by name (for ``mlops policy list``)."""
    return sorted((p.name, level_of(p).value, p.description) for p in policies)


def _urn(resource: Mapping[str, Any]) -> str:
    urn = resource.get("urn")
    if urn:
        return str(urn)
    return f"urn:pulumi:offline::offline::{resource['type']}::{resource['name']}"


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    # A deep copy: a policy may never change the caller's plan, and the proxy is what the engine passes.
    return unknown_checking_proxy(copy.deepcopy(dict(resource.get("inputs") or {})))


def _run(policy: Policy, args: Any, report: Any) -> None:
    try:
        result = policy.validate(args, report)
        if inspect.isawaitable(result):
            asyncio.run(_await(result))
    except UnknownValueError:
        pass  # as in the engine: a value unknown during preview is never a violation


async def _await(result: Any) -> None:
    await result


def _reporter(found: list[Violation], policy: str, level: str, name_of: Any) -> Any:
    def report_violation(message: str, urn: str | None = None) -> None:
        found.append(Violation(policy, name_of(urn), message, level))

    return report_violation


def evaluate(
    resources: Sequence[Mapping[str, Any]], *, policies: Sequence[Policy] = ALL_POLICIES
) -> list[Violation]:
    """Every violation of ``policies`` by ``resources``, sorted by (resource, policy, message)."""
    urn_to_name = {_urn(r): str(r["name"]) for r in resources}
    found: list[Violation] = []

    for policy in policies:
        level = level_of(policy)
        if level == EnforcementLevel.DISABLED:
            continue
        # As in the engine: a remediation policy that still reports is a mandatory violation.
        level_name = EnforcementLevel.MANDATORY.value if level == EnforcementLevel.REMEDIATE else level.value

        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                name = str(resource["name"])
                args = ResourceValidationArgs(
                    resource_type=str(resource["type"]),
                    props=_props(resource),
                    urn=_urn(resource),
                    name=name,
                    opts=_options(),
                    provider=None,
                )
                # A resource violation always names the resource validated, whatever urn is passed.
                _run(policy, args, _reporter(found, policy.name, level_name, lambda _urn, n=name: n))

        elif isinstance(policy, StackValidationPolicy):
            stack_resources = [
                PolicyResource(
                    resource_type=str(r["type"]),
                    props=_props(r),
                    urn=_urn(r),
                    name=str(r["name"]),
                    opts=_options(),
                    provider=None,
                    parent=None,
                    dependencies=[],
                    property_dependencies={},
                )
                for r in resources
            ]

            def stack_name(urn: str | None) -> str:
                return urn_to_name.get(urn, urn) if urn else STACK

            _run(
                policy,
                StackValidationArgs(stack_resources),
                _reporter(found, policy.name, level_name, stack_name),
            )

    return sorted(found, key=lambda v: (v.resource, v.policy, v.message))
