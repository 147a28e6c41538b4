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


def _options(resource: Mapping[str, Any]) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=bool(resource.get("protect")),  # as the engine passes it: network-vpc-when-protected reads it
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    # The engine's unknown-checking proxy, built from fresh containers: the caller's plan is never changed.
    return unknown_checking_proxy(dict(resource.get("inputs") or {}))


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


def evaluate(resources: Sequence[Mapping[str, Any]], *, policies: Sequence[Policy] = ALL_POLICIES) -> list[Violation]:
    """Every violation of ``policies`` by ``resources``, sorted by (resource, policy, message)."""
    urn_to_name = {_urn(r): str(r["name"]) for r in resources}
    # One proxy per resource, shared by every policy of this run (the rules only read their inputs).
    props = [_props(r) for r in resources]
    stack_resources = [
        PolicyResource(
            resource_type=str(r["type"]),
            props=p,
            urn=_urn(r),
            name=str(r["name"]),
            opts=_options(r),
            provider=None,
            parent=None,
            dependencies=[],
            property_dependencies={},
        )
        for r, p in zip(resources, props, strict=True)
    ]

    def stack_name(urn: str | None) -> str:
        return urn_to_name.get(urn, urn) if urn else STACK

    found: list[Violation] = []
    for policy in policies:
        level = level_of(policy)
        if level == EnforcementLevel.DISABLED:
            continue
        # As in the engine: a remediation policy that still reports is a mandatory violation.
        level_name = EnforcementLevel.MANDATORY.value if level == EnforcementLevel.REMEDIATE else level.value

        if isinstance(policy, ResourceValidationPolicy):
            for resource in stack_resources:
                args = ResourceValidationArgs(
                    resource_type=resource.resource_type,
                    props=resource.props,
                    urn=resource.urn,
                    name=resource.name,
                    opts=resource.opts,
                    provider=None,
                )
                # A resource violation always names the resource validated, whatever urn is passed.
                name = resource.name
                _run(policy, args, _reporter(found, policy.name, level_name, lambda _urn, n=name: n))

        elif isinstance(policy, StackValidationPolicy):
            _run(policy, StackValidationArgs(stack_resources), _reporter(found, policy.name, level_name, stack_name))

    return sorted(found, key=lambda v: (v.resource, v.policy, v.message))
