"""The scheduled drift job resolves the baseline of whatever the endpoint serves (moto)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from model_code.drift import main as drift_main
from model_code.endpoint_source import EndpointSourceError, download, resolve

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/mlops-stack-dev-sagemaker-execution"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in (("AWS_ACCESS_KEY_ID", "t"), ("AWS_SECRET_ACCESS_KEY", "t"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)


def _deploy(sagemaker, s3, metadata: dict[str, str]) -> str:
    s3.create_bucket(Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="artifacts", Key="run/baseline/baseline.json", Body=b'{"format": "x"}')
    s3.put_object(Bucket="artifacts", Key="run/model.tar.gz", Body=b"model")
    sagemaker.create_model_package_group(ModelPackageGroupName="mlops-stack-dev")
    package = sagemaker.create_model_package(
        ModelPackageGroupName="mlops-stack-dev", ModelApprovalStatus="Approved", CustomerMetadataProperties=metadata,
        InferenceSpecification={"Containers": [{"Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/m:1",
                                                "ModelDataUrl": "s3://artifacts/run/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]
    sagemaker.create_model(ModelName="m-1", ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": package})
    sagemaker.create_endpoint_config(EndpointConfigName="c-1", ProductionVariants=[
        {"VariantName": "primary", "ModelName": "m-1", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    sagemaker.create_endpoint(EndpointName="mlops-stack-dev", EndpointConfigName="c-1")
    return package


def test_resolves_and_downloads_what_the_endpoint_serves(aws, tmp_path) -> None:
    sagemaker, s3 = aws
    package = _deploy(sagemaker, s3, {"drift_baseline_uri": "s3://artifacts/run/baseline/baseline.json"})
    served = resolve(sagemaker, "mlops-stack-dev")
    assert (served.package_arn, served.model_data_url) == (package, "s3://artifacts/run/model.tar.gz")
    baseline, model = download(s3, served, tmp_path)
    assert json.loads(baseline.read_text()) == {"format": "x"} and model.read_bytes() == b"model"


def test_a_package_without_a_baseline_is_named(aws, capsys, tmp_path) -> None:
    sagemaker, s3 = aws
    package = _deploy(sagemaker, s3, {"auc": "0.9"})
    with pytest.raises(EndpointSourceError, match=f"model package {package} records no drift_baseline_uri"):
        resolve(sagemaker, "mlops-stack-dev")
    code = drift_main(["--input", str(tmp_path), "--baseline-from-endpoint", "--endpoint", "mlops-stack-dev",
                       "--output", str(tmp_path / "out")])
    assert code == 1 and "records no drift_baseline_uri" in capsys.readouterr().err


def test_baseline_or_endpoint_is_required(capsys, tmp_path) -> None:
    assert drift_main(["--input", str(tmp_path)]) == 2
    assert "give --baseline, or --baseline-from-endpoint with --endpoint" in capsys.readouterr().err
