"""Where a SageMaker job runs: the stack's VPC (its subnets and security groups), and whether it is cut off.

Network isolation is set on every job whose code calls no AWS API and no server: SageMaker still downloads its
inputs and uploads its outputs, the container itself has no network at all. Validate and Preprocess are such
jobs; Train and Evaluate are when the stack has no MLflow (they log to it); the guard, the champion comparison
and the drift and quality jobs call SageMaker, S3 and CloudWatch, and run in the VPC unisolated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.settings import StackSettings


@dataclass(frozen=True)
class Vpc:
    """Subnets and security groups of the stack's jobs (ids as AWS gives them)."""

    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.subnets or not self.security_groups:
            raise ValueError(f"a VPC needs subnets and security groups: {self.subnets!r}, {self.security_groups!r}")

    @classmethod
    def of(cls, subnets: Any, security_groups: Any) -> Vpc:
        return cls(tuple(str(s) for s in subnets), tuple(str(g) for g in security_groups))

    def request(self) -> dict[str, list[str]]:
        """The VpcConfig of a CreateProcessingJob or CreateTrainingJob request."""
        return {"SecurityGroupIds": list(self.security_groups), "Subnets": list(self.subnets)}

    def sdk_arguments(self) -> dict[str, list[str]]:
        """The same, as the SDK's NetworkConfig (processing) and Networking (training) take it."""
        return {"subnets": list(self.subnets), "security_group_ids": list(self.security_groups)}


def existing_vpc(settings: StackSettings) -> Vpc | None:
    """The subnets and security groups a stack names (vpcSubnetIds); a created VPC's ids are infra's outputs."""
    if not settings.vpc_subnet_ids:
        return None
    return Vpc.of(settings.vpc_subnet_ids.split(","), settings.vpc_security_group_ids.split(","))


def processing_network(vpc: Vpc | None) -> dict[str, Any]:
    """The NetworkConfig of a CreateProcessingJob request the platform builds itself (the monitoring and comparison
    jobs, which call AWS APIs): traffic between instances encrypted, in the VPC."""
    config: dict[str, Any] = {"EnableInterContainerTrafficEncryption": True}
    if vpc is not None:
        config["VpcConfig"] = vpc.request()
    return config
