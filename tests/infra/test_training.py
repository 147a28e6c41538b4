"""The training component: model package group, content-hashed code bundle, pipeline."""

from __future__ import annotations

import json

from mlops.naming import Names
from mlops.plan import Plan
from mlops.settings import REPO_ROOT, StackSettings
from pipelines.training import (
    PRIMARY_JSON_PATH,
    STEP_ORDER,
    code_bundle,
    default_input_data_uri,
    default_input_location,
)
from tests.conftest import IMAGE_TAG

PIPELINE = "aws:sagemaker/pipeline:Pipeline"


def test_model_package_group_per_stack(plan: Plan, settings: StackSettings) -> None:
    [group] = plan.of_type("aws:sagemaker/modelPackageGroup:ModelPackageGroup")
    assert group.inputs["modelPackageGroupName"] == f"mlops-stack-{settings.stack}"
    assert plan.outputs["modelPackageGroupName"] == group.inputs["modelPackageGroupName"]


def test_code_bundle_keyed_by_content_hash_and_kms_encrypted(plan: Plan, settings: StackSettings) -> None:
    names = Names.of(settings)
    digest = code_bundle(settings).sha256
    [bundle] = [o for o in plan.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if o.name == "training-code-bundle"]
    assert bundle.inputs["bucket"] == names.bucket("artifacts")
    assert bundle.inputs["key"] == f"code/{digest}/model_code.tar.gz"
    assert bundle.inputs["serverSideEncryption"] == "aws:kms"
    assert bundle.inputs["kmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert bundle.inputs["source"] == {"fileAsset": f"build/code-bundles/{digest}/model_code.tar.gz"}
    assert plan.outputs["codeBundleUri"] == f"s3://{names.bucket('artifacts')}/code/{digest}/model_code.tar.gz"


def test_a_stack_that_seeds_sample_data_has_it_at_the_pipelines_default_input(plan: Plan,
                                                                              settings: StackSettings) -> None:
    """The first run of a new stack's pipeline (CI's train job) reads the default input: it is not empty."""
    seeded = [o for o in plan.of_type("aws:s3/bucketObjectv2:BucketObjectv2") if o.name == "training-sample-data"]
    if not settings.seed_sample_data:
        assert seeded == []
        return
    [sample] = seeded
    bucket, prefix = default_input_location(settings)
    assert default_input_data_uri(settings) == f"s3://{bucket}/{prefix}"
    sample_path = settings.problem_declaration().sample_path
    assert sample_path is not None
    assert (sample.inputs["bucket"], sample.inputs["key"]) == (bucket, f"{prefix}{sample_path.name}")
    assert sample.inputs["serverSideEncryption"] == "aws:kms" and sample.inputs["kmsKeyId"] == plan.outputs["kmsKeyArn"]
    assert sample.inputs["source"] == {"fileAsset": sample_path.relative_to(REPO_ROOT).as_posix()}


def test_dev_seeds_its_sample_and_prod_does_not() -> None:
    from mlops.settings import load_stack

    assert load_stack("dev").seed_sample_data and not load_stack("prod").seed_sample_data


def test_no_pipeline_until_an_image_exists(plan: Plan) -> None:
    assert plan.of_type(PIPELINE) == []
    assert plan.outputs["pipelineName"] == ""
    assert "no imageTag" in plan.outputs["pipelineStatus"]


def test_pipeline_with_the_generated_definition(plans_with_image: dict[str, Plan], settings: StackSettings) -> None:
    plan = plans_with_image[settings.stack]
    names = Names.of(settings)
    [pipeline] = plan.of_type(PIPELINE)
    assert pipeline.inputs["pipelineName"] == names.pipeline == plan.outputs["pipelineName"]
    assert pipeline.inputs["roleArn"] == plan.outputs["executionRoleArn"]
    definition = json.loads(pipeline.inputs["pipelineDefinition"])
    assert [step["Name"] for step in definition["Steps"]][:5] == list(STEP_ORDER[:5])
    text = pipeline.inputs["pipelineDefinition"]
    assert f"{plan.outputs['ecrRepositoryUrl']}:{IMAGE_TAG}" in text
    assert plan.outputs["kmsKeyArn"] in text
    assert plan.outputs["codeBundleUri"] in text
    assert PRIMARY_JSON_PATH in text
    parameters = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    assert parameters["MinTestMetric"] == settings.min_test_metric
    assert parameters["TrainingInstanceType"] == settings.training_instance_type


def test_pipeline_plan_passes_the_policy_pack(plans_with_image: dict[str, Plan]) -> None:
    from policies.offline import evaluate

    for plan in plans_with_image.values():
        assert evaluate([r.as_json() for r in plan.resources]) == []
