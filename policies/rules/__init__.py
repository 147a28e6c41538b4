"""Every policy of the pack, grouped by domain; relations between resources are in ``stack``."""

from pulumi_policy import EnforcementLevel, Policy

from . import audit, ecr, iam, inference, kms, monitoring, network, operations, s3, sagemaker, stack, tags

PACK_NAME = "mlops-stack-policies"
PACK_ENFORCEMENT_LEVEL = EnforcementLevel.MANDATORY
"""Default level of the pack; a policy may lower its own (e.g. advisory cost rules)."""

ALL_POLICIES: list[Policy] = [
    *s3.POLICIES,
    *kms.POLICIES,
    *ecr.POLICIES,
    *iam.POLICIES,
    *sagemaker.POLICIES,
    *operations.POLICIES,
    *monitoring.POLICIES,
    *inference.POLICIES,
    *network.POLICIES,
    *audit.POLICIES,
    *tags.POLICIES,
    *stack.POLICIES,
]

__all__ = ["ALL_POLICIES", "PACK_ENFORCEMENT_LEVEL", "PACK_NAME"]
