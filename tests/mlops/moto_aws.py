"""Test helpers: an in-process moto AWS, stack file copies and registry/endpoint builders.

The builders play the parts other rooms play in production: the pipeline's Register step
(`register`, with the metadata convention of mlops.registry) and the serving component's model,
endpoint config and endpoint (`deploy_config`, `create_endpoint`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from mlops.naming import Names
from mlops.registry import PENDING, Aws
from mlops.settings import REPO_ROOT, StackSettings, load_stack_file

ROLE = "arn:aws:iam::123456789012:role/mlops-stack-sagemaker-execution"
# What the pipeline records on dev's packages: dev's repository, the pushed tag (prod's jobs run it after promote).
IMAGE = f"{Names.of(load_stack_file(REPO_ROOT / 'Pulumi.dev.yaml')).ecr_url}:abc1234"


@contextmanager
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """In-process moto with fake credentials; AWS_ENDPOINT_URL unset so nothing leaves the process."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # One moto account stands for every stack's; it is dev's, as the packages prod pins are dev's.
    monkeypatch.setenv("MOTO_ACCOUNT_ID", load_stack_file(REPO_ROOT / "Pulumi.dev.yaml").account_id)
    with mock_aws():
        yield Aws(max_attempts=1)


def copy_stack_files(directory: Path) -> dict[str, Path]:
    """Copies of the repo's dev and prod stack files (the originals are never written)."""
    copies = {}
    for stack in ("dev", "prod"):
        target = directory / f"Pulumi.{stack}.yaml"
        shutil.copyfile(REPO_ROOT / f"Pulumi.{stack}.yaml", target)
        copies[stack] = target
    return copies


class Registry:
    """Creates the model package group of a stack and registers packages like the pipeline does."""

    def __init__(self, settings: StackSettings, aws: Aws):
        self.settings = settings
        self.aws = aws
        self.sagemaker = aws.sagemaker(settings.region)
        self.group = Names.of(settings).model_package_group
        self.sagemaker.create_model_package_group(ModelPackageGroupName=self.group)

    def register(self, auc: float | str | None, status: str = PENDING, **metadata: str) -> str:
        self.registered = getattr(self, "registered", 0) + 1
        run = f"s3://artifacts/pipelines/run-{self.registered}"
        properties = {"mlflow_run_id": "run-1", "git_sha": "abc1234", "test_data_uri": f"{run}/Preprocess/test",
                      **metadata}
        properties = {k: v for k, v in properties.items() if v != ""}  # "" drops a default key
        if auc is not None:  # packages of the Adult problem: their primary metric is auc
            properties["auc"] = auc if isinstance(auc, str) else f"{auc:.4f}"
            properties.setdefault("primary_metric", "auc")
            properties.setdefault("primary_metric_direction", "higher")
        request: dict[str, Any] = {
            "ModelPackageGroupName": self.group,
            "ModelPackageDescription": "adult income classifier",
            "InferenceSpecification": {
                "Containers": [{"Image": IMAGE, "ModelDataUrl": f"{run}/Train/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "ModelApprovalStatus": status,
            "CustomerMetadataProperties": properties,
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": "s3://artifacts/evaluation.json"}
                }
            },
        }
        return self.sagemaker.create_model_package(**request)["ModelPackageArn"]


def deploy_config(settings: StackSettings, aws: Aws, package_arn: str, suffix: str) -> str:
    """A model of `package_arn` and an endpoint config serving it, named like the serving component."""
    sagemaker = aws.sagemaker(settings.region)
    endpoint = Names.of(settings).endpoint
    model = f"{endpoint}-model-{suffix}"
    sagemaker.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": package_arn})
    config = f"{endpoint}-config-{suffix}"
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": settings.endpoint_instance_type,
            }
        ],
    )
    return config


def create_endpoint(settings: StackSettings, aws: Aws, config: str) -> str:
    endpoint = Names.of(settings).endpoint
    aws.sagemaker(settings.region).create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    return endpoint


def load(path: Path) -> StackSettings:
    return load_stack_file(path)


class RecordedScores:
    """Stands in for the comparison job in registry-logic tests: each package "scores" its recorded auc on any
    split, decided by model_code.champion's rule. The real job, on real models: tests/local/test_local_pipeline.py
    and tests/mlops/test_comparison.py."""

    def __init__(self, aws: Aws, region: str):
        self.sagemaker = aws.sagemaker(region)
        self.requests: list[dict[str, Any]] = []

    def _auc_of(self, **where: str) -> float | None:
        for summary in self.sagemaker.list_model_packages(ModelPackageGroupName=where["group"])[
                "ModelPackageSummaryList"]:
            package = self.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
            if where.get("arn") in (package["ModelPackageArn"], None) and where.get("url") in (url, None):
                return float(package["CustomerMetadataProperties"]["auc"])
        return None

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        from model_code.champion import verdict

        self.requests.append(request)
        args = request["AppSpecification"]["ContainerArguments"]
        pinned = args[args.index("--champion-package") + 1]
        [model] = [i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"] if i["InputName"] == "model"]
        group = pinned.split(":model-package/")[1].split("/")[0]
        candidate, champion = self._auc_of(group=group, url=model), self._auc_of(group=group, arn=pinned)
        assert candidate is not None
        required, passed = verdict(candidate, champion, "higher", float(args[args.index("--min-improvement") + 1]))
        return {"format": "mlops-stack/champion-comparison", "format_version": 1,
                "primary_metric": {"name": "auc", "direction": "higher"}, "challenger": {"value": candidate},
                "champion": {"model_package_arn": pinned, "status": "scored", "value": champion, "reason": ""},
                "required": required, "passed": passed}

