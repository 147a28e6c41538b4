"""Training: the stack's model package group, the content-hashed code bundle and the SageMaker
pipeline whose definition `pipelines/training.py` generates.

The bundle's S3 key is the sha256 of `model_code/`, so a code change is a new object and a new
definition (an in-place pipeline update), and an unchanged tree changes nothing. The pipeline needs
an image: until CI has pushed one (`imageTag`), the group and bundle exist and the pipeline does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.components.network import Network, vpc_of
from infra.components.storage import consumer_principals
from mlops.naming import Arns, Names
from mlops.settings import REPO_ROOT, StackSettings
from pipelines.bundle import Bundle
from pipelines.training import default_input_location, definition_json

BUILD_DIR = REPO_ROOT / "build" / "code-bundles"


def write_bundle(bundle: Bundle, build_dir: Path = BUILD_DIR) -> Path:
    """The bundle as a file (Pulumi uploads assets from files); same digest, same path."""
    path = build_dir / bundle.sha256 / "model_code.tar.gz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bundle.data)
    return path


@dataclass(frozen=True)
class TrainingArgs:
    settings: StackSettings
    model_package_group_name: str
    pipeline_name: str
    artifacts_bucket: str
    bundle: Bundle
    kms_key_arn: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    repository_url: pulumi.Input[str]
    tags: dict[str, str]
    model_consumers: tuple[str, ...] = ()
    # The first input of a new stack: the sample at the pipeline's default input (settings: seedSampleData).
    sample_data: Path | None = None
    network: Network | None = None  # the stack's VPC, when it runs in one


class Training(pulumi.ComponentResource):
    model_package_group_name: str
    code_bundle_uri: str
    pipeline_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: TrainingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops-stack:training:Training", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.settings

        group = aws.sagemaker.ModelPackageGroup(
            f"{name}-model-package-group",
            model_package_group_name=args.model_package_group_name,
            model_package_group_description=f"Models trained by {args.pipeline_name}",
            tags=args.tags,
            opts=child,
        )
        bundle_object = aws.s3.BucketObjectv2(
            f"{name}-code-bundle",
            bucket=args.artifacts_bucket,
            key=args.bundle.key,
            source=pulumi.FileAsset(str(write_bundle(args.bundle))),
            content_type="application/gzip",
            server_side_encryption="aws:kms",
            kms_key_id=args.kms_key_arn,
            tags=args.tags,
            opts=child,
        )
        if args.sample_data is not None:
            data_bucket, prefix = default_input_location(settings)
            aws.s3.BucketObjectv2(
                f"{name}-sample-data",
                bucket=data_bucket,
                key=f"{prefix}{args.sample_data.name}",
                source=pulumi.FileAsset(str(args.sample_data)),
                content_type="application/gzip",
                server_side_encryption="aws:kms",
                kms_key_id=args.kms_key_arn,
                tags=args.tags,
                opts=child,
            )
        if args.model_consumers:
            arns = Arns(Names.of(settings))
            group_arn, package_arns = arns.model_package_group, arns.model_package("*")
            aws.sagemaker.ModelPackageGroupPolicy(
                f"{name}-consumer-policy",
                model_package_group_name=group.model_package_group_name,
                resource_policy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "ConsumerAccountsDeployModels",
                                "Effect": "Allow",
                                "Principal": consumer_principals(list(args.model_consumers)),
                                "Action": [
                                    "sagemaker:DescribeModelPackage",
                                    "sagemaker:DescribeModelPackageGroup",
                                    "sagemaker:ListModelPackages",
                                ],
                                "Resource": [group_arn, package_arns],
                            }
                        ],
                    },
                    sort_keys=True,
                ),
                opts=child,
            )
        self.model_package_group_name = args.model_package_group_name
        self.code_bundle_uri = args.bundle.uri(args.artifacts_bucket)

        self.pipeline_arn = None
        if settings.image_tag:
            definition = pulumi.Output.all(args.repository_url, args.execution_role_arn, args.kms_key_arn,
                                           vpc_of(args.network)).apply(
                lambda values: definition_json(
                    settings,
                    image_uri=f"{values[0]}:{settings.image_tag}",
                    code_bundle_uri=self.code_bundle_uri,
                    role_arn=values[1],
                    kms_key_arn=values[2],
                    git_sha=settings.image_tag,
                    vpc=values[3],
                )
            )
            pipeline = aws.sagemaker.Pipeline(
                f"{name}-pipeline",
                pipeline_name=args.pipeline_name,
                pipeline_display_name=args.pipeline_name,
                pipeline_description="Validate, preprocess, train, evaluate; register when the test AUC clears the bar",
                pipeline_definition=definition,
                role_arn=args.execution_role_arn,
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[group, bundle_object]),
            )
            self.pipeline_arn = pipeline.arn
        self.register_outputs(
            {
                "modelPackageGroupName": self.model_package_group_name,
                "codeBundleUri": self.code_bundle_uri,
                "pipelineArn": self.pipeline_arn,
            }
        )
