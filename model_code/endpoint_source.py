"""What an endpoint or a model package serves, resolved at run time: the drift baseline and model of its package.

The scheduled drift job is given only the endpoint's name, so it always compares traffic with
the baseline of the model the endpoint runs now, however many deployments happened since the
schedule was created: endpoint -> endpoint config -> model -> model package ->
`CustomerMetadataProperties["drift_baseline_uri"]` and the package's ModelDataUrl.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EndpointSourceError(ValueError):
    """The endpoint, its model package or the package's baseline cannot be resolved."""


@dataclass(frozen=True)
class Served:
    package_arn: str
    baseline_uri: str
    model_data_url: str


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise EndpointSourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def resolve(sagemaker: Any, endpoint: str) -> Served:
    endpoint_config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint_config)["ProductionVariants"]
    model = sagemaker.describe_model(ModelName=variants[0]["ModelName"])
    package_arn = model.get("PrimaryContainer", {}).get("ModelPackageName")
    if not package_arn:
        raise EndpointSourceError(f"endpoint {endpoint} (config {endpoint_config}) does not serve a model package")
    package = sagemaker.describe_model_package(ModelPackageName=package_arn)
    baseline_uri = package.get("CustomerMetadataProperties", {}).get("drift_baseline_uri")
    if not baseline_uri:
        raise EndpointSourceError(f"model package {package_arn} records no drift_baseline_uri")
    return Served(package_arn, baseline_uri, _model_data_url(package_arn, package))


def _model_data_url(package_arn: str, package: dict[str, Any]) -> str:
    containers = package.get("InferenceSpecification", {}).get("Containers") or [{}]
    url = containers[0].get("ModelDataUrl")
    if not url:
        raise EndpointSourceError(f"model package {package_arn} has no ModelDataUrl")
    return str(url)


def package_model_data(sagemaker: Any, package_arn: str) -> str:
    """The ModelDataUrl of a model package."""
    return _model_data_url(package_arn, sagemaker.describe_model_package(ModelPackageName=package_arn))


def download_object(s3: Any, uri: str, path: Path) -> Path:
    """Download the object `uri` (s3://bucket/key) to `path`."""
    bucket, key = _split(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(bucket, key, str(path))
    return path


def download(s3: Any, served: Served, target: Path) -> tuple[Path, Path]:
    """(baseline.json, model.tar.gz) of `served`, downloaded into `target`."""
    return (download_object(s3, served.baseline_uri, target / "baseline.json"),
            download_object(s3, served.model_data_url, target / "model.tar.gz"))
