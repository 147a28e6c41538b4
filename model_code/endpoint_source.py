"""What an endpoint serves, resolved at run time: the drift baseline and model of its package.

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
    model_data_url = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    return Served(package_arn, baseline_uri, model_data_url)


def download(s3: Any, served: Served, target: Path) -> tuple[Path, Path]:
    """(baseline.json, model.tar.gz) of `served`, downloaded into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for uri, name in ((served.baseline_uri, "baseline.json"), (served.model_data_url, "model.tar.gz")):
        bucket, key = _split(uri)
        path = target / name
        s3.download_file(bucket, key, str(path))
        paths.append(path)
    return paths[0], paths[1]
